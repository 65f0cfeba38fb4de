import ContactCenter
import GRDB
import Storage
import XCTest

/// `SQLiteStore.atomically` is what makes a command that fails halfway leave nothing behind.
final class SavepointTests: XCTestCase {
    struct Refused: Error {}

    func queue(_ id: String) -> Queue {
        Queue(id: id, name: id, skills: [], priority: 0, channels: [], createdIndex: 1, createdAt: Timestamp(milliseconds: 0))
    }

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
}
