import ContactCenter
import Foundation
import GRDB
import Storage
import XCTest

/// Idempotency keys scoped as Stripe scopes them, and sessions that end everywhere at once.
final class IdempotencyAndSessionTests: XCTestCase {
    private func keyed(_ key: String, _ route: String, body: String) -> Idempotency {
        Idempotency(key: key, route: route, requestHash: Array(body.utf8.prefix(32)) + Array(repeating: 0, count: max(0, 32 - body.utf8.count)))
    }

    private func apply(_ harness: Harness, _ command: Command, actor: Actor, _ idempotency: Idempotency, at: Int64? = nil) throws -> (Outcome, [Event]) {
        var envelope = harness.envelope(command, actor: actor)
        envelope.idempotency = idempotency
        if let at { envelope.at = Timestamp(milliseconds: at) }
        let before = harness.events.count
        let outcome = try harness.apply(envelope)
        return (outcome, Array(harness.events[before...]))
    }

    /// The reported defect: one key used on `POST /v1/contacts`, then on a message and on a
    /// resolve, answered 500 and then "200, resolved nothing". Each route is its own scope now.
    func testOneKeyOnTwoRoutesIsTwoRequests() throws {
        let h = try Harness()
        try h.addAgent("a", capacity: 5)
        let conversation = try h.inbound(from: "+1")
        let (created, _) = try apply(h, .createContact(id: "ct_9", name: "Bea", identifiers: [:], attributes: [:]), actor: .agent(id: "a"),
                                     keyed("k1", "POST /v1/contacts", body: "{\"name\":\"Bea\"}"))
        guard case .answered(let answer) = created else { return XCTFail("\(created)") }
        XCTAssertEqual(answer.status, 201)
        XCTAssertTrue(answer.body.contains("\"id\":\"ct_9\""), answer.body)
        let (resolved, events) = try apply(h, .resolve(conversationId: conversation), actor: .agent(id: "a"),
                                           keyed("k1", "POST /v1/conversations/\(conversation)/resolve", body: ""))
        guard case .answered(let resolveAnswer) = resolved else { return XCTFail("\(resolved)") }
        XCTAssertEqual(resolveAnswer.status, 200, resolveAnswer.body)
        XCTAssertFalse(events.isEmpty, "the resolve had no effect")
        XCTAssertEqual(try h.conversation(conversation).status, .resolved)
    }

    func testTheSameRequestReplaysTheFirstAnswerAndAnotherBodyIsRefused() throws {
        let h = try Harness()
        try h.addAgent("a", capacity: 5)
        let conversation = try h.inbound(from: "+1")
        let route = "POST /v1/conversations/\(conversation)/messages"
        let (first, _) = try apply(h, .postMessage(conversationId: conversation, messageId: "m1", text: "hola", isPrivate: false),
                                   actor: .agent(id: "a"), keyed("k", route, body: "hola"))
        // A retry carries fresh ids (the node makes them per request): the first answer stands.
        let (again, againEvents) = try apply(h, .postMessage(conversationId: conversation, messageId: "m2", text: "hola", isPrivate: false),
                                             actor: .agent(id: "a"), keyed("k", route, body: "hola"))
        XCTAssertEqual(again, first, "the retry's answer differs from the first")
        XCTAssertTrue(againEvents.isEmpty)
        let (other, _) = try apply(h, .postMessage(conversationId: conversation, messageId: "m3", text: "chau", isPrivate: false),
                                   actor: .agent(id: "a"), keyed("k", route, body: "chau"))
        XCTAssertEqual(other.rejectionCode, "idempotency_key_reused", "\(other)")
        let count = try h.state.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM messages WHERE author = 'agent'") }
        XCTAssertEqual(count, 1)
        // A rejection is an answer too, and is replayed as such.
        let (missing, _) = try apply(h, .resolve(conversationId: "cv_none"), actor: .agent(id: "a"), keyed("k2", "POST /v1/conversations/cv_none/resolve", body: ""))
        guard case .answered(let answer) = missing else { return XCTFail("\(missing)") }
        XCTAssertEqual(answer.status, 404, answer.body)
        XCTAssertTrue(answer.body.contains("conversation_not_found"), answer.body)
    }

    /// Keys live 24 hours of command time; the leader's expiry command forgets older ones.
    func testKeysExpireAfterTheirLifetime() throws {
        let h = try Harness()
        try h.addAgent("a", capacity: 5)
        let conversation = try h.inbound(from: "+1")
        let route = "POST /v1/conversations/\(conversation)/messages"
        let start = h.clock + 1000
        _ = try apply(h, .postMessage(conversationId: conversation, messageId: "m1", text: "hola", isPrivate: true), actor: .agent(id: "a"),
                      keyed("k", route, body: "x"), at: start)
        let later = start + Limits.idempotencyKeyLifetimeMilliseconds + 1
        let (fresh, events) = try apply(h, .postMessage(conversationId: conversation, messageId: "m2", text: "hola", isPrivate: true),
                                        actor: .agent(id: "a"), keyed("k", route, body: "x"), at: later)
        guard case .answered(let answer) = fresh, answer.body.contains("\"id\":\"m2\"") else { return XCTFail("an expired key replayed: \(fresh)") }
        XCTAssertFalse(events.isEmpty)
        var purge = h.envelope(.expire(warnSessionsThrough: Timestamp(milliseconds: later)), actor: .system)
        purge.at = Timestamp(milliseconds: later + Limits.idempotencyKeyLifetimeMilliseconds + 1)
        try h.apply(purge)
        XCTAssertEqual(try h.state.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM idempotency") }, 0)
    }

    func testLogoutEndsTheSessionAndTheLastOneTakesTheAgentOffline() throws {
        let h = try Harness()
        try h.addAgent("a", capacity: 5)
        let far = Timestamp(milliseconds: h.clock + 3_600_000)
        try h.apply(.createSession(tokenHash: "t1", agentId: "a", expiresAt: far), actor: .agent(id: "a"))
        try h.apply(.createSession(tokenHash: "t2", agentId: "a", expiresAt: far), actor: .agent(id: "a"))
        let before = h.events.count
        try h.apply(.deleteSession(tokenHash: "t1"), actor: .agent(id: "a"))
        XCTAssertEqual(h.events[before...].map(\.type), [.sessionEnded])
        XCTAssertEqual(try h.agent("a").status, .available, "another session is still open")
        try h.apply(.deleteSession(tokenHash: "t2"), actor: .agent(id: "a"))
        XCTAssertEqual(try h.agent("a").status, .offline, "the agent logged out everywhere but stays available for routing")
        let conversation = try h.inbound(from: "+2")
        XCTAssertNil(try h.conversation(conversation).assigneeId, "a conversation was routed to an agent who logged out")
    }

    func testDisablingAnAgentEndsEverySessionAndRequeuesItsConversations() throws {
        let h = try Harness()
        try h.addAgent("a", capacity: 5)
        try h.addAgent("b", capacity: 5)
        try h.apply(.setPresence(agentId: "b", status: .away), actor: .agent(id: "b"))
        try h.apply(.createSession(tokenHash: "t1", agentId: "a", expiresAt: Timestamp(milliseconds: h.clock + 3_600_000)), actor: .agent(id: "a"))
        let conversation = try h.inbound(from: "+1")
        XCTAssertEqual(try h.conversation(conversation).assigneeId, "a")
        try h.apply(.updateAgent(id: "a", name: nil, role: nil, skills: nil, capacity: nil, expectedVersion: nil, passwordHash: nil, disabled: true))
        XCTAssertTrue(try h.agent("a").disabled)
        XCTAssertEqual(try h.agent("a").status, .offline)
        XCTAssertEqual(try h.conversation(conversation).status, .queued)
        XCTAssertEqual(try h.state.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM sessions WHERE agent_id = 'a'") }, 0)
        XCTAssertEqual(try h.apply(.setPresence(agentId: "a", status: .available), actor: .admin).rejectionCode, "agent_disabled")
        XCTAssertEqual(
            try h.apply(.createSession(tokenHash: "t9", agentId: "a", expiresAt: Timestamp(milliseconds: h.clock + 3_600_000)), actor: .agent(id: "a"))
                .rejectionCode, "agent_disabled")
        try h.checkInvariants()
    }

    func testAPasswordChangeEndsEverySessionAndLoginsPastTheBoundEndTheOldest() throws {
        let h = try Harness()
        try h.addAgent("a")
        let far = Timestamp(milliseconds: h.clock + 3_600_000)
        for number in 0...Limits.sessionsPerAgentMax {
            try h.apply(.createSession(tokenHash: "t\(number)", agentId: "a", expiresAt: far), actor: .agent(id: "a"))
        }
        let hashes = try h.state.pool.read { try SQLiteStore($0).sessionTokenHashes(agentId: "a") }
        XCTAssertEqual(hashes.count, Limits.sessionsPerAgentMax)
        XCTAssertFalse(hashes.contains("t0"), "the oldest session outlived the bound")
        try h.apply(.updateAgent(id: "a", name: nil, role: nil, skills: nil, capacity: nil, expectedVersion: nil, passwordHash: "new", disabled: nil))
        XCTAssertEqual(try h.state.pool.read { try SQLiteStore($0).sessionTokenHashes(agentId: "a") }, [])
        XCTAssertEqual(try h.agent("a").passwordHash, "new")
    }

    /// The expiry timer ends expired sessions and warns the ones about to expire, once each.
    func testExpiryEndsSessionsAndWarnsOnce() throws {
        let h = try Harness()
        try h.addAgent("a")
        try h.addAgent("b")
        let now = h.clock
        try h.apply(.createSession(tokenHash: "ta", agentId: "a", expiresAt: Timestamp(milliseconds: now + 5_000)), actor: .agent(id: "a"))
        try h.apply(.createSession(tokenHash: "tb", agentId: "b", expiresAt: Timestamp(milliseconds: now + 300_000)), actor: .agent(id: "b"))
        var first = h.envelope(.expire(warnSessionsThrough: Timestamp(milliseconds: now + 600_000)), actor: .system)
        first.at = Timestamp(milliseconds: now + 2_000)
        var count = h.events.count
        try h.apply(first)
        XCTAssertEqual(h.events[count...].map { "\($0.type.rawValue) \($0.audienceAgentId ?? "")" }, ["session.expiring a", "session.expiring b"])
        var second = h.envelope(.expire(warnSessionsThrough: Timestamp(milliseconds: now + 610_000)), actor: .system)
        second.at = Timestamp(milliseconds: now + 10_000)
        count = h.events.count
        try h.apply(second)
        XCTAssertEqual(h.events[count...].map { "\($0.type.rawValue) \($0.audienceAgentId ?? "")" }, ["session.ended a", "agent.updated a"])
        XCTAssertEqual(try h.agent("a").status, .offline)
        XCTAssertEqual(try h.agent("b").status, .available)
    }

    /// A login's hash upgrade lands only over the hash it verified, only from that agent's own
    /// login, and changes nothing a client sees (no version, no event, sessions hold).
    func testAPasswordHashUpgradeLandsOnlyOverTheHashItVerified() throws {
        let h = try Harness()
        try h.addAgent("a")
        XCTAssertEqual(try h.apply(.createSession(tokenHash: "t1", agentId: "a", expiresAt: Timestamp(milliseconds: h.clock + 3_600_000)), actor: .agent(id: "a")), .session(agentId: "a"))
        let before = try h.agent("a")
        let eventsBefore = h.events.count
        XCTAssertEqual(try h.apply(.upgradePasswordHash(agentId: "a", from: "x", to: "stronger"), actor: .agent(id: "a")), .done)
        let after = try h.agent("a")
        XCTAssertEqual(after.passwordHash, "stronger")
        XCTAssertEqual(after.version, before.version, "an upgrade is not a change a client sees")
        XCTAssertEqual(h.events.count, eventsBefore, "no event, so no socket closes")
        XCTAssertNotNil(try h.state.pool.read { try String.fetchOne($0, sql: "SELECT agent_id FROM sessions WHERE token_hash = 't1'") })
        // A password changed in between wins: an upgrade over another hash does nothing.
        XCTAssertEqual(try h.apply(.upgradePasswordHash(agentId: "a", from: "x", to: "late"), actor: .agent(id: "a")), .done)
        XCTAssertEqual(try h.agent("a").passwordHash, "stronger")
        // Only the agent's own login (or the node) may upgrade; and the hash is bounded.
        XCTAssertEqual(try h.apply(.upgradePasswordHash(agentId: "a", from: "stronger", to: "mine"), actor: .agent(id: "b")).rejectionCode, "forbidden")
        let huge = String(repeating: "h", count: Limits.passwordHashBytesMax + 1)
        XCTAssertEqual(try h.apply(.upgradePasswordHash(agentId: "a", from: "stronger", to: huge), actor: .agent(id: "a")).rejectionCode, "limit_exceeded")
        XCTAssertEqual(try h.agent("a").passwordHash, "stronger")
    }

    /// A login proposed again after a leader change lost its fate is applied once: a session
    /// under the same fresh token hash is that login's.
    func testALoginAppliedTwiceIsAppliedOnce() throws {
        let h = try Harness()
        try h.addAgent("a")
        try h.addAgent("b")
        let login = Command.createSession(tokenHash: "t1", agentId: "a", expiresAt: Timestamp(milliseconds: h.clock + 3_600_000))
        XCTAssertTrue(login.isRepeatable)
        XCTAssertEqual(try h.apply(login, actor: .agent(id: "a")), .session(agentId: "a"))
        let events = h.events.count
        XCTAssertEqual(try h.apply(login, actor: .agent(id: "a")), .session(agentId: "a"), "the second copy answers like the first")
        XCTAssertEqual(h.events.count, events, "and changes nothing")
        let sessions = try h.state.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM sessions WHERE agent_id = 'a'") }
        XCTAssertEqual(sessions, 1)
        let other = Command.createSession(tokenHash: "t1", agentId: "b", expiresAt: Timestamp(milliseconds: h.clock + 3_600_000))
        XCTAssertEqual(try h.apply(other, actor: .agent(id: "b")).rejectionCode, "session_exists")
        XCTAssertFalse(Command.resolve(conversationId: "c").isRepeatable, "only a login repeats without a key")
    }
}
