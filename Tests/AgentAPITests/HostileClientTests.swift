import AgentAPI
import ContactCenter
import Foundation
import HTTPTypes
import HummingbirdTesting
import HummingbirdWSTesting
import NIOCore
import NodeRuntime
import XCTest

/// The attacks and accidents reported against a release build, replayed over HTTP: each fails
/// without its fix.
final class HostileClientTests: XCTestCase {
    /// 157 PATCHes of 64 new attribute keys each were all answered 200, and the next read of the
    /// contact trapped the node (and every node a balancer retried it on), again on restart.
    func testAContactPatchStormStopsAtTheBoundAndTheContactStaysReadable() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            let created = try await client.call(.post, "/v1/contacts", body: #"{"name":"Ana"}"#)
            let id = try XCTUnwrap(created.string("id"))
            var statuses: [Int] = []
            var refusal: Reply?
            for round in 0..<157 {
                let attributes = (0..<64).map { "\"k\(round)-\($0)\":\"v\"" }.joined(separator: ",")
                let reply = try await client.call(.patch, "/v1/contacts/\(id)", body: "{\"attributes\":{\(attributes)}}")
                statuses.append(reply.status.code)
                if reply.status != .ok, refusal == nil { refusal = reply }
            }
            XCTAssertEqual(statuses.filter { $0 == 200 }.count, Limits.contactAttributesMax / 64, "statuses: \(Set(statuses))")
            XCTAssertEqual(statuses.filter { $0 == 422 }.count, 157 - Limits.contactAttributesMax / 64)
            XCTAssertEqual(refusal?.errorCode, "limit_exceeded", "\(refusal?.json ?? [:])")
            let message = (refusal?.json["error"] as? [String: Any])?["message"] as? String ?? ""
            XCTAssertTrue(message.contains("\(Limits.contactAttributesMax)") && message.contains("contactAttributesMax"), message)
            let read = try await client.call(.get, "/v1/contacts/\(id)")
            XCTAssertEqual(read.status, .ok)
            XCTAssertEqual((read["attributes"] as? [String: Any])?.count, Limits.contactAttributesMax)
            // One request over the per-request bound is refused at the edge, before proposing.
            let wide = (0...Limits.contactAttributesPerRequestMax).map { "\"w\($0)\":\"v\"" }.joined(separator: ",")
            let edge = try await client.call(.patch, "/v1/contacts/\(id)", body: "{\"attributes\":{\(wide)}}")
            XCTAssertEqual(edge.status, .unprocessableContent, "\(edge.json)")
        }
    }

    /// One key on `POST /v1/contacts`, then on a reply and on a resolve: 500 and then "200,
    /// resolved nothing" before. Now each route is its own scope, the same request replays its
    /// first answer byte for byte, and the same key with another body is 422.
    func testIdempotencyKeysAreScopedAndReplayTheFirstAnswer() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support"}"#)
            let (_, token) = try await client.setUpAgent()
            let inbound = try await client.call(.post, "/v1/channels/whatsapp/messages", body: #"{"from":"+5491155550000","text":"hola","externalId":"wamid.1"}"#)
            let conversation = try XCTUnwrap(inbound.string("conversationId"))
            let key: HTTPFields = [.init("Idempotency-Key")!: "k1"]
            let contact = try await client.call(.post, "/v1/contacts", token: token, body: #"{"name":"Bea"}"#, headers: key)
            XCTAssertEqual(contact.status, .created, "\(contact.json)")
            let reply = try await client.call(.post, "/v1/conversations/\(conversation)/messages", token: token, body: #"{"text":"hola"}"#, headers: key)
            XCTAssertEqual(reply.status, .created, "\(reply.json)")
            let resolve = try await client.call(.post, "/v1/conversations/\(conversation)/resolve", token: token, headers: key)
            XCTAssertEqual(resolve.status, .ok, "\(resolve.json)")
            XCTAssertEqual(resolve.string("status"), "resolved", "the keyed resolve resolved nothing: \(resolve.json)")

            let bytes = { (uri: String, body: String) in
                try await client.execute(uri: uri, method: .post, headers: [.authorization: "Bearer \(token)", .init("Idempotency-Key")!: "k2"],
                                         body: ByteBuffer(string: body)) { ($0.status, $0.headers, String(buffer: $0.body)) }
            }
            let first = try await bytes("/v1/contacts", #"{"name":"Cleo"}"#)
            let again = try await bytes("/v1/contacts", #"{"name":"Cleo"}"#)
            XCTAssertEqual(first.0, .created)
            XCTAssertEqual(again.0, first.0)
            XCTAssertEqual(again.2, first.2, "the replay is not the first answer")
            XCTAssertEqual(again.1[.init("Idempotent-Replayed")!], "true")
            XCTAssertNil(first.1[.init("Idempotent-Replayed")!])
            let other = try await bytes("/v1/contacts", #"{"name":"Dora"}"#)
            XCTAssertEqual(other.0, .unprocessableContent, other.2)
            XCTAssertTrue(other.2.contains("idempotency_key_reused"), other.2)
        }
    }

    /// RFC 9110: `If-Match: *` matches any current version; a tag that names no version of ours
    /// (even one that is not a number) is 412. A customer's follow-up changes the ETag.
    func testIfMatchAndConversationETags() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            let created = try await client.call(.post, "/v1/contacts", body: #"{"name":"Ana"}"#)
            let id = try XCTUnwrap(created.string("id"))
            for (tag, status) in [("*", HTTPResponse.Status.ok), ("\"abc\"", .preconditionFailed), ("abc", .preconditionFailed), ("\"1\"", .preconditionFailed),
                                  ("W/\"2\"", .ok)] {
                let reply = try await client.call(.patch, "/v1/contacts/\(id)", body: #"{"name":"Ana B"}"#, headers: [.ifMatch: tag])
                XCTAssertEqual(reply.status, status, "If-Match: \(tag) -> \(reply.json)")
            }
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support"}"#)
            let inbound = try await client.call(.post, "/v1/channels/sms/messages", body: #"{"from":"+1","text":"hola","externalId":"SM1"}"#)
            let conversation = try XCTUnwrap(inbound.string("conversationId"))
            let before = try await client.call(.get, "/v1/conversations/\(conversation)")
            _ = try await client.call(.post, "/v1/channels/sms/messages", body: #"{"from":"+1","text":"sigo","externalId":"SM2"}"#)
            let after = try await client.call(.get, "/v1/conversations/\(conversation)")
            XCTAssertNotEqual(after.headers[.eTag], before.headers[.eTag], "a follow-up left the ETag at \(before.headers[.eTag] ?? "")")
            XCTAssertEqual((after["messages"] as? [Any])?.count, 2)
        }
    }

    /// Messages page from the newest: the conversation carries the newest page and a cursor to
    /// the older ones.
    func testMessagesPageFromTheNewest() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support"}"#)
            var conversation = ""
            for n in 1...7 {
                let reply = try await client.call(.post, "/v1/channels/sms/messages", body: #"{"from":"+1","text":"m\#(n)","externalId":"SM\#(n)"}"#)
                conversation = try XCTUnwrap(reply.string("conversationId"))
            }
            var texts: [String] = []
            var cursor: String? = nil
            repeat {
                let query = cursor.map { "&before=\($0)" } ?? ""
                let page = try await client.call(.get, "/v1/conversations/\(conversation)/messages?limit=3\(query)")
                XCTAssertEqual(page.status, .ok, "\(page.json)")
                texts = ((page["items"] as? [[String: Any]]) ?? []).compactMap { $0["text"] as? String } + texts
                cursor = page["nextCursor"] as? String
            } while cursor != nil && texts.count < 20
            XCTAssertEqual(texts, (1...7).map { "m\($0)" }, "pages from the newest, each oldest first")
            let bad = try await client.call(.get, "/v1/conversations/\(conversation)/messages?before=ms_nothing")
            XCTAssertEqual(bad.status, .badRequest)
        }
    }

    /// Logout closed nothing before: the socket stayed open, kept the presence lease alive and
    /// got the next customer routed to the agent who had left.
    func testLogoutClosesTheEventSocketWith4401AndNothingIsRoutedAfterwards() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.live) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support"}"#)
            let (agentId, token) = try await client.setUpAgent()
            let closedAfter = ElapsedBox()
            let close = try await client.ws("/v1/events?token=\(token)") { inbound, outbound, _ in
                let watchdog = EventsSocketTests.watchdog(outbound, seconds: 10)
                defer { watchdog.cancel() }
                try await Task.sleep(for: .milliseconds(200))
                let started = ContinuousClock.now
                let logout = try await client.call(.delete, "/v1/sessions/current", token: token)
                XCTAssertEqual(logout.status, .noContent)
                for try await _ in inbound.messages(maxSize: 1 << 20) {}
                closedAfter.set(ContinuousClock.now - started)
            }
            XCTAssertEqual(close?.closeCode, .unknown(4401), "close: \(String(describing: close))")
            XCTAssertLessThan(try XCTUnwrap(closedAfter.get()), .seconds(1), "the socket outlived the logout")
            let agent = try await client.call(.get, "/v1/agents/\(agentId)")
            XCTAssertEqual(agent.string("status"), "offline")
            let inbound = try await client.call(.post, "/v1/channels/sms/messages", body: #"{"from":"+2","text":"hola","externalId":"SM9"}"#)
            let conversation = try await client.call(.get, "/v1/conversations/\(try XCTUnwrap(inbound.string("conversationId")))")
            XCTAssertEqual(conversation.string("status"), "queued", "a new customer was routed to the agent who logged out")
            let reuse = try await client.call(.get, "/v1/agents/me", token: token)
            XCTAssertEqual(reuse.status, .unauthorized)
        }
    }

    /// A disabled agent's socket closes, its token stops working and it cannot log in.
    func testDisablingAnAgentClosesItsSocketAndRefusesItsLogin() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.live) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support"}"#)
            let (agentId, token) = try await client.setUpAgent()
            let close = try await client.ws("/v1/events?token=\(token)") { inbound, outbound, _ in
                let watchdog = EventsSocketTests.watchdog(outbound, seconds: 10)
                defer { watchdog.cancel() }
                let disable = try await client.call(.patch, "/v1/agents/\(agentId)", body: #"{"disabled":true}"#)
                XCTAssertEqual(disable.status, .ok, "\(disable.json)")
                XCTAssertEqual(disable["disabled"] as? Bool, true)
                for try await _ in inbound.messages(maxSize: 1 << 20) {}
            }
            XCTAssertEqual(close?.closeCode, .unknown(4401))
            let after = try await client.call(.get, "/v1/agents/me", token: token)
            XCTAssertEqual(after.status, .unauthorized)
            let login = try await client.call(.post, "/v1/sessions", token: nil, body: #"{"email":"ana@example.com","password":"correct horse"}"#)
            XCTAssertEqual(login.status, .forbidden)
            XCTAssertEqual(login.errorCode, "agent_disabled")
        }
    }
}

/// Carries a duration out of a WebSocket handler closure.
final class ElapsedBox: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var value: Duration?
    func set(_ duration: Duration) { lock.withLock { value = duration } }
    func get() -> Duration? { lock.withLock { value } }
}
