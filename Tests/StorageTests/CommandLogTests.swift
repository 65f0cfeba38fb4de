import Foundation
import Storage
import XCTest

final class CommandLogTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "switchboard-log-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    var path: String { directory + "/commands.log" }

    func entries(_ range: ClosedRange<Int64>) -> [LogEntry] {
        range.map { LogEntry(index: $0, term: 0, payload: Array("command \($0)".utf8)) }
    }

    func testAppendedEntriesSurviveReopen() throws {
        do {
            let log = try CommandLog(path: path)
            try log.append(entries(1...3))
            try log.append(entries(4...10))
        }
        let reopened = try CommandLog(path: path)
        XCTAssertEqual(reopened.lastIndex, 10)
        XCTAssertEqual(try reopened.entries(from: 4, maxCount: 3), entries(4...6))
        XCTAssertEqual(try reopened.entries(from: 9, maxCount: 100), entries(9...10))
        XCTAssertEqual(reopened.truncatedTailBytes, 0)
    }

    func testTornTailIsCutAndAppendsContinue() throws {
        let end: Int64
        do {
            let log = try CommandLog(path: path)
            try log.append(entries(1...5))
            end = log.sizeBytes
        }
        // A crash in the middle of writing entry 6: half a record after the last one.
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        try handle.seek(toOffset: UInt64(end))
        try handle.write(contentsOf: [0, 0, 0, 40, 1, 2, 3, 4, 0, 0, 0])
        try handle.close()
        let size = try fileSize()
        let log = try CommandLog(path: path)
        XCTAssertEqual(log.lastIndex, 5, "the torn record is not an entry")
        XCTAssertEqual(log.truncatedTailBytes, size - end, "everything after the last record is cut")
        XCTAssertEqual(try fileSize(), end)
        let copy = "\(path).broken-\(end)"
        XCTAssertEqual(log.repairedTail?.copy, copy)
        let kept = try Data(contentsOf: URL(fileURLWithPath: copy))
        XCTAssertEqual(Int64(kept.count), size - end, "the cut bytes are kept in \(copy)")
        XCTAssertEqual(Array(kept.prefix(11)), [0, 0, 0, 40, 1, 2, 3, 4, 0, 0, 0])
        try log.append(entries(6...6))
        XCTAssertEqual(try CommandLog(path: path).entries(from: 1, maxCount: 10), entries(1...6))
    }

    func testChecksumMismatchInTheTailIsCut() throws {
        let end: Int64
        do {
            let log = try CommandLog(path: path)
            try log.append(entries(1...3))
            end = log.sizeBytes
        }
        // Flip the last byte of the last record (inside entry 3's payload).
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[Int(end) - 1] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        let log = try CommandLog(path: path)
        XCTAssertEqual(log.lastIndex, 2)
    }

    func testAChecksumMismatchBeforeTheLastRecordRefusesToOpenAndChangesNothing() throws {
        do {
            let log = try CommandLog(path: path)
            try log.append(entries(1...5))
        }
        // Flip a byte inside entry 3's payload: entries 4 and 5 follow it intact. Records are
        // 24 header bytes and 9 payload bytes ("command N") after the 8-byte magic.
        let entry3 = 8 + 2 * 33
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[entry3 + 24 + 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try CommandLog(path: path)) { error in
            guard case CommandLogError.corrupt(let failingPath, let offset, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(failingPath, path)
            XCTAssertEqual(offset, Int64(entry3), "the error names the failing record's offset")
            XCTAssertTrue(reason.contains("entry 3") && reason.contains("entry 4") && reason.contains("--join"), reason)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), bytes, "nothing is truncated")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(path).broken-\(entry3)"))
    }

    func fileSize() throws -> Int64 {
        try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64)
    }

    func testPreallocatedZerosAreSpaceNotATornTail() throws {
        let end: Int64
        do {
            let log = try CommandLog(path: path)
            try log.append(entries(1...3))
            end = log.sizeBytes
        }
        XCTAssertGreaterThanOrEqual(try fileSize(), end + CommandLog.preallocationBytes, "appends go into preallocated zeros")
        let log = try CommandLog(path: path)
        XCTAssertEqual(log.lastIndex, 3)
        XCTAssertEqual(log.truncatedTailBytes, 0, "zeros after the last record are preallocated space")
        try log.append(entries(4...5))
        XCTAssertEqual(try CommandLog(path: path).entries(from: 1, maxCount: 10), entries(1...5))
    }

    func testBytesAfterAZeroGapAreCut() throws {
        // A crash that persisted a later sector of a batch but not the first: zeros, then data.
        let end: Int64
        do {
            let log = try CommandLog(path: path)
            try log.append(entries(1...3))
            end = log.sizeBytes
        }
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        try handle.seek(toOffset: UInt64(end + 4096))
        try handle.write(contentsOf: Array("command 5".utf8))
        try handle.close()
        let log = try CommandLog(path: path)
        XCTAssertEqual(log.lastIndex, 3)
        XCTAssertGreaterThan(log.truncatedTailBytes, 0)
        XCTAssertEqual(try fileSize(), end, "nothing but the records is left")
    }

    func testEntriesTruncatedAwayNeverComeBackAfterReopen() throws {
        // Raft replaces a conflicting suffix; stale records of the same size must not line up
        // behind the new ones and be read back as entries.
        do {
            let log = try CommandLog(path: path)
            try log.append(entries(1...10))
            try log.truncate(after: 5)
            try log.append([LogEntry(index: 6, term: 2, payload: Array("command 6".utf8))])
        }
        let log = try CommandLog(path: path)
        XCTAssertEqual(log.lastIndex, 6, "entries 7...10 were truncated")
        XCTAssertEqual(try log.entries(from: 6, maxCount: 10).map(\.term), [2])
    }

    func testAppendMustBeContiguous() throws {
        let log = try CommandLog(path: path)
        try log.append(entries(1...2))
        XCTAssertThrowsError(try log.append(entries(4...4)))
        XCTAssertEqual(log.lastIndex, 2)
    }

    func testTruncateAfterRemovesTheSuffixDurably() throws {
        let log = try CommandLog(path: path)
        try log.append(entries(1...6))
        try log.truncate(after: 3)
        XCTAssertEqual(log.lastIndex, 3)
        try log.append(entries(4...4))
        XCTAssertEqual(try CommandLog(path: path).lastIndex, 4)
    }

    func testAForeignFileIsRefused() throws {
        try Data("definitely not a log".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try CommandLog(path: path)) { error in
            XCTAssertTrue("\(error)".contains("not a Switchboard command log"), "\(error)")
        }
    }

    /// Raft §5: a snapshot covers a prefix; the log keeps only what follows it, across reopen.
    func testCompactionKeepsTheTailAcrossReopen() throws {
        do {
            let log = try CommandLog(path: path)
            try log.append(entries(1...100))
            try log.compact(through: 60)
            XCTAssertEqual(log.firstIndex, 61)
            XCTAssertEqual(log.lastIndex, 100)
            XCTAssertEqual(try log.entries(from: 61, maxCount: 100), entries(61...100))
            try log.append(entries(101...105))
            try log.truncate(after: 102)
            XCTAssertEqual(log.lastIndex, 102)
        }
        let reopened = try CommandLog(path: path)
        XCTAssertEqual(reopened.firstIndex, 61, "the compacted prefix stays gone")
        XCTAssertEqual(try reopened.entries(from: 61, maxCount: 1000), entries(61...102))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".compact"), "no temporary file is left behind")
    }

    func testCompactionToNothingContinuesAfterTheSnapshot() throws {
        let log = try CommandLog(path: path)
        try log.append(entries(1...10))
        try log.compact(through: 10)
        XCTAssertEqual(log.lastIndex, 10, "an empty log still knows where it ends")
        try log.append(entries(11...12))
        XCTAssertEqual(try log.entries(from: 11, maxCount: 10), entries(11...12))
        let reopened = try CommandLog(path: path)
        XCTAssertEqual(reopened.firstIndex, 11)
        XCTAssertEqual(reopened.lastIndex, 12)
    }

    func testAnEmptyLogStartsAfterASnapshot() throws {
        let log = try CommandLog(path: path)
        log.startAfter(500)
        try log.append(entries(501...502))
        XCTAssertEqual(try CommandLog(path: path).entries(from: 501, maxCount: 10), entries(501...502))
    }

    /// The vote must survive a crash; a damaged file is refused rather than read as "no vote".
    func testHardStateIsSavedAtomicallyAndVerified() throws {
        let file = HardStateFile(path: directory + "/hardstate")
        XCTAssertEqual(try file.load(), HardStateFile.Value(term: 0, vote: nil), "never saved: term 0, no vote")
        try file.save(.init(term: 7, vote: "n2"))
        try file.save(.init(term: 8, vote: nil))
        XCTAssertEqual(try file.load(), HardStateFile.Value(term: 8, vote: nil))
        try file.save(.init(term: 9, vote: "n3"))
        XCTAssertEqual(try HardStateFile(path: directory + "/hardstate").load(), HardStateFile.Value(term: 9, vote: "n3"))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file.path))
        bytes[bytes.count - 6] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: file.path))
        XCTAssertThrowsError(try file.load(), "a flipped byte is corruption, not an empty state")
    }
}
