import ContactCenter
import Foundation
import Logging
import NodeRuntime
import PeerLink
import RaftCore
import Seeded
import RaftWire
import Synchronization
@testable import Storage
import Wire
import XCTest

/// Three Raft loops in one process over real TCP (PeerLink), real fsync and real SQLite: a
/// command proposed on the leader is applied on every member; a member stopped and restarted
/// from its directory catches up.
final class RaftLoopTests: XCTestCase {
    final class Member: @unchecked Sendable {
        // @unchecked: `loop` is swapped only while no message is routed (under `lock`).
        let id: String
        let directory: String
        var port = 0
        let link: PeerLink
        private let lock = NSLock()
        private var current: RaftLoop?
        /// The member's `state.sqlite`, as its running loop holds it.
        var state: StateDatabase?

        init(id: String, root: String, logger: Logger) {
            self.id = id
            directory = root + "/" + id
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let box = Box()
            link = PeerLink(localId: id, secret: "test secret", logger: logger) { _, bytes in
                guard let message = try? RaftCodec.decode(bytes) else { return }
                box.member?.loop?.receive(message)
            }
            box.member = self
        }

        var loop: RaftLoop? {
            get { lock.withLock { current } }
            set { lock.withLock { current = newValue } }
        }

        final class Box: @unchecked Sendable { weak var member: Member? }
    }

    var root = ""
    var logger: Logger {
        var logger = Logger(label: "raft-loop-test")
        logger.logLevel = .warning
        return logger
    }

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "switchboard-cluster-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// The follower apply delay the tests run with unless they say otherwise (a node's default).
    static let followerApplyDelay: TimeInterval = 0.04

    func start(
        _ member: Member, all: [Member], seed: UInt64, followerApplyDelay: TimeInterval = RaftLoopTests.followerApplyDelay,
        leaderCommitHold: TimeInterval = 0
    ) throws {
        let ports = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0.port) })
        let link = member.link
        let storage = try RaftStorage(
            directory: member.directory,
            initial: Snapshot(index: 0, term: 0, configuration: Configuration(voters: Set(all.map(\.id))), data: []))
        let state = try StateDatabase(path: member.directory + "/state.sqlite")
        let loop = try RaftLoop(
            id: member.id, settings: RaftSettings(), storage: storage, state: state, tickInterval: 0.02,
            followerApplyDelay: followerApplyDelay, leaderCommitHold: leaderCommitHold, seed: seed, logger: logger
        ) { message in
            link.send(RaftCodec.encode(message), to: message.to, host: "127.0.0.1", port: ports[message.to]!)
        }
        member.loop = loop
        member.state = state
        loop.start()
    }

    func waitUntil(_ seconds: Double = 10, _ condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition(), Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }

    func leader(_ members: [Member]) -> Member? {
        members.first { $0.loop?.status.role == .leader }
    }

    func queueCommand(_ number: Int) -> [UInt8] {
        CommandEnvelope(
            at: Timestamp(milliseconds: 1_800_000_000_000 + Int64(number)), actor: .admin, idempotencyKey: nil,
            command: .createQueue(id: "qu_\(number)", name: "queue \(number)", skills: [], priority: 0, channels: [])
        ).encoded()
    }

    var soon: Monotonic.Instant { Monotonic.after(.seconds(10)) }

    func dump(_ member: Member) throws -> String {
        try StateDatabase(path: member.directory + "/state.sqlite").dump()
    }

    /// Three members listening on loopback, their loops started (seeds from `firstSeed`).
    func startThree(
        firstSeed: UInt64, followerApplyDelay: TimeInterval = RaftLoopTests.followerApplyDelay, leaderCommitHold: TimeInterval = 0
    ) async throws -> [Member] {
        let members = ["n1", "n2", "n3"].map { Member(id: $0, root: root, logger: logger) }
        for member in members { member.port = try await member.link.listen(host: "127.0.0.1", port: 0) }
        for (number, member) in members.enumerated() {
            try start(
                member, all: members, seed: firstSeed + UInt64(number), followerApplyDelay: followerApplyDelay,
                leaderCommitHold: leaderCommitHold)
        }
        return members
    }

    /// `startThree`, then the leader they elect; every loop stops at tear-down.
    func startThreeAndElect(
        firstSeed: UInt64, followerApplyDelay: TimeInterval = RaftLoopTests.followerApplyDelay, leaderCommitHold: TimeInterval = 0
    ) async throws -> (members: [Member], leader: Member) {
        let members = try await startThree(firstSeed: firstSeed, followerApplyDelay: followerApplyDelay, leaderCommitHold: leaderCommitHold)
        addTeardownBlock {
            for member in members { member.loop?.stop() }
        }
        try await waitUntil { leader(members) != nil }
        return (members, try XCTUnwrap(leader(members), "a leader is elected over TCP"))
    }

    /// Stops every loop, then checks that all members hold the same state, with `row` in it.
    func assertSameStateAfterStopping(_ members: [Member], containing row: String, line: UInt = #line) throws {
        for member in members { member.loop?.stop() }
        let dumps = try members.map(dump)
        XCTAssertEqual(dumps[0], dumps[1], "n1 and n2 hold the same state", line: line)
        XCTAssertEqual(dumps[0], dumps[2], "n1 and n3 hold the same state", line: line)
        XCTAssertTrue(dumps[0].contains(row), "the state holds \(row)", line: line)
    }

    /// A single voter commits its entries as it appends them; none may reach `state.sqlite`
    /// before it is in the fsynced log, or a `kill -9` in between leaves the state past the log
    /// and the node cannot restart (`CrashReplayTests` hit that).
    func testASingleVoterAppliesOnlyEntriesAlreadyInItsLog() async throws {
        let directory = root + "/solo"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let storage = try RaftStorage(directory: directory, initial: Snapshot(index: 0, term: 0, configuration: Configuration(voters: ["n1"]), data: []))
        let state = try StateDatabase(path: directory + "/state.sqlite")
        let early = Mutex<[String]>([])
        // Runs on the loop's thread, right after each apply transaction.
        nonisolated(unsafe) let log = storage.log
        let hooks = RaftLoop.Hooks(applied: { index, _ in
            if log.lastIndex < Int64(index) { early.withLock { $0.append("applied \(index) with the log at \(log.lastIndex)") } }
        }, installSnapshot: { _ in })
        let loop = try RaftLoop(
            id: "n1", settings: RaftSettings(), storage: storage, state: state, tickInterval: 0.02, followerApplyDelay: Self.followerApplyDelay,
            seed: 7, logger: logger, hooks: hooks) { _ in }
        loop.start()
        defer { loop.stop() }
        try await waitUntil { loop.status.role == .leader }
        XCTAssertEqual(loop.status.role, .leader)
        let deadline = soon
        let commands = (0..<8).map { writer in (0..<25).map { queueCommand(writer * 100 + $0) } }
        await withTaskGroup(of: Void.self) { group in
            for batch in commands {
                group.addTask {
                    for command in batch { _ = try? await loop.propose(command, deadline: deadline) }
                }
            }
        }
        XCTAssertGreaterThanOrEqual(loop.status.appliedIndex, 200, "every proposal applied")
        XCTAssertEqual(early.withLock { $0 }, [], "entries applied before their fsync")
    }

    func testCommandsReachEveryMemberAndARestartedMemberCatchesUp() async throws {
        let (members, first) = try await startThreeAndElect(firstSeed: 1)
        for number in 1...20 {
            let applied = try await first.loop!.propose(queueCommand(number), deadline: soon)
            XCTAssertEqual(applied?.outcome, .queue(id: "qu_\(number)"))
        }
        let follower = try XCTUnwrap(members.first { $0 !== first })
        await XCTAssertThrowsErrorAsync(try await follower.loop!.propose(queueCommand(99), deadline: soon), "a follower refuses proposals (the API forwards them)")
        try await follower.loop!.linearizableBarrier(deadline: soon)
        XCTAssertGreaterThanOrEqual(follower.loop!.status.appliedIndex, 21, "after a ReadIndex barrier the follower has applied every acknowledged write")

        // Stop a follower, write more, restart it from its directory: it catches up.
        follower.loop!.stop()
        follower.loop = nil
        for number in 21...30 { _ = try await first.loop!.propose(queueCommand(number), deadline: soon) }
        try start(follower, all: members, seed: 42)
        let target = first.loop!.status.commitIndex
        try await waitUntil { members.allSatisfy { ($0.loop?.status.appliedIndex ?? 0) >= target } }
        try assertSameStateAfterStopping(members, containing: "qu_30")
        for member in members { await member.link.close() }
    }

    /// A follower applies committed entries in batches: it holds them (here for as long as an
    /// hour) until someone on it needs them, a ReadIndex barrier here, or it stops.
    func testAFollowerHoldsCommittedEntriesUntilAReadNeedsThem() async throws {
        let (members, first) = try await startThreeAndElect(firstSeed: 7, followerApplyDelay: 3600)
        for number in 1...20 { _ = try await first.loop!.propose(queueCommand(number), deadline: soon) }
        let target = first.loop!.status.appliedIndex
        let followers = members.filter { $0 !== first }
        try await waitUntil { followers.allSatisfy { ($0.loop?.status.commitIndex ?? 0) >= target } }
        for follower in followers {
            let status = follower.loop!.status
            XCTAssertGreaterThanOrEqual(status.commitIndex, target, "\(follower.id) learned the commit index")
            XCTAssertLessThan(status.appliedIndex, status.commitIndex, "\(follower.id) holds committed entries back: applied \(status.appliedIndex) of \(status.commitIndex)")
        }

        try await followers[0].loop!.linearizableBarrier(deadline: soon)
        XCTAssertGreaterThanOrEqual(followers[0].loop!.status.appliedIndex, target, "a read on \(followers[0].id) applies what it held")
        XCTAssertLessThan(followers[1].loop!.status.appliedIndex, target, "\(followers[1].id), asked nothing, still holds its entries")

        // A `?minIndex=` read waiting on the other follower makes it apply at once too.
        followers[1].loop!.applyPromptly(through: target, deadline: soon)
        try await waitUntil(5) { (followers[1].loop?.status.appliedIndex ?? 0) >= target }
        XCTAssertGreaterThanOrEqual(followers[1].loop!.status.appliedIndex, target, "\(followers[1].id) applies what a waiting read needs")

        // A follower that stops applies what it held: every member ends with the same state.
        try assertSameStateAfterStopping(members, containing: "qu_20")
        for member in members { await member.link.close() }
    }

    /// A leader keeps executed entries in one open SQLite transaction (here for as long as an
    /// hour): a proposal that reads nothing back is answered at execution, before readers can
    /// see it; a proposal that reads back, and a ReadIndex read, commit at once.
    func testALeaderAnswersEarlyProposalsAtExecutionAndCommitsWhenSomeoneMustSeeThem() async throws {
        let (members, first) = try await startThreeAndElect(firstSeed: 11, leaderCommitHold: 3600)
        let loop = first.loop!, state = first.state!
        let queueIds = { try state.readNow { try $0.store.queues().map(\.id) } }

        for number in 1...5 {
            let applied = try await loop.propose(queueCommand(number), deadline: soon, early: true)
            XCTAssertEqual(applied?.outcome, .queue(id: "qu_\(number)"), "an early proposal gets its outcome")
        }
        XCTAssertGreaterThan(loop.executedIndex, loop.status.appliedIndex, "executed \(loop.executedIndex), shown \(loop.status.appliedIndex)")
        let shown = try queueIds()
        XCTAssertFalse(shown.contains("qu_5"), "readers do not see an uncommitted entry: \(shown)")

        // A proposal that reads back is answered once its entry, and all before it, are shown.
        let applied = try await loop.propose(queueCommand(6), deadline: soon)
        XCTAssertEqual(applied?.outcome, .queue(id: "qu_6"))
        XCTAssertEqual(try queueIds().filter { $0.hasPrefix("qu_") }.sorted(), (1...6).map { "qu_\($0)" }, "answered after the commit")
        XCTAssertEqual(loop.status.appliedIndex, loop.executedIndex)

        // A ReadIndex barrier on the leader commits what it executed.
        _ = try await loop.propose(queueCommand(7), deadline: soon, early: true)
        XCTAssertFalse(try queueIds().contains("qu_7"))
        try await loop.linearizableBarrier(deadline: soon)
        XCTAssertTrue(try queueIds().contains("qu_7"), "a linearizable read sees the write acknowledged before it")

        // So does a `?minIndex=` wait.
        _ = try await loop.propose(queueCommand(8), deadline: soon, early: true)
        loop.applyPromptly(through: loop.executedIndex, deadline: soon)
        try await waitUntil(5) { (try? queueIds().contains("qu_8")) ?? false }
        XCTAssertTrue(try queueIds().contains("qu_8"), "a minIndex read sees the write acknowledged before it")

        // A leader that stops commits what it executed: every member ends with the same state.
        _ = try await loop.propose(queueCommand(9), deadline: soon, early: true)
        let target = loop.executedIndex
        try await waitUntil { members.allSatisfy { ($0.loop?.status.commitIndex ?? 0) >= target } }
        XCTAssertLessThan(loop.status.appliedIndex, target, "the leader still holds qu_9 uncommitted")
        try assertSameStateAfterStopping(members, containing: "qu_9")
        for member in members { await member.link.close() }
    }

    /// Without anyone asking, the leader commits once its entries waited `leaderCommitHold`.
    func testALeaderCommitsExecutedEntriesWithinItsHold() async throws {
        let (members, first) = try await startThreeAndElect(firstSeed: 21, leaderCommitHold: 0.2)
        let loop = first.loop!
        _ = try await loop.propose(queueCommand(1), deadline: soon, early: true)
        let executed = loop.executedIndex
        XCTAssertLessThan(loop.status.appliedIndex, executed, "held right after the answer")
        let started = Date()
        try await waitUntil(5) { loop.status.appliedIndex >= executed }
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(loop.status.appliedIndex, executed, "committed without being asked")
        XCTAssertLessThan(waited, 2, "committed within the 0.2 s hold (plus a tick), took \(waited) s")
        try await waitUntil { members.allSatisfy { ($0.loop?.status.commitIndex ?? 0) >= executed } }
        try assertSameStateAfterStopping(members, containing: "qu_1")
        for member in members { await member.link.close() }
    }
}

func XCTAssertThrowsErrorAsync<T>(_ expression: @autoclosure () async throws -> T, _ message: String, file: StaticString = #filePath, line: UInt = #line) async {
    do {
        _ = try await expression()
        XCTFail(message, file: file, line: line)
    } catch {}
}
