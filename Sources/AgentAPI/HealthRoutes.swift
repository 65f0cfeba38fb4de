import ContactCenter
import Hummingbird
import NIOCore
import NodeRuntime

extension API {
    func addHealthRoutes(to router: Router<APIRequestContext>, metrics: APIMetrics) {
        router.get("/healthz") { _, _ in
            JSONResponse.make(.object(["ok": .bool(true)]))
        }
        router.get("/readyz") { _, _ -> Response in
            // One node is its own leader; it is ready while it can apply and has applied all it holds.
            if let failure = node.failureReason {
                return JSONResponse.make(.object(["ready": .bool(false), "reason": .string(failure)]), status: .serviceUnavailable)
            }
            let applied = node.appliedIndex
            guard applied >= node.lastIndex else {
                return JSONResponse.make(
                    .object(["ready": .bool(false), "reason": .string("applying the log: \(applied) of \(node.lastIndex)")]),
                    status: .serviceUnavailable)
            }
            return JSONResponse.make(.object(["ready": .bool(true), "leader": .string(node.id), "appliedIndex": .int(applied)]))
        }
        router.get("/metrics") { _, _ -> Response in
            let bytes = metrics.render(node: node, webSockets: node.hub.subscriptionCount, views: conversationViews.stats)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get("/v1/cluster") { request, _ -> Response in
            try requireAdmin(try await authenticate(request))
            let applied = node.appliedIndex
            let me: JSONValue = .object([
                "id": .string(node.id), "api": .optional(node.configuration.apiAddress), "gossip": .null,
                "raft": .object([
                    "address": .null, "role": .string("leader"), "voter": .bool(true), "matchIndex": .int(node.lastIndex),
                    "appliedIndex": .int(applied), "lastContactMs": .int(0),
                ]),
            ])
            return JSONResponse.make(.object([
                "self": .string(node.id), "leader": .string(node.id), "term": .int(0), "nodes": .array([me]),
            ]))
        }
    }
}
