import Crypto
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Seeded

/// The authenticated TCP link between members (DESIGN.md): a listener for the connections
/// other members open to us, and one outbound connection per member we send to, reopened with
/// exponential backoff. Sends are best effort and never block: Raft tolerates loss.
public final class PeerLink: Sendable {
    /// The peer link's version, announced in every hello (2: AES-256-GCM frames, keepalives).
    /// A hello may carry more bytes after it; this version ignores them, so a later version can
    /// add fields and still be understood.
    public static let protocolVersion: UInt8 = 2
    /// Largest frame from a peer that has proved itself (a snapshot chunk, a batch of entries).
    public static let frameBytesMax = 32 << 20
    /// Largest frame before that: a hello (member id and nonce), a proof, or a member
    /// certificate with its signature (about 600 bytes from the local CA). A connection that
    /// announces more is closed before its body is read.
    public static let handshakeFrameBytesMax = 4096
    /// Time a connection has to complete the handshake.
    public static let handshakeTimeout = TimeAmount.seconds(2)
    /// Inbound connections still in their handshake, from one source address and in all. Past
    /// either, a new connection is closed at accept and counted (`refused`).
    public static let unauthenticatedPerAddressMax = 8
    public static let unauthenticatedMax = 64
    public static let reconnectDelayMin: Duration = .milliseconds(50)
    /// Reconnects back off to at most this, and a connect that has no answer within
    /// `connectTimeout` is given up, so a member cut off by a partition (its SYNs dropped) is
    /// tried every 0.75 s at most and reached again within about that of the network healing.
    /// The timeout must exceed the members' round trip (0.5 s: across continents is ~0.3 s).
    public static let reconnectDelayMax: Duration = .milliseconds(250)
    public static let connectTimeout = TimeAmount.milliseconds(500)
    /// An authenticated connection sends a keepalive when it sent nothing for this long...
    public static let keepaliveInterval: Duration = .milliseconds(250)
    /// ...and is closed (then reopened) when it heard nothing for this long.
    public static let silenceMax: Duration = .seconds(1)

    public struct Counters: Sendable, Equatable {
        public var sent = 0, received = 0, dropped = 0, failures = 0, authenticated = 0
        /// Inbound connections closed at accept: too many still unauthenticated.
        public var refused = 0
    }

    private struct Unauthenticated {
        var total = 0
        var byAddress: [String: Int] = [:]
    }

    /// Failed handshakes are logged at most once per `unauthenticatedLogInterval`.
    public static let unauthenticatedLogInterval: Duration = .seconds(10)
    private struct Quiet {
        var nextLogAt: Monotonic.Instant?
        var unlogged = 0
    }

    let localId: String
    let secret: String
    let previousSecrets: [String]
    /// This member's certificate and key, and the members' authority (`PeerIdentity`).
    let identity: PeerIdentity?
    let group: EventLoopGroup
    let logger: Logger
    let onMessage: @Sendable (String, [UInt8]) -> Void

    private struct Outbound {
        var handler: NIOLoopBound<PeerSessionHandler>?
        var channel: Channel?
        var connecting = false
        /// Payloads waiting for the connection (at most `PeerSessionHandler.pendingPayloadsMax`).
        var queued: [[UInt8]] = []
        var retryAt: Monotonic.Instant = ContinuousClock.now
        var delay = PeerLink.reconnectDelayMin
    }

    private let state = NIOLockedValueBox<
        (outbound: [String: Outbound], server: Channel?, counters: Counters, unauthenticated: Unauthenticated, quiet: Quiet)
    >(([:], nil, Counters(), Unauthenticated(), Quiet()))

    public init(localId: String, secret: String, previousSecrets: [String] = [], identity: PeerIdentity? = nil,
                group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger,
                onMessage: @escaping @Sendable (String, [UInt8]) -> Void) {
        self.localId = localId
        self.identity = identity
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
            failed: { [state, logger] error, peer, authenticated in
                // Anyone can open connections that fail their handshake: those are logged at
                // most once per `unauthenticatedLogInterval`, with how many went unlogged.
                let unlogged = state.withLockedValue { state -> Int? in
                    state.counters.failures += 1
                    guard !authenticated else { return 0 }
                    let now = ContinuousClock.now
                    guard state.quiet.nextLogAt.map({ now >= $0 }) ?? true else {
                        state.quiet.unlogged += 1
                        return nil
                    }
                    state.quiet.nextLogAt = now + Self.unauthenticatedLogInterval
                    defer { state.quiet.unlogged = 0 }
                    return state.quiet.unlogged
                }
                guard let unlogged else { return }
                var metadata: Logger.Metadata = ["peer.id": "\(peer ?? "unknown")", "peer.error": "\(error)"]
                if !authenticated {
                    metadata["peer.authenticated"] = "false"
                    metadata["peer.unlogged_since_last"] = "\(unlogged)"
                }
                logger.info("peer link closed", metadata: metadata)
            })
    }

    /// A connection's frame decoder and session handler.
    private func handlers(expecting peer: String?, settle: (() -> Void)? = nil) -> (ByteToMessageHandler<PeerFrameDecoder>, PeerSessionHandler) {
        let nonce = SymmetricKey(size: SymmetricKeySize(bitCount: PeerHandshake.nonceBytes * 8)).withUnsafeBytes { Array($0) }
        let limit = PeerFrameLimit()
        let session = PeerSessionHandler(
            handshake: PeerHandshake(secret: secret, previousSecrets: previousSecrets, localId: localId, nonce: nonce, identity: identity), expectedPeer: peer, events: events,
            limit: limit, settle: settle)
        return (ByteToMessageHandler(PeerFrameDecoder(limit: limit)), session)
    }

    /// Takes a slot for an inbound connection still to prove itself; nil past the bounds.
    private func admitUnauthenticated(from address: String) -> (() -> Void)? {
        let admitted = state.withLockedValue { state -> Bool in
            let fromAddress = state.unauthenticated.byAddress[address, default: 0]
            guard state.unauthenticated.total < Self.unauthenticatedMax, fromAddress < Self.unauthenticatedPerAddressMax else {
                state.counters.refused += 1
                return false
            }
            state.unauthenticated.total += 1
            state.unauthenticated.byAddress[address] = fromAddress + 1
            return true
        }
        guard admitted else { return nil }
        return { [state] in
            state.withLockedValue { state in
                state.unauthenticated.total -= 1
                let left = state.unauthenticated.byAddress[address, default: 1] - 1
                state.unauthenticated.byAddress[address] = left > 0 ? left : nil
            }
        }
    }

    /// Starts accepting members' connections; returns the bound port (useful with port 0).
    public func listen(host: String, port: Int) async throws -> Int {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                // Nothing from a connection is buffered or kept past the bounds before its peer
                // has proved it holds the secret.
                guard let settle = admitUnauthenticated(from: channel.remoteAddress?.ipAddress ?? "?") else {
                    return channel.eventLoop.makeFailedFuture(PeerLinkError.protocolViolation("too many unauthenticated connections"))
                }
                return channel.eventLoop.makeCompletedFuture {
                    let (decoder, session) = handlers(expecting: nil, settle: settle)
                    try channel.pipeline.syncOperations.addHandler(decoder)
                    try channel.pipeline.syncOperations.addHandler(session)
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
            guard ContinuousClock.now >= outbound.retryAt else {
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
            .connectTimeout(Self.connectTimeout)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let (decoder, session) = handlers(expecting: expecting)
                    try channel.pipeline.syncOperations.addHandler(decoder)
                    try channel.pipeline.syncOperations.addHandler(session)
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
            state.outbound[peer] = Outbound(retryAt: ContinuousClock.now + delay, delay: min(delay * 2, Self.reconnectDelayMax))
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
