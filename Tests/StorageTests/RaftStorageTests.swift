import Foundation
import RaftCore
import Storage
import XCTest

/// A core persisted through `RaftStorage` restarts as it was: term, vote, log and snapshot.
final class RaftStorageTests: XCTestCase {
    var directory = ""
    let bootstrap = Snapshot(index: 0, term: 0, configuration: Configuration(voters: ["n1"]), data: [])

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "switchboard-raft-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// Runs a single-voter core to leadership, proposes `count` commands, persisting every Ready.
    func runLeader(_ storage: RaftStorage, proposals count: Int) throws -> Raft {
        let loaded = try storage.load(applied: 0)
        var core = Raft(id: "n1", seed: 1, hardState: loaded.hardState, snapshot: loaded.snapshot, entries: loaded.entries, applied: loaded.hardState.commit)
        // Until nothing is left, as the node loop does: a leader's entries commit in the
        // `advance` that reports them persisted, and come out in the next `Ready`.
        func drain() throws {
            while true {
                let ready = core.ready()
                try storage.persist(ready)
                core.advance(ready)
                if ready.isEmpty { return }
            }
        }
        while core.role != .leader { core.tick(); try drain() }
        for value in 0..<count { _ = try core.propose([UInt8(value % 256)]) }
        try drain()
        return core
    }

    func testACoreRestartsFromWhatItPersisted() throws {
        let before = try runLeader(try RaftStorage(directory: directory, initial: bootstrap), proposals: 50)
        let loaded = try RaftStorage(directory: directory, initial: bootstrap).load(applied: before.appliedIndex)
        XCTAssertEqual(loaded.hardState.term, before.term)
        XCTAssertEqual(loaded.hardState.vote, "n1", "the vote survives")
        XCTAssertEqual(loaded.entries.count, Int(before.lastIndex), "every entry survives")
        XCTAssertEqual(loaded.entries.first?.payload, .noop)
        XCTAssertEqual(loaded.entries.last?.payload, .command([49]))
        let after = Raft(id: "n1", seed: 2, hardState: loaded.hardState, snapshot: loaded.snapshot, entries: loaded.entries, applied: before.appliedIndex)
        XCTAssertEqual(after.lastIndex, before.lastIndex)
        XCTAssertEqual(after.commitIndex, before.appliedIndex, "commit restarts from the applied index")
    }

    func testASnapshotCompactsTheLogAcrossRestart() throws {
        let storage = try RaftStorage(directory: directory, initial: bootstrap)
        var core = try runLeader(storage, proposals: 50)
        let snapshot = core.compact(through: 30, data: Array("state through 30".utf8))
        try storage.save(snapshot: snapshot)
        let loaded = try RaftStorage(directory: directory, initial: bootstrap).load(applied: 30)
        XCTAssertEqual(loaded.snapshot, snapshot)
        XCTAssertEqual(loaded.entries.map(\.index), Array(31...core.lastIndex))
    }

    func testAConflictingSuffixIsReplaced() throws {
        let storage = try RaftStorage(directory: directory, initial: bootstrap)
        var follower = Raft(id: "n2", seed: 1, snapshot: Snapshot(index: 0, term: 0, configuration: Configuration(voters: ["n1", "n2", "n3"]), data: []))
        let old = (1...10).map { Entry(term: 1, index: $0, payload: .command([UInt8($0)])) }
        follower.step(Message(from: "n1", to: "n2", term: 1, kind: .append(prevIndex: 0, prevTerm: 0, entries: old, commit: 3)))
        var ready = follower.ready()
        try storage.persist(ready)
        follower.advance(ready)
        let new = (6...8).map { Entry(term: 2, index: $0, payload: .command([0xEE])) }
        follower.step(Message(from: "n3", to: "n2", term: 2, kind: .append(prevIndex: 5, prevTerm: 1, entries: new, commit: 3)))
        ready = follower.ready()
        try storage.persist(ready)
        follower.advance(ready)
        let loaded = try RaftStorage(directory: directory, initial: bootstrap).load(applied: 3)
        XCTAssertEqual(loaded.entries.map(\.term), [1, 1, 1, 1, 1, 2, 2, 2], "entries 6-10 of term 1 were replaced by 6-8 of term 2")
        XCTAssertEqual(loaded.hardState.term, 2)
    }

    func testALeadersSnapshotReplacesADivergentLog() throws {
        let storage = try RaftStorage(directory: directory, initial: bootstrap)
        _ = try runLeader(storage, proposals: 5)
        let installed = Snapshot(index: 100, term: 9, configuration: Configuration(voters: ["n1", "n2", "n3"]), data: [7])
        try storage.save(snapshot: installed)
        let loaded = try RaftStorage(directory: directory, initial: bootstrap).load(applied: 100)
        XCTAssertEqual(loaded.snapshot, installed)
        XCTAssertEqual(loaded.entries, [], "no entry of the old log survives a snapshot it does not match")
        XCTAssertEqual(loaded.hardState.commit, 100)
    }
}

/// Committed Raft entries reach `state.sqlite`: commands apply, no-ops and configurations only
/// advance the applied index.
final class RaftApplyTests: XCTestCase {
    func testNoopsAndConfigurationsAdvanceTheAppliedIndexOnly() throws {
        let harness = try Harness()
        let command = harness.envelope(.createQueue(id: "qu_1", name: "support", skills: [], priority: 0, channels: [.whatsapp])).encoded()
        let results = try harness.state.apply([
            Entry(term: 1, index: 1, payload: .noop),
            Entry(term: 1, index: 2, payload: .command(command)),
            Entry(term: 1, index: 3, payload: .configuration(Configuration(voters: ["n1", "n2"]))),
        ])
        XCTAssertNil(results[0])
        XCTAssertEqual(results[1]?.outcome, .queue(id: "qu_1"))
        XCTAssertNil(results[2])
        XCTAssertEqual(try harness.state.appliedIndex(), 3)
        XCTAssertThrowsError(try harness.state.apply([Entry(term: 1, index: 5, payload: .noop)]), "a gap is refused")
    }
}

/// The copy a Raft snapshot is made of is consistent with its applied index, even while
/// commands keep being applied.
final class StateSnapshotTests: XCTestCase {
    func testASnapshotHoldsExactlyTheStateAtItsAppliedIndex() throws {
        let harness = try Harness()
        try harness.addQueue("qu_support", channels: [.whatsapp])
        for number in 0..<50 { try harness.inbound(from: "+1555\(number)") }
        let copyPath = harness.directory + "/snapshot.sqlite"
        final class Shared: @unchecked Sendable {
            // @unchecked: only the writer thread uses the harness until it finishes.
            let harness: Harness
            init(_ harness: Harness) { self.harness = harness }
        }
        let shared = Shared(harness)
        let writer = Thread {
            for number in 50..<150 { try? shared.harness.inbound(from: "+1555\(number)") }
        }
        writer.start()
        let applied = try harness.state.snapshot(to: copyPath)
        while !writer.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        let copy = try StateDatabase(path: copyPath)
        XCTAssertEqual(try copy.appliedIndex(), applied, "the copy's applied_index is the one read with it")
        let contacts = try copy.readNow { try $0.store.contactId(channel: "whatsapp", identifier: "+1555\(applied - 2)") }
        XCTAssertNotNil(contacts, "the last message applied before the copy is in it")
        let beyond = try copy.readNow { try $0.store.contactId(channel: "whatsapp", identifier: "+1555\(applied - 1)") }
        XCTAssertNil(beyond, "nothing applied after the copy is in it (index \(applied + 1) is contact +1555\(applied - 1))")
    }

    func testASnapshotIsOneSelfContainedFile() throws {
        let harness = try Harness()
        try harness.addQueue("qu_support", channels: [.whatsapp])
        for number in 0..<20 { try harness.inbound(from: "+1555\(number)") }
        let copyPath = harness.directory + "/snapshot.sqlite"
        let applied = try harness.state.snapshot(to: copyPath)
        let header = try XCTUnwrap(FileManager.default.contents(atPath: copyPath)).prefix(20)
        XCTAssertEqual(Array(header.suffix(2)), [1, 1], "file format bytes 18-19: a rollback-journal file, not WAL (which needs its -wal file)")
        for sidecar in ["-wal", "-shm", "-journal"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: copyPath + sidecar), "no \(sidecar) file next to the snapshot")
        }
        let moved = harness.directory + "/moved.sqlite"
        try FileManager.default.moveItem(atPath: copyPath, toPath: moved)
        let copy = try StateDatabase(path: moved)
        XCTAssertEqual(try copy.appliedIndex(), applied, "the file alone holds the state at its applied index")
        XCTAssertEqual(try copy.dump(), try harness.state.dump(), "nothing was applied after the copy: it equals the live state")
    }
}
