import Crypto
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The authenticated TCP link between members (DESIGN.md): a listener for the connections
/// other members open to us, and one outbound connection per member we send to, reopened with
/// exponential backoff. Sends are best effort and never block: Raft tolerates loss.
public final class PeerLink: Sendable {
    public static let frameBytesMax = 32 << 20
    public static let reconnectDelayMin = TimeAmount.milliseconds(50)
    public static let reconnectDelayMax = TimeAmount.seconds(2)

    public struct Counters: Sendable, Equatable {
        public var sent = 0, received = 0, dropped = 0, failures = 0, authenticated = 0
    }

    let localId: String
    let secret: String
    let previousSecrets: [String]
    let group: EventLoopGroup
    let logger: Logger
    let onMessage: @Sendable (String, [UInt8]) -> Void

    private struct Outbound {
        var handler: NIOLoopBound<PeerSessionHandler>?
        var channel: Channel?
        var connecting = false
        /// Payloads waiting for the connection (at most `PeerSessionHandler.pendingPayloadsMax`).
        var queued: [[UInt8]] = []
        var retryAt = NIODeadline.uptimeNanoseconds(0)
        var delay = PeerLink.reconnectDelayMin
    }

    private let state = NIOLockedValueBox<(outbound: [String: Outbound], server: Channel?, counters: Counters)>(([:], nil, Counters()))

    public init(localId: String, secret: String, previousSecrets: [String] = [], group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger,
                onMessage: @escaping @Sendable (String, [UInt8]) -> Void) {
        self.localId = localId
        self.secret = secret
        self.previousSecrets = previousSecrets
        self.group = group
        self.logger = logger
        self.onMessage = onMessage
    }

    public var counters: Counters { state.withLockedValue { $0.counters } }

    private var events: PeerLinkEvents {
        PeerLinkEvents(
            authenticated: { [state] _ in state.withLockedValue { $0.counters.authenticated += 1 } },
            received: { [state, onMessage] payload, peer in
                state.withLockedValue { $0.counters.received += 1 }
                onMessage(peer, payload)
            },
            failed: { [state, logger] error, peer in
                state.withLockedValue { $0.counters.failures += 1 }
                logger.info("peer link closed", metadata: ["peer.id": "\(peer ?? "unknown")", "peer.error": "\(error)"])
            })
    }

    private func session(expecting peer: String?) -> PeerSessionHandler {
        let nonce = SymmetricKey(size: SymmetricKeySize(bitCount: PeerHandshake.nonceBytes * 8)).withUnsafeBytes { Array($0) }
        return PeerSessionHandler(handshake: PeerHandshake(secret: secret, previousSecrets: previousSecrets, localId: localId, nonce: nonce), expectedPeer: peer, events: events)
    }

    /// Starts accepting members' connections; returns the bound port (useful with port 0).
    public func listen(host: String, port: Int) async throws -> Int {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder(frameBytesMax: Self.frameBytesMax)))
                    try channel.pipeline.syncOperations.addHandler(session(expecting: nil))
                }
            }
            .bind(host: host, port: port).get()
        state.withLockedValue { $0.server = channel }
        return channel.localAddress?.port ?? port
    }

    /// Sends `payload` to `peer` at `host:port` over our connection to it, opening it if needed.
    /// Returns false when the payload was dropped (no connection yet and its queue full, or
    /// waiting out a reconnect delay).
    /// With `verifyingIdentity` false (a first contact, where only the address is known: `peer`
    /// is then a key for that address), the other side may be any member holding the secret.
    @discardableResult
    public func send(_ payload: [UInt8], to peer: String, host: String, port: Int, verifyingIdentity: Bool = true) -> Bool {
        enum Action { case deliver(NIOLoopBound<PeerSessionHandler>), queued, dropped, connect }
        let action: Action = state.withLockedValue { state in
            var outbound = state.outbound[peer] ?? Outbound()
            defer { state.outbound[peer] = outbound }
            if let handler = outbound.handler { return .deliver(handler) }
            if outbound.connecting {
                guard outbound.queued.count < PeerSessionHandler.pendingPayloadsMax else {
                    state.counters.dropped += 1
                    return .dropped
                }
                outbound.queued.append(payload)
                return .queued
            }
            guard NIODeadline.now() >= outbound.retryAt else {
                state.counters.dropped += 1
                return .dropped
            }
            outbound.connecting = true
            outbound.queued = [payload]
            return .connect
        }
        switch action {
        case .deliver(let handler):
            handler.eventLoop.execute {
                let sent = handler.value.send(payload)
                self.state.withLockedValue { sent ? ($0.counters.sent += 1) : ($0.counters.dropped += 1) }
            }
            return true
        case .queued: return true
        case .dropped: return false
        case .connect:
            connect(to: peer, host: host, port: port, expecting: verifyingIdentity ? peer : nil)
            return true
        }
    }

    private func connect(to peer: String, host: String, port: Int, expecting: String?) {
        let future = ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(1))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder(frameBytesMax: Self.frameBytesMax)))
                    try channel.pipeline.syncOperations.addHandler(session(expecting: expecting))
                }
            }
            .connect(host: host, port: port)
        future.whenSuccess { [self] channel in
            guard let handler = try? channel.pipeline.syncOperations.handler(type: PeerSessionHandler.self) else { return }
            let queued = state.withLockedValue { state in
                let queued = state.outbound[peer]?.queued ?? []
                state.outbound[peer] = Outbound(handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), channel: channel)
                state.counters.sent += queued.count
                return queued
            }
            for payload in queued { handler.send(payload) }
            channel.closeFuture.whenComplete { [self] _ in self.scheduleReconnect(peer) }
        }
        future.whenFailure { [self] error in
            logger.debug("peer connect failed", metadata: ["peer.id": "\(peer)", "peer.error": "\(error)"])
            scheduleReconnect(peer)
        }
    }

    private func scheduleReconnect(_ peer: String) {
        state.withLockedValue { state in
            let delay = state.outbound[peer]?.delay ?? Self.reconnectDelayMin
            state.counters.dropped += state.outbound[peer]?.queued.count ?? 0
            state.outbound[peer] = Outbound(retryAt: .now() + delay, delay: min(delay * 2, Self.reconnectDelayMax))
        }
    }

    public func close() async {
        let channels = state.withLockedValue { state in
            let channels = [state.server].compactMap { $0 } + state.outbound.values.compactMap(\.channel)
            state.outbound = [:]
            state.server = nil
            return channels
        }
        for channel in channels { try? await channel.close() }
    }
}
