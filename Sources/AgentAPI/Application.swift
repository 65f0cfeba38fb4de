import Hummingbird
import HummingbirdWebSocket
import Logging
import NodeRuntime

extension API {
    /// The node's HTTP + WebSocket server as a `Service` (Hummingbird `Application`).
    public func application(host: String, port: Int, metrics: APIMetrics) -> some ApplicationProtocol {
        let router = router(metrics: metrics)
        return Application(
            router: router,
            server: .http1WebSocketUpgrade(webSocketRouter: router),
            configuration: .init(address: .hostname(host, port: port), serverName: "switchboard"),
            logger: logger)
    }
}
