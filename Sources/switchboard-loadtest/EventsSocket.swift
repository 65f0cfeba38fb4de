import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// One agent's events WebSocket, as cheap as the load tester can make it: SwiftNIO's own HTTP
/// upgrader and frame codec, callbacks on the event loop, no task per socket. The generic
/// client (HummingbirdWSClient) resolved the address on another thread, raced Happy Eyeballs and
/// ran two tasks and an async stream per socket: when a node died, a third of the sessions
/// reconnecting through it took more CPU in the load tester than in the balancer, on the
/// same two cores as the cluster it measures.
final class EventsSocket: Sendable {
    /// Why a socket did not open.
    enum Failure: Error, CustomStringConvertible {
        /// The server answered the upgrade with another status (503 while a node is full, 401).
        case refused(status: Int)
        /// No connection, or it closed before the answer.
        case unreachable(String)
        /// Connected, but no answer to the upgrade within the handshake timeout (a connection
        /// closed under a client that keeps half-closed sockets): given up on.
        case unanswered

        var description: String {
            switch self {
            case .refused(let status): "upgrade refused with \(status)"
            case .unreachable(let reason): "no connection: \(reason)"
            case .unanswered: "upgrade unanswered; abandoned"
            }
        }
    }

    let channel: Channel
    /// The close frame's reason when the server sent one, once the connection is closed.
    let closed: EventLoopFuture<String?>

    private init(channel: Channel, closed: EventLoopFuture<String?>) {
        self.channel = channel
        self.closed = closed
    }

    /// Sends a text frame (masked, as every client frame must be).
    func send(_ text: String) {
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer), promise: nil)
    }

    /// Sends a close frame and closes the connection.
    func close(code: WebSocketErrorCode, reason: String) {
        var buffer = channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        buffer.write(webSocketErrorCode: code)
        buffer.writeString(reason)
        let channel = self.channel
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: buffer)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// Connects to `address` (already resolved), asks for `uri` with `host` as the Host field,
    /// and succeeds once the server's `101` arrived. Each text message goes to `onText` on the
    /// socket's event loop, in order.
    static func open(
        address: SocketAddress, host: String, uri: String, maxMessageBytes: Int, connectTimeout: TimeAmount, handshakeTimeout: TimeAmount,
        onText: @escaping @Sendable (String) -> Void
    ) -> EventLoopFuture<EventsSocket> {
        let group = MultiThreadedEventLoopGroup.singleton
        let eventLoop = group.next()
        let opened = eventLoop.makePromise(of: Void.self)
        let closed = eventLoop.makePromise(of: String?.self)
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: maxMessageBytes, automaticErrorHandling: true) { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        // Frames from here on: the HTTP side's last handler leaves with the HTTP handlers.
                        let request = try channel.pipeline.syncOperations.handler(type: UpgradeRequest.self)
                        channel.pipeline.syncOperations.removeHandler(request, promise: nil)
                        try channel.pipeline.syncOperations.addHandler(FrameReader(maxMessageBytes: maxMessageBytes, onText: onText, closed: closed))
                    }
                }
                return channel.pipeline.addHTTPClientHandlers(
                    withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in opened.succeed() })
                ).flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(UpgradeRequest(host: host, uri: uri, opened: opened))
                }
            }
            .connect(to: address)
            .flatMapError { error in
                opened.fail(Failure.unreachable("\(error)"))
                return eventLoop.makeFailedFuture(Failure.unreachable("\(error)"))
            }
            .flatMap { channel in
                channel.closeFuture.whenComplete { _ in
                    opened.fail(Failure.unreachable("closed before the upgrade was answered"))
                    closed.succeed(nil)  // a close frame already completed it
                }
                let silence = eventLoop.scheduleTask(in: handshakeTimeout) {
                    opened.fail(Failure.unanswered)
                    channel.close(promise: nil)
                }
                opened.futureResult.whenComplete { _ in silence.cancel() }
                return opened.futureResult.map { EventsSocket(channel: channel, closed: closed.futureResult) }
            }
    }
}

/// Sends the upgrade request once connected; sees the answer when it is not a `101` (the
/// upgrade handler passes it on) and fails the opening with its status.
private final class UpgradeRequest: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let host: String
    let uri: String
    let opened: EventLoopPromise<Void>

    init(host: String, uri: String, opened: EventLoopPromise<Void>) {
        self.host = host
        self.uri = uri
        self.opened = opened
    }

    func channelActive(context: ChannelHandlerContext) {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)
        head.headers.add(name: "Host", value: host)
        head.headers.add(name: "Content-Length", value: "0")
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let response) = unwrapInboundIn(data) {
            opened.fail(EventsSocket.Failure.refused(status: Int(response.status.code)))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        opened.fail(EventsSocket.Failure.unreachable("\(error)"))
        context.close(promise: nil)
    }
}

/// The socket's frames after the upgrade: text messages (fragments joined) to `onText`, pings
/// answered, the server's close answered and its reason kept.
private final class FrameReader: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let maxMessageBytes: Int
    let onText: @Sendable (String) -> Void
    let closed: EventLoopPromise<String?>
    private var fragments: ByteBuffer?

    init(maxMessageBytes: Int, onText: @escaping @Sendable (String) -> Void, closed: EventLoopPromise<String?>) {
        self.maxMessageBytes = maxMessageBytes
        self.onText = onText
        self.closed = closed
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text where frame.fin && fragments == nil:
            onText(String(buffer: frame.unmaskedData))
        case .text, .continuation:
            var data = frame.unmaskedData
            fragments = fragments ?? context.channel.allocator.buffer(capacity: data.readableBytes)
            fragments!.writeBuffer(&data)
            if fragments!.readableBytes > maxMessageBytes {
                context.close(promise: nil)
                return
            }
            if frame.fin, let message = fragments {
                fragments = nil
                onText(String(buffer: message))
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            var data = frame.unmaskedData
            _ = data.readWebSocketErrorCode()
            closed.succeed(data.readString(length: data.readableBytes))
            var echo = context.channel.allocator.buffer(capacity: 2)
            echo.write(webSocketErrorCode: .normalClosure)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: echo)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
