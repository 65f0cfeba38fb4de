import BalancerCore
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization
import Telemetry

/// The balancer's admin port: `GET /metrics` (Prometheus text: per-backend state, requests,
/// failures, ejections, in-flight and open WebSockets; retries and panic routing) and `GET /`
/// (an HTML status page with no external assets: each backend's state and recent transitions).
public enum AdminServer {
    public static func start(policy: Policy, host: String, port: Int, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> Channel {
        let metrics = BalancerMetrics()
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(policy: policy, metrics: metrics))
                }
            }
            .bind(host: host, port: port).get()
    }

    static func statusPage(_ policy: Policy) -> String {
        let snapshot = policy.snapshot
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var rows = ""
        for backend in snapshot.backends {
            let up = backend.state.takesRequests && backend.gossip == .alive
            rows += "<tr class=\"\(up ? "up" : "down")\"><td>\(escape(backend.id))</td><td>\(escape(backend.address))</td><td>\(backend.state)</td>"
            rows += "<td>\(backend.gossip)</td><td>\(backend.inFlight)</td><td>\(backend.webSockets)</td><td>\(backend.requests)</td><td>\(backend.failures)</td><td>\(backend.ejections)</td></tr>\n"
        }
        var transitions = ""
        for transition in snapshot.backends.flatMap(\.transitions).sorted(by: { $0.at > $1.at }).prefix(50) {
            transitions += "<tr><td>\(escape(transition.backend))</td><td>\(transition.from) &rarr; \(transition.to)</td><td>\(escape(transition.reason))</td></tr>\n"
        }
        return """
            <!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>Switchboard balancer</title>
            <style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
            tr.up td:first-child{border-left:4px solid #2a2}tr.down td:first-child{border-left:4px solid #c22}.panic{color:#c22;font-weight:bold}</style></head><body>
            <h1>Switchboard balancer</h1>
            \(snapshot.panic ? "<p class=\"panic\">PANIC: no backend is healthy; every backend takes requests.</p>" : "")
            <p>retries \(snapshot.retries), refused by the budget \(snapshot.retriesRefused), panic routes \(snapshot.panicRoutes), event sockets moved \(snapshot.socketsMoved)</p>
            <table><tr><th>node</th><th>api</th><th>state</th><th>gossip</th><th>in flight</th><th>websockets</th><th>requests</th><th>failures</th><th>ejections</th></tr>
            \(rows)</table>
            <h2>Recent transitions</h2><table><tr><th>node</th><th>change</th><th>reason</th></tr>
            \(transitions)</table></body></html>
            """
    }
}

final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let policy: Policy
    let metrics: BalancerMetrics
    private var head: HTTPRequestHead?

    init(policy: Policy, metrics: BalancerMetrics) {
        self.policy = policy
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            let (status, type, body): (HTTPResponseStatus, String, String) =
                switch (head.method, path) {
                case (.GET, "/metrics"): (.ok, "text/plain; version=0.0.4", metrics.render(policy.snapshot))
                case (.GET, "/"): (.ok, "text/html; charset=utf-8", AdminServer.statusPage(policy))
                default: (.notFound, "text/plain", "not found: the admin port serves / and /metrics\n")
                }
            var response = HTTPResponseHead(version: .http1_1, status: status)
            response.headers.add(name: "content-type", value: type)
            response.headers.add(name: "content-length", value: "\(body.utf8.count)")
            response.headers.add(name: "connection", value: head.isKeepAlive ? "keep-alive" : "close")
            context.write(wrapOutboundOut(.head(response)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            let keepAlive = head.isKeepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
            self.head = nil
        }
    }
}

/// The balancer's metrics on the one metrics path (`Telemetry`): swift-metrics gauges and
/// counters (`_total`) over the balancer's own registry, refreshed from the policy at each
/// scrape. A backend's series go when the policy forgets it.
final class BalancerMetrics: Sendable {
    private struct PerBackend {
        let up, inFlight, webSockets: Metrics.Gauge
        let requests, failures, ejections: RunningTotal
        let counters: [Metrics.Counter]

        init(_ backend: String, factory: PrometheusMetricsFactory) {
            let dimensions = [("backend", backend)]
            func gauge(_ name: String) -> Metrics.Gauge { Metrics.Gauge(label: name, dimensions: dimensions, factory: factory) }
            let counters = ["requests", "failures", "ejections"].map {
                Metrics.Counter(label: "switchboard_balancer_backend_\($0)_total", dimensions: dimensions, factory: factory)
            }
            up = gauge("switchboard_balancer_backend_up")
            inFlight = gauge("switchboard_balancer_backend_in_flight")
            webSockets = gauge("switchboard_balancer_backend_websockets")
            requests = RunningTotal(counters[0])
            failures = RunningTotal(counters[1])
            ejections = RunningTotal(counters[2])
            self.counters = counters
        }

        func destroy() {
            up.destroy()
            inFlight.destroy()
            webSockets.destroy()
            for counter in counters { counter.destroy() }
        }
    }

    private let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let backends = Mutex<[String: PerBackend]>([:])
    private let retries, retriesRefused, socketsMoved, panicRoutes: RunningTotal
    private let panic: Metrics.Gauge

    init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        let factory = Telemetry.factory(registry: registry)
        self.factory = factory
        func total(_ name: String) -> RunningTotal { RunningTotal(Metrics.Counter(label: name, factory: factory)) }
        retries = total("switchboard_balancer_retries_total")
        retriesRefused = total("switchboard_balancer_retries_refused_total")
        socketsMoved = total("switchboard_balancer_websockets_moved_total")
        panicRoutes = total("switchboard_balancer_panic_routes_total")
        panic = Metrics.Gauge(label: "switchboard_balancer_panic", factory: factory)
    }

    /// Per backend: up (takes new requests), in flight, WebSockets open, and requests, failures
    /// (refused, reset, timeout, 5xx) and ejections; retries, retries the budget refused, event
    /// sockets moved, panic mode and the requests it routed.
    func render(_ snapshot: (backends: [Backend], panic: Bool, panicRoutes: Int, retries: Int, retriesRefused: Int, socketsMoved: Int)) -> String {
        backends.withLock { known in
            for backend in snapshot.backends {
                let metrics = known[backend.id] ?? PerBackend(backend.id, factory: factory)
                known[backend.id] = metrics
                metrics.up.record(backend.state.takesRequests && backend.gossip == .alive ? 1 : 0)
                metrics.inFlight.record(backend.inFlight)
                metrics.webSockets.record(backend.webSockets)
                metrics.requests.record(backend.requests)
                metrics.failures.record(backend.failures)
                metrics.ejections.record(backend.ejections)
            }
            let current = Set(snapshot.backends.map(\.id))
            for (id, metrics) in known where !current.contains(id) {
                metrics.destroy()
                known[id] = nil
            }
        }
        retries.record(snapshot.retries)
        retriesRefused.record(snapshot.retriesRefused)
        socketsMoved.record(snapshot.socketsMoved)
        panicRoutes.record(snapshot.panicRoutes)
        panic.record(snapshot.panic ? 1 : 0)
        return String(decoding: registry.emitToBuffer(), as: UTF8.self)
    }
}
