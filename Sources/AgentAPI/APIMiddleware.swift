import HTTPTypes
import Hummingbird
import Logging
import NodeRuntime
import Prometheus
import Synchronization

/// The node's metrics, kept in a Prometheus registry the executable (or a test) owns. Labels
/// come from small fixed sets (route template, status code), never from ids.
public final class APIMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let counters = Mutex<[String: Prometheus.Counter]>([:])
    let webSocketSessions: Prometheus.Gauge
    let appliedIndex: Prometheus.Gauge
    let lastLogIndex: Prometheus.Gauge
    let applyLag: Prometheus.Gauge
    let logBytes: Prometheus.Gauge
    let viewCacheHits: Prometheus.Gauge
    let viewCacheMisses: Prometheus.Gauge
    let viewCacheEntries: Prometheus.Gauge
    let viewCacheBytes: Prometheus.Gauge
    let viewCacheEvictions: Prometheus.Gauge

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        webSocketSessions = registry.makeGauge(name: "switchboard_websocket_sessions", help: "Event WebSockets connected to this node")
        appliedIndex = registry.makeGauge(name: "switchboard_applied_index", help: "Last log index applied to state.sqlite")
        lastLogIndex = registry.makeGauge(name: "switchboard_log_last_index", help: "Last index in the durable command log")
        applyLag = registry.makeGauge(name: "switchboard_apply_lag_entries", help: "Log entries durable but not yet applied")
        logBytes = registry.makeGauge(name: "switchboard_log_bytes", help: "Size of the command log on disk")
        viewCacheHits = registry.makeGauge(name: "switchboard_conversation_view_hits", help: "Conversation reads served from rendered copies")
        viewCacheMisses = registry.makeGauge(name: "switchboard_conversation_view_misses", help: "Conversation reads rendered from state.sqlite")
        viewCacheEntries = registry.makeGauge(name: "switchboard_conversation_view_entries", help: "Rendered conversations held")
        viewCacheBytes = registry.makeGauge(name: "switchboard_conversation_view_bytes", help: "Bytes of rendered conversations held")
        viewCacheEvictions = registry.makeGauge(name: "switchboard_conversation_view_evictions", help: "Times the rendered-conversation cache was full and started over")
    }

    func count(route: String, status: Int) {
        let key = "\(route) \(status)"
        let counter = counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = registry.makeCounter(
                name: "switchboard_http_requests_total", labels: [("route", route), ("status", String(status))],
                help: "HTTP requests by route template and status")
            counters[key] = counter
            return counter
        }
        counter.increment()
    }

    /// Refreshes the node gauges and renders the text exposition format.
    func render(node: Node, webSockets: Int, views: ConversationViews.Stats) -> [UInt8] {
        viewCacheHits.set(Int64(views.hits))
        viewCacheMisses.set(Int64(views.misses))
        viewCacheEntries.set(Int64(views.entries))
        viewCacheBytes.set(Int64(views.bytes))
        viewCacheEvictions.set(Int64(views.evictions))
        let applied = node.appliedIndex, last = node.lastIndex
        appliedIndex.set(applied)
        lastLogIndex.set(last)
        applyLag.set(max(0, last - applied))
        logBytes.set(node.logSizeBytes)
        webSocketSessions.set(Int64(webSockets))
        return registry.emitToBuffer()
    }
}

/// Stamps `X-Switchboard-Node` and `X-Switchboard-Index` on every response, renders every
/// error in API.md's shape (a 500 is logged with its cause), and counts requests.
struct APIMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let node: Node
    let metrics: APIMetrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let apiError = APIError.from(error)
            if apiError.status == .internalServerError {
                logger.error("request failed", metadata: ["http.path": "\(request.uri.path)", "error": "\(error)"])
            }
            response = try apiError.response(from: request, context: context)
        }
        response.headers[.switchboardNode] = node.id
        response.headers[.switchboardIndex] = String(node.appliedIndex)
        metrics.count(route: context.endpointPath ?? "unmatched", status: response.status.code)
        return response
    }
}

extension HTTPField.Name {
    static let switchboardNode = Self("X-Switchboard-Node")!
    static let switchboardIndex = Self("X-Switchboard-Index")!
}
