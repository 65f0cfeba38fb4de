import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NodeRuntime

extension API {
    /// An idle keep-alive connection is closed after this long, so idle clients cannot hold
    /// sockets forever.
    public static let connectionIdleMax: TimeAmount = .seconds(75)

    /// The node's HTTP + WebSocket server as a `Service` (Hummingbird `Application`).
    /// WebSockets are pinged every 30 s and closed when the peer stops answering.
    public func application(host: String, port: Int, metrics: APIMetrics) -> some ApplicationProtocol {
        let router = router(metrics: metrics)
        return Application(
            router: router,
            server: .http1WebSocketUpgrade(
                webSocketRouter: router,
                configuration: .init(
                    http1: .init(idleTimeout: API.connectionIdleMax),
                    ws: .init(maxFrameSize: API.inboundMessageBytesMax, autoPing: .enabled(timePeriod: .seconds(30))))),
            configuration: .init(address: .hostname(host, port: port), serverName: "switchboard", backlog: API.listenBacklog),
            logger: logger)
    }
}
