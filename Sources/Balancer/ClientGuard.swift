import NIOCore
import NIOHTTP1

/// How long a client may take. A slow client only ever costs its own connection.
public struct ClientTimeouts: Sendable {
    /// From a request's first byte to its last (headers and body): past it the client gets 408
    /// and the connection closes (a slowloris holds nothing for long).
    public var request: TimeAmount = .seconds(10)
    /// A keep-alive connection with no request in progress is closed after this.
    public var idle: TimeAmount = .seconds(60)

    public init(request: TimeAmount = .seconds(10), idle: TimeAmount = .seconds(60)) {
        self.request = request
        self.idle = idle
    }
}

/// The body of every answer the balancer gives itself (API.md's error shape).
func balancerErrorBody(code: String, message: String) -> String {
    #"{"error":{"code":"\#(code)","message":"\#(message.replacingOccurrences(of: "\"", with: "'"))"}}"#
}

/// A whole answer from the balancer itself: status line, JSON error body, and `Retry-After`
/// on a 503.
func balancerErrorAnswer(_ status: HTTPResponseStatus, code: String, message: String, keepAlive: Bool) -> ByteBuffer {
    let json = balancerErrorBody(code: code, message: message)
    var answer = "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\ncontent-type: application/json\r\n"
    answer += "content-length: \(json.utf8.count)\r\nconnection: \(keepAlive ? "keep-alive" : "close")\r\n"
    if status == .serviceUnavailable { answer += "retry-after: 1\r\n" }
    return ByteBuffer(string: answer + "\r\n" + json)
}

/// What the proxy tells the guard about the request in progress (outbound user events).
enum ClientProgress {
    /// A request already began in bytes read earlier (pipelined behind the answer that just
    /// ended): the client's time runs from now.
    case requestStarted
    /// The whole request was read; the backend's time runs now, not the client's.
    case requestRead
    /// The answer ended; the connection waits for the next request.
    case responded
}

/// First in a client connection's pipeline, before the proxy's framing: it sees raw bytes, so a
/// request whose headers never finish still times out. One timer per connection, re-armed when
/// it fires (at most every `request / 2`), never per request.
final class ClientGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let name = "switchboard-client-guard"

    private enum State {
        case idle(since: ContinuousClock.Instant)
        case reading(since: ContinuousClock.Instant)
        case waitingForBackend
    }

    private let timeouts: ClientTimeouts
    private var state = State.idle(since: ContinuousClock.now)
    private var timer: Scheduled<Void>?

    init(timeouts: ClientTimeouts) {
        self.timeouts = timeouts
    }

    func handlerAdded(context: ChannelHandlerContext) {
        state = .idle(since: ContinuousClock.now)
        arm(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .idle = state { state = .reading(since: ContinuousClock.now) }
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let progress = event as? ClientProgress else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        switch progress {
        case .requestStarted: state = .reading(since: ContinuousClock.now)
        case .requestRead: state = .waitingForBackend
        case .responded: state = .idle(since: ContinuousClock.now)
        }
        promise?.succeed(())
    }

    private func arm(context: ChannelHandlerContext) {
        let period = TimeAmount.nanoseconds(max(timeouts.request.nanoseconds / 2, 1_000_000))
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: period) { [self] in
            guard context.channel.isActive else { return }
            let now = ContinuousClock.now
            switch state {
            case .idle(let since) where now - since >= Duration(timeouts.idle):
                context.close(promise: nil)
                return
            case .reading(let since) where now - since >= Duration(timeouts.request):
                let response = balancerErrorAnswer(
                    .requestTimeout, code: "request_timeout",
                    message: "the request was not received within \(timeouts.request.nanoseconds / 1_000_000) ms", keepAlive: false)
                context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                return
            default:
                arm(context: context)
            }
        }
    }
}
