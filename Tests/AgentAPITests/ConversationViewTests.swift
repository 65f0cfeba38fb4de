@testable import AgentAPI
import ContactCenter
import Foundation
import HummingbirdTesting
import NIOCore
import NodeRuntime
import Storage
import XCTest

/// Rendered conversation copies never serve a read older than a write it follows.
final class ConversationViewTests: XCTestCase {
    private func view(_ contactId: String = "ct_1", _ text: String = "{}") -> ConversationViews.View {
        .init(body: ByteBuffer(string: text), version: 1, status: .queued, assigneeId: nil, contactId: contactId)
    }

    func testACopyRenderedBeforeACommitIsRefused() {
        let views = ConversationViews()
        let (missed, epoch) = views.lookup("cv_1")
        XCTAssertNil(missed)
        var changes = StateChanges()
        changes.conversationIds = ["cv_other"]
        views.invalidate(changes)  // a commit lands while the miss reads its snapshot
        views.store("cv_1", view(), epoch: epoch)
        XCTAssertNil(views.lookup("cv_1").view, "a copy from before a commit must not be kept")
        XCTAssertEqual(views.stats.refused, 1)

        let (_, fresh) = views.lookup("cv_1")
        views.store("cv_1", view(), epoch: fresh)
        XCTAssertNotNil(views.lookup("cv_1").view)
    }

    func testWritesDropTheirConversationsAndContacts() {
        let views = ConversationViews()
        for (id, contact) in [("cv_1", "ct_1"), ("cv_2", "ct_1"), ("cv_3", "ct_2")] {
            views.store(id, view(contact), epoch: views.lookup(id).epoch)
        }
        var changes = StateChanges()
        changes.contactIds = ["ct_1"]
        views.invalidate(changes)
        XCTAssertNil(views.lookup("cv_1").view, "cv_1 embeds contact ct_1, which changed")
        XCTAssertNil(views.lookup("cv_2").view, "cv_2 embeds contact ct_1, which changed")
        XCTAssertNotNil(views.lookup("cv_3").view)
        changes = StateChanges()
        changes.conversationIds = ["cv_3"]
        views.invalidate(changes)
        XCTAssertNil(views.lookup("cv_3").view)
        XCTAssertEqual(views.stats.entries, 0)
        XCTAssertEqual(views.stats.bytes, 0, "byte accounting returns to zero when empty")
    }

    func testBoundsHold() {
        let views = ConversationViews()
        let big = String(repeating: "x", count: ConversationViews.viewBytesMax + 1)
        views.store("cv_big", view("ct_1", big), epoch: views.lookup("cv_big").epoch)
        XCTAssertNil(views.lookup("cv_big").view, "a body over viewBytesMax is not cached")
        for i in 0...ConversationViews.entriesMax {
            views.store("cv_\(i)", view(), epoch: views.lookup("cv_\(i)").epoch)
        }
        let stats = views.stats
        XCTAssertLessThanOrEqual(stats.entries, ConversationViews.entriesMax)
        XCTAssertEqual(stats.evictions, 1, "\(stats)")
    }

    /// Every kind of write that changes what GET /v1/conversations/{id} shows, each followed by a
    /// read that must show it, over a real node.
    func testEveryWriteIsVisibleToTheNextRead() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support","channels":["whatsapp"]}"#)
            let (_, token) = try await client.setUpAgent()
            let inbound = try await client.call(.post, "/v1/channels/whatsapp/messages", body: #"{"from":"+100","text":"Hola","externalId":"w.1"}"#)
            let id = try XCTUnwrap(inbound.string("conversationId"))
            let path = "/v1/conversations/\(id)"
            func messages() async throws -> Int {
                let reply = try await client.call(.get, path, token: token)
                XCTAssertEqual(reply.status, .ok, "\(reply.json)")
                return (reply["messages"] as? [Any])?.count ?? -1
            }
            let n1 = try await messages(); XCTAssertEqual(n1, 1)
            let n2 = try await messages(); XCTAssertEqual(n2, 1)

            _ = try await client.call(.post, "\(path)/messages", token: token, body: #"{"text":"Hi"}"#)
            let n3 = try await messages(); XCTAssertEqual(n3, 2, "an agent reply shows in the next read")
            _ = try await client.call(.post, "/v1/channels/whatsapp/messages", body: #"{"from":"+100","text":"more","externalId":"w.2"}"#)
            let n4 = try await messages(); XCTAssertEqual(n4, 3, "a customer follow-up shows in the next read")

            let before = try await client.call(.get, path, token: token)
            let contactId = try XCTUnwrap((before["contact"] as? [String: Any])?["id"] as? String)
            let patched = try await client.call(.patch, "/v1/contacts/\(contactId)", token: token, body: #"{"name":"Lucía"}"#)
            XCTAssertEqual(patched.status, .ok, "\(patched.json)")
            let after = try await client.call(.get, path, token: token)
            XCTAssertEqual((after["contact"] as? [String: Any])?["name"] as? String, "Lucía", "a contact edit shows in the next read")

            _ = try await client.call(.post, "\(path)/resolve", token: token)
            let resolved = try await client.call(.get, path, token: token)
            XCTAssertEqual(resolved.string("status"), "resolved")
            XCTAssertEqual(resolved.headers[.eTag], "\"\(resolved["version"] as? Int ?? -1)\"")

            let stats = testNode.api.conversationViews.stats
            XCTAssertGreaterThan(stats.hits, 0, "the repeated read must come from the cache: \(stats)")
        }
    }

    /// Writers post messages while readers read: a read that starts after a write was
    /// acknowledged must include it (linearizable), whatever the cache held.
    func testReadsAfterAcknowledgedWritesUnderConcurrency() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.live) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support","channels":["whatsapp"]}"#)
            let (_, token) = try await client.setUpAgent(capacity: 5)
            var ids: [String] = []
            for i in 0..<4 {
                let inbound = try await client.call(.post, "/v1/channels/whatsapp/messages", body: #"{"from":"+20\#(i)","text":"Hola","externalId":"c.\#(i)"}"#)
                ids.append(try XCTUnwrap(inbound.string("conversationId")))
            }
            let acknowledged = AcknowledgedCounts(ids.count)
            let writesPerConversation = 25
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (slot, id) in ids.enumerated() {
                    group.addTask {
                        for n in 0..<writesPerConversation {
                            let reply = try await client.call(.post, "/v1/conversations/\(id)/messages", token: token, body: #"{"text":"m\#(n)"}"#)
                            XCTAssertEqual(reply.status, .created)
                            acknowledged.set(slot, n + 2)  // the customer's first message + n + 1 replies
                        }
                    }
                    for _ in 0..<2 {
                        group.addTask {
                            while acknowledged.get(slot) < writesPerConversation + 1 {
                                let floor = acknowledged.get(slot)
                                let read = try await client.call(.get, "/v1/conversations/\(id)", token: token)
                                let count = (read["messages"] as? [Any])?.count ?? -1
                                XCTAssertGreaterThanOrEqual(count, floor, "a read of \(id) after \(floor) acknowledged messages saw \(count)")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
    }
}

private final class AcknowledgedCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [Int]
    init(_ n: Int) { counts = Array(repeating: 1, count: n) }
    func set(_ slot: Int, _ value: Int) { lock.withLock { counts[slot] = max(counts[slot], value) } }
    func get(_ slot: Int) -> Int { lock.withLock { counts[slot] } }
}
