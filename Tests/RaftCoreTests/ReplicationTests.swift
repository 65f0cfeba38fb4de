import RaftCore
import XCTest

/// Log replication (Raft §3.5), commitment (§3.6.2), flow control and snapshots (§5).
final class ReplicationTests: XCTestCase {
    func testSection3_5_CommittedEntriesAreAppliedEverywhereInOrder() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        for value in 1...50 { _ = try! cluster.cores[leader]!.propose([UInt8(value)]) }
        cluster.deliverAll()
        cluster.run(ticks: 2)
        for id in ["n1", "n2", "n3"] {
            let commands = cluster.applied[id, default: []].compactMap { if case .command(let bytes) = $0.payload { bytes[0] } else { nil } }
            XCTAssertEqual(commands, (1...50).map(UInt8.init), "\(id) applied the commands in order, once")
        }
    }

    /// A follower learns that an entry committed from the leader's next Ready, not from the next
    /// heartbeat: no tick passes here, yet every member applies the proposal. (Followers answer
    /// forwarded writes and `?minIndex=` reads on their own apply; through the heartbeat a lone
    /// write through a follower took 13 ms instead of 2.)
    func testFollowersLearnACommitWithoutWaitingForAHeartbeat() throws {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        cluster.deliverAll()
        let (index, _) = try cluster.cores[leader]!.propose([7])
        cluster.deliverAll()
        XCTAssertEqual(cluster[leader].commitIndex, index, "the leader committed the proposal")
        for id in ["n1", "n2", "n3"] where id != leader {
            XCTAssertEqual(cluster[id].commitIndex, index, "\(id) knows the commit without a heartbeat")
            XCTAssertEqual(cluster.applied[id, default: []].last?.index, index, "\(id) applied the proposal without a heartbeat")
        }
    }

    func testSection3_5_FastBacktrackingSkipsAConflictingTermAtOnce() {
        // n3 holds 30 entries of term 1 that nobody else has; n1 leads term 2 with a different log.
        var settings = RaftSettings()
        settings.preVote = false
        var cluster = TestCluster(["n1", "n2", "n3"], settings: settings)
        let configuration = Configuration(voters: ["n1", "n2", "n3"])
        let base = Snapshot(index: 0, term: 0, configuration: configuration, data: [])
        let divergent = (1...30).map { Entry(term: 1, index: $0, payload: .command([0xEE])) }
        let winning = (1...5).map { Entry(term: 2, index: $0, payload: .command([0x01])) }
        cluster.add(Raft(id: "n3", settings: settings, seed: 3, hardState: HardState(term: 1), snapshot: base, entries: divergent))
        cluster.add(Raft(id: "n1", settings: settings, seed: 1, hardState: HardState(term: 2), snapshot: base, entries: winning))
        cluster.add(Raft(id: "n2", settings: settings, seed: 2, hardState: HardState(term: 2), snapshot: base, entries: winning))
        cluster.campaign("n1")
        cluster.deliverAll()
        XCTAssertEqual(cluster["n1"].role, .leader)
        let rejections = cluster.sent.filter { if case .appendResponse(true, _, _, _) = $0.kind, $0.from == "n3" { true } else { false } }.count
        XCTAssertEqual(cluster["n3"].lastIndex, cluster["n1"].lastIndex, "n3's conflicting entries were replaced")
        XCTAssertEqual(cluster["n3"].term(at: 30), nil, "n3's extra term-1 entries are gone")
        XCTAssertLessThanOrEqual(rejections, 2, "backtracking skipped the whole conflicting term, not one entry per round trip (\(rejections) rejections)")
    }

    func testFlowControl_AppendsInFlightAreBoundedByInflightAppendsMax() {
        var settings = RaftSettings()
        settings.inflightAppendsMax = 4
        settings.appendBytesMax = 16
        var cluster = TestCluster(["n1", "n2", "n3"], settings: settings)
        let leader = cluster.electLeader()
        let follower = ["n1", "n2", "n3"].first { $0 != leader }!
        cluster.cut = [follower]
        cluster.sent.removeAll()
        for _ in 0..<100 { _ = try! cluster.cores[leader]!.propose([UInt8](repeating: 1, count: 16)) }
        cluster.deliverAll()
        let appends = cluster.sent.filter { if case .append(_, _, let entries, _) = $0.kind, $0.to == follower { !entries.isEmpty } else { false } }
        XCTAssertEqual(appends.count, 4, "a silent follower gets at most inflightAppendsMax appends")
        for append in appends {
            if case .append(_, _, let entries, _) = append.kind { XCTAssertEqual(entries.count, 1, "16-byte entries, appendBytesMax 16: one per message") }
        }
    }

    func testSection3_6_2_ANewLeaderCommitsEarlierEntriesOnlyThroughAnEntryOfItsTerm() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        XCTAssertEqual(cluster.applied[leader]?.first?.payload, .noop, "a new leader's first entry is a no-op of its term")
        XCTAssertTrue(cluster[leader].hasCommittedInTerm)
    }

    /// Figure 3.7: S1 leads term 4 holding entry 2 of term 2; once S3 also holds it, entry 2
    /// is on a majority (S1, S2, S3) but must not be committed by counting: S5 (entry 2 of term
    /// 3) could still win with S3's and S4's votes and overwrite it. Only S1's term-4 no-op on a
    /// majority commits it.
    func testSection3_6_2_Figure3_7_EntriesOfEarlierTermsAreNotCommittedByCounting() {
        var settings = RaftSettings()
        settings.preVote = false
        settings.appendBytesMax = 1  // one entry per append
        settings.inflightAppendsMax = 1
        let ids = ["s1", "s2", "s3", "s4", "s5"]
        var cluster = TestCluster(ids, settings: settings)
        let base = Snapshot(index: 0, term: 0, configuration: Configuration(voters: Set(ids)), data: [])
        let e1 = Entry(term: 1, index: 1, payload: .command([1]))
        let logs: [NodeID: [Entry]] = [
            "s1": [e1, Entry(term: 2, index: 2, payload: .command([2]))],
            "s2": [e1, Entry(term: 2, index: 2, payload: .command([2]))],
            "s3": [e1], "s4": [e1],
            "s5": [e1, Entry(term: 3, index: 2, payload: .command([3]))],
        ]
        for (number, id) in ids.enumerated() {
            cluster.add(Raft(id: id, settings: settings, seed: UInt64(number + 1), hardState: HardState(term: 3, commit: 1), snapshot: base, entries: logs[id]!))
        }
        cluster.campaign("s1")
        cluster.deliver { message in
            if case .vote = message.kind { return true }
            if case .voteResponse = message.kind { return true }
            return false
        }
        XCTAssertEqual(cluster["s1"].role, .leader, "s1 wins term 4 with s2, s3 and s4")
        XCTAssertEqual(cluster["s1"].term, 4)
        // s3 refuses appends after entry 2 (it lacks it) until s1 sends entry 2 (term 2) alone.
        // s2 (which already holds entry 2) takes the no-op of term 4 too.
        var s3HoldsEntry2 = false
        cluster.deliver { message in
            if message.to == "s2" || message.from == "s2" { return true }
            if case .append(let prevIndex, _, let entries, _) = message.kind, message.to == "s3", !s3HoldsEntry2 {
                if entries.map(\.index) == [2] { s3HoldsEntry2 = true }
                return prevIndex >= 2 || entries.map(\.index) == [2]
            }
            if case .appendResponse = message.kind, message.from == "s3" { return true }
            return false
        }
        XCTAssertEqual(cluster["s3"].lastIndex, 2, "s3 holds entry 2 of term 2")
        XCTAssertEqual(cluster["s2"].lastIndex, 3, "s2 holds entry 2 and the no-op")
        XCTAssertEqual(cluster["s1"].commitIndex, 1,
                       "entry 2 (term 2) is on s1, s2, s3 but must not be committed before an entry of term 4 is")
    }

    func testSection5_AFollowerBehindTheCompactedLogReceivesTheSnapshot() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        let lagging = ["n1", "n2", "n3"].first { $0 != leader }!
        cluster.cut = [lagging]
        for value in 1...40 { _ = try! cluster.cores[leader]!.propose([UInt8(value)]) }
        cluster.deliverAll()
        cluster.run(ticks: 2)
        let applied = cluster[leader].appliedIndex
        let snapshot = cluster.cores[leader]!.compact(through: applied, data: [42])
        XCTAssertEqual(snapshot.index, applied)
        XCTAssertEqual(cluster[leader].snapshotIndex, applied, "entries through \(applied) left the leader's memory")
        cluster.cut = []
        cluster.sent.removeAll()
        cluster.run(ticks: 5)
        XCTAssertTrue(cluster.sent.contains { if case .installSnapshot(let sent) = $0.kind { sent.index == applied && $0.to == lagging } else { false } },
                      "the leader sends its snapshot to the member that needs compacted entries")
        XCTAssertEqual(cluster[lagging].commitIndex, cluster[leader].commitIndex, "the lagging member caught up")
        XCTAssertEqual(cluster[lagging].snapshotIndex, applied)
    }

    /// §10.2.1: the leader may send before its own fsync, but counts its own entries toward a
    /// commit only once persisted. A single voter's entry is committed by the `advance` that
    /// reports its fsync, never handed out for applying in the `Ready` that persists it.
    func testALeaderCountsOnlyItsPersistedEntriesTowardACommit() throws {
        let snapshot = Snapshot(index: 0, term: 0, configuration: Configuration(voters: ["n1"]), data: [])
        var core = Raft(id: "n1", seed: 1, snapshot: snapshot)
        for _ in 0..<200 where core.role != .leader {
            core.tick()
            core.advance(core.ready())
        }
        XCTAssertEqual(core.role, .leader)
        var pending = core.ready()
        while !pending.isEmpty {
            core.advance(pending)
            pending = core.ready()
        }
        core.advance(pending)
        let (index, _) = try core.propose([42])
        let persisting = core.ready()
        XCTAssertEqual(persisting.entries.map(\.index), [index], "the proposal goes out to be persisted")
        XCTAssertFalse(persisting.committed.contains { $0.index == index }, "not committed before its fsync: \(persisting.committed.map(\.index))")
        XCTAssertLessThan(core.commitIndex, index)
        core.advance(persisting)
        XCTAssertEqual(core.commitIndex, index, "committed once persisted")
        XCTAssertEqual(core.ready().committed.map(\.index), [index], "then handed out to be applied")
    }
}
