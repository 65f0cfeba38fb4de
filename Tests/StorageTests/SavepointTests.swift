import ContactCenter
import RaftCore
import GRDB
@testable import Storage
import XCTest

/// `SQLiteStore.atomically` is what makes a command that fails halfway leave nothing behind:
/// with a savepoint per command, or (apply's fast path) with no savepoint and the whole
/// transaction redone with savepoints when a command fails after writing.
final class SavepointTests: XCTestCase {
    struct Refused: Error {}

    func queue(_ id: String) -> Queue {
        Queue(id: id, name: id, skills: [], priority: 0, channels: [], createdIndex: 1, createdAt: Timestamp(milliseconds: 0))
    }

    /// A state database in `directory` whose every command inserts queue `q<index>`, and whose
    /// command at `failing` throws after that insert (rejected, as a domain error is).
    func insertingQueues(in directory: String, failingAfterWriteAt failing: Int64) throws -> StateDatabase {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try StateDatabase(path: directory + "/state.sqlite") { _, index, store in
            do {
                return try store.atomically {
                    try store.insert(Queue(
                        id: "q\(index)", name: "q\(index)", skills: [], priority: 0, channels: [], createdIndex: index,
                        createdAt: Timestamp(milliseconds: 0)))
                    if index == failing {
                        throw DomainError(.conflict, "refused_after_write", "entry \(failing) fails after its insert")
                    }
                    return ContactCenterMachine.Applied(outcome: .done, events: [])
                }
            } catch let error as DomainError {
                return ContactCenterMachine.Applied(outcome: .rejected(error), events: [])
            }
        }
    }

    /// Any command: the machine above ignores it.
    static let command = CommandEnvelope(at: Timestamp(milliseconds: 0), actor: .admin, command: .deleteSession(tokenHash: "x")).encoded()

    func testAFailedBodyLeavesNothingAndLaterCommandsInTheSameTransactionCommit() throws {
        let h = try Harness()
        try h.state.pool.write { db in
            let store = SQLiteStore(db)
            try store.atomically { try store.insert(queue("kept-1")) }
            XCTAssertThrowsError(try store.atomically {
                try store.insert(queue("dropped"))
                // Nested: its own writes go with the outer savepoint's rollback.
                try store.atomically { try store.insert(queue("dropped-inner")) }
                throw Refused()
            })
            XCTAssertEqual(try store.queues().map(\.id), ["kept-1"], "the failed body's writes must be gone inside the transaction")
            try store.atomically { try store.insert(queue("kept-2")) }
        }
        let ids = try h.state.pool.read { try SQLiteStore($0).queues().map(\.id) }
        XCTAssertEqual(ids.sorted(), ["kept-1", "kept-2"], "only the bodies that returned are committed")
    }

    func testWithoutSavepointsARefusalThatWroteNothingIsRethrownAndTheRestCommits() throws {
        let h = try Harness()
        try h.state.pool.write { db in
            let store = SQLiteStore(db, atomicity: .optimistic)
            try store.atomically { try store.insert(queue("kept-1")) }
            XCTAssertThrowsError(try store.atomically {
                _ = try store.queues()
                throw Refused()
            }) { error in
                XCTAssertTrue(error is Refused, "a body that wrote nothing needs no undo; its own error must come back, got \(error)")
            }
            try store.atomically { try store.insert(queue("kept-2")) }
        }
        let ids = try h.state.pool.read { try SQLiteStore($0).queues().map(\.id) }
        XCTAssertEqual(ids.sorted(), ["kept-1", "kept-2"])
    }

    func testWithoutSavepointsAFailureAfterAWriteAsksForTheTransactionToBeRedone() throws {
        let h = try Harness()
        XCTAssertThrowsError(try h.state.pool.write { db in
            let store = SQLiteStore(db, atomicity: .optimistic)
            try store.atomically { try store.insert(queue("kept-1")) }
            try store.atomically {
                try store.insert(queue("half-done"))
                throw Refused()
            }
        }) { error in
            XCTAssertTrue(error is SQLiteStore.UndoUnavailable, "the write cannot be undone alone; got \(error)")
        }
        let ids = try h.state.pool.read { try SQLiteStore($0).queues().map(\.id) }
        XCTAssertEqual(ids, [], "the failed transaction rolled back as a whole")
    }

    /// A command that is rejected after it wrote (none does today, but apply must not depend on
    /// that): its batch is redone with savepoints, so its writes are gone and the commands
    /// around it in the same batch are applied.
    func testABatchWhoseCommandFailsAfterWritingIsRedoneAndOnlyThatCommandLeavesNothing() throws {
        let directory = NSTemporaryDirectory() + "switchboard-test-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = try insertingQueues(in: directory, failingAfterWriteAt: 2)
        let entries: [LogEntry] = (1...3).map { LogEntry(index: Int64($0), term: 0, payload: Self.command) }
        let outcomes: [Outcome] = try state.apply(entries).map(\.outcome)
        XCTAssertEqual(outcomes, [
            .done, .rejected(DomainError(.conflict, "refused_after_write", "entry 2 fails after its insert")), .done,
        ])
        let ids = try state.pool.read { try SQLiteStore($0).queues().map(\.id) }
        XCTAssertEqual(ids, ["q1", "q3"], "entry 2's insert must be undone, entries 1 and 3 kept")
        XCTAssertEqual(state.redoneTransactionCount, 1, "one transaction redone with savepoints")
        XCTAssertEqual(try state.appliedIndex(), 3)
    }

    /// `execute` leaves its transaction open for later batches: when a command of a later batch
    /// fails after writing, the earlier batches' uncommitted entries are run again with it, so
    /// nothing they did is lost, and only the failed command leaves nothing.
    func testARedoKeepsTheEarlierUncommittedBatchesOfItsTransaction() throws {
        let directory = NSTemporaryDirectory() + "switchboard-test-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = try insertingQueues(in: directory, failingAfterWriteAt: 3)
        let entries: [Entry] = (1...4).map { Entry(term: 1, index: UInt64($0), payload: .command(Self.command)) }
        let readerSees = { try state.pool.read { try SQLiteStore($0).queues().map(\.id) } }

        XCTAssertEqual(try state.execute(Array(entries[0..<2])).map { $0?.outcome }, [.done, .done])
        XCTAssertEqual(state.uncommittedCount, 2)
        XCTAssertEqual(try readerSees(), [], "executed entries are not shown before the commit")
        XCTAssertEqual(try state.appliedIndex(), 0, "readers see the applied index of the last commit")

        let outcomes = try state.execute(Array(entries[2..<4])).map { $0?.outcome }
        XCTAssertEqual(outcomes, [.rejected(DomainError(.conflict, "refused_after_write", "entry 3 fails after its insert")), .done])
        XCTAssertEqual(state.redoneTransactionCount, 1, "one transaction redone with savepoints")
        XCTAssertEqual(state.uncommittedCount, 4, "the redone transaction holds all four entries")
        XCTAssertEqual(try readerSees(), [], "still nothing shown")

        try state.commitExecuted()
        XCTAssertEqual(state.uncommittedCount, 0)
        XCTAssertEqual(try readerSees(), ["q1", "q2", "q4"], "entries 1 and 2 survive the redo, entry 3's insert is undone")
        XCTAssertEqual(try state.appliedIndex(), 4)
    }
}
