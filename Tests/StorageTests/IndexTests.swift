import ContactCenter
import Foundation
import GRDB
@testable import Storage
import XCTest

/// Schema v6: events are a rowid table keyed by `position`, and `events_audience` and
/// `conversations_assignee` hold only rows with an agent. The lookups by agent must still be
/// served by those indexes, cursors must keep their order and meaning, and a v5 database must
/// answer the same after the migration.
final class IndexTests: XCTestCase {
    private func plan(_ sql: String, _ arguments: StatementArguments, in state: StateDatabase) throws -> String {
        try state.pool.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments).map { $0["detail"] as String }.joined(separator: "; ")
        }
    }

    func testLookupsByAgentUseThePartialIndexes() throws {
        let h = try Harness()
        let agentEvents = try plan(SQL.agentEvents, ["ag", 0, 10], in: h.state)
        XCTAssertTrue(agentEvents.contains("USING INDEX events_audience"), agentEvents)
        let assigned = try plan(SQL.assignedConversations, ["ag"], in: h.state)
        XCTAssertTrue(assigned.contains("USING INDEX conversations_assignee"), assigned)
        let filtered = try plan(
            "SELECT id FROM conversations WHERE id > ? AND status = ? AND assignee_id = ? ORDER BY id LIMIT ?", ["", "assigned", "ag", 10],
            in: h.state)
        XCTAssertTrue(filtered.contains("INDEX conversations_assignee"), filtered)
    }

    func testAVersion5DatabaseAnswersTheSameAfterTheMigration() throws {
        let directory = NSTemporaryDirectory() + "switchboard-index-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state.sqlite"
        // A v5 database with an agent's events and conversations, and rows without an agent.
        let old = try DatabaseQueue(path: path)
        try Schema.migrator().migrate(old, upTo: "v5")
        try old.write { db in
            for n in 0..<40 {
                let agent: String? = n % 4 == 0 ? nil : "ag_\(n % 3)"
                try db.execute(
                    sql: "INSERT INTO events (log_index, seq, type, at, agent_id, data) VALUES (?, 0, 'message.created', 0, ?, '{}')",
                    arguments: [n + 1, agent])
                try db.execute(sql: """
                    INSERT INTO conversations (id, contact_id, channel, status, queue_id, assignee_id, priority, enqueued_index,
                        created_at, updated_at, version) VALUES (?, 'ct', 'whatsapp', ?, NULL, ?, 0, 0, 0, 0, 1)
                    """, arguments: ["cv_\(n)", agent == nil ? "queued" : "assigned", agent])
            }
        }
        try old.write { db in
            // Several events of one entry, to check their order survives the new key.
            for seq in 1..<4 {
                try db.execute(
                    sql: "INSERT INTO events (log_index, seq, type, at, agent_id, data) VALUES (5, ?, 'agent.updated', 0, 'ag_1', '{}')",
                    arguments: [seq])
            }
        }
        let before = try old.read { db in try Row.fetchAll(db, sql: "SELECT * FROM events WHERE agent_id = 'ag_1' ORDER BY log_index, seq") }
        XCTAssertEqual(before.count, 13)
        try old.close()

        let state = try StateDatabase(path: path)
        let events = try state.readNow { try $0.events(after: EventCursor(index: 0, seq: 0), forAgent: "ag_1", limit: 100) }
        let expected = before.map { EventCursor(index: $0["log_index"], seq: $0["seq"]) }
        XCTAssertEqual(events.map(\.cursor), expected, "ag_1's events after the migration")
        for cursor in [EventCursor(index: 5, seq: 0), EventCursor(index: 5, seq: 2), EventCursor(index: 20, seq: 0)] {
            let after = try state.readNow { try $0.events(after: cursor, forAgent: "ag_1", limit: 100) }
            XCTAssertEqual(after.map(\.cursor), expected.filter { $0 > cursor }, "ag_1's events after \(cursor)")
            let all = try state.readNow { try $0.events(after: cursor, limit: 100) }
            XCTAssertEqual(all.map(\.cursor), all.map(\.cursor).sorted(), "every event after \(cursor), in cursor order")
            XCTAssertTrue(all.allSatisfy { $0.cursor > cursor }, "every event after \(cursor): \(all.map(\.cursor))")
            XCTAssertEqual(all.count, 43 - (try state.pool.read { db in
                try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE (log_index, seq) <= (?, ?)", arguments: [cursor.index, cursor.seq]) ?? 0
            }))
        }
        // Cursors past an entry's or every event, as a client may send them: no overflow.
        let everything = try state.readNow { try $0.events(after: .start, limit: 100) }.map(\.cursor)
        XCTAssertEqual(everything.count, 43)
        for cursor in [EventCursor(index: 5, seq: Int.max), EventCursor(index: Int64.max, seq: 0), EventCursor(index: 38, seq: 1 << 20)] {
            let after = try state.readNow { try $0.events(after: cursor, limit: 100) }
            XCTAssertEqual(after.map(\.cursor), everything.filter { $0 > cursor }, "events after \(cursor)")
        }
        let assigned = try state.pool.read { db in try Row.fetchAll(db, sql: SQL.assignedConversations, arguments: ["ag_2"]) }
        XCTAssertEqual(assigned.count, 10, "ag_2's assigned conversations: \(assigned.map { $0[0] as String })")
        let unassigned = try state.readNow { try $0.conversations(.init(assignee: .some(nil)), limit: 100, after: nil) }
        XCTAssertEqual(unassigned.items.count, 10, "conversations without an assignee are still found")
        let indexSQL = try state.pool.read { db in
            try String.fetchAll(db, sql: "SELECT sql FROM sqlite_schema WHERE name IN ('events_audience', 'conversations_assignee') ORDER BY name")
        }
        XCTAssertEqual(indexSQL.count, 2)
        XCTAssertTrue(indexSQL.allSatisfy { $0.hasSuffix("IS NOT NULL") }, "\(indexSQL)")
    }
}
