import BalancerCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Wire

/// WebSocket upgrades through the balancer: the node with the fewest open sockets is chosen, the
/// upgrade request is replayed to it over a fresh TCP connection, its `101` headers become ours,
/// and from then on bytes are spliced both ways untouched (frames, pings, closes). When either
/// side closes, so does the other, and the client reconnects through the balancer.
final class WebSocketPassThrough: HTTPServerProtocolUpgrader, @unchecked Sendable {
    // @unchecked: one per client connection; `backend` is set in buildUpgradeResponse and read in
    // upgrade, both on that connection's event loop.
    let supportedProtocol = "websocket"
    /// NIO would also require these names in the Connection header; they are checked below instead.
    let requiredUpgradeHeaders: [String] = []
    /// Bytes of a backend's handshake answer at most.
    static let handshakeBytesMax = 16 * 1024
    /// Bytes the backend may send after its `101` before the splice is in place (the events
    /// socket's replay); past it the upgrade is abandoned.
    static let heldBytesMax = 1 << 20

    private let policy: Policy
    private var backend: (channel: Channel, id: String)?

    init(policy: Policy) {
        self.policy = policy
    }

    func buildUpgradeResponse(channel: Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
        guard upgradeRequest.headers.contains(name: "sec-websocket-key"), upgradeRequest.headers.contains(name: "sec-websocket-version") else {
            return channel.eventLoop.makeFailedFuture(BackendUnavailable(description: "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version"))
        }
        return connect(channel: channel, upgradeRequest: upgradeRequest, excluding: [])
            .map { [self] (backend: Channel, id: String, headers: HTTPHeaders) -> HTTPHeaders in
                self.backend = (backend, id)
                var response = initialResponseHeaders
                for (name, value) in headers where !["connection", "upgrade", "content-length"].contains(name.lowercased()) {
                    response.add(name: name, value: value)
                }
                return response
            }
    }

    /// Connects to the node with the fewest sockets and replays the upgrade to it. A node that
    /// cannot be reached, goes away before it answers or answers 5xx is ejected and, once,
    /// another node is tried (the client sent a GET and nothing has been answered yet). Every
    /// failure comes out as `UpgradeRefused` or `BackendUnavailable`, which the proxy handler
    /// answers: NIO passes a failed upgrade on as a plain request, and a client must never be
    /// left without an answer (one that keeps half-closed sockets would wait forever).
    private func connect(channel: Channel, upgradeRequest: HTTPRequestHead, excluding: [String]) -> EventLoopFuture<(Channel, String, HTTPHeaders)> {
        guard let choice = policy.chooseForWebSocket(excluding: excluding) else {
            return channel.eventLoop.makeFailedFuture(BackendUnavailable(description: "no backend for a WebSocket"))
        }
        guard let target = HostPort(choice.address) else {
            policy.webSocketClosed(id: choice.backend)
            return channel.eventLoop.makeFailedFuture(BackendUnavailable(description: "bad backend address"))
        }
        let splice = BackendSplice()
        let policy = self.policy
        return ClientBootstrap(group: channel.eventLoop)
            .connectTimeout(BackendPool.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { backend in backend.eventLoop.makeCompletedFuture { try backend.pipeline.syncOperations.addHandler(splice) } }
            .connect(host: target.host, port: target.port)
            .flatMapError { error in
                // The socket counted on this node never opened: uncount it (an opened one is
                // uncounted when its backend channel closes).
                policy.webSocketClosed(id: choice.backend)
                return channel.eventLoop.makeFailedFuture(BackendUnreachable(cause: error))
            }
            .flatMap { backend in
                backend.closeFuture.whenComplete { _ in policy.webSocketClosed(id: choice.backend) }
                var request = "\(upgradeRequest.method.rawValue) \(upgradeRequest.uri) HTTP/1.1\r\n"
                for (name, value) in upgradeRequest.headers { request += "\(name): \(value)\r\n" }
                let client = channel.remoteAddress?.ipAddress ?? "unknown"
                request += "X-Forwarded-For: \(client)\r\n\r\n"
                backend.writeAndFlush(ByteBuffer(string: request), promise: nil)
                return splice.handshake.futureResult.map { headers in (backend, choice.backend, headers) }
            }
            .flatMapError { [self] error in
                if let refused = error as? UpgradeRefused, refused.status.code < 500 {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                policy.failed(id: choice.backend, reason: "websocket upgrade: \(error)", unreachable: error is BackendUnreachable)
                if excluding.isEmpty, channel.isActive {
                    return connect(channel: channel, upgradeRequest: upgradeRequest, excluding: [choice.backend])
                }
                if error is UpgradeRefused { return channel.eventLoop.makeFailedFuture(error) }
                return channel.eventLoop.makeFailedFuture(BackendUnavailable(description: "websocket upgrade: \(error)"))
            }
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        guard let backend else { return context.eventLoop.makeFailedFuture(BackendUnavailable(description: "no backend connection")) }
        let client = context.channel
        // Both channels live on this event loop (the backend was connected on the client's loop).
        // The HTTP-level handlers go with the HTTP codec; the socket's own pings keep it alive.
        return context.pipeline.removeHandler(name: ProxyHandler.name).flatMap {
            context.pipeline.removeHandler(name: ClientErrorResponder.name)
        }.flatMap {
            context.pipeline.removeHandler(name: ClientGuard.name)
        }.flatMapThrowing {
            try client.pipeline.syncOperations.addHandler(ClientSplice(backend: backend.channel))
            try backend.channel.pipeline.syncOperations.handler(type: BackendSplice.self).glue(to: client)
        }
    }
}

/// The node answered the upgrade with something other than `101`; the client gets that status.
struct UpgradeRefused: Error, CustomStringConvertible {
    var status: HTTPResponseStatus
    var line: String
    var description: String { "the node refused the upgrade: \(line)" }
}

/// Client side after the upgrade: bytes go to the backend as they come.
final class ClientSplice: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let backend: Channel

    init(backend: Channel) { self.backend = backend }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        backend.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        backend.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Backend side: reads the handshake answer (101 or a failure), holds what follows it until the
/// client side is glued, then forwards bytes as they come.
final class BackendSplice: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: every method runs on the backend channel's event loop (the client channel
    // shares it: the backend connection is made on the client's loop).
    typealias InboundIn = ByteBuffer
    var handshake: EventLoopPromise<HTTPHeaders>!
    private var buffered = ByteBuffer()
    private var answered = false
    private var client: Channel?
    /// Where the node's frames stand, so a close frame can be sent between two of them.
    private var frames = FrameBoundary()

    /// What the client hears when its node goes away between two frames: close 1012 (service
    /// restart), so any client reconnects, including one that keeps half-closed sockets open.
    static let nodeGoneCloseFrame: [UInt8] = {
        let reason = Array("node gone; reconnect".utf8)
        return [0x88, UInt8(2 + reason.count), 0x03, 0xF4] + reason
    }()

    func handlerAdded(context: ChannelHandlerContext) {
        handshake = context.eventLoop.makePromise()
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
            return
        }
        buffered.writeBuffer(&bytes)
        guard buffered.readableBytes <= WebSocketPassThrough.heldBytesMax else {
            handshake.fail(BackendUnavailable(description: "backend sent over \(WebSocketPassThrough.heldBytesMax) bytes before the splice"))
            context.close(promise: nil)
            return
        }
        guard !answered else { return }
        let view = buffered.readableBytesView
        guard let end = view.firstRange(of: [13, 10, 13, 10]) else {
            if buffered.readableBytes > WebSocketPassThrough.handshakeBytesMax {
                handshake.fail(BackendUnavailable(description: "handshake answer over \(WebSocketPassThrough.handshakeBytesMax) bytes"))
                context.close(promise: nil)
            }
            return
        }
        answered = true
        let text = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        buffered.moveReaderIndex(forwardBy: end.upperBound - view.startIndex)
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let code = lines.first.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) }
        guard code == 101 else {
            // A node that answers (401 for a bad token, 503 while it has no leader) is alive:
            // its answer goes to the client; only a 5xx or no answer counts against it.
            if let code, (100..<600).contains(code) {
                handshake.fail(UpgradeRefused(status: HTTPResponseStatus(statusCode: code), line: String(lines[0])))
            } else {
                handshake.fail(BackendUnavailable(description: "backend answered the upgrade with: \(lines.first ?? "")"))
            }
            context.close(promise: nil)
            return
        }
        var headers = HTTPHeaders()
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.add(name: String(line[..<colon]), value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        handshake.succeed(headers)
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
