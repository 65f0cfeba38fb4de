import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// One agent's events WebSocket, as cheap as the load tester can make it: one channel handler
/// that writes the upgrade request, reads the `101`, and then reads and writes RFC 6455 frames
/// itself, with callbacks on the event loop and no task per socket.
///
/// Why by hand: the load tester shares two cores with the cluster it measures, and when a node
/// dies a third of the sessions reconnect in the same second. The generic client
/// (HummingbirdWSClient) resolved the address on another thread, raced Happy Eyeballs, and ran
/// two tasks and an async stream per socket; SwiftNIO's upgrader rebuilds the pipeline of every
/// connection (HTTP codec in, upgrade handler, HTTP codec out, frame codec in). Either way the
/// load tester took a third of the CPU of a reconnection storm (perf, 6,000 and 9,000 agents).
/// The frames a node sends are few and simple (text events, pongs, a close), so the whole
/// protocol the load tester needs fits in `EventsSocketHandler`.
final class EventsSocket: Sendable {
    /// Why a socket did not open.
    enum Failure: Error, CustomStringConvertible {
        /// The server answered the upgrade with another status (503 while a node is full, 401).
        case refused(status: Int)
        /// No connection, or it closed before the answer, or the answer was not HTTP.
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

    /// Sends a text message in one frame.
    func send(_ text: String) {
        channel.writeAndFlush(EventsSocketHandler.frame(opcode: 0x1, payload: Array(text.utf8)), promise: nil)
    }

    /// Sends a close frame and closes the connection.
    func close(code: UInt16, reason: String) {
        let channel = self.channel
        let payload = [UInt8(code >> 8), UInt8(code & 0xFF)] + Array(reason.utf8.prefix(123))
        channel.writeAndFlush(EventsSocketHandler.frame(opcode: 0x8, payload: payload)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Connects to `address` (already resolved), asks for `uri` with `host` as the Host field,
    /// and succeeds once the server's `101` arrived. Each text message goes to `onText` on the
    /// socket's event loop, in order.
    static func open(
        address: SocketAddress, host: String, tls: (context: NIOSSLContext, serverName: String?)? = nil, uri: String, maxMessageBytes: Int, connectTimeout: TimeAmount, handshakeTimeout: TimeAmount,
        onText: @escaping @Sendable (String) -> Void
    ) -> EventLoopFuture<EventsSocket> {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let opened = eventLoop.makePromise(of: Void.self)
        let closed = eventLoop.makePromise(of: String?.self)
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        EventsSocketHandler(host: host, uri: uri, maxMessageBytes: maxMessageBytes, opened: opened, closed: closed, onText: onText))
                }
            }
            .connect(to: address)
            .flatMapError { error in
                opened.fail(Failure.unreachable("\(error)"))
                return eventLoop.makeFailedFuture(Failure.unreachable("\(error)"))
            }
            .flatMap { channel in
                let silence = eventLoop.scheduleTask(in: handshakeTimeout) {
                    opened.fail(Failure.unanswered)
                    channel.close(promise: nil)
                }
                opened.futureResult.whenComplete { _ in silence.cancel() }
                return opened.futureResult.map { EventsSocket(channel: channel, closed: closed.futureResult) }
            }
    }
}

/// The whole client side of an events socket: the upgrade request, its answer, then frames.
/// Server frames are unmasked; client frames are masked (RFC 6455 section 5.3).
final class EventsSocketHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Bytes of the server's handshake answer at most.
    static let handshakeBytesMax = 16 * 1024

    private let host: String
    private let uri: String
    private let maxMessageBytes: Int
    private let opened: EventLoopPromise<Void>
    private let closed: EventLoopPromise<String?>
    private let onText: @Sendable (String) -> Void
    private var upgraded = false
    private var buffer = ByteBuffer()
    /// A text message arriving in several frames.
    private var fragments: [UInt8]?

    init(
        host: String, uri: String, maxMessageBytes: Int, opened: EventLoopPromise<Void>, closed: EventLoopPromise<String?>,
        onText: @escaping @Sendable (String) -> Void
    ) {
        self.host = host
        self.uri = uri
        self.maxMessageBytes = maxMessageBytes
        self.opened = opened
        self.closed = closed
        self.onText = onText
    }

    /// A masked client frame, unfragmented.
    static func frame(opcode: UInt8, payload: [UInt8]) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(payload.count + 14)
        out.writeInteger(0x80 | opcode)
        if payload.count < 126 {
            out.writeInteger(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out.writeInteger(UInt8(0x80 | 126))
            out.writeInteger(UInt16(payload.count))
        } else {
            out.writeInteger(UInt8(0x80 | 127))
            out.writeInteger(UInt64(payload.count))
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        out.writeBytes(mask)
        out.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset & 3] })
        return out
    }

    func channelActive(context: ChannelHandlerContext) {
        let key = (0..<16).map { _ in UInt8.random(in: 0...255) }
        let request =
            "GET \(uri) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(Data(key).base64EncodedString())\r\nSec-WebSocket-Version: 13\r\n\r\n"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        if !upgraded, !readAnswer(context: context) { return }
        readFrames(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        opened.fail(EventsSocket.Failure.unreachable("closed before the upgrade was answered"))
        closed.succeed(nil)  // a close frame already completed it
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        opened.fail(EventsSocket.Failure.unreachable("\(error)"))
        context.close(promise: nil)
    }

    /// True once the `101` was read; fails the opening on any other answer.
    private func readAnswer(context: ChannelHandlerContext) -> Bool {
        let view = buffer.readableBytesView
        guard let end = view.firstRange(of: [13, 10, 13, 10]) else {
            if view.count > Self.handshakeBytesMax {
                opened.fail(EventsSocket.Failure.unreachable("handshake answer over \(Self.handshakeBytesMax) bytes"))
                context.close(promise: nil)
            }
            return false
        }
        let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        buffer.moveReaderIndex(forwardBy: end.upperBound - view.startIndex)
        let statusLine = head.prefix { $0 != "\r" }.split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            opened.fail(EventsSocket.Failure.unreachable("the answer to the upgrade is not HTTP"))
            context.close(promise: nil)
            return false
        }
        guard status == 101, head.lowercased().contains("\r\nupgrade: websocket") else {
            opened.fail(EventsSocket.Failure.refused(status: status))
            context.close(promise: nil)
            return false
        }
        upgraded = true
        opened.succeed()
        return true
    }

    /// Reads every whole frame in `buffer`.
    private func readFrames(context: ChannelHandlerContext) {
        while let header = buffer.getBytes(at: buffer.readerIndex, length: min(buffer.readableBytes, 10)), header.count >= 2 {
            let fin = header[0] & 0x80 != 0
            let opcode = header[0] & 0x0F
            guard header[1] & 0x80 == 0 else { return context.close(promise: nil) }  // a server never masks
            var length = Int(header[1] & 0x7F)
            var headerLength = 2
            if length == 126 {
                guard header.count >= 4 else { return }
                length = Int(header[2]) << 8 | Int(header[3])
                headerLength = 4
            } else if length == 127 {
                guard header.count >= 10 else { return }
                let wide = header[2..<10].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                guard wide <= UInt64(maxMessageBytes) else { return context.close(promise: nil) }
                length = Int(wide)
                headerLength = 10
            }
            guard length <= maxMessageBytes else { return context.close(promise: nil) }
            guard buffer.readableBytes >= headerLength + length else { return }
            buffer.moveReaderIndex(forwardBy: headerLength)
            let payload = buffer.readBytes(length: length)!
            switch opcode {
            case 0x1 where fin && fragments == nil:
                onText(String(decoding: payload, as: UTF8.self))
            case 0x1, 0x0:
                fragments = (fragments ?? []) + payload
                guard fragments!.count <= maxMessageBytes else { return context.close(promise: nil) }
                if fin, let message = fragments {
                    fragments = nil
                    onText(String(decoding: message, as: UTF8.self))
                }
            case 0x9:
                context.writeAndFlush(wrapOutboundOut(Self.frame(opcode: 0xA, payload: payload)), promise: nil)
            case 0x8:
                closed.succeed(payload.count > 2 ? String(decoding: payload[2...], as: UTF8.self) : nil)
                context.writeAndFlush(wrapOutboundOut(Self.frame(opcode: 0x8, payload: [0x03, 0xE8]))).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
                return
            default:
                break  // pong, binary: nothing the load tester needs
            }
        }
        buffer.discardReadBytes()
    }
}
