import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NodeRuntime
import Prometheus
import RaftCore
import Telemetry
import Synchronization

/// The node's metrics. One path: every metric is a swift-metrics `Counter`, `Gauge` or `Timer`
/// made by a `PrometheusMetricsFactory` over the node's registry (the executable bootstraps the
/// same factory for the modules below, so gossip's and the Raft loop's metrics land there too);
/// the registry only renders. Growing counts are counters (`_total`); latencies are histograms.
/// Labels come from small fixed sets (route template, status code), never from ids.
public final class APIMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    private let requests = Mutex<[String: (count: Metrics.Counter, duration: Metrics.Timer?)]>([:])
    let webSocketSessions: Metrics.Gauge
    let appliedIndex: Metrics.Gauge
    let lastLogIndex: Metrics.Gauge
    let applyLag: Metrics.Gauge
    let raftTerm: Metrics.Gauge
    let raftIsLeader: Metrics.Gauge
    let raftCommitIndex: Metrics.Gauge
    let raftSnapshotIndex: Metrics.Gauge
    let viewCacheEntries: Metrics.Gauge
    let viewCacheBytes: Metrics.Gauge
    let forwardedWrites: RunningTotal
    let keyedReproposals: RunningTotal
    let malformedPeerFrames: RunningTotal
    let unroutableMessages: RunningTotal
    let applyBatches: RunningTotal
    let applyCommits: RunningTotal
    let applyRedone: RunningTotal
    let appliedEntries: RunningTotal
    let readies: RunningTotal
    let viewCacheHits: RunningTotal
    let viewCacheMisses: RunningTotal
    let viewCacheEvictions: RunningTotal

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        let factory = Telemetry.factory(registry: registry)
        self.factory = factory
        func gauge(_ name: String) -> Metrics.Gauge { Metrics.Gauge(label: name, factory: factory) }
        func total(_ name: String) -> RunningTotal { RunningTotal(Metrics.Counter(label: name, factory: factory)) }
        webSocketSessions = gauge("switchboard_websocket_sessions")
        appliedIndex = gauge("switchboard_applied_index")
        lastLogIndex = gauge("switchboard_log_last_index")
        applyLag = gauge("switchboard_apply_lag_entries")
        raftTerm = gauge("switchboard_raft_term")
        raftIsLeader = gauge("switchboard_raft_is_leader")
        raftCommitIndex = gauge("switchboard_raft_commit_index")
        raftSnapshotIndex = gauge("switchboard_raft_snapshot_index")
        viewCacheEntries = gauge("switchboard_conversation_view_entries")
        viewCacheBytes = gauge("switchboard_conversation_view_bytes")
        forwardedWrites = total("switchboard_forwarded_writes_total")
        keyedReproposals = total("switchboard_keyed_reproposals_total")
        malformedPeerFrames = total("switchboard_peer_malformed_frames_total")
        unroutableMessages = total("switchboard_raft_unroutable_messages_total")
        applyBatches = total("switchboard_apply_batches_total")
        applyCommits = total("switchboard_apply_commits_total")
        applyRedone = total("switchboard_apply_redone_transactions_total")
        appliedEntries = total("switchboard_applied_entries_total")
        readies = total("switchboard_raft_readies_total")
        viewCacheHits = total("switchboard_conversation_view_hits_total")
        viewCacheMisses = total("switchboard_conversation_view_misses_total")
        viewCacheEvictions = total("switchboard_conversation_view_evictions_total")
    }

    /// Counts a request by route template and status, and its duration by route template
    /// (`switchboard_http_request_duration_seconds`; an event socket's upgrade is counted, not
    /// timed: its duration is the session's).
    func record(route: String, status: Int, started: ContinuousClock.Instant) {
        let key = "\(route) \(status)"
        let metrics = requests.withLock { requests in
            if let known = requests[key] { return known }
            let made = (
                count: Metrics.Counter(label: "switchboard_http_requests_total", dimensions: [("route", route), ("status", String(status))], factory: factory),
                duration: status == 101 ? nil : Metrics.Timer(label: "switchboard_http_request_duration_seconds", dimensions: [("route", route)], factory: factory)
            )
            requests[key] = made
            return made
        }
        metrics.count.increment()
        metrics.duration?.record(ContinuousClock.now - started)
    }

    /// Refreshes the node's gauges and counters and renders the text exposition format.
    func render(node: Node, webSockets: Int, views: ConversationViews.Stats) -> [UInt8] {
        viewCacheHits.record(views.hits)
        viewCacheMisses.record(views.misses)
        viewCacheEntries.record(views.entries)
        viewCacheBytes.record(views.bytes)
        viewCacheEvictions.record(views.evictions)
        let status = node.loop.status
        let applied = node.appliedIndex, last = Int64(status.lastIndex)
        appliedIndex.record(applied)
        lastLogIndex.record(last)
        applyLag.record(max(0, Int64(status.commitIndex) - applied))
        raftTerm.record(Int64(status.term))
        raftIsLeader.record(status.role == .leader ? 1 : 0)
        raftCommitIndex.record(Int64(status.commitIndex))
        raftSnapshotIndex.record(Int64(status.snapshotIndex))
        let counters = node.peerCounters
        forwardedWrites.record(counters.forwardedWrites)
        keyedReproposals.record(counters.keyedReproposals)
        malformedPeerFrames.record(counters.malformedFrames)
        unroutableMessages.record(counters.unroutableMessages)
        applyBatches.record(Int(status.applyBatches))
        applyCommits.record(Int(status.applyCommits))
        applyRedone.record(node.state.redoneTransactionCount)
        appliedEntries.record(Int(status.appliedEntries))
        readies.record(Int(status.readies))
        webSocketSessions.record(webSockets)
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
        let started = ContinuousClock.now
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
        metrics.record(route: context.endpointPath ?? "unmatched", status: response.status.code, started: started)
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
