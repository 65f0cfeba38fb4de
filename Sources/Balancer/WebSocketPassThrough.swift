import BalancerCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Wire

/// WebSocket upgrades through the balancer: the node with the fewest open sockets is chosen, the
/// upgrade request is sent to it over a fresh TCP connection, its `101` answer goes to the
/// client as it came, and from then on bytes are spliced both ways untouched (frames, pings,
/// closes). When either side closes, so does the other, and the client reconnects through the
/// balancer.
enum WebSocketPassThrough {
    /// Bytes of a backend's handshake answer at most.
    static let handshakeBytesMax = 16 * 1024
    /// Bytes the backend may send after its `101` before the splice is in place (the events
    /// socket's replay); past it the upgrade is abandoned.
    static let heldBytesMax = 1 << 20
    /// How long a node may take to answer an upgrade once it is sent. A node that accepts the
    /// connection but never answers (paused with SIGSTOP, wedged) is treated as unreachable:
    /// ejected, and the upgrade tried on another node. Without it the client waited for as long
    /// as the node stayed paused (3 s in the load tester's smoke run, a whole pause in general).
    static let handshakeTimeout = TimeAmount.seconds(2)

    /// Connects to the node with the fewest sockets and sends it the upgrade `request` (the
    /// client's head with `X-Forwarded-For`). A node that cannot be reached, goes away or stays
    /// silent (`handshakeTimeout`) before it answers, or answers 5xx, is ejected and, once,
    /// another node is tried (the client sent a
    /// GET and nothing has been answered yet). Every failure comes out as `UpgradeRefused` (the
    /// node's own 4xx) or `BackendUnavailable`, which the proxy handler answers: a client must
    /// never be left without an answer (one that keeps half-closed sockets would wait forever).
    /// On success: the backend channel (its `BackendSplice` holds what followed the `101`), the
    /// node's id, and the node's `101` head.
    static func connect(client: Channel, policy: Policy, request: ByteBuffer, tls: NIOSSLContext?, excluding: [String] = [])
        -> EventLoopFuture<(backend: Channel, id: String, answer: ByteBuffer)>
    {
        let eventLoop = client.eventLoop
        guard let choice = policy.chooseForWebSocket(excluding: excluding) else {
            return eventLoop.makeFailedFuture(BackendUnavailable(description: "no backend for a WebSocket"))
        }
        guard let target = HostPort(choice.address) else {
            policy.webSocketClosed(id: choice.backend)
            return eventLoop.makeFailedFuture(BackendUnavailable(description: "bad backend address"))
        }
        let splice = BackendSplice()
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(BackendPool.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { backend in
                backend.eventLoop.makeCompletedFuture {
                    try backend.pipeline.syncOperations.addBackendTLS(tls, host: target.host)
                    try backend.pipeline.syncOperations.addHandler(splice)
                }
            }
            .connect(target)
            .flatMapError { error in
                // The socket counted on this node never opened: uncount it (an opened one is
                // uncounted when its backend channel closes).
                policy.webSocketClosed(id: choice.backend)
                return eventLoop.makeFailedFuture(BackendUnreachable(cause: error))
            }
            .flatMap { backend in
                backend.closeFuture.whenComplete { _ in policy.webSocketClosed(id: choice.backend) }
                backend.writeAndFlush(request, promise: nil)
                let silence = eventLoop.scheduleTask(in: handshakeTimeout) {
                    splice.handshake.fail(BackendUnavailable(description: "no answer to the upgrade within \(handshakeTimeout)"))
                    backend.close(promise: nil)
                }
                splice.handshake.futureResult.whenComplete { _ in silence.cancel() }
                return splice.handshake.futureResult.map { answer in (backend, choice.backend, answer) }
            }
            .flatMapError { error in
                if let refused = error as? UpgradeRefused, refused.status.code < 500 {
                    return eventLoop.makeFailedFuture(error)
                }
                // A refusal about the cluster (no leader yet) leaves the node in; another node
                // may still take the socket.
                if (error as? UpgradeRefused)?.aboutTheCluster != true {
                    policy.failed(id: choice.backend, reason: "websocket upgrade: \(error)", unreachable: error is BackendUnreachable)
                }
                if excluding.isEmpty, client.isActive {
                    return connect(client: client, policy: policy, request: request, tls: tls, excluding: [choice.backend])
                }
                if error is UpgradeRefused { return eventLoop.makeFailedFuture(error) }
                return eventLoop.makeFailedFuture(BackendUnavailable(description: "websocket upgrade: \(error)"))
            }
    }
}

/// The node answered the upgrade with something other than `101`; the client gets that status.
struct UpgradeRefused: Error, CustomStringConvertible {
    var status: HTTPResponseStatus
    var line: String
    /// The node marked its refusal as about the cluster (`X-Switchboard-Scope: cluster`).
    var aboutTheCluster = false
    var description: String { "the node refused the upgrade: \(line)" }
}

/// Backend side: reads the handshake answer (101 or a failure), holds what follows it until the
/// client side is glued, then forwards bytes as they come.
final class BackendSplice: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: every method runs on the backend channel's event loop (the client channel
    // shares it: the backend connection is made on the client's loop).
    typealias InboundIn = ByteBuffer
    var handshake: EventLoopPromise<ByteBuffer>!
    private var buffered = ByteBuffer()
    private var answered = false
    private var client: Channel?
    private var backend: Channel?
    /// Where the node's frames stand, so a close frame can be sent between two of them.
    private var frames = FrameBoundary()
    /// Asked to move its client to another node (`move`), at the next frame boundary.
    private var moving = false

    /// What the client hears when its node goes away between two frames: close 1012 (service
    /// restart), so any client reconnects, including one that keeps half-closed sockets open.
    static let nodeGoneCloseFrame: [UInt8] = {
        let reason = Array("node gone; reconnect".utf8)
        return [0x88, UInt8(2 + reason.count), 0x03, 0xF4] + reason
    }()

    /// What the client hears when the balancer moves it to a node holding fewer sockets:
    /// close 1012 like a node's death, with its own reason (a client may tell them apart).
    static let movedCloseFrame: [UInt8] = {
        let reason = Array("rebalancing; reconnect".utf8)
        return [0x88, UInt8(2 + reason.count), 0x03, 0xF4] + reason
    }()

    func handlerAdded(context: ChannelHandlerContext) {
        handshake = context.eventLoop.makePromise()
        backend = context.channel
    }

    /// Ends this socket between two of the node's frames with `movedCloseFrame`, closing both
    /// sides: its client reconnects through the balancer, which gives it the node with the
    /// fewest sockets. Nothing happens to a socket not spliced yet or already moving; true when
    /// this call started the move.
    @discardableResult
    func move() -> Bool {
        guard client != nil, !moving else { return false }
        moving = true
        if frames.atBoundary { finishMove() }
        return true
    }

    private func finishMove() {
        guard let client else { return }
        self.client = nil  // channelInactive then has no client to tell that the node went
        client.writeAndFlush(ByteBuffer(bytes: Self.movedCloseFrame)).assumeIsolated().whenComplete { _ in client.close(promise: nil) }
        backend?.close(promise: nil)
    }

    /// A connect that fails never makes the channel active (no `channelInactive`): the promise is
    /// completed here, as the closed channel drops its handlers (a later completion is ignored).
    func handlerRemoved(context: ChannelHandlerContext) {
        handshake.fail(BackendUnavailable(description: "backend connection closed before it answered the upgrade"))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if let client {
            frames.advance(bytes.readableBytesView)
            client.writeAndFlush(bytes, promise: nil)
            if moving, frames.atBoundary { finishMove() }
            return
        }
        buffered.writeBuffer(&bytes)
        guard buffered.readableBytes <= WebSocketPassThrough.heldBytesMax else {
            handshake.fail(BackendUnavailable(description: "backend sent over \(WebSocketPassThrough.heldBytesMax) bytes before the splice"))
            context.close(promise: nil)
            return
        }
        guard !answered else { return }
        switch buffered.withUnsafeReadableBytes({ HTTP1.parseResponse($0, requestWasHEAD: false) }) {
        case .incomplete:
            if buffered.readableBytes > WebSocketPassThrough.handshakeBytesMax {
                handshake.fail(BackendUnavailable(description: "handshake answer over \(WebSocketPassThrough.handshakeBytesMax) bytes"))
                context.close(promise: nil)
            }
        case .tooLarge, .invalid:
            handshake.fail(BackendUnavailable(description: "backend answered the upgrade with something that is not HTTP/1.1"))
            context.close(promise: nil)
        case .head(let head):
            answered = true
            let answer = buffered.readSlice(length: head.length)!
            let statusLine = answer.getString(at: answer.readerIndex + head.statusLine.lowerBound, length: head.statusLine.count) ?? ""
            guard head.status == 101 else {
                // A node that answers (401 for a bad token, 503 while it has no leader) is alive:
                // its answer goes to the client; only a 5xx or no answer counts against it.
                if (100..<600).contains(head.status) {
                    handshake.fail(
                        UpgradeRefused(status: HTTPResponseStatus(statusCode: head.status), line: statusLine, aboutTheCluster: head.aboutTheCluster))
                } else {
                    handshake.fail(BackendUnavailable(description: "backend answered the upgrade with: \(statusLine)"))
                }
                context.close(promise: nil)
                return
            }
            handshake.succeed(answer)
        }
    }

    /// The client's `101` went out: send what the backend said since, then splice.
    func glue(to client: Channel) {
        self.client = client
        if buffered.readableBytes > 0 {
            frames.advance(buffered.readableBytesView)
            client.writeAndFlush(buffered, promise: nil)
            buffered = ByteBuffer()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        backend = nil
        handshake.fail(BackendUnavailable(description: "backend closed during the upgrade"))
        guard let client else { return }
        guard frames.atBoundary, client.isActive else {
            client.close(promise: nil)  // mid-frame: only a cut connection is honest
            return
        }
        client.writeAndFlush(ByteBuffer(bytes: Self.nodeGoneCloseFrame)).assumeIsolated().whenComplete { _ in client.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Tracks the boundaries of the WebSocket frames a node sends (RFC 6455 section 5.2: a 2-byte
/// header, a 16- or 64-bit extended length, a mask key when masked), without buffering them.
struct FrameBoundary {
    private var header: [UInt8] = []
    private var payloadLeft: UInt64 = 0

    var atBoundary: Bool { header.isEmpty && payloadLeft == 0 }

    mutating func advance(_ bytes: ByteBufferView) {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if payloadLeft > 0 {
                let take = Int(min(UInt64(bytes.endIndex - index), payloadLeft))
                payloadLeft -= UInt64(take)
                index += take
                continue
            }
            header.append(bytes[index])
            index += 1
            if header.count >= 2, header.count == headerLength {
                payloadLeft = payloadLength
                header.removeAll(keepingCapacity: true)
            }
        }
    }

    private var headerLength: Int {
        let length = header[1] & 0x7F
        return 2 + (length == 126 ? 2 : length == 127 ? 8 : 0) + (header[1] & 0x80 != 0 ? 4 : 0)
    }

    private var payloadLength: UInt64 {
        switch header[1] & 0x7F {
        case 126: return UInt64(header[2]) << 8 | UInt64(header[3])
        case 127: return header[2...9].reduce(0) { $0 << 8 | UInt64($1) }
        case let length: return UInt64(length)
        }
    }
}

/// The event sockets spliced on one event loop, by node: the ones the balancer may move
/// (`BackendSplice.move`). Used on its loop only.
final class SocketRoster {
    private var byBackend: [String: [ObjectIdentifier: BackendSplice]] = [:]

    func add(_ splice: BackendSplice, backend: String) {
        byBackend[backend, default: [:]][ObjectIdentifier(splice)] = splice
    }

    func remove(_ splice: BackendSplice, backend: String) {
        byBackend[backend]?[ObjectIdentifier(splice)] = nil
        if byBackend[backend]?.isEmpty == true { byBackend[backend] = nil }
    }

    /// Moves up to `count` of `backend`'s sockets (none already moving); returns how many.
    @discardableResult
    func move(_ count: Int, of backend: String) -> Int {
        guard count > 0, let splices = byBackend[backend] else { return 0 }
        var moved = 0
        for splice in splices.values where moved < count {
            if splice.move() { moved += 1 }
        }
        return moved
    }
}
