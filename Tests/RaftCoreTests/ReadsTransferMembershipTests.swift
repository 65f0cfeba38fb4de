import RaftCore
import XCTest

/// ReadIndex (Raft §6.4), leader leases, leadership transfer (§3.10) and membership (§4.1).
final class ReadsTransferMembershipTests: XCTestCase {
    func testSection6_4_ReadIndexBatchesManyReadsIntoOneHeartbeatRound() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        cluster.sent.removeAll()
        for context in 1...100 { try! cluster.cores[leader]!.readIndex(context: UInt64(context)) }
        cluster.deliverAll()
        let heartbeats = cluster.sent.filter { if case .heartbeat = $0.kind { true } else { false } }.count
        XCTAssertEqual(heartbeats, 2, "100 reads cost one heartbeat to each follower, not \(heartbeats / 2) rounds")
        let states = cluster.readStates[leader, default: []]
        XCTAssertEqual(states.map(\.context), (1...100).map(UInt64.init))
        XCTAssertTrue(states.allSatisfy { $0.index == cluster[leader].commitIndex }, "each read waits for the commit index at its request")
    }

    func testSection6_4_AReadOnAFollowerGoesThroughTheLeader() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        let follower = ["n1", "n2", "n3"].first { $0 != leader }!
        try! cluster.cores[follower]!.readIndex(context: 7)
        cluster.deliverAll()
        XCTAssertEqual(cluster.readStates[follower]?.map(\.context), [7])
        XCTAssertEqual(cluster.readStates[follower]?.first?.index, cluster[leader].commitIndex)
    }

    func testSection6_4_AnIsolatedLeaderAnswersNoRead() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        cluster.cut = [leader]
        try! cluster.cores[leader]!.readIndex(context: 1)
        cluster.deliverAll()
        cluster.tick(leader, times: 3)
        XCTAssertEqual(cluster.readStates[leader, default: []], [], "without a quorum's heartbeat answers, no read is released")
    }

    func testLeaseReads_AreServedWithoutARoundWhileTheLeaseHolds() {
        var settings = RaftSettings()
        settings.leaseReads = true
        var cluster = TestCluster(["n1", "n2", "n3"], settings: settings)
        let leader = cluster.electLeader()
        cluster.run(ticks: 2)
        cluster.sent.removeAll()
        try! cluster.cores[leader]!.readIndex(context: 9)
        cluster.flush(leader)
        XCTAssertEqual(cluster.readStates[leader]?.map(\.context), [9], "served from the lease at once")
        XCTAssertTrue(cluster.sent.isEmpty, "no messages for a lease read")
    }

    /// A leader cut off from the others serves lease reads only while no other leader can exist.
    func testLeaseReads_EndBeforeAnotherLeaderIsElected() {
        var settings = RaftSettings()
        settings.leaseReads = true
        for seedShift in 0..<20 {
            let ids = ["n1", "n2", "n3"].map { $0 + "-\(seedShift)" }  // different ids, different timeouts
            var cluster = TestCluster(ids, settings: settings)
            let leader = cluster.electLeader()
            cluster.run(ticks: 3)
            cluster.cut = [leader]
            var newLeaderTick: Int?
            var lastLeaseReadTick = -1
            for tick in 0..<(6 * settings.electionTicks) {
                if cluster[leader].role == .leader {
                    let before = cluster.readStates[leader, default: []].count
                    try? cluster.cores[leader]!.readIndex(context: UInt64(tick + 1))
                    cluster.flush(leader)
                    if cluster.readStates[leader, default: []].count > before { lastLeaseReadTick = tick }
                }
                for id in ids { cluster.tick(id) }
                cluster.deliverAll()
                if newLeaderTick == nil, cluster.leaders.contains(where: { $0 != leader }) { newLeaderTick = tick }
            }
            guard let newLeaderTick else { return XCTFail("the majority elected no new leader") }
            XCTAssertLessThan(lastLeaseReadTick, newLeaderTick,
                              "ids \(ids): the old leader served a lease read at tick \(lastLeaseReadTick), a new leader was elected at tick \(newLeaderTick)")
        }
    }

    func testSection3_10_LeadershipTransfer() throws {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        let target = ["n1", "n2", "n3"].first { $0 != leader }!
        try cluster.cores[leader]!.transferLeadership(to: target)
        XCTAssertThrowsError(try cluster.cores[leader]!.propose([1])) { error in
            XCTAssertEqual(error as? RaftError, .transferInProgress(to: target))
        }
        cluster.deliverAll()
        XCTAssertEqual(cluster.leaders, [target], "TimeoutNow made \(target) campaign and win")
    }

    func testSection4_1_ALearnerCatchesUpAndIsPromoted() throws {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        for value in 1...20 { _ = try cluster.cores[leader]!.propose([UInt8(value)]) }
        cluster.deliverAll()
        cluster.add(Raft(id: "n4", seed: 4, snapshot: Snapshot(index: 0, term: 0, configuration: Configuration(voters: []), data: [])))
        XCTAssertThrowsError(try cluster.cores[leader]!.proposeConfigurationChange(.promote("n4"))) { error in
            XCTAssertEqual(error as? RaftError, .unknownMember("n4"), "only a learner can be promoted")
        }
        _ = try cluster.cores[leader]!.proposeConfigurationChange(.addLearner("n4"))
        XCTAssertThrowsError(try cluster.cores[leader]!.proposeConfigurationChange(.remove("n2"))) { error in
            guard case .configurationChangePending = error as? RaftError else { return XCTFail("\(error)") }
        }
        cluster.deliverAll()
        cluster.run(ticks: 3)
        XCTAssertEqual(cluster["n4"].commitIndex, cluster[leader].commitIndex, "the learner received the whole log")
        XCTAssertEqual(cluster[leader].configuration.learners, ["n4"])
        XCTAssertFalse(cluster["n4"].isVoter)
        _ = try cluster.cores[leader]!.proposeConfigurationChange(.promote("n4"))
        cluster.deliverAll()
        cluster.run(ticks: 2)
        XCTAssertEqual(cluster[leader].configuration.voters, ["n1", "n2", "n3", "n4"])
        XCTAssertTrue(cluster["n4"].isVoter)
    }

    func testSection4_1_ALearnerThatIsBehindIsNotPromoted() throws {
        var settings = RaftSettings()
        settings.promotionLagMax = 5
        var cluster = TestCluster(["n1", "n2", "n3"], settings: settings)
        let leader = cluster.electLeader()
        cluster.add(Raft(id: "n4", settings: settings, seed: 4, snapshot: Snapshot(index: 0, term: 0, configuration: Configuration(voters: []), data: [])))
        _ = try cluster.cores[leader]!.proposeConfigurationChange(.addLearner("n4"))
        cluster.cut = ["n4"]
        cluster.deliverAll()
        cluster.run(ticks: 2)
        for value in 1...20 { _ = try cluster.cores[leader]!.propose([UInt8(value)]) }
        cluster.deliverAll()
        XCTAssertThrowsError(try cluster.cores[leader]!.proposeConfigurationChange(.promote("n4"))) { error in
            guard case .learnerBehind("n4", _, _) = error as? RaftError else { return XCTFail("\(error)") }
        }
    }

    func testSection4_2_2_ALeaderThatRemovesItselfStepsDownOnceCommitted() throws {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        _ = try cluster.cores[leader]!.proposeConfigurationChange(.remove(leader))
        cluster.deliverAll()
        XCTAssertEqual(cluster[leader].role, .follower)
        XCTAssertFalse(cluster[leader].isVoter)
        cluster.cut = [leader]
        let next = cluster.electLeader()
        XCTAssertNotEqual(next, leader)
        XCTAssertEqual(cluster[next].configuration.voters.count, 2)
    }
}
