import BalancerCore
import Logging
import NIOCore
import NIOHTTP1

/// One client connection: each request is buffered (up to `requestBodyBytesMax`, so it can be
/// retried), sent to the backend the policy chooses over a pooled keep-alive connection, and the
/// answer streamed back. A failure before any answer byte, or a 503, is retried once on another
/// backend when the request is safe to repeat and the retry budget allows.
final class ProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Largest request body the balancer forwards (it buffers bodies so it can retry them).
    static let requestBodyBytesMax = 1 << 20
    /// A backend that has not finished answering after this is treated as failed.
    static let backendTimeout = TimeAmount.seconds(30)

    /// The handler's name in the pipeline (the WebSocket upgrader removes it).
    static let name = "switchboard-proxy"

    private let policy: Policy
    private let pool: BackendPool
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false
    private var context: ChannelHandlerContext?

    init(policy: Policy, pool: BackendPool, logger: Logger) {
        self.policy = policy
        self.pool = pool
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = nil
            tooLarge = false
        case .body(var part):
            guard !tooLarge else { return }
            if (body?.readableBytes ?? 0) + part.readableBytes > Self.requestBodyBytesMax {
                tooLarge = true
                body = nil
            } else if body == nil {
                body = part
            } else {
                body!.writeBuffer(&part)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            if tooLarge {
                respond(.payloadTooLarge, "request body over \(Self.requestBodyBytesMax) bytes", keepAlive: false)
            } else if head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" }) {
                // A WebSocket upgrade the upgrade handler did not take (headers missing or no backend).
                respond(.badRequest, "WebSocket upgrade refused: it needs Sec-WebSocket-Key and Sec-WebSocket-Version, and a healthy node", keepAlive: false)
            } else {
                forward(head, body: body, excluding: [], retried: false)
            }
        }
    }

    private func forward(_ request: HTTPRequestHead, body: ByteBuffer?, excluding: Set<String>, retried: Bool) {
        guard let choice = policy.chooseForRequest(excluding: excluding) else {
            respond(.serviceUnavailable, "no backend available", keepAlive: request.isKeepAlive)
            return
        }
        let canRetry = !retried
        let retry = { [self] (reason: String) -> Bool in
            guard canRetry, policy.mayRetry(method: request.method.rawValue, hasIdempotencyKey: request.headers.contains(name: "idempotency-key")) else {
                return false
            }
            logger.debug("retrying on another backend", metadata: ["balancer.backend": "\(choice.backend)", "balancer.reason": "\(reason)"])
            forward(request, body: body, excluding: excluding.union([choice.backend]), retried: true)
            return true
        }
        pool.acquire(choice.address).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .failure(let error):
                policy.finished(id: choice.backend, outcome: .failure("connect: \(error)"))
                if !retry("connect failed") { respond(.badGateway, "backend \(choice.backend) unreachable", keepAlive: request.isKeepAlive) }
            case .success(let connection):
                exchange(request, body: body, on: connection, backend: choice.backend, retry: retry)
            }
        }
    }

    private func exchange(_ request: HTTPRequestHead, body: ByteBuffer?, on connection: BackendConnection, backend: String, retry: @escaping (String) -> Bool) {
        var answered = false
        var discarding = false
        var failedStatus: HTTPResponseStatus?
        let timeout = connection.channel.eventLoop.scheduleTask(in: Self.backendTimeout) { connection.channel.close(promise: nil) }
        connection.onFailure = { [self] error in
            timeout.cancel()
            policy.finished(id: backend, outcome: .failure("\(error)"))
            if answered {
                context?.close(promise: nil)  // the answer was cut: the client must see it fail
            } else if !retry("\(error)") {
                respond(.badGateway, "backend \(backend) failed: \(error)", keepAlive: request.isKeepAlive)
            }
        }
        connection.onPart = { [self] part in
            switch part {
            case .head(var head):
                connection.keepAlive = head.isKeepAlive
                if head.status.code >= 500 { failedStatus = head.status }
                if head.status == .serviceUnavailable, retry("503") {
                    discarding = true  // read the rest of this answer, then let the connection go
                    return
                }
                answered = true
                head.headers.replaceOrAdd(name: "connection", value: request.isKeepAlive ? "keep-alive" : "close")
                context?.write(wrapOutboundOut(.head(head)), promise: nil)
            case .body(let bytes):
                if !discarding { context?.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil) }
            case .end:
                timeout.cancel()
                pool.release(connection)
                policy.finished(id: backend, outcome: failedStatus.map { .failure("status \($0.code)") } ?? .success)
                guard !discarding, let context else { return }
                let keepAlive = request.isKeepAlive
                context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    if !keepAlive { context.close(promise: nil) }
                }
            }
        }
        var head = request
        let client = context?.channel.remoteAddress?.ipAddress ?? "unknown"
        let forwarded = head.headers["x-forwarded-for"].joined(separator: ", ")
        head.headers.replaceOrAdd(name: "x-forwarded-for", value: forwarded.isEmpty ? client : forwarded + ", " + client)
        head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
        head.version = .http1_1
        connection.channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body, body.readableBytes > 0 { connection.channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        connection.channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    private func respond(_ status: HTTPResponseStatus, _ message: String, keepAlive: Bool) {
        guard let context else { return }
        let json = #"{"error":{"code":"balancer_\#(status.code)","message":"\#(message.replacingOccurrences(of: "\"", with: "'"))"}}"#
        var head = HTTPResponseHead(version: .http1_1, status: status)
        head.headers.add(name: "content-type", value: "application/json")
        head.headers.add(name: "content-length", value: "\(json.utf8.count)")
        head.headers.add(name: "connection", value: keepAlive ? "keep-alive" : "close")
        if status == .serviceUnavailable { head.headers.add(name: "retry-after", value: "1") }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: json)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
