import RaftCore
import XCTest

/// Leader election (Raft §3.4, §3.6.1), pre-vote (§9.6) and check-quorum.
final class ElectionTests: XCTestCase {
    func testSection3_4_OneLeaderIsElectedWithRandomizedTimeouts() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        XCTAssertEqual(cluster.leaders, [leader], "exactly one leader")
        let term = cluster[leader].term
        for id in ["n1", "n2", "n3"] {
            XCTAssertEqual(cluster[id].term, term, "\(id) is in the leader's term")
            XCTAssertEqual(cluster[id].leader, leader, "\(id) knows the leader")
        }
        XCTAssertEqual(cluster[leader].commitIndex, 1, "the new leader's no-op is committed (§3.6.2)")
    }

    func testSection3_4_AFollowerGrantsOneVotePerTerm() {
        let cluster = TestCluster(["n1", "n2", "n3"])
        var n2 = cluster["n2"]
        n2.step(Message(from: "n1", to: "n2", term: 5, kind: .vote(lastIndex: 0, lastTerm: 0, transfer: false)))
        n2.step(Message(from: "n3", to: "n2", term: 5, kind: .vote(lastIndex: 0, lastTerm: 0, transfer: false)))
        let ready = n2.ready()
        let grants = ready.messages.compactMap { message -> (NodeID, Bool)? in
            if case .voteResponse(let granted) = message.kind { return (message.to, granted) }
            return nil
        }
        XCTAssertEqual(grants.map(\.0), ["n1", "n3"])
        XCTAssertEqual(grants.map(\.1), [true, false], "the second candidate of term 5 is refused")
        XCTAssertEqual(ready.hardState?.vote, "n1", "the vote is in the hard state to persist before the answer leaves")
    }

    func testSection3_6_1_AVoteIsRefusedToACandidateWithAStaleLog() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        _ = try! cluster.cores[leader]!.propose([1])
        cluster.deliverAll()
        let follower = ["n1", "n2", "n3"].first { $0 != leader }!
        var voter = cluster[follower]
        let stale = Message(from: "n9", to: follower, term: voter.term + 1, kind: .vote(lastIndex: 1, lastTerm: voter.lastTerm, transfer: true))
        voter.step(stale)
        let ready = voter.ready()
        XCTAssertTrue(ready.messages.contains { if case .voteResponse(false) = $0.kind { true } else { false } },
                      "a candidate whose last index \(1) is behind ours (\(voter.lastIndex)) must be refused")
    }

    func testSection9_6_PreVoteKeepsAnIsolatedFollowerFromInflatingTerms() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        let term = cluster[leader].term
        let isolated = ["n1", "n2", "n3"].first { $0 != leader }!
        cluster.cut = [isolated]
        cluster.run(ticks: 100)
        XCTAssertEqual(cluster[isolated].term, term, "pre-vote: an isolated member does not raise its term (it would be \(cluster[isolated].term))")
        cluster.cut = []
        cluster.run(ticks: 30)
        XCTAssertEqual(cluster.leaders, [leader], "the healed member does not depose the leader")
        XCTAssertEqual(cluster[leader].term, term)
    }

    func testCheckQuorum_ALeaderCutOffFromTheMajorityStepsDown() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        cluster.cut = [leader]
        for _ in 0..<(2 * cluster[leader].settings.electionTicks) { cluster.tick(leader) }
        XCTAssertEqual(cluster[leader].role, .follower, "a leader that heard from no majority for an election timeout steps down")
        XCTAssertThrowsError(try cluster.cores[leader]!.propose([1]))
    }

    func testCheckQuorum_FollowersIgnoreCampaignsWhileTheyHearFromALeader() {
        var cluster = TestCluster(["n1", "n2", "n3"])
        let leader = cluster.electLeader()
        let follower = ["n1", "n2", "n3"].first { $0 != leader }!
        let term = cluster[follower].term
        cluster.cores[follower]!.step(Message(from: "n9", to: follower, term: term + 5, kind: .vote(lastIndex: 99, lastTerm: 99, transfer: false)))
        XCTAssertEqual(cluster[follower].term, term, "a campaign inside the leader's lease changes nothing")
        XCTAssertNil(cluster[follower].vote == "n9" ? "voted" : nil)
    }
}
