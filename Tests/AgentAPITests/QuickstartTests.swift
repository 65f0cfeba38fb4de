import AgentAPI
import Foundation
import HummingbirdTesting
import NodeRuntime
import XCTest

/// README's quickstart, in process: queue, agent, login, available, inbound message, assigned,
/// reply, resolve.
final class QuickstartTests: XCTestCase {
    func testQuickstartFlow() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            let queue = try await client.call(.post, "/v1/queues", body: #"{"name":"support","channels":["whatsapp"]}"#)
            XCTAssertEqual(queue.status, .created)
            let (agentId, token) = try await client.setUpAgent()

            let inbound = try await client.call(.post, "/v1/channels/whatsapp/messages", body: #"{"from":"+5491155","text":"Hola","externalId":"wamid.1"}"#)
            XCTAssertEqual(inbound.status, .accepted, "\(inbound.json)")
            XCTAssertEqual(inbound["duplicate"] as? Bool, false)
            let conversationId = try XCTUnwrap(inbound.string("conversationId"))

            let conversation = try await client.call(.get, "/v1/conversations/\(conversationId)", token: token)
            XCTAssertEqual(conversation.status, .ok)
            XCTAssertEqual(conversation.string("status"), "assigned")
            XCTAssertEqual(conversation.string("assignee"), agentId)
            XCTAssertEqual((conversation["messages"] as? [[String: Any]])?.count, 1)
            XCTAssertEqual(conversation.headers[.init("X-Switchboard-Node")!], "n1")
            XCTAssertNotNil(conversation.headers[.init("X-Switchboard-Index")!].flatMap(Int.init))
            XCTAssertEqual(conversation.headers[.eTag], "\"\(conversation["version"] as? Int ?? -1)\"")

            let reply = try await client.call(.post, "/v1/conversations/\(conversationId)/messages", token: token, body: #"{"text":"¿En qué te ayudo?"}"#)
            XCTAssertEqual(reply.status, .created)
            XCTAssertEqual(reply.string("author"), "agent")

            let me = try await client.call(.get, "/v1/agents/me", token: token)
            XCTAssertEqual(me["openConversations"] as? Int, 1)

            let resolved = try await client.call(.post, "/v1/conversations/\(conversationId)/resolve", token: token)
            XCTAssertEqual(resolved.string("status"), "resolved")
            XCTAssertNotNil(resolved.string("firstResponseAt"))
            let again = try await client.call(.post, "/v1/conversations/\(conversationId)/resolve", token: token)
            XCTAssertEqual(again.status, .conflict)
            XCTAssertEqual(again.errorCode, "already_resolved")

            let list = try await client.call(.get, "/v1/conversations?status=resolved&assignee=me", token: token)
            XCTAssertEqual((list["items"] as? [Any])?.count, 1)

            let logout = try await client.call(.delete, "/v1/sessions/current", token: token)
            XCTAssertEqual(logout.status, .noContent)
            let afterLogout = try await client.call(.get, "/v1/agents/me", token: token)
            XCTAssertEqual(afterLogout.status, .unauthorized)
        }
    }

    func testIdempotencyKeyOverHTTPHasOneEffect() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support"}"#)
            let (_, token) = try await client.setUpAgent()
            let inbound = try await client.call(.post, "/v1/channels/sms/messages", body: #"{"from":"+1","text":"hi","externalId":"SM1"}"#)
            let conversationId = try XCTUnwrap(inbound.string("conversationId"))
            let key: HTTPFields = [.init("Idempotency-Key")!: "reply-1"]
            let first = try await client.call(.post, "/v1/conversations/\(conversationId)/messages", token: token, body: #"{"text":"one"}"#, headers: key)
            let retry = try await client.call(.post, "/v1/conversations/\(conversationId)/messages", token: token, body: #"{"text":"one"}"#, headers: key)
            XCTAssertEqual(first.status, .created)
            XCTAssertEqual(retry.string("id"), first.string("id"), "the retry returns the first message")
            let conversation = try await client.call(.get, "/v1/conversations/\(conversationId)", token: token)
            let agentMessages = (conversation["messages"] as? [[String: Any]] ?? []).filter { $0["author"] as? String == "agent" }
            XCTAssertEqual(agentMessages.count, 1)
            // A redelivered webhook is stored once.
            let redelivered = try await client.call(.post, "/v1/channels/sms/messages", body: #"{"from":"+1","text":"hi","externalId":"SM1"}"#)
            XCTAssertEqual(redelivered["duplicate"] as? Bool, true)
            XCTAssertEqual(redelivered.string("messageId"), inbound.string("messageId"))
        }
    }

    func testHealthReadinessMetricsAndCluster() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            let health = try await client.call(.get, "/healthz", token: nil)
            XCTAssertEqual(health.status, .ok)
            // A single member is ready once it has elected itself (its first election timeout).
            var ready = try await client.call(.get, "/readyz", token: nil)
            for _ in 0..<200 where ready.status != .ok {
                XCTAssertEqual(ready.status, .serviceUnavailable, "before a leader is known /readyz says 503")
                try await Task.sleep(for: .milliseconds(25))
                ready = try await client.call(.get, "/readyz", token: nil)
            }
            XCTAssertEqual(ready["ready"] as? Bool, true, "\(ready.json)")
            XCTAssertEqual(ready.string("leader"), "n1")
            let cluster = try await client.call(.get, "/v1/cluster")
            XCTAssertEqual(cluster.string("self"), "n1")
            XCTAssertEqual((cluster["nodes"] as? [Any])?.count, 1)
            let forbidden = try await client.call(.get, "/v1/cluster", token: "wrong")
            XCTAssertEqual(forbidden.status, .unauthorized)
            let metrics = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            for name in [
                "switchboard_http_requests_total", "switchboard_apply_lag_entries", "switchboard_raft_term", "switchboard_raft_is_leader",
                "switchboard_websocket_sessions", "# TYPE switchboard_http_request_duration_seconds histogram",
                "switchboard_http_request_duration_seconds_bucket{route=\"/v1/cluster\",le=\"0.0005\"}",
                "# TYPE switchboard_applied_entries_total counter", "# TYPE switchboard_raft_readies_total counter",
            ] {
                XCTAssertTrue(metrics.contains(name), "/metrics lacks \(name):\n\(metrics)")
            }
            // A growing count is a counter named `_total`, never a gauge.
            let families = metrics.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ") }
            for family in families where family.count == 4 {
                XCTAssertEqual(family[2].hasSuffix("_total"), family[3] == "counter", "\(family[2]) is a \(family[3])")
            }
        }
    }
}

import HTTPTypes
import NIOCore
