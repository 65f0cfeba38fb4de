import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NodeRuntime

extension API {
    /// An idle keep-alive connection is closed after this long, so idle clients cannot hold
    /// sockets forever.
    public static let connectionIdleMax: TimeAmount = .seconds(75)
    /// How long a WebSocket the node closed waits for its client's close frame before the
    /// connection is dropped: a client that went silent cannot hold a stopping node.
    public static let webSocketCloseTimeout: Duration = .seconds(2)

    /// The node's HTTP + WebSocket server as a `Service` (Hummingbird `Application`).
    /// WebSockets are pinged every 30 s and closed when the peer stops answering. With `tls`,
    /// HTTPS and WSS only (the certificate comes from `ServerTLS.CertificateFiles`).
    public func application(host: String, port: Int, metrics: APIMetrics, tls: TLSConfiguration? = nil) throws -> some ApplicationProtocol {
        let router = router(metrics: metrics)
        let plain: HTTPServerBuilder = .http1WebSocketUpgrade(
            webSocketRouter: router,
            configuration: .init(
                http1: .init(idleTimeout: API.connectionIdleMax),
                ws: .init(
                    maxFrameSize: API.inboundMessageBytesMax, autoPing: .enabled(timePeriod: .seconds(30)),
                    closeTimeout: API.webSocketCloseTimeout)))
        return Application(
            router: router,
            server: try tls.map { try .tls(plain, tlsConfiguration: $0) } ?? plain,
            configuration: .init(address: .hostname(host, port: port), serverName: "switchboard", backlog: API.listenBacklog),
            logger: logger)
    }
}
