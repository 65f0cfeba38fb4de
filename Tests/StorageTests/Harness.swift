import ContactCenter
import Foundation
import Storage
import XCTest

/// A fresh state database in a temporary directory, fed commands at consecutive log indexes.
final class Harness {
    let directory: String
    let state: StateDatabase
    private(set) var index: Int64 = 0
    private(set) var clock: Int64 = 1_800_000_000_000
    private(set) var events: [Event] = []

    init() throws {
        directory = NSTemporaryDirectory() + "switchboard-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        state = try StateDatabase(path: directory + "/state.sqlite")
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func envelope(_ command: Command, actor: Actor = .admin, key: String? = nil) -> CommandEnvelope {
        clock += 1000
        return CommandEnvelope(at: Timestamp(milliseconds: clock), actor: actor, idempotencyKey: key, command: command)
    }

    @discardableResult
    func apply(_ command: Command, actor: Actor = .admin, key: String? = nil) throws -> Outcome {
        try apply(envelope(command, actor: actor, key: key))
    }

    @discardableResult
    func apply(_ envelope: CommandEnvelope) throws -> Outcome {
        index += 1
        let results = try state.apply([LogEntry(index: index, term: 0, payload: envelope.encoded())])
        events += results[0].events
        return results[0].outcome
    }

    func agent(_ id: String) throws -> Agent {
        try XCTUnwrap(try state.pool.read { try SQLiteStore($0).agent(id: id) }, "agent \(id) missing")
    }

    func conversation(_ id: String) throws -> Conversation {
        try XCTUnwrap(try state.pool.read { try SQLiteStore($0).conversation(id: id) }, "conversation \(id) missing")
    }

    // MARK: Builders

    func addAgent(_ id: String, skills: [String] = [], capacity: Int = 2, role: Role = .agent, available: Bool = true) throws {
        XCTAssertEqual(
            try apply(.createAgent(id: id, name: id, email: "\(id)@example.com", passwordHash: "x", role: role, skills: skills, capacity: capacity)),
            .agent(id: id))
        if available { try apply(.setPresence(agentId: id, status: .available), actor: .agent(id: id)) }
    }

    func addQueue(_ id: String, skills: [String] = [], priority: Int = 0, channels: [Channel] = []) throws {
        XCTAssertEqual(try apply(.createQueue(id: id, name: id, skills: skills, priority: priority, channels: channels)), .queue(id: id))
    }

    /// A customer message; returns the conversation id it landed in.
    @discardableResult
    func inbound(from: String, text: String = "hello", channel: Channel = .whatsapp, externalId: String? = nil) throws -> String {
        let n = index + 1
        let outcome = try apply(
            .inboundMessage(
                channel: channel, from: from, text: text, externalId: externalId ?? "ext-\(n)", name: nil, contactId: "ct-\(n)",
                conversationId: "cv-\(n)", messageId: "ms-\(n)"),
            actor: .channel)
        guard case .inbound(let conversationId, _, _) = outcome else {
            XCTFail("inbound gave \(outcome)")
            return ""
        }
        return conversationId
    }

    /// Checks the routing invariants over the whole database: every agent's open count equals
    /// its assigned conversations and never exceeds capacity; assigned conversations have an
    /// assignee and only assigned ones do among open conversations.
    func checkInvariants(_ context: String = "", file: StaticString = #filePath, line: UInt = #line) throws {
        try state.pool.read { db in
            let agents = try Row.fetchAll(db, sql: "SELECT id, open_count, capacity FROM agents")
            for agent in agents {
                let id: String = agent["id"]
                let assigned = try Int.fetchOne(db, sql: "SELECT count(*) FROM conversations WHERE assignee_id = ? AND status = 'assigned'", arguments: [id]) ?? 0
                XCTAssertEqual(agent["open_count"] as Int, assigned, "\(context) agent \(id): open_count \(agent["open_count"] as Int) but \(assigned) assigned", file: file, line: line)
                XCTAssertLessThanOrEqual(assigned, agent["capacity"] as Int, "\(context) agent \(id) over capacity: \(assigned)/\(agent["capacity"] as Int)", file: file, line: line)
            }
            let orphan = try Int.fetchOne(db, sql: "SELECT count(*) FROM conversations WHERE status = 'assigned' AND assignee_id IS NULL") ?? 0
            XCTAssertEqual(orphan, 0, "\(context) assigned conversations without assignee", file: file, line: line)
            let waitingWithAssignee = try Int.fetchOne(db, sql: "SELECT count(*) FROM conversations WHERE status IN ('queued','bot') AND assignee_id IS NOT NULL") ?? 0
            XCTAssertEqual(waitingWithAssignee, 0, "\(context) waiting conversations that still name an assignee", file: file, line: line)
        }
    }
}

import GRDB
