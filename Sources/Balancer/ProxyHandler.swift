import BalancerCore
import Logging
import NIOCore
import NIOHTTP1

/// One client connection, on raw bytes. `HTTP1` frames each request: its head is rewritten
/// (`X-Forwarded-For`, `Connection`) and goes to the backend the policy chooses as soon as it is
/// read, over a pooled keep-alive connection; the body's bytes follow as they arrive (a copy
/// of the first `retryBodyBytesMax` is kept so the request can be sent again), and the
/// answer's bytes come back the same way, its head rewritten. Nothing is decoded into parts and
/// encoded again. A failure before any answer byte, or a 503, is retried once on another
/// backend when the request is safe to repeat, its body was kept whole, and the retry budget
/// allows.
///
/// One request at a time: bytes of a pipelined next request wait in `inbound` until the answer
/// in flight ended, so the state of the request lives in plain fields, and the handler is its
/// backend connection's `BackendExchange` (no closure per request). A WebSocket upgrade turns
/// the connection into a splice to one node.
///
/// Toward the nodes, a bodiless GET or HEAD may share a connection with others written in the
/// same event-loop round (`BackendPool.pipelineDepthMax`): HTTP/1.1 pipelining, answered in
/// order. Any other request has its connection to itself, since its body may still be
/// streaming. Every pipelined request may be retried, so a connection that fails under several
/// of them costs their clients nothing but the retry.
final class ProxyHandler: ChannelInboundHandler, BackendExchange {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Largest request body the balancer forwards; a larger one gets 413.
    static let requestBodyBytesMax = 16 << 20
    /// Bodies up to this size are kept while they stream, so the request can be retried.
    static let retryBodyBytesMax = 1 << 20
    /// Bytes of pipelined requests held while an answer is in flight; past it the client is
    /// not read until the answer ended.
    static let pipelinedBytesMax = HTTP1.headBytesMax

    static let name = "switchboard-proxy"

    private enum Reading {
        /// Waiting for a request head (or for the answer in flight, when `active`).
        case head
        case body(HTTP1.BodyFramer)
        /// After a refusal that closes the connection, or while a WebSocket upgrade is made.
        case ignoring
        /// A WebSocket: every byte goes to the node.
        case spliced(Channel)
    }

    private let policy: Policy
    private let pool: BackendPool
    private let roster: SocketRoster
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var clientAddress = "unknown"
    /// `X-Forwarded-For: <client>` and `Connection: keep-alive` lines and the blank line: what
    /// follows a head that needs no rewrite (made once per connection).
    private var forwardedTail = ByteBuffer()
    private var inbound = ByteBuffer()
    private var reading = Reading.head
    private var readPaused = false
    /// `readClient` is on the stack: a request answered inside it (a refusal) lets its loop go
    /// on to the next pipelined request instead of nesting one call per request.
    private var readingClient = false

    // The request in flight.
    private var active = false
    private var forwardedHead = ByteBuffer()
    private var forwardedHeadTail: ByteBuffer?  // `forwardedTail`, when the head is the client's own
    private var clientIsHTTP11 = true
    private var method = ""
    private var isHEAD: Bool { method == "HEAD" }
    private var idempotencyKey = false
    /// A bodiless GET or HEAD: it may be pipelined on a connection with others.
    private var pipelinable = false
    private var clientKeepAlive = false  // the client's own wish (the forwarded head always says keep-alive)
    private var received = false  // the client sent the whole request
    private var bodyBytes = 0
    private var replay: [ByteBuffer]? = []  // every body part so far, while within retryBodyBytesMax
    private var pending: [ByteBuffer] = []  // parts not yet written to the current backend
    private var tried: [String] = []
    private var backend: String?
    private var connection: BackendConnection?
    private var answered = false  // an answer byte went to the client
    private var answerKeepAlive = true  // the answer's framing lets the client connection go on
    private var discarding = false  // a 503 being read to its end before the retry
    private var failedStatus: Int?
    private var rejected = false  // answered by the balancer itself (413, 400); the rest is ignored

    init(policy: Policy, pool: BackendPool, roster: SocketRoster, logger: Logger) {
        self.policy = policy
        self.pool = pool
        self.roster = roster
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.ipAddress ?? "unknown"
        forwardedTail = ByteBuffer(string: "X-Forwarded-For: \(clientAddress)\r\nConnection: keep-alive\r\n\r\n")
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        abandonBackend()
    }

    func channelInactive(context: ChannelHandlerContext) {
        abandonBackend()
        if case .spliced(let backend) = reading { backend.close(promise: nil) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    // MARK: Client side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if case .spliced(let backend) = reading {
            backend.writeAndFlush(bytes, promise: nil)
            return
        }
        if inbound.readableBytes == 0 {
            inbound = bytes
        } else {
            inbound.writeBuffer(&bytes)
        }
        readClient()
    }

    /// Frames what the client sent so far: a head starts a request, body bytes go after it.
    private func readClient() {
        guard !readingClient else { return }
        readingClient = true
        defer { readingClient = false }
        while inbound.readableBytes > 0 {
            switch reading {
            case .spliced, .ignoring:
                inbound.clear()
                return
            case .body(var framer):
                let used: Int
                do {
                    used = try inbound.withUnsafeReadableBytes { bytes throws(HTTP1.BodyFramer.Failure) in try framer.consume(bytes) }
                } catch {
                    refuse(.badRequest, "\(error)", close: true)
                    return
                }
                reading = framer.isDone ? .head : .body(framer)
                if used > 0 { bodyPart(inbound.readSlice(length: used)!) }
                if framer.isDone { requestEnded() }
            case .head:
                if active {
                    // A pipelined request: it waits for the answer in flight.
                    if inbound.readableBytes > Self.pipelinedBytesMax { pauseReading() }
                    return
                }
                // A client may send a CRLF after a body (RFC 9112 section 2.2): skip it.
                while let byte = inbound.getInteger(at: inbound.readerIndex, as: UInt8.self), byte == 13 || byte == 10 {
                    inbound.moveReaderIndex(forwardBy: 1)
                }
                guard inbound.readableBytes > 0 else { break }
                switch inbound.withUnsafeReadableBytes({ HTTP1.parseRequest($0) }) {
                case .incomplete:
                    return  // ClientGuard times out a head that never ends
                case .tooLarge:
                    refuse(.requestHeaderFieldsTooLarge, "request headers over \(HTTP1.headBytesMax) bytes", close: true)
                    return
                case .invalid(let reason):
                    refuse(.badRequest, "malformed HTTP request: \(reason)", close: true)
                    return
                case .head(let head):
                    start(head)
                }
            }
        }
        inbound.clear()
    }

    private func start(_ head: HTTP1.RequestHead) {
        let bytes = inbound.readSlice(length: head.length)!
        active = true
        received = false
        bodyBytes = 0
        replay = []
        pending.removeAll(keepingCapacity: true)
        tried.removeAll(keepingCapacity: true)
        rejected = false
        answered = false
        answerKeepAlive = true
        clientIsHTTP11 = head.version.minor == 1
        method = head.method
        idempotencyKey = head.hasIdempotencyKey
        clientKeepAlive = head.keepAlive
        pipelinable = (method == "GET" || isHEAD) && !head.expectContinue && head.body == .length(0)
        reading = .body(HTTP1.BodyFramer(head.body))
        if case .length(let length) = head.body, length > Self.requestBodyBytesMax {
            refuse(.payloadTooLarge, "request body of \(length) bytes is over \(Self.requestBodyBytesMax)", close: true)
            return
        }
        if head.webSocketUpgrade {
            guard head.isWebSocketHandshake else {
                refuse(.badRequest, "a WebSocket upgrade must be a GET without a body; got \(method)", close: true)
                return
            }
            upgrade(head, bytes)
            return
        }
        if head.needsRewrite {
            forwardedHead = ByteBuffer(bytes: bytes.withUnsafeReadableBytes { HTTP1.forwardedRequest(head, $0, client: clientAddress) })
            forwardedHeadTail = nil
        } else {
            // The client's head without its blank line, then ours: no copy.
            forwardedHead = bytes.getSlice(at: bytes.readerIndex, length: head.length - 2)!
            forwardedHeadTail = forwardedTail
        }
        // The balancer streams the body itself: it says `100 Continue` at once (a client that
        // asked waits for it, curl for a second) and the node is not asked.
        if head.expectContinue {
            context?.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
        dispatch()
        if case .body(let framer) = reading, framer.isDone {
            reading = .head
            requestEnded()
        }
    }

    private func bodyPart(_ part: ByteBuffer) {
        guard !rejected else { return }
        bodyBytes += part.readableBytes
        guard bodyBytes <= Self.requestBodyBytesMax else {
            refuse(.payloadTooLarge, "request body over \(Self.requestBodyBytesMax) bytes", close: true)
            return
        }
        if replay != nil {
            if bodyBytes <= Self.retryBodyBytesMax { replay!.append(part) } else { replay = nil }
        }
        if let connection, !discarding {
            connection.channel.writeAndFlush(part, promise: nil)
        } else if !answered {
            pending.append(part)
        }
    }

    private func requestEnded() {
        received = true
        context?.triggerUserOutboundEvent(ClientProgress.requestRead, promise: nil)
        if rejected { finishRequest() }
    }

    /// Answers the request from the balancer. With `close`, the connection closes after the
    /// answer and nothing more is read; else the rest of the body is read and dropped.
    private func refuse(_ status: HTTPResponseStatus, _ message: String, close: Bool) {
        rejected = true
        replay = nil
        pending = []
        abandonBackend()
        if close { reading = .ignoring }
        guard !answered else {
            context?.close(promise: nil)  // an answer was under way: the client must see it cut
            return
        }
        respond(status, message, keepAlive: !close && clientKeepAlive)
        finishRequest()
    }

    // MARK: Backend side

    private func dispatch() {
        guard active else { return }
        guard let choice = policy.chooseForRequest(excluding: tried) else {
            refuse(.serviceUnavailable, "no backend available", close: false)
            return
        }
        tried.append(choice.backend)
        backend = choice.backend
        answered = false
        discarding = false
        failedStatus = nil
        let attempt = tried.count
        if pipelinable, let shared = pool.joinableConnection(to: choice.address) {
            send(over: shared, replaying: attempt > 1)
            return
        }
        if let idle = pool.idleConnection(to: choice.address) {
            send(over: idle, replaying: attempt > 1)
            return
        }
        pool.acquire(choice.address).assumeIsolated().whenComplete { [self] result in
            // The client may have gone, or the request been refused, while connecting.
            guard active, tried.count == attempt, !rejected, context != nil else {
                if case .success(let connection) = result { pool.release(connection) }
                return
            }
            switch result {
            case .failure(let error):
                policy.finished(id: choice.backend, outcome: .unreachable("connect: \(error)"))
                // No connection, so no node saw a byte of it: any method may go elsewhere.
                retryOrFail("backend \(choice.backend) unreachable: \(error)", neverSent: true)
            case .success(let connection):
                send(over: connection, replaying: attempt > 1)
            }
        }
    }

    private func send(over connection: BackendConnection, replaying: Bool) {
        self.connection = connection
        connection.begin(self, isHEAD: isHEAD)
        if pipelinable { pool.offerForPipelining(connection) }
        let channel = connection.channel
        channel.write(forwardedHead, promise: nil)
        if let forwardedHeadTail { channel.write(forwardedHeadTail, promise: nil) }
        for part in replaying ? (replay ?? []) : pending {
            channel.write(part, promise: nil)
        }
        pending = []
        pool.flushAtEndOfTick(channel)
    }

    /// Retries on another backend when allowed, else answers 502.
    private func retryOrFail(_ reason: String, neverSent: Bool = false) {
        connection = nil
        if mayRetry(neverSent: neverSent) {
            logger.debug("retrying on another backend", metadata: ["balancer.backend": "\(backend ?? "")", "balancer.reason": "\(reason)"])
            dispatch()
        } else {
            refuse(.badGateway, reason, close: false)
        }
    }

    /// One retry, of a request whose body was kept whole, when the policy allows (safe method,
    /// keyed POST, or a request that never reached a node; within the retry budget).
    private func mayRetry(neverSent: Bool = false) -> Bool {
        guard tried.count < 2, replay != nil, active else { return false }
        return policy.mayRetry(method: method, hasIdempotencyKey: idempotencyKey, neverSent: neverSent)
    }

    func backendRead(_ part: BackendPart) {
        guard let connection, let backend else { return }
        switch part {
        case .head(let head, let bytes):
            // A 5xx counts against the node, unless the node says it is about the cluster (no
            // leader yet): ejecting a live node for an election only crowds the others.
            if head.status >= 500, !head.aboutTheCluster { failedStatus = head.status }
            if head.status == 503, mayRetry() {
                discarding = true  // read the rest of this answer, then retry
                return
            }
            answered = true
            // An answer that ends with its connection ends the client's too.
            if case .untilClose = head.body { answerKeepAlive = false }
            let keepAlive = clientKeepAlive && answerKeepAlive
            if keepAlive && clientIsHTTP11 && !head.hasConnectionFields {
                context?.write(wrapOutboundOut(bytes), promise: nil)  // keep-alive is HTTP/1.1's default: the head as it came
            } else {
                let rewritten = bytes.withUnsafeReadableBytes { HTTP1.forwardedResponse(head, $0, keepAlive: keepAlive) }
                context?.write(wrapOutboundOut(ByteBuffer(bytes: rewritten)), promise: nil)
            }
        case .body(let bytes):
            if !discarding { context?.write(wrapOutboundOut(bytes), promise: nil) }
        case .end:
            self.connection = nil
            // A backend that answered before the whole request reached it holds a half request.
            if !received { connection.keepAlive = false }
            pool.release(connection)
            policy.finished(id: backend, outcome: failedStatus.map { .failure("status \($0)") } ?? .success)
            if discarding {
                retryOrFail("503 from \(backend)")
                return
            }
            guard let context else { return }
            // The client's connection goes on only if it asked to, its request was read whole,
            // and the answer's framing allows.
            let keepAlive = clientKeepAlive && received && answerKeepAlive
            if keepAlive {
                pool.flushAtEndOfTick(context.channel)
            } else {
                reading = .ignoring
                context.writeAndFlush(wrapOutboundOut(ByteBuffer())).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
            finishRequest()
        }
    }

    func backendReadComplete() {
        if answered { context?.flush() }
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

    private func pauseReading() {
        guard !readPaused else { return }
        readPaused = true
        context?.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    /// The answer ended and the request was read: the next request, if one is waiting.
    private func finishRequest() {
        guard received, answered || rejected else { return }
        context?.triggerUserOutboundEvent(ClientProgress.responded, promise: nil)
        active = false
        replay = []
        pending.removeAll(keepingCapacity: true)
        backend = nil
        answered = false
        rejected = false
        if readPaused {
            readPaused = false
            context?.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
        if case .head = reading, inbound.readableBytes > 0 {
            // The next request's bytes are already here: its time runs from now.
            context?.triggerUserOutboundEvent(ClientProgress.requestStarted, promise: nil)
            readClient()
        }
    }

    /// The client went away (or was refused) mid-exchange, which does not count against the
    /// backend. A pipelined request was written whole: its answer is read and dropped, and the
    /// connection goes on for the requests behind it. Any other may have left half a request
    /// on its connection, which is closed.
    private func abandonBackend() {
        guard let connection else { return }
        self.connection = nil
        connection.abandon(self)
        if !pipelinable { connection.channel.close(promise: nil) }
        if let backend { policy.finished(id: backend, outcome: .success) }
    }

    private func respond(_ status: HTTPResponseStatus, _ message: String, keepAlive: Bool) {
        guard let context else { return }
        answered = true
        let answer = balancerErrorAnswer(status, code: "balancer_\(status.code)", message: message, keepAlive: keepAlive)
        context.writeAndFlush(wrapOutboundOut(answer)).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    // MARK: WebSockets

    /// A WebSocket upgrade: the node with the fewest sockets gets the client's head; its `101`
    /// goes back as it came and the connection becomes a splice. Every failure is answered:
    /// the node's own 4xx status, else 503 with `Retry-After`.
    private func upgrade(_ head: HTTP1.RequestHead, _ bytes: ByteBuffer) {
        guard head.hasWebSocketKeyAndVersion else {
            refuse(.badRequest, "WebSocket upgrade refused: it needs Sec-WebSocket-Key and Sec-WebSocket-Version", close: true)
            return
        }
        guard let context else { return }
        reading = .ignoring
        received = true
        context.triggerUserOutboundEvent(ClientProgress.requestRead, promise: nil)
        let request = ByteBuffer(bytes: bytes.withUnsafeReadableBytes { HTTP1.forwardedUpgrade(head, $0, client: clientAddress) })
        let leftover = inbound  // frames a client sent right behind its upgrade
        inbound = ByteBuffer()
        let client = context.channel
        WebSocketPassThrough.connect(client: client, policy: policy, request: request, tls: pool.tls).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let opened):
                let backend = opened.backend
                guard client.isActive, let context = self.context else {
                    backend.close(promise: nil)
                    return
                }
                reading = .spliced(backend)
                active = false
                context.writeAndFlush(wrapOutboundOut(opened.answer), promise: nil)
                // The socket's own pings keep it alive: the HTTP timeouts no longer apply.
                context.pipeline.removeHandler(name: ClientGuard.name).whenFailure { _ in }
                if leftover.readableBytes > 0 { backend.writeAndFlush(leftover, promise: nil) }
                do {
                    let splice = try backend.pipeline.syncOperations.handler(type: BackendSplice.self)
                    splice.glue(to: client)
                    let roster = self.roster
                    roster.add(splice, backend: opened.id)
                    backend.closeFuture.assumeIsolated().whenComplete { _ in roster.remove(splice, backend: opened.id) }
                } catch {
                    client.close(promise: nil)
                }
            case .failure(let error as UpgradeRefused):
                refuse(error.status, "the node refused the WebSocket upgrade with \(error.status.code)", close: true)
            case .failure:
                refuse(.serviceUnavailable, "no node took the WebSocket; retry", close: true)
            }
        }
    }
}
