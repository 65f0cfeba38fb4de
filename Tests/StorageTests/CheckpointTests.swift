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
        let deadline = Date().addingTimeInterval(5)
        while size(path) < before + (256 << 10), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertGreaterThan(size(path), before + (256 << 10), "database file \(size(path)) bytes, WAL \(size(path + "-wal")) bytes: nothing checkpointed")
    }
}
