import NIOCore
import NIOHTTP1
import NIOPosix
import Wire

struct BackendUnavailable: Error, CustomStringConvertible {
    var description: String
}

/// One keep-alive connection to a backend, carrying one request at a time. Lives on one event
/// loop; the callbacks are set by whoever holds it.
final class BackendConnection: @unchecked Sendable {
    // @unchecked: created, used and released only on its channel's event loop (the pool and the
    // proxy handler that hold it run there); futures merely carry it across that same loop.
    let channel: Channel
    let address: String
    /// Receives the response parts of the request in flight.
    var onPart: ((HTTPClientResponsePart) -> Void)?
    /// The connection failed (reset, closed, timed out) while a request was in flight.
    var onFailure: ((Error) -> Void)?
    var keepAlive = true

    init(channel: Channel, address: String) {
        self.channel = channel
        self.address = address
    }

    func fail(_ error: Error) {
        let failure = onFailure
        onPart = nil
        onFailure = nil
        failure?(error)
    }
}

final class BackendResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    var connection: BackendConnection?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection?.onPart?(unwrapInboundIn(data))
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
        connection.onPart = nil
        connection.onFailure = nil
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
        acquire(address).assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success(let connection):
                var status: HTTPResponseStatus?
                connection.onFailure = { promise.fail($0) }
                connection.onPart = { [self] part in
                    switch part {
                    case .head(let head):
                        status = head.status
                        connection.keepAlive = head.isKeepAlive
                    case .body:
                        break
                    case .end:
                        release(connection)
                        promise.succeed(status ?? .badGateway)
                    }
                }
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
