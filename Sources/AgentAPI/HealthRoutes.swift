import ContactCenter
import Hummingbird
import NIOCore
import NodeRuntime

private struct AddNodeBody: Decodable {
    var id: String
    var peer: String
    var api: String?
    var voter: Bool?
}

private struct TransferBody: Decodable {
    var to: String?
}

extension API {
    func addHealthRoutes(to router: Router<APIRequestContext>, metrics: APIMetrics) {
        router.get("/openapi.json") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        router.get("/healthz") { _, _ in
            JSONResponse.make(.object(["ok": .bool(true)]))
        }
        router.get("/readyz") { _, _ -> Response in
            let (ready, reason) = node.membership.readiness
            guard ready else {
                return JSONResponse.make(
                    .object(["ready": .bool(false), "reason": .string(reason ?? "not ready")]), status: .serviceUnavailable,
                    headers: [.retryAfter: "1"])
            }
            return JSONResponse.make(.object([
                "ready": .bool(true), "leader": .optional(node.loop.status.leader), "appliedIndex": .int(node.appliedIndex),
            ]))
        }
        router.get("/metrics") { _, _ -> Response in
            let bytes = metrics.render(node: node, webSockets: node.hub.subscriptionCount, views: conversationViews.stats)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get("/v1/cluster") { request, _ -> Response in
            try requireAdmin(try await authenticate(request))
            switch request.uri.queryParameters.get("members") {
            case nil: return JSONResponse.make(Self.render(node.membership.clusterView()))
            case "ask":
                // Each member answers for itself over the peer link (the operations view).
                return JSONResponse.make(Self.render(await node.membership.clusterView(askingMembersFor: Self.memberAnswerWait)))
            case let other?:
                throw APIError.invalid("members must be 'ask' (each member reports itself) or absent; got '\(other.prefix(40))'", field: "members")
            }
        }
        router.post("/v1/cluster/nodes") { request, context -> Response in
            try requireAdmin(try await authenticate(request))
            let body = try await request.decodeJSON(AddNodeBody.self, context: context)
            guard Membership.validMemberId(body.id) else {
                throw APIError.invalid("id must be 1-64 letters, digits, '-', '_' or '.'", field: "id")
            }
            guard HostPort.isValidMemberAddress(body.peer) else { throw APIError.invalid("peer must be host:port", field: "peer") }
            if let api = body.api, !HostPort.isValidMemberAddress(api) { throw APIError.invalid("api must be host:port", field: "api") }
            try await node.membership.addMember(id: body.id, peer: body.peer, api: body.api ?? "", voter: body.voter ?? true)
            return JSONResponse.make(Self.render(node.membership.clusterView()), status: .created)
        }
        router.delete("/v1/cluster/nodes/:id") { request, context -> Response in
            try requireAdmin(try await authenticate(request))
            let id = try context.parameters.require("id")
            try await node.membership.removeMember(id: id)
            return JSONResponse.make(Self.render(node.membership.clusterView()))
        }
        router.post("/v1/cluster/leader") { request, context -> Response in
            try requireAdmin(try await authenticate(request))
            let body = try await request.decodeJSON(TransferBody.self, context: context)
            try await node.membership.transferLeadership(to: body.to)
            return JSONResponse.make(Self.render(node.membership.clusterView()))
        }
    }

    /// How long `GET /v1/cluster?members=ask` waits for a member's own account.
    static let memberAnswerWait: Duration = .milliseconds(250)

    static func render(_ view: ClusterView) -> JSONValue {
        var nodes: [JSONValue] = []
        for member in view.nodes {
            var raft: [String: JSONValue] = [:]
            raft["address"] = .optional(member.peer)
            raft["role"] = .string(member.role)
            raft["voter"] = .bool(member.voter)
            raft["matchIndex"] = member.matchIndex.map(JSONValue.int) ?? .null
            raft["appliedIndex"] = member.appliedIndex.map(JSONValue.int) ?? .null
            raft["lastContactMs"] = member.lastContactMs.map(JSONValue.int) ?? .null
            raft["reported"] = member.reported.map { reported in
                .object([
                    "role": .string(reported.role), "term": .int(Int64(reported.term)), "commitIndex": .int(Int64(reported.commitIndex)),
                    "appliedIndex": .int(Int64(reported.appliedIndex)), "leader": .optional(reported.leader),
                ])
            } ?? .null
            let gossip: JSONValue = member.gossip.map { gossip in
                .object(["address": .string(gossip.address), "status": .string(gossip.status), "incarnation": .int(Int64(gossip.incarnation))])
            } ?? .null
            nodes.append(.object(["id": .string(member.id), "api": .optional(member.api), "gossip": gossip, "raft": .object(raft)]))
        }
        var object: [String: JSONValue] = [:]
        object["self"] = .string(view.`self`)
        object["leader"] = .optional(view.leader)
        object["term"] = .int(Int64(view.term))
        object["commitIndex"] = .int(Int64(view.commitIndex))
        object["nodes"] = .array(nodes)
        object["balancerPage"] = .optional(view.balancerPage)
        object["recentChanges"] = .array(view.recentChanges.reversed().map { change in
            .object([
                "at": .timestamp(change.at), "kind": .string(change.kind), "member": .string(change.member),
                "from": .optional(change.from), "to": .string(change.to),
            ])
        })
        return .object(object)
    }
}

extension HostPort {
    /// A member address an admin may give: `host:port` with a real port, at most 255 bytes.
    static func isValidMemberAddress(_ text: String) -> Bool {
        guard text.utf8.count <= 255, let address = HostPort(text) else { return false }
        return address.port > 0
    }
}
