import BalancerCore
import NIOCore
import NIOHTTP1
import NIOPosix

/// The balancer's admin port: `GET /metrics` (Prometheus text: per-backend state, requests,
/// failures, ejections, in-flight and open WebSockets; retries and panic routing) and `GET /`
/// (an HTML status page with no external assets: each backend's state and recent transitions).
public enum AdminServer {
    public static func start(policy: Policy, host: String, port: Int, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(policy: policy))
                }
            }
            .bind(host: host, port: port).get()
    }

    static func metrics(_ policy: Policy) -> String {
        let snapshot = policy.snapshot
        var lines: [String] = []
        func family(_ name: String, _ type: String, _ help: String, _ values: [(String?, Int)]) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            for (backend, value) in values { lines.append(backend.map { "\(name){backend=\"\($0)\"} \(value)" } ?? "\(name) \(value)") }
        }
        let backends = snapshot.backends
        family("switchboard_balancer_backend_up", "gauge", "1 when the backend takes new requests.", backends.map { ($0.id, $0.state.takesRequests && $0.gossip == .alive ? 1 : 0) })
        family("switchboard_balancer_backend_in_flight", "gauge", "Requests in flight to the backend.", backends.map { ($0.id, $0.inFlight) })
        family("switchboard_balancer_backend_websockets", "gauge", "WebSockets open through the backend.", backends.map { ($0.id, $0.webSockets) })
        family("switchboard_balancer_backend_requests_total", "counter", "Requests sent to the backend.", backends.map { ($0.id, $0.requests) })
        family("switchboard_balancer_backend_failures_total", "counter", "Requests that failed on the backend (refused, reset, timeout, 5xx).", backends.map { ($0.id, $0.failures) })
        family("switchboard_balancer_backend_ejections_total", "counter", "Times the backend was ejected.", backends.map { ($0.id, $0.ejections) })
        family("switchboard_balancer_retries_total", "counter", "Requests retried on another backend.", [(nil, snapshot.retries)])
        family("switchboard_balancer_retries_refused_total", "counter", "Retries the budget refused.", [(nil, snapshot.retriesRefused)])
        family("switchboard_balancer_websockets_moved_total", "counter", "Event sockets closed to move their clients to a node holding fewer.", [(nil, snapshot.socketsMoved)])
        family("switchboard_balancer_panic", "gauge", "1 while no backend is eligible and every one takes requests.", [(nil, snapshot.panic ? 1 : 0)])
        family("switchboard_balancer_panic_routes_total", "counter", "Requests routed in panic mode.", [(nil, snapshot.panicRoutes)])
        return lines.joined(separator: "\n") + "\n"
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
    private var head: HTTPRequestHead?

    init(policy: Policy) { self.policy = policy }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            let (status, type, body): (HTTPResponseStatus, String, String) =
                switch (head.method, path) {
                case (.GET, "/metrics"): (.ok, "text/plain; version=0.0.4", AdminServer.metrics(policy))
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
