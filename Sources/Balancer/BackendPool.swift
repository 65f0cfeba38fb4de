import NIOCore
import BalancerCore
import NIOPosix
import NIOSSL
import ServerTLS
import Wire

struct BackendUnavailable: Error, CustomStringConvertible {
    var description: String
}

/// No connection to the backend could be made (refused, or the connect timed out).
struct BackendUnreachable: Error, CustomStringConvertible {
    var cause: Error
    var description: String { "connect: \(cause)" }
}

/// What a backend connection reads, framed: one answer head, its body in slices, its end.
enum BackendPart {
    /// `bytes` holds the head as the node sent it; `head` holds offsets into it.
    case head(HTTP1.ResponseHead, bytes: ByteBuffer)
    case body(ByteBuffer)
    case end
}

/// Whoever holds a backend connection for one request: the proxy handler, or a health check.
protocol BackendExchange: AnyObject {
    func backendRead(_ part: BackendPart)
    /// The end of one read from the socket: a good moment to flush what was passed on.
    func backendReadComplete()
    /// The connection failed (reset, closed, no answer within `BackendPool.answerTimeout`,
    /// an answer that is not HTTP/1.1).
    func backendFailed(_ error: Error)
    /// The connection's send buffer went over or back under its high-water mark.
    func backendWritabilityChanged(_ writable: Bool)
}

extension BackendExchange {
    func backendReadComplete() {}
    func backendWritabilityChanged(_ writable: Bool) {}
}

/// One keep-alive connection to a backend. It carries one request at a time, or several
/// pipelined bodiless GET and HEAD requests (`BackendPool.pipelineDepthMax`): the node answers
/// them in order, so the answers are matched to `inFlight` oldest first. Lives on one event
/// loop; whoever sends a request on it adds itself with `begin` and is removed when its answer
/// ends, when it abandons the request, or when the connection fails.
final class BackendConnection: @unchecked Sendable {
    // @unchecked: created, used and released only on its channel's event loop (the pool and the
    // proxy handler that hold it run there); futures merely carry it across that same loop.
    let channel: Channel
    let address: String
    /// One request written and not yet answered whole. A nil exchange was abandoned by its
    /// client: its answer is read and dropped, so the answers behind it stay matched.
    struct Request {
        var exchange: BackendExchange?
        /// A HEAD's answer has no body whatever its length says.
        var isHEAD: Bool
    }
    private(set) var inFlight = CircularBuffer<Request>(initialCapacity: 4)
    var keepAlive = true
    /// Takes the connection back when an abandoned request's answer was the last in flight.
    weak var pool: BackendPool?

    init(channel: Channel, address: String) {
        self.channel = channel
        self.address = address
    }

    /// The request whose answer is being read (the oldest in flight).
    var current: Request? { inFlight.first }

    func begin(_ exchange: BackendExchange, isHEAD: Bool) {
        inFlight.append(Request(exchange: exchange, isHEAD: isHEAD))
    }

    /// The current request's answer ended: tells who waited for it (who gives the connection
    /// back), or gives it back for a request its client abandoned.
    func answerEnded() {
        if let exchange = inFlight.popFirst()?.exchange {
            exchange.backendRead(.end)
        } else {
            pool?.release(self)
        }
    }

    /// `exchange` no longer wants its answer (its client went away); the answer is still read
    /// and dropped, since the requests behind it wait for theirs.
    func abandon(_ exchange: BackendExchange) {
        guard let slot = inFlight.firstIndex(where: { $0.exchange === exchange }) else { return }
        inFlight[slot].exchange = nil
    }

    /// Fails every request in flight, oldest first.
    func fail(_ error: Error) {
        let failed = inFlight
        inFlight.removeAll()
        for request in failed { request.exchange?.backendFailed(error) }
    }
}

/// Frames a backend's answers on raw bytes (`HTTP1`) and hands them to the connection's
/// exchange. Bytes with no request in flight, or an answer that is not HTTP/1.1, end the
/// connection.
final class BackendResponseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var connection: BackendConnection?

    private var buffered = ByteBuffer()
    private var body: HTTP1.BodyFramer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if buffered.readableBytes == 0 {
            buffered = bytes
        } else {
            buffered.writeBuffer(&bytes)
        }
        while buffered.readableBytes > 0 {
            guard let connection, let request = connection.current else {
                fail(context: context, BackendUnavailable(description: "the backend sent bytes with no request in flight"))
                return
            }
            if var framer = body {
                let used: Int
                do {
                    used = try buffered.withUnsafeReadableBytes { bytes throws(HTTP1.BodyFramer.Failure) in try framer.consume(bytes) }
                } catch {
                    fail(context: context, BackendUnavailable(description: "\(error)"))
                    return
                }
                body = framer
                if used > 0 {
                    let slice = buffered.readSlice(length: used)!
                    connection.current?.exchange?.backendRead(.body(slice))
                }
                if framer.isDone {
                    body = nil
                    connection.answerEnded()
                }
                continue
            }
            let parsed = buffered.withUnsafeReadableBytes { HTTP1.parseResponse($0, requestWasHEAD: request.isHEAD) }
            switch parsed {
            case .incomplete:
                return
            case .tooLarge, .invalid:
                fail(context: context, BackendUnavailable(description: "the backend's answer is not valid HTTP/1.1"))
                return
            case .head(let head):
                let headBytes = buffered.readSlice(length: head.length)!
                if (100..<200).contains(head.status) {
                    guard head.status != 101 else {
                        fail(context: context, BackendUnavailable(description: "the backend switched protocols on a plain request"))
                        return
                    }
                    continue  // an interim answer: the real one follows
                }
                let framer = HTTP1.BodyFramer(head.body)
                connection.keepAlive = connection.keepAlive && head.keepAlive
                connection.current?.exchange?.backendRead(.head(head, bytes: headBytes))
                if framer.isDone {
                    connection.answerEnded()
                } else {
                    body = framer
                }
            }
        }
        buffered.clear()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection?.current?.exchange?.backendReadComplete()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // No byte from the backend for `answerTimeout`: a request in flight failed; an idle
        // pooled connection is simply closed.
        guard case .read? = event as? IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        fail(context: context, BackendUnavailable(description: "no answer within \(BackendPool.answerTimeout)"))
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection?.current?.exchange?.backendWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(context: context, error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if body?.endsAtClose == true, let connection {
            // A body delimited by the close: this close is its end.
            body = nil
            connection.keepAlive = false
            connection.answerEnded()
        }
        connection?.fail(BackendUnavailable(description: "the backend closed the connection"))
        context.fireChannelInactive()
    }

    private func fail(context: ChannelHandlerContext, _ error: Error) {
        buffered.clear()
        body = nil
        connection?.keepAlive = false
        connection?.fail(error)
        context.close(promise: nil)
    }
}

/// Keep-alive connections to the backends, for one event loop (so a proxied request never hops
/// threads). Only touched on that loop.
final class BackendPool {
    /// Idle connections kept per backend.
    static let idlePerBackendMax = 64
    /// Most requests in flight on one pipelined connection. A bodiless GET or HEAD joins a
    /// connection another one was written to in the same event-loop round, up to this many: the
    /// node reads them in one `read` and the balancer writes them in one `writev`. A request
    /// waits behind at most this many others that arrived in the same round.
    static let pipelineDepthMax = 8
    static let connectTimeout = TimeAmount.seconds(1)
    /// A backend that sends no byte for this long while answering has failed; an idle pooled
    /// connection that long is closed. One timer per connection, not per request.
    static let answerTimeout = TimeAmount.seconds(30)

    let eventLoop: EventLoop
    /// Idle connections by backend address: a handful of backends, found by a short scan
    /// rather than by hashing the address twice per request.
    private var idle: [(address: String, connections: [BackendConnection])] = []

    private func idleSlot(_ address: String) -> Int {
        if let slot = idle.firstIndex(where: { $0.address == address }) { return slot }
        idle.append((address, []))
        return idle.count - 1
    }

    /// TLS toward the nodes (`--backend-ca`): every connection, health checks included,
    /// is HTTPS and the node's certificate must chain to the CA and name its address.
    let tls: NIOSSLContext?

    init(eventLoop: EventLoop, tls: NIOSSLContext? = nil) {
        self.eventLoop = eventLoop
        self.tls = tls
    }

    private var unflushed: [Channel] = []
    /// Connections a pipelinable request was written to in this round (at most one or two per
    /// backend): the next such request to the same backend joins one of them.
    private var joinable: [BackendConnection] = []

    /// Flushes `channel` once the event loop has handled this round of ready sockets, together
    /// with every other channel written in the round: the requests read in one round reach the
    /// nodes in one burst, and a node wakes once for all of them.
    func flushAtEndOfTick(_ channel: Channel) {
        unflushed.append(channel)
        guard unflushed.count == 1 else { return }
        eventLoop.assumeIsolated().execute { [self] in
            let channels = unflushed
            unflushed.removeAll(keepingCapacity: true)
            joinable.removeAll(keepingCapacity: true)
            for channel in channels { channel.flush() }
        }
    }

    /// A connection to `address` that a pipelinable request was written to in this round and
    /// that has room for another (`pipelineDepthMax`).
    func joinableConnection(to address: String) -> BackendConnection? {
        joinable.first { connection in
            connection.address == address && connection.keepAlive && connection.channel.isActive
                && connection.inFlight.count < Self.pipelineDepthMax
        }
    }

    /// Offers `connection`, just written a pipelinable request, to the others of this round;
    /// the caller flushes it at the end of the round (`flushAtEndOfTick`), which ends the offer.
    func offerForPipelining(_ connection: BackendConnection) {
        if !joinable.contains(where: { $0 === connection }) { joinable.append(connection) }
    }

    /// A pooled keep-alive connection to `address`, if one is open.
    func idleConnection(to address: String) -> BackendConnection? {
        let slot = idleSlot(address)
        while let connection = idle[slot].connections.popLast() {
            if connection.channel.isActive { return connection }
        }
        return nil
    }

    /// A pooled connection to `address`, or a new one.
    func acquire(_ address: String) -> EventLoopFuture<BackendConnection> {
        if let connection = idleConnection(to: address) { return eventLoop.makeSucceededFuture(connection) }
        guard let target = HostPort(address) else {
            return eventLoop.makeFailedFuture(BackendUnavailable(description: "bad backend address \(address)"))
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(Self.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [tls] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addBackendTLS(tls, host: target.host)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.answerTimeout))
                    try channel.pipeline.syncOperations.addHandler(BackendResponseHandler())
                }
            }
            .connect(target)
            .assumeIsolated()  // connected on this pool's loop
            .flatMapThrowing { channel in
                let connection = BackendConnection(channel: channel, address: address)
                connection.pool = self
                try channel.pipeline.syncOperations.handler(type: BackendResponseHandler.self).connection = connection
                return connection
            }
            .nonisolated()
    }

    /// Gives a connection back after an answer on it ended: it goes idle once nothing else is in
    /// flight on it. One the backend or the exchange said not to reuse is closed (requests still
    /// pipelined behind on it fail, and are retried where that is safe).
    func release(_ connection: BackendConnection) {
        guard connection.keepAlive, connection.channel.isActive else {
            connection.channel.close(promise: nil)
            return
        }
        guard connection.inFlight.isEmpty else { return }
        // Idle, it may next carry a request whose body streams: nothing may join it then.
        joinable.removeAll { $0 === connection }
        let slot = idleSlot(connection.address)
        guard idle[slot].connections.count < Self.idlePerBackendMax else {
            connection.channel.close(promise: nil)
            return
        }
        idle[slot].connections.append(connection)
    }

    /// `GET path` on `address`; the response status, or a failure after `timeout`.
    func get(_ address: String, path: String, timeout: TimeAmount) -> EventLoopFuture<Int> {
        let promise = eventLoop.makePromise(of: Int.self)
        let timer = eventLoop.scheduleTask(in: timeout) { promise.fail(BackendUnavailable(description: "no answer within \(timeout)")) }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        // A promise completes once; later completions (a close after a timeout) are ignored by NIO.
        acquire(address).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .failure(let error):
                promise.fail(BackendUnreachable(cause: error))
            case .success(let connection):
                connection.begin(HealthCheck(pool: self, connection: connection, promise: promise), isHEAD: false)
                connection.channel.writeAndFlush(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: \(address)\r\n\r\n"), promise: nil)
                promise.futureResult.whenFailure { _ in connection.channel.close(promise: nil) }
            }
        }
        return promise.futureResult
    }
}

/// One health check's request on a pooled connection.
private final class HealthCheck: BackendExchange {
    let pool: BackendPool
    let connection: BackendConnection
    let promise: EventLoopPromise<Int>
    var status: Int?

    init(pool: BackendPool, connection: BackendConnection, promise: EventLoopPromise<Int>) {
        self.pool = pool
        self.connection = connection
        self.promise = promise
    }

    func backendRead(_ part: BackendPart) {
        switch part {
        case .head(let head, _):
            status = head.status
        case .body:
            break
        case .end:
            pool.release(connection)
            promise.succeed(status ?? 502)
        }
    }

    func backendFailed(_ error: Error) {
        promise.fail(error)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// With `context`, TLS first in the pipeline: every byte the proxy writes is encrypted and
    /// every byte it reads was decrypted. A name is sent for SNI and checked; an IP literal is
    /// checked against the certificate's IP addresses.
    func addBackendTLS(_ context: NIOSSLContext?, host: String) throws {
        guard let context else { return }
        try addHandler(NIOSSLClientHandler(context: context, serverHostname: ClientTrust.serverName(for: host)))
    }
}

extension ClientBootstrap {
    /// Connects to a node's address. An IP literal (every address a cluster file or gossip
    /// gives) is connected to as it is; only a name goes through the resolver. The resolver's
    /// path (a getaddrinfo on another thread, then Happy Eyeballs) costs several times the
    /// connect itself, paid again by each of the thousands of sockets that reconnect when a
    /// node dies.
    func connect(_ target: HostPort) -> EventLoopFuture<Channel> {
        if let address = try? SocketAddress(ipAddress: target.host, port: target.port) {
            return connect(to: address)
        }
        return connect(host: target.host, port: target.port)
    }
}
