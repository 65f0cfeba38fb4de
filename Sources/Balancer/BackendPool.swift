import NIOCore
import BalancerCore
import NIOPosix
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

/// One keep-alive connection to a backend, carrying one request at a time. Lives on one event
/// loop; `exchange` is set by whoever holds it and cleared when it is released or fails.
final class BackendConnection: @unchecked Sendable {
    // @unchecked: created, used and released only on its channel's event loop (the pool and the
    // proxy handler that hold it run there); futures merely carry it across that same loop.
    let channel: Channel
    let address: String
    var exchange: BackendExchange?
    var keepAlive = true
    /// The request in flight is a HEAD: its answer has no body whatever its length says.
    var requestIsHEAD = false

    init(channel: Channel, address: String) {
        self.channel = channel
        self.address = address
    }

    func fail(_ error: Error) {
        let failed = exchange
        exchange = nil
        failed?.backendFailed(error)
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
            guard let connection, connection.exchange != nil else {
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
                if used > 0 { connection.exchange?.backendRead(.body(buffered.readSlice(length: used)!)) }
                if framer.isDone {
                    body = nil
                    connection.exchange?.backendRead(.end)
                }
                continue
            }
            let parsed = buffered.withUnsafeReadableBytes { HTTP1.parseResponse($0, requestWasHEAD: connection.requestIsHEAD) }
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
                connection.exchange?.backendRead(.head(head, bytes: headBytes))
                if framer.isDone {
                    connection.exchange?.backendRead(.end)
                } else {
                    body = framer
                }
            }
        }
        buffered.clear()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection?.exchange?.backendReadComplete()
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
        connection?.exchange?.backendWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(context: context, error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if body?.endsAtClose == true, let exchange = connection?.exchange {
            // A body delimited by the close: this close is its end.
            body = nil
            connection?.keepAlive = false
            exchange.backendRead(.end)
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

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    private var unflushed: [Channel] = []

    /// Flushes `channel` once the event loop has handled this round of ready sockets, together
    /// with every other channel written in the round: the requests read in one round reach the
    /// nodes in one burst, and a node wakes once for all of them.
    func flushAtEndOfTick(_ channel: Channel) {
        unflushed.append(channel)
        guard unflushed.count == 1 else { return }
        eventLoop.assumeIsolated().execute { [self] in
            let channels = unflushed
            unflushed.removeAll(keepingCapacity: true)
            for channel in channels { channel.flush() }
        }
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
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.answerTimeout))
                    try channel.pipeline.syncOperations.addHandler(BackendResponseHandler())
                }
            }
            .connect(host: target.host, port: target.port)
            .flatMapThrowing { channel in
                let connection = BackendConnection(channel: channel, address: address)
                try channel.pipeline.syncOperations.handler(type: BackendResponseHandler.self).connection = connection
                return connection
            }
    }

    /// Gives a connection back after its response ended.
    func release(_ connection: BackendConnection) {
        connection.exchange = nil
        let slot = idleSlot(connection.address)
        guard connection.keepAlive, connection.channel.isActive, idle[slot].connections.count < Self.idlePerBackendMax else {
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
                connection.exchange = HealthCheck(pool: self, connection: connection, promise: promise)
                connection.requestIsHEAD = false
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
