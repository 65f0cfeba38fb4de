import ContactCenter
import Foundation
import Storage
import XCTest

/// Apply never checkpoints (its transactions would stall on the fsync); the background
/// checkpoint must copy the WAL into the database file on its own.
final class CheckpointTests: XCTestCase {
    func size(_ path: String) -> Int64 {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0
    }

    func testTheWALIsCopiedIntoTheDatabaseInTheBackground() throws {
        let h = try Harness()
        let path = h.directory + "/state.sqlite"
        let before = size(path)
        try h.addQueue("q", channels: [.whatsapp])
        // Fewer WAL pages than the automatic backstop (`walPagesMax`), so only the background
        // checkpoint can have copied them.
        for n in 0..<300 { try h.inbound(from: "+54911\(n)") }
        XCTAssertGreaterThan(size(path + "-wal"), 1 << 20, "the writes went to the WAL")
        // What the database holds, WAL included, as a reader sees it: the file holds it all once
        // every WAL frame has been copied back.
        let logical = try h.state.pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()") ?? 0
        }
        XCTAssertGreaterThan(logical, before, "the writes grew the database")
        let deadline = Date().addingTimeInterval(5)
        while size(path) < logical, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertGreaterThanOrEqual(size(path), logical, "database file \(size(path)) bytes of \(logical), WAL \(size(path + "-wal")) bytes: not checkpointed (file was \(before) bytes before the writes)")
    }
}
