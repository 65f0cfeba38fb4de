import BalancerCore
import Logging
import NIOCore
import NIOHTTP1

/// One client connection. A request goes to the backend the policy chooses as soon as its head
/// is read, over a pooled keep-alive connection, and its body is streamed after it (a copy of
/// the first `retryBodyBytesMax` bytes is kept so it can be sent again); the answer is streamed
/// back. A failure before any answer byte, or a 503, is retried once on another backend when
/// the request is safe to repeat, its body was kept whole, and the retry budget allows.
///
/// NIO's pipelining handler gives this handler one request at a time, so the state of the
/// request in flight lives in plain fields, and the handler is the backend connection's
/// `BackendExchange` (no closure per request).
final class ProxyHandler: ChannelInboundHandler, RemovableChannelHandler, BackendExchange {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Largest request body the balancer forwards; a larger one gets 413.
    static let requestBodyBytesMax = 16 << 20
    /// Bodies up to this size are kept while they stream, so the request can be retried.
    static let retryBodyBytesMax = 1 << 20

    /// The handler's name in the pipeline (the WebSocket upgrader removes it).
    static let name = "switchboard-proxy"

    private let policy: Policy
    private let pool: BackendPool
    private let logger: Logger
    private var context: ChannelHandlerContext?

    // The request in flight.
    private var request: HTTPRequestHead?
    private var idempotencyKey = false
    private var clientKeepAlive = false  // the client's own wish (the forwarded head always says keep-alive)
    private var received = false  // the client sent the whole request
    private var bodyBytes = 0
    private var replay: [ByteBuffer]? = []  // every body part so far, while within retryBodyBytesMax
    private var pending: [ByteBuffer] = []  // parts not yet written to the current backend
    private var tried: [String] = []
    private var backend: String?
    private var connection: BackendConnection?
    private var answered = false  // an answer byte went to the client
    private var discarding = false  // a 503 being read to its end before the retry
    private var failedStatus: HTTPResponseStatus?
    private var rejected = false  // answered by the balancer itself (413, 400); the rest is ignored
    private var upgradeRefusal: HTTPResponseStatus?  // the node's answer to a WebSocket upgrade it refused

    init(policy: Policy, pool: BackendPool, logger: Logger) {
        self.policy = policy
        self.pool = pool
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        abandonBackend()
    }

    func channelInactive(context: ChannelHandlerContext) {
        abandonBackend()
        context.fireChannelInactive()
    }

    // MARK: Client side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(var head):
            start(head: &head)
        case .body(let part):
            guard !rejected, request != nil else { return }
            bodyBytes += part.readableBytes
            guard bodyBytes <= Self.requestBodyBytesMax else {
                reject(.payloadTooLarge, "request body over \(Self.requestBodyBytesMax) bytes")
                return
            }
            if replay != nil {
                if bodyBytes <= Self.retryBodyBytesMax { replay!.append(part) } else { replay = nil }
            }
            if let connection, !discarding {
                connection.channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(part)), promise: nil)
            } else {
                pending.append(part)
            }
        case .end:
            guard request != nil else { return }
            received = true
            context.triggerUserOutboundEvent(ClientProgress.requestRead, promise: nil)
            if rejected {
                finishRequest()
            } else if let connection, !discarding {
                connection.channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            }
        }
    }

    private func start(head: inout HTTPRequestHead) {
        request = nil
        received = false
        bodyBytes = 0
        replay = []
        pending = []
        tried = []
        rejected = false
        clientKeepAlive = head.isKeepAlive
        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > Self.requestBodyBytesMax {
            request = head
            reject(.payloadTooLarge, "request body of \(length) bytes is over \(Self.requestBodyBytesMax)")
            return
        }
        if head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" }) {
            // A WebSocket upgrade the upgrade handler did not take: malformed, or no node took it.
            // Answered, then closed: a client library may not close a refused upgrade's socket
            // itself (swift-websocket does not), and a keep-alive left open holds a descriptor on
            // both sides until the idle timeout; thousands of them after a kill.
            clientKeepAlive = false
            request = head
            if let refusal = upgradeRefusal {
                upgradeRefusal = nil
                reject(refusal, "the node refused the WebSocket upgrade with \(refusal.code)")
            } else if head.headers.contains(name: "sec-websocket-key") && head.headers.contains(name: "sec-websocket-version") {
                reject(.serviceUnavailable, "no node took the WebSocket; retry")
            } else {
                reject(.badRequest, "WebSocket upgrade refused: it needs Sec-WebSocket-Key and Sec-WebSocket-Version")
            }
            return
        }
        let client = context?.channel.remoteAddress?.ipAddress ?? "unknown"
        let forwarded = head.headers["x-forwarded-for"]
        head.headers.replaceOrAdd(name: "x-forwarded-for", value: forwarded.isEmpty ? client : forwarded.joined(separator: ", ") + ", " + client)
        head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
        // The balancer streams the body itself: it says `100 Continue` at once (a client that
        // asked waits for it, curl for a second) and the node is not asked.
        if head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
            context?.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        head.headers.remove(name: "expect")
        head.version = .http1_1
        idempotencyKey = head.headers.contains(name: "idempotency-key")
        request = head
        dispatch()
    }

    /// Answers the request from the balancer. The rest of its body is read and dropped, except
    /// for a body over the limit: then the connection closes after the answer.
    private func reject(_ status: HTTPResponseStatus, _ message: String) {
        rejected = true
        replay = nil
        pending = []
        abandonBackend()
        guard !answered else {
            context?.close(promise: nil)  // an answer was under way: the client must see it cut
            return
        }
        respond(status, message, keepAlive: status != .payloadTooLarge && clientKeepAlive)
        finishRequest()
    }

    // MARK: Backend side

    private func dispatch() {
        guard let request else { return }
        guard let choice = policy.chooseForRequest(excluding: tried) else {
            reject(.serviceUnavailable, "no backend available")
            return
        }
        tried.append(choice.backend)
        backend = choice.backend
        answered = false
        discarding = false
        failedStatus = nil
        let attempt = tried.count
        pool.acquire(choice.address).assumeIsolated().whenComplete { [self] result in
            // The client may have gone, or the request been refused, while connecting.
            guard self.request != nil, tried.count == attempt, !rejected, context != nil else {
                if case .success(let connection) = result { pool.release(connection) }
                return
            }
            switch result {
            case .failure(let error):
                policy.finished(id: choice.backend, outcome: .unreachable("connect: \(error)"))
                retryOrFail("backend \(choice.backend) unreachable: \(error)")
            case .success(let connection):
                send(request, over: connection, replaying: attempt > 1)
            }
        }
    }

    private func send(_ request: HTTPRequestHead, over connection: BackendConnection, replaying: Bool) {
        self.connection = connection
        connection.exchange = self
        let channel = connection.channel
        channel.write(HTTPClientRequestPart.head(request), promise: nil)
        for part in replaying ? (replay ?? []) : pending {
            channel.write(HTTPClientRequestPart.body(.byteBuffer(part)), promise: nil)
        }
        pending = []
        if received { channel.write(HTTPClientRequestPart.end(nil), promise: nil) }
        channel.flush()
    }

    /// Retries on another backend when allowed, else answers 502.
    private func retryOrFail(_ reason: String) {
        connection = nil
        if mayRetry() {
            logger.debug("retrying on another backend", metadata: ["balancer.backend": "\(backend ?? "")", "balancer.reason": "\(reason)"])
            dispatch()
        } else {
            reject(.badGateway, reason)
        }
    }

    /// One retry, of a request whose body was kept whole, when the policy allows (safe method
    /// or keyed POST, within the retry budget).
    private func mayRetry() -> Bool {
        guard tried.count < 2, replay != nil, let request else { return false }
        return policy.mayRetry(method: request.method.rawValue, hasIdempotencyKey: idempotencyKey)
    }

    func backendRead(_ part: HTTPClientResponsePart) {
        guard let connection, let backend else { return }
        switch part {
        case .head(var head):
            if (100..<200).contains(head.status.code) { return }  // 1xx: the real answer follows
            connection.keepAlive = head.isKeepAlive
            if head.status.code >= 500 { failedStatus = head.status }
            if head.status == .serviceUnavailable, mayRetry() {
                discarding = true  // read the rest of this answer, then retry
                return
            }
            answered = true
            head.headers.replaceOrAdd(name: "connection", value: clientKeepAlive ? "keep-alive" : "close")
            context?.write(wrapOutboundOut(.head(head)), promise: nil)
        case .body(let bytes):
            if !discarding { context?.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil) }
        case .end:
            self.connection = nil
            // A backend that answered before the whole request reached it holds a half request.
            if !received { connection.keepAlive = false }
            pool.release(connection)
            policy.finished(id: backend, outcome: failedStatus.map { .failure("status \($0.code)") } ?? .success)
            if discarding {
                retryOrFail("503 from \(backend)")
                return
            }
            guard let context else { return }
            let keepAlive = clientKeepAlive && received
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
            finishRequest()
        }
    }

    func backendFailed(_ error: Error) {
        guard connection != nil, let backend else { return }
        connection = nil
        policy.finished(id: backend, outcome: .failure("\(error)"))
        if answered {
            context?.close(promise: nil)  // the answer was cut: the client must see it fail
        } else {
            retryOrFail("backend \(backend) failed: \(error)")
        }
    }

    /// Backpressure on uploads: stop reading the client while the backend's buffer is full.
    func backendWritabilityChanged(_ writable: Bool) {
        context?.channel.setOption(ChannelOptions.autoRead, value: writable).whenFailure { _ in }
    }

    /// Backpressure on answers: stop reading the backend while the client's buffer is full.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection?.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    private func finishRequest() {
        guard received, answered || rejected else { return }
        context?.triggerUserOutboundEvent(ClientProgress.responded, promise: nil)
        request = nil
        replay = []
        pending = []
        backend = nil
        answered = false
        rejected = false
    }

    /// The client went away (or was refused) mid-exchange: the backend connection carries half
    /// an exchange and cannot be reused; it is closed without counting against the backend.
    private func abandonBackend() {
        guard let connection else { return }
        self.connection = nil
        connection.exchange = nil
        connection.channel.close(promise: nil)
        if let backend { policy.finished(id: backend, outcome: .success) }
    }

    private func respond(_ status: HTTPResponseStatus, _ message: String, keepAlive: Bool) {
        guard let context else { return }
        answered = true
        let json = balancerErrorBody(code: "balancer_\(status.code)", message: message)
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
        // A WebSocket upgrade that no node took: NIO reports it here, then hands the request on
        // as a plain one, which `start` answers (a client must never be left waiting).
        if let refused = error as? UpgradeRefused {
            upgradeRefusal = refused.status
            return
        }
        if error is BackendUnavailable { return }
        context.close(promise: nil)
    }
}
