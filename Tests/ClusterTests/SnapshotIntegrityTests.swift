import Foundation
import Logging
@testable import NodeRuntime
import RaftCore
import XCTest

/// A snapshot file is accepted and restored only with the SHA-256 its snapshot names.
final class SnapshotIntegrityTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "switchboard-snapshots-" + UUID().uuidString
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    var logger: Logger {
        var logger = Logger(label: "snapshot-integrity-test")
        logger.logLevel = .critical
        return logger
    }

    func testAReceivedFileIsAcceptedOnlyWithTheChecksumItsSnapshotNames() throws {
        let store = SnapshotStore(directory: directory)
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: URL(fileURLWithPath: store.path(7)))
        let sha256 = try SnapshotStore.sha256(ofFile: store.path(7))
        let snapshot = Snapshot(index: 7, term: 2, configuration: Configuration(voters: ["n1"]), data: SnapshotStore.reference(index: 7, sha256: sha256))
        XCTAssertEqual(SnapshotStore.sha256(named: snapshot.data), sha256, "the snapshot names its file's checksum")
        XCTAssertTrue(store.hasReceived(snapshot, logger: logger), "the intact file is accepted")

        // One flipped bit in the middle of a newer snapshot's file.
        var damaged = bytes
        damaged[150_000] ^= 0x04
        try Data(damaged).write(to: URL(fileURLWithPath: store.path(9)))
        let newer = Snapshot(index: 9, term: 2, configuration: Configuration(voters: ["n1"]), data: SnapshotStore.reference(index: 9, sha256: sha256))
        XCTAssertFalse(store.hasReceived(newer, logger: logger), "a file that fails its checksum is refused")
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.path(9)), "and deleted, so the leader's next stream replaces it")
    }

    func testSnapshotsTakenBeforeChecksumsStillName() throws {
        XCTAssertNil(SnapshotStore.sha256(named: Array("state-5.sqlite".utf8)), "an older snapshot's data names no checksum")
        XCTAssertNil(SnapshotStore.sha256(named: Array("state-5.sqlite sha256=zz".utf8)), "a malformed checksum is none")
    }
}
