import NIOCore
import NIOHTTP1
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

/// Whoever holds a backend connection for one request: the proxy handler, or a health check.
protocol BackendExchange: AnyObject {
    func backendRead(_ part: HTTPClientResponsePart)
    /// The connection failed (reset, closed, no answer within `BackendPool.answerTimeout`).
    func backendFailed(_ error: Error)
    /// The connection's send buffer went over or back under its high-water mark.
    func backendWritabilityChanged(_ writable: Bool)
}

extension BackendExchange {
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

final class BackendResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    var connection: BackendConnection?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection?.exchange?.backendRead(unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // No byte from the backend for `answerTimeout`: a request in flight failed; an idle
        // pooled connection is simply closed.
        guard case .read? = event as? IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        connection?.fail(BackendUnavailable(description: "no answer within \(BackendPool.answerTimeout)"))
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection?.exchange?.backendWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection?.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection?.fail(BackendUnavailable(description: "the backend closed the connection"))
        context.fireChannelInactive()
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
    private var idle: [String: [BackendConnection]] = [:]

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    func acquire(_ address: String) -> EventLoopFuture<BackendConnection> {
        while let connection = idle[address]?.popLast() {
            if connection.channel.isActive { return eventLoop.makeSucceededFuture(connection) }
        }
        guard let target = HostPort(address) else {
            return eventLoop.makeFailedFuture(BackendUnavailable(description: "bad backend address \(address)"))
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(Self.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
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
        guard connection.keepAlive, connection.channel.isActive, (idle[connection.address]?.count ?? 0) < Self.idlePerBackendMax else {
            connection.channel.close(promise: nil)
            return
        }
        idle[connection.address, default: []].append(connection)
    }

    /// `GET path` on `address`; the response status, or a failure after `timeout`.
    func get(_ address: String, path: String, timeout: TimeAmount) -> EventLoopFuture<HTTPResponseStatus> {
        let promise = eventLoop.makePromise(of: HTTPResponseStatus.self)
        let timer = eventLoop.scheduleTask(in: timeout) { promise.fail(BackendUnavailable(description: "no answer within \(timeout)")) }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        // A promise completes once; later completions (a close after a timeout) are ignored by NIO.
        acquire(address).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .failure(let error):
                promise.fail(BackendUnreachable(cause: error))
            case .success(let connection):
                connection.exchange = HealthCheck(pool: self, connection: connection, promise: promise)
                var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
                head.headers.add(name: "Host", value: address)
                connection.channel.write(HTTPClientRequestPart.head(head), promise: nil)
                connection.channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
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
    let promise: EventLoopPromise<HTTPResponseStatus>
    var status: HTTPResponseStatus?

    init(pool: BackendPool, connection: BackendConnection, promise: EventLoopPromise<HTTPResponseStatus>) {
        self.pool = pool
        self.connection = connection
        self.promise = promise
    }

    func backendRead(_ part: HTTPClientResponsePart) {
        switch part {
        case .head(let head):
            status = head.status
            connection.keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            pool.release(connection)
            promise.succeed(status ?? .badGateway)
        }
    }

    func backendFailed(_ error: Error) {
        promise.fail(error)
    }
}
