import HTTPTypes
import Hummingbird
import Logging
import NodeRuntime
import Prometheus
import RaftCore
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
    let raftTerm: Prometheus.Gauge
    let raftIsLeader: Prometheus.Gauge
    let raftCommitIndex: Prometheus.Gauge
    let raftSnapshotIndex: Prometheus.Gauge
    let forwardedWrites: Prometheus.Gauge
    let keyedReproposals: Prometheus.Gauge
    let malformedPeerFrames: Prometheus.Gauge
    let unroutableMessages: Prometheus.Gauge
    let applyBatches: Prometheus.Gauge
    let applyCommits: Prometheus.Gauge
    let applyRedone: Prometheus.Gauge
    let appliedEntries: Prometheus.Gauge
    let readies: Prometheus.Gauge
    let viewCacheHits: Prometheus.Gauge
    let viewCacheMisses: Prometheus.Gauge
    let viewCacheEntries: Prometheus.Gauge
    let viewCacheBytes: Prometheus.Gauge
    let viewCacheEvictions: Prometheus.Gauge

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        webSocketSessions = registry.makeGauge(name: "switchboard_websocket_sessions", help: "Event WebSockets connected to this node")
        appliedIndex = registry.makeGauge(name: "switchboard_applied_index", help: "Last log index applied to state.sqlite")
        lastLogIndex = registry.makeGauge(name: "switchboard_log_last_index", help: "Last index in this node's Raft log")
        applyLag = registry.makeGauge(name: "switchboard_apply_lag_entries", help: "Committed log entries not yet applied here")
        raftTerm = registry.makeGauge(name: "switchboard_raft_term", help: "Current Raft term")
        raftIsLeader = registry.makeGauge(name: "switchboard_raft_is_leader", help: "1 while this node leads")
        raftCommitIndex = registry.makeGauge(name: "switchboard_raft_commit_index", help: "Highest log index known committed")
        raftSnapshotIndex = registry.makeGauge(name: "switchboard_raft_snapshot_index", help: "Index of the latest snapshot; the log starts after it")
        forwardedWrites = registry.makeGauge(name: "switchboard_forwarded_writes", help: "Writes this node forwarded to the leader")
        keyedReproposals = registry.makeGauge(
            name: "switchboard_keyed_reproposals", help: "Writes with an Idempotency-Key proposed again after a leader change lost their fate")
        malformedPeerFrames = registry.makeGauge(name: "switchboard_peer_malformed_frames", help: "Peer payloads dropped as malformed")
        applyBatches = registry.makeGauge(
            name: "switchboard_apply_batches", help: "Apply batches run since start (a leader runs several in one transaction)")
        applyCommits = registry.makeGauge(
            name: "switchboard_apply_commits", help: "Apply transactions committed since start (divided into applied entries: entries per commit)")
        applyRedone = registry.makeGauge(
            name: "switchboard_apply_redone_transactions",
            help: "Apply transactions run again with a savepoint per command, because a command failed after writing")
        appliedEntries = registry.makeGauge(name: "switchboard_applied_entries", help: "Log entries applied since start (divided by batches: the mean batch)")
        readies = registry.makeGauge(name: "switchboard_raft_readies", help: "Raft Ready cycles carried out since start (persist, send, apply)")
        unroutableMessages = registry.makeGauge(name: "switchboard_raft_unroutable_messages", help: "Raft messages dropped: no address known for the member")
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
        let status = node.loop.status
        let applied = node.appliedIndex, last = Int64(status.lastIndex)
        appliedIndex.set(applied)
        lastLogIndex.set(last)
        applyLag.set(max(0, Int64(status.commitIndex) - applied))
        raftTerm.set(Int64(status.term))
        raftIsLeader.set(Int64(status.role == .leader ? 1 : 0))
        raftCommitIndex.set(Int64(status.commitIndex))
        raftSnapshotIndex.set(Int64(status.snapshotIndex))
        let counters = node.peerCounters
        forwardedWrites.set(Int64(counters.forwardedWrites))
        keyedReproposals.set(Int64(counters.keyedReproposals))
        malformedPeerFrames.set(Int64(counters.malformedFrames))
        unroutableMessages.set(Int64(counters.unroutableMessages))
        applyBatches.set(Int64(status.applyBatches))
        applyCommits.set(Int64(status.applyCommits))
        applyRedone.set(Int64(node.state.redoneTransactionCount))
        appliedEntries.set(Int64(status.appliedEntries))
        readies.set(Int64(status.readies))
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
            var request = request, context = context
            if request.uri.path == "/v1/events", !Self.asksForWebSocket(request) {
                throw APIError(.badRequest, "websocket_required", "/v1/events is a WebSocket: send GET with Upgrade: websocket and Connection: Upgrade")
            }
            context.idempotency = try await request.idempotency()
            response = try await next(request, context)
        } catch {
            var apiError = APIError.from(error)
            var allow: String?
            if apiError.code == "route_not_found", let methods = RouteTable.contract.methods(for: request.uri.path),
                !methods.contains(request.method.rawValue)
            {
                // A path of the contract with a method it does not list.
                allow = methods.joined(separator: ", ")
                apiError = APIError(.methodNotAllowed, "method_not_allowed", "\(request.uri.path) takes \(allow ?? "")")
            }
            if apiError.status == .internalServerError {
                logger.error("request failed", metadata: ["http.path": "\(request.uri.path)", "error": "\(error)"])
            }
            response = try apiError.response(from: request, context: context)
            if let allow { response.headers[.allow] = allow }
        }
        response.headers[.switchboardNode] = node.id
        response.headers[.switchboardIndex] = String(node.responseIndex)
        metrics.count(route: context.endpointPath ?? "unmatched", status: response.status.code)
        return response
    }
}

extension APIMiddleware {
    /// `Upgrade: websocket` with `Connection: upgrade` (tokens, any case).
    static func asksForWebSocket(_ request: Request) -> Bool {
        func has(_ name: HTTPField.Name, _ token: String) -> Bool {
            request.headers[values: name].contains { value in
                value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == token }
            }
        }
        return has(.upgrade, "websocket") && has(.connection, "upgrade")
    }
}

extension HTTPField.Name {
    static let switchboardNode = Self("X-Switchboard-Node")!
    static let switchboardIndex = Self("X-Switchboard-Index")!
    /// `cluster` on a 503 about the cluster rather than the answering node (see APIError).
    static let switchboardScope = Self("X-Switchboard-Scope")!
}
