import ContactCenter
import Storage
import XCTest

/// The apply rules (DESIGN.md "Routing", API.md), applied to a real SQLite file.
final class ApplyRulesTests: XCTestCase {
    func testAnAgentWhoseLeaseRanOutGoesOfflineAndItsConversationsAreRequeued() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("gone", capacity: 2)
        let first = try h.inbound(from: "+1")
        let second = try h.inbound(from: "+2")
        XCTAssertEqual(try h.conversation(first).assigneeId, "gone")
        // Each command advances the harness clock by 1 s: the lease lasts 3 more commands.
        let until = Timestamp(milliseconds: h.clock + 3500)
        XCTAssertEqual(try h.apply(.renewLeases(agentIds: ["gone", "no-such-agent"], until: until), actor: .system), .done)
        XCTAssertEqual(try h.apply(.expireLeases(agentIds: ["gone"]), actor: .system), .done)
        XCTAssertEqual(try h.agent("gone").status, .available, "a lease that has not ended is left alone, whatever the leader thought")
        try h.addAgent("backup", capacity: 1)
        XCTAssertEqual(try h.apply(.expireLeases(agentIds: ["gone"]), actor: .system), .done)
        XCTAssertEqual(try h.agent("gone").status, .offline, "the lease ended: the agent is offline")
        XCTAssertEqual(try h.agent("gone").openConversations, 0)
        let assignees = try [first, second].map { try h.conversation($0).assigneeId }
        XCTAssertEqual(assignees.compactMap { $0 }, ["backup"], "one conversation goes to the available agent with capacity; got \(assignees)")
        XCTAssertEqual(try [first, second].map { try h.conversation($0).status }.filter { $0 == .queued }.count, 1, "the other waits in its queue")
        XCTAssertEqual(try h.apply(.expireLeases(agentIds: ["gone"]), actor: .admin), .rejected(DomainError(.forbidden, "forbidden", "only the leader expires presence leases")))
        try h.checkInvariants()
    }

    func testLongestIdleAvailableAgentGetsTheConversation() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("a1")
        try h.addAgent("a2")
        try h.addAgent("a3")
        // a1 became available first: it has been idle longest.
        let first = try h.inbound(from: "+1")
        XCTAssertEqual(try h.conversation(first).assigneeId, "a1")
        let second = try h.inbound(from: "+2")
        XCTAssertEqual(try h.conversation(second).assigneeId, "a2", "a1 was just routed; a2 is now the longest idle")
        let third = try h.inbound(from: "+3")
        XCTAssertEqual(try h.conversation(third).assigneeId, "a3")
        let fourth = try h.inbound(from: "+4")
        XCTAssertEqual(try h.conversation(fourth).assigneeId, "a1", "round comes back to a1")
        try h.checkInvariants()
    }

    func testSkillsDecideWhoCanTakeAQueue() throws {
        let h = try Harness()
        try h.addQueue("billing", skills: ["billing"], channels: [.whatsapp])
        try h.addAgent("generalist", skills: [])
        try h.addAgent("biller", skills: ["billing", "spanish"])
        let id = try h.inbound(from: "+1")
        XCTAssertEqual(try h.conversation(id).assigneeId, "biller", "only biller has the queue's skills")
        XCTAssertEqual(try h.conversation(id).queueId, "billing")
    }

    func testCapacityIsNeverExceededAndWaitingConversationsAreFIFO() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("a", capacity: 1)
        let c1 = try h.inbound(from: "+1")
        let c2 = try h.inbound(from: "+2")
        let c3 = try h.inbound(from: "+3")
        XCTAssertEqual(try h.conversation(c1).status, .assigned)
        XCTAssertEqual(try h.conversation(c2).status, .queued, "agent a is at capacity 1")
        XCTAssertEqual(try h.conversation(c3).status, .queued)
        XCTAssertEqual(try h.agent("a").openConversations, 1)
        // Resolving frees capacity: the oldest waiting conversation (c2, not c3) is assigned at once.
        XCTAssertEqual(try h.apply(.resolve(conversationId: c1), actor: .agent(id: "a")), .conversation(id: c1))
        XCTAssertEqual(try h.conversation(c2).assigneeId, "a")
        XCTAssertEqual(try h.conversation(c3).status, .queued)
        try h.checkInvariants()
    }

    func testHigherPriorityQueueIsServedFirstWhenAnAgentFreesUp() throws {
        let h = try Harness()
        try h.addQueue("low", priority: 0, channels: [.sms])
        try h.addQueue("high", priority: 5, channels: [.whatsapp])
        try h.addAgent("a", capacity: 1, available: false)
        let older = try h.inbound(from: "+1", channel: .sms)
        let newerButUrgent = try h.inbound(from: "+2", channel: .whatsapp)
        try h.apply(.setPresence(agentId: "a", status: .available), actor: .agent(id: "a"))
        XCTAssertEqual(try h.conversation(newerButUrgent).assigneeId, "a")
        XCTAssertEqual(try h.conversation(older).status, .queued)
    }

    func testGoingAvailableTakesWaitingConversationsUpToCapacity() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("a", capacity: 2, available: false)
        let ids = try (1...3).map { try h.inbound(from: "+\($0)") }
        XCTAssertTrue(try ids.allSatisfy { try h.conversation($0).status == .queued })
        try h.apply(.setPresence(agentId: "a", status: .available), actor: .agent(id: "a"))
        XCTAssertEqual(try ids.map { try h.conversation($0).assigneeId }, ["a", "a", nil])
        XCTAssertEqual(try h.agent("a").openConversations, 2)
        try h.checkInvariants()
    }

    func testSupervisorAssignmentRespectsCapacityAndMovesOpenCounts() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("a", capacity: 1)
        try h.addAgent("b", capacity: 1)
        let c1 = try h.inbound(from: "+1")
        let c2 = try h.inbound(from: "+2")
        XCTAssertEqual(try h.conversation(c1).assigneeId, "a")
        XCTAssertEqual(try h.conversation(c2).assigneeId, "b")
        let full = try h.apply(.assign(conversationId: c1, agentId: "b", queueId: nil))
        guard case .rejected(let error) = full else { return XCTFail("assigning to a full agent gave \(full)") }
        XCTAssertEqual(error.code, "at_capacity")
        XCTAssertEqual(try h.conversation(c1).assigneeId, "a", "a rejected assignment changes nothing")
        // An agent may not take a conversation that is already assigned.
        let steal = try h.apply(.assign(conversationId: c2, agentId: "a", queueId: nil), actor: .agent(id: "a"))
        guard case .rejected(let stealError) = steal else { return XCTFail("stealing gave \(steal)") }
        XCTAssertEqual(stealError.code, "not_waiting", "an agent may only take a waiting conversation")
        try h.checkInvariants()
    }

    func testTheAssigneeTransfersToAColleagueOrAQueueAndNoOneElseMay() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addQueue("billing")
        try h.addAgent("a", capacity: 1)
        try h.addAgent("b", capacity: 2)
        try h.addAgent("c", capacity: 1)
        let c1 = try h.inbound(from: "+1"), c2 = try h.inbound(from: "+2"), c3 = try h.inbound(from: "+3")
        XCTAssertEqual(try [c1, c2, c3].map { try h.conversation($0).assigneeId }, ["a", "b", "c"])
        func refused(_ command: Command, by actor: Actor, _ code: String, _ why: String) throws {
            let outcome = try h.apply(command, actor: actor)
            guard case .rejected(let error) = outcome else { return XCTFail("\(why): gave \(outcome)") }
            XCTAssertEqual(error.code, code, why)
        }
        try refused(.transfer(conversationId: c1, agentId: "b", queueId: nil), by: .agent(id: "c"), "not_assignee",
                    "an agent may not transfer a colleague's conversation")
        try refused(.transfer(conversationId: c1, agentId: "c", queueId: nil), by: .agent(id: "a"), "at_capacity",
                    "a transfer respects the colleague's capacity")
        try refused(.transfer(conversationId: c1, agentId: "b", queueId: "q"), by: .agent(id: "a"), "invalid_field",
                    "a transfer names an agent or a queue, not both")
        try refused(.transfer(conversationId: c1, agentId: nil, queueId: nil), by: .agent(id: "a"), "invalid_field",
                    "a transfer names an agent or a queue")
        try refused(.transfer(conversationId: c1, agentId: "b", queueId: nil), by: .channel, "forbidden", "the channel token transfers nothing")
        XCTAssertEqual(try h.conversation(c1).assigneeId, "a", "refused transfers change nothing")

        XCTAssertEqual(try h.apply(.transfer(conversationId: c1, agentId: "b", queueId: nil), actor: .agent(id: "a")), .conversation(id: c1))
        XCTAssertEqual(try h.conversation(c1).assigneeId, "b", "the assignee handed it to a colleague")
        XCTAssertEqual(try ["a", "b"].map { try h.agent($0).openConversations }, [0, 2])
        try refused(.transfer(conversationId: c1, agentId: "a", queueId: nil), by: .agent(id: "a"), "not_assignee",
                    "the previous assignee cannot take it back")

        XCTAssertEqual(try h.apply(.transfer(conversationId: c2, agentId: nil, queueId: "billing"), actor: .agent(id: "b")), .conversation(id: c2))
        let moved = try h.conversation(c2)
        XCTAssertEqual(moved.queueId, "billing", "back to the queue named")
        XCTAssertEqual(moved.status, .assigned, "and routed again at once (an agent has room): \(moved.status)")

        // A supervisor (here the admin token) transfers any open conversation; none may move a resolved one.
        try h.addAgent("d", capacity: 1)
        XCTAssertEqual(try h.apply(.transfer(conversationId: c3, agentId: "d", queueId: nil)), .conversation(id: c3))
        XCTAssertEqual(try h.conversation(c3).assigneeId, "d")
        XCTAssertEqual(try h.apply(.resolve(conversationId: c3)), .conversation(id: c3))
        try refused(.transfer(conversationId: c3, agentId: "c", queueId: nil), by: .admin, "conversation_resolved", "a resolved conversation stays")
        try h.checkInvariants()
    }

    func testKeywordRulesReplyRouteAndHandoff() throws {
        let h = try Harness()
        try h.addQueue("general", channels: [.whatsapp])
        try h.addQueue("billing", skills: ["billing"])
        try h.addAgent("biller", skills: ["billing"])
        try h.apply(.createRule(id: "r1", name: "hours", keywords: ["horario"], action: .reply, reply: "9 a 18 hs", queueId: nil, order: 1))
        try h.apply(.createRule(id: "r2", name: "invoice", keywords: ["factura", "invoice"], action: .route, reply: nil, queueId: "billing", order: 2))
        try h.apply(.createRule(id: "r3", name: "human", keywords: ["hablar con alguien"], action: .handoff, reply: "Te paso con una persona", queueId: "billing", order: 3))

        let bot = try h.inbound(from: "+1", text: "¿Cuál es el HORARIO?")
        XCTAssertEqual(try h.conversation(bot).status, .bot, "a reply rule keeps the conversation with the bot")
        let routed = try h.inbound(from: "+2", text: "Necesito mi FACTURA.")
        XCTAssertEqual(try h.conversation(routed).queueId, "billing")
        XCTAssertEqual(try h.conversation(routed).assigneeId, "biller")
        let handoff = try h.inbound(from: "+3", text: "quiero hablar con alguien ya")
        XCTAssertEqual(try h.conversation(handoff).queueId, "billing")
        let unmatched = try h.inbound(from: "+4", text: "facturación pendiente")
        XCTAssertEqual(try h.conversation(unmatched).queueId, "general", "'facturación' is not the word 'factura'")
        // The bot conversation's next unmatched message goes to a human queue.
        XCTAssertEqual(try h.inbound(from: "+1", text: "gracias"), bot)
        XCTAssertEqual(try h.conversation(bot).status, .queued)
        let botMessages = try h.state.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM messages WHERE author = 'bot'") }
        XCTAssertEqual(botMessages, 2, "one reply for 'horario', one for the handoff")
    }

    func testRedeliveredWebhookIsStoredOnce() throws {
        let h = try Harness()
        try h.addQueue("q")
        let first = try h.apply(h.envelope(
            .inboundMessage(channel: .sms, from: "+1", text: "hi", externalId: "SM1", name: nil, contactId: "ct1", conversationId: "cv1", messageId: "ms1"),
            actor: .channel))
        let again = try h.apply(h.envelope(
            .inboundMessage(channel: .sms, from: "+1", text: "hi", externalId: "SM1", name: nil, contactId: "ct2", conversationId: "cv2", messageId: "ms2"),
            actor: .channel))
        XCTAssertEqual(first, .inbound(conversationId: "cv1", messageId: "ms1", duplicate: false))
        XCTAssertEqual(again, .inbound(conversationId: "cv1", messageId: "ms1", duplicate: true))
        let messages = try h.state.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM messages") }
        XCTAssertEqual(messages, 1)
    }

    func testIdempotencyKeyReturnsTheFirstOutcomeWithoutASecondEffect() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("a", capacity: 5)
        let conversation = try h.inbound(from: "+1")
        let post = Command.postMessage(conversationId: conversation, messageId: "m1", text: "hola", isPrivate: false)
        XCTAssertEqual(try h.apply(post, actor: .agent(id: "a"), key: "k1"), .message(conversationId: conversation, messageId: "m1"))
        let retry = Command.postMessage(conversationId: conversation, messageId: "m2", text: "hola", isPrivate: false)
        XCTAssertEqual(try h.apply(retry, actor: .agent(id: "a"), key: "k1"), .message(conversationId: conversation, messageId: "m1"))
        let count = try h.state.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM messages WHERE author = 'agent'") }
        XCTAssertEqual(count, 1, "the retry must not post a second message")
        // The same key from another actor is a different request.
        try h.addAgent("sup", role: .supervisor)
        XCTAssertEqual(try h.apply(retry, actor: .agent(id: "sup"), key: "k1"), .message(conversationId: conversation, messageId: "m2"))
    }

    func testIllegalTransitionsAreRejectedAndChangeNothing() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("a")
        let id = try h.inbound(from: "+1")
        try h.apply(.resolve(conversationId: id), actor: .agent(id: "a"))
        let before = try h.state.dump()
        for (command, code) in [
            (Command.resolve(conversationId: id), "already_resolved"),
            (.postMessage(conversationId: id, messageId: "m", text: "x", isPrivate: false), "conversation_resolved"),
            (.resolve(conversationId: "nope"), "conversation_not_found"),
            (.assign(conversationId: id, agentId: "a", queueId: nil), "not_waiting"),
            (.updateContact(id: "nope", name: nil, attributes: [:], expectedVersion: nil), "contact_not_found"),
        ] {
            let outcome = try h.apply(command, actor: .agent(id: "a"))
            guard case .rejected(let error) = outcome else { XCTFail("\(command) gave \(outcome)"); continue }
            XCTAssertEqual(error.code, code, "\(command)")
        }
        let after = try h.state.dump()
        XCTAssertEqual(
            before.split(separator: "\n").filter { !$0.contains("applied_index") },
            after.split(separator: "\n").filter { !$0.contains("applied_index") },
            "rejected commands changed state")
    }

    func testContactVersionAndIfMatch() throws {
        let h = try Harness()
        try h.apply(.createContact(id: "c", name: "Ana", identifiers: ["email": "ana@example.com"], attributes: ["plan": "gold"]))
        XCTAssertEqual(try h.apply(.updateContact(id: "c", name: nil, attributes: ["plan": nil, "tier": "1"], expectedVersion: 1)), .contact(id: "c"))
        let stale = try h.apply(.updateContact(id: "c", name: "x", attributes: [:], expectedVersion: 1))
        guard case .rejected(let error) = stale else { return XCTFail("stale update gave \(stale)") }
        XCTAssertEqual(error.kind, .preconditionFailed)
        let contact = try XCTUnwrap(try h.state.pool.read { try SQLiteStore($0).contact(id: "c") })
        XCTAssertEqual(contact.attributes, ["tier": "1"], "null deletes a key, others merge")
        XCTAssertEqual(contact.version, 2)
        let taken = try h.apply(.createContact(id: "d", name: "B", identifiers: ["email": "ana@example.com"], attributes: [:]))
        guard case .rejected(let takenError) = taken else { return XCTFail("duplicate identifier gave \(taken)") }
        XCTAssertEqual(takenError.code, "identifier_taken")
    }

    func testEventsCarryCursorsInLogOrderAndTrimForgetsOldOnes() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("a")
        _ = try h.inbound(from: "+1")
        let cursors = h.events.map(\.cursor)
        XCTAssertEqual(cursors, cursors.sorted(), "events come in cursor order")
        XCTAssertEqual(Set(cursors).count, cursors.count, "cursors are unique")
        XCTAssertTrue(h.events.contains { $0.type == .conversationAssigned && $0.audienceAgentId == "a" })
        let last = h.index
        try h.apply(.trimEvents(beforeIndex: last), actor: .system)
        let left = try h.state.pool.read { try Int64.fetchOne($0, sql: "SELECT min(log_index) FROM events") }
        XCTAssertGreaterThanOrEqual(left ?? last, last)
    }
}

import GRDB
