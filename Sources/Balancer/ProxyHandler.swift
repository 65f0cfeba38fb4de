import BalancerCore
import Logging
import NIOCore
import NIOHTTP1

/// One client connection, on raw bytes: the NIO side of `BalancerCore.ProxyExchange`, which
/// decides everything about the request in flight (which backend, retry, keep-alive, refusals,
/// WebSocket). This handler holds the bytes and the connections and carries out the exchange's
/// actions, no more.
///
/// The request's head goes to the backend the policy chooses as soon as it is read, over a
/// pooled keep-alive connection: the client's own bytes without their blank line, then
/// `X-Forwarded-For` and `Connection` lines made once per connection (no copy), or a rewritten
/// head. The body's bytes follow as they arrive; those the exchange says to keep wait in
/// `heldParts` (for a connection being made, or for a retry). The answer's bytes come back the
/// same way, its head rewritten when the exchange says so. Nothing is decoded into parts and
/// encoded again.
///
/// The handler is its backend connection's `BackendExchange` (no closure per request). Toward
/// the nodes, a bodiless GET or HEAD may share a connection with others written in the same
/// event-loop round (`BackendPool.pipelineDepthMax`): HTTP/1.1 pipelining, answered in order.
final class ProxyHandler: ChannelInboundHandler, BackendExchange {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let name = "switchboard-proxy"

    private let policy: Policy
    private let pool: BackendPool
    private let roster: SocketRoster
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var clientAddress = "unknown"
    /// `X-Forwarded-For: <client>` and `Connection: keep-alive` lines and the blank line: what
    /// follows a head that needs no rewrite (made once per connection).
    private var forwardedTail = ByteBuffer()
    private var exchange = ProxyExchange()
    /// What the client sent and the exchange has not taken yet (a pipelined request waits here).
    private var inbound = ByteBuffer()
    /// `readClient` is on the stack: a request finished inside it (a refusal) lets its loop go
    /// on to the next pipelined request instead of nesting one call per request.
    private var readingClient = false

    // The request in flight.
    private var forwardedHead = ByteBuffer()
    private var forwardedHeadTail: ByteBuffer?  // `forwardedTail`, when the head is the client's own
    /// Body parts the exchange keeps: for the connection being made, or for a retry.
    private var heldParts: [ByteBuffer] = []
    private var connection: BackendConnection?
    /// The node's side of a WebSocket splice.
    private var splice: Channel?

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
        run(exchange.onClientClosed())
    }

    func channelInactive(context: ChannelHandlerContext) {
        run(exchange.onClientClosed())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    // MARK: Client side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if let splice {
            splice.writeAndFlush(bytes, promise: nil)
            return
        }
        if inbound.readableBytes == 0 {
            inbound = bytes
        } else {
            inbound.writeBuffer(&bytes)
        }
        readClient()
    }

    /// Hands what the client sent to the exchange until it has nothing more to do with it.
    private func readClient() {
        guard !readingClient else { return }
        readingClient = true
        defer { readingClient = false }
        while true {
            let action = inbound.withUnsafeReadableBytes { exchange.onClientBytes($0) }
            if case .none = action { break }
            run(action)
        }
        if inbound.readableBytes == 0 { inbound.clear() }
    }

    /// Backpressure on answers: stop reading the backend while the client's buffer is full.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection?.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Backend side

    func backendRead(_ part: BackendPart) {
        switch part {
        case .head(let head, let bytes): run(exchange.onAnswerHead(head), bytes: bytes)
        case .body(let bytes): run(exchange.onAnswerBody(), bytes: bytes)
        case .end: run(exchange.onAnswerEnd())
        }
    }

    func backendReadComplete() {
        run(exchange.onBackendReadComplete())
    }

    func backendFailed(_ error: Error) {
        run(exchange.onBackendFailed("\(error)"))
    }

    /// Backpressure on uploads: stop reading the client while the backend's buffer is full.
    func backendWritabilityChanged(_ writable: Bool) {
        setReadingClient(writable)
    }

    // MARK: Carrying out the exchange's actions

    /// Carries out `first` and every action it leads to (a policy's answer is an event too).
    /// `bytes`: the backend's bytes the event was about (an answer's head or body).
    private func run(_ first: ProxyExchange.Action, bytes: ByteBuffer? = nil) {
        var next = first
        while true {
            let action = next
            next = .none
            switch action {
            case .none:
                return
            case .discardClientBytes:
                inbound.clear()
            case .skipClientBytes(let count):
                inbound.moveReaderIndex(forwardBy: count)
            case .pauseReadingClient:
                setReadingClient(false)
            case .startRequest(let head, let sayContinue):
                startRequest(head, sayContinue: sayContinue)
                next = choose(excluding: [])
            case .bodyPart(let count, let use):
                let part = inbound.readSlice(length: count)!
                switch use {
                case .send(let keep):
                    connection!.channel.writeAndFlush(part, promise: nil)
                    if keep { heldParts.append(part) } else { heldParts.removeAll(keepingCapacity: true) }
                case .hold:
                    heldParts.append(part)
                case .drop:
                    break
                }
            case .requestRead:
                context?.triggerUserOutboundEvent(ClientProgress.requestRead, promise: nil)
            case .finishRequest(let resumeReading):
                heldParts.removeAll(keepingCapacity: true)
                context?.triggerUserOutboundEvent(ClientProgress.responded, promise: nil)
                if resumeReading { setReadingClient(true) }
                // The next request's bytes are already here: its time runs from now.
                if inbound.readableBytes > 0 { context?.triggerUserOutboundEvent(ClientProgress.requestStarted, promise: nil) }
            case .upgrade(let head):
                upgrade(head)
            case .retry(let excluding, let reason, let ended):
                if let ended { endAttempt(ended) }
                logger.debug("retrying on another backend", metadata: ["balancer.backend": "\(excluding.last ?? "")", "balancer.reason": "\(reason)"])
                next = choose(excluding: excluding)
            case .consultRetryPolicy(let question, let ended):
                if let ended { endAttempt(ended) }
                next = exchange.onRetryPolicy(
                    allows: policy.mayRetry(method: question.method, hasIdempotencyKey: question.hasIdempotencyKey, neverSent: question.neverSent))
            case .acquireConnection(let address, let serial, let mayJoin):
                next = acquireConnection(address, serial: serial, mayJoin: mayJoin)
            case .releaseConnection:
                pool.release(connection!)
                connection = nil
            case .writeRequest(let isHEAD, let pipelinable, let keepParts):
                writeRequest(isHEAD: isHEAD, pipelinable: pipelinable, keepParts: keepParts)
            case .forwardAnswerHead(let head, let forwarding):
                let bytes = bytes!
                switch forwarding {
                case .asItCame:
                    context?.write(wrapOutboundOut(bytes), promise: nil)
                case .rewritten(let keepAlive):
                    let rewritten = bytes.withUnsafeReadableBytes { HTTP1.forwardedResponse(head, $0, keepAlive: keepAlive) }
                    context?.write(wrapOutboundOut(ByteBuffer(bytes: rewritten)), promise: nil)
                }
            case .forwardAnswerBody:
                context?.write(wrapOutboundOut(bytes!), promise: nil)
            case .flushClient:
                context?.flush()
            case .endAnswer(let ended, let after):
                endAttempt(ended)
                endAnswer(after)
            case .respond(let refusal, let ended):
                if let ended { endAttempt(ended) }
                respond(refusal)
            case .closeClient(let ended):
                if let ended { endAttempt(ended) }
                heldParts.removeAll(keepingCapacity: true)
                context?.close(promise: nil)
            case .endAttempt(let ended):
                endAttempt(ended)
            case .closeSplice:
                splice?.close(promise: nil)
                splice = nil
            }
        }
    }

    private func choose(excluding: [String]) -> ProxyExchange.Action {
        guard let choice = policy.chooseForRequest(excluding: excluding) else { return exchange.onNoBackend() }
        return exchange.onBackendChosen(choice)
    }

    private func setReadingClient(_ on: Bool) {
        context?.channel.setOption(ChannelOptions.autoRead, value: on).whenFailure { _ in }
    }

    /// Takes the head's bytes and makes the head the backend receives.
    private func startRequest(_ head: HTTP1.RequestHead, sayContinue: Bool) {
        let bytes = inbound.readSlice(length: head.length)!
        heldParts.removeAll(keepingCapacity: true)
        if head.needsRewrite {
            forwardedHead = ByteBuffer(bytes: bytes.withUnsafeReadableBytes { HTTP1.forwardedRequest(head, $0, client: clientAddress) })
            forwardedHeadTail = nil
        } else {
            // The client's head without its blank line, then ours: no copy.
            forwardedHead = bytes.getSlice(at: bytes.readerIndex, length: head.length - 2)!
            forwardedHeadTail = forwardedTail
        }
        if sayContinue {
            context?.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
    }

    /// A connection a pipelinable request was written to in this round, an idle one, or a new
    /// one; the exchange hears which connect it answers.
    private func acquireConnection(_ address: String, serial: Int, mayJoin: Bool) -> ProxyExchange.Action {
        precondition(connection == nil, "acquiring a connection to \(address) while holding one to \(connection!.address)")
        if let pooled = (mayJoin ? pool.joinableConnection(to: address) : nil) ?? pool.idleConnection(to: address) {
            connection = pooled
            return exchange.onBackendConnected(serial: serial)
        }
        pool.acquire(address).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .failure(let error):
                run(exchange.onConnectFailed(serial: serial, "\(error)"))
            case .success(let made):
                precondition(connection == nil, "a connection to \(address) came while holding one to \(connection!.address)")
                connection = made
                run(exchange.onBackendConnected(serial: serial))
            }
        }
        return .none
    }

    private func writeRequest(isHEAD: Bool, pipelinable: Bool, keepParts: Bool) {
        let connection = connection!
        connection.begin(self, isHEAD: isHEAD)
        if pipelinable { pool.offerForPipelining(connection) }
        let channel = connection.channel
        channel.write(forwardedHead, promise: nil)
        if let forwardedHeadTail { channel.write(forwardedHeadTail, promise: nil) }
        for part in heldParts { channel.write(part, promise: nil) }
        if !keepParts { heldParts.removeAll(keepingCapacity: true) }
        pool.flushAtEndOfTick(channel)
    }

    /// Reports the attempt's outcome and lets its connection go.
    private func endAttempt(_ ended: ProxyExchange.AttemptEnd) {
        switch ended.connection {
        case .release(let reusable):
            let connection = connection!
            self.connection = nil
            if !reusable { connection.keepAlive = false }
            pool.release(connection)
        case .abandon(let close):
            let connection = connection!
            self.connection = nil
            connection.abandon(self)
            if close { connection.channel.close(promise: nil) }
        case .lost:
            connection = nil
        }
        policy.finished(id: ended.backend, outcome: ended.outcome)
    }

    private func endAnswer(_ after: ProxyExchange.ClientAfterAnswer) {
        guard let context else { return }
        switch after {
        case .keepAlive:
            pool.flushAtEndOfTick(context.channel)
            readClient()  // the request finishes; the next may be waiting
        case .close, .closeUnread:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer())).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            if after == .close { context.triggerUserOutboundEvent(ClientProgress.responded, promise: nil) }
        }
    }

    /// The balancer's own answer. Kept alive, the client is read on: the rest of the body is
    /// dropped, then the request finishes.
    private func respond(_ refusal: ProxyExchange.Refusal) {
        heldParts.removeAll(keepingCapacity: true)
        guard let context else { return }
        let status = HTTPResponseStatus(statusCode: refusal.status)
        let answer = balancerErrorAnswer(status, code: "balancer_\(status.code)", message: refusal.message, keepAlive: refusal.keepAlive)
        let keepAlive = refusal.keepAlive
        context.writeAndFlush(wrapOutboundOut(answer)).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
        if keepAlive { readClient() }
    }

    // MARK: WebSockets

    /// A WebSocket upgrade: the node with the fewest sockets gets the client's head; its `101`
    /// goes back as it came and the connection becomes a splice. Every failure is answered:
    /// the node's own 4xx status, else 503 with `Retry-After`.
    private func upgrade(_ head: HTTP1.RequestHead) {
        let bytes = inbound.readSlice(length: head.length)!
        guard let context else { return }
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
                exchange.onUpgraded()
                splice = backend
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
                run(exchange.onUpgradeRefused(status: Int(error.status.code)))
            case .failure:
                run(exchange.onUpgradeFailed())
            }
        }
    }
}
