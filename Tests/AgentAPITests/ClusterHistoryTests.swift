import ContactCenter
import XCTest

@testable import NodeRuntime

/// What the operations view lists as recent changes: leaders with their terms, membership and
/// gossip states, each recorded once, the oldest dropped past the bound.
final class ClusterHistoryTests: XCTestCase {
    private func sample(
        term: UInt64, leader: String?, members: [String: String] = ["n1": "voter", "n2": "voter", "n3": "voter"],
        gossip: [String: String] = ["n1": "alive", "n2": "alive", "n3": "alive"]
    ) -> ClusterHistory.Sample {
        ClusterHistory.Sample(term: term, leader: leader, members: members, gossip: gossip)
    }

    private func describe(_ history: ClusterHistory) -> [String] {
        history.changes.map { "\($0.at.milliseconds) \($0.kind) \($0.member) \($0.from ?? "-") \($0.to)" }
    }

    func testAnElectionAMemberChangeAndAGossipStateAreEachRecordedOnce() {
        var history = ClusterHistory()
        history.observe(sample(term: 2, leader: "n1"), at: Timestamp(milliseconds: 1))
        history.observe(sample(term: 2, leader: "n1"), at: Timestamp(milliseconds: 2))
        // n1 dies: gossip suspects it, an election runs without a leader, then n2 wins term 3.
        history.observe(sample(term: 2, leader: "n1", gossip: ["n1": "suspect", "n2": "alive", "n3": "alive"]), at: Timestamp(milliseconds: 3))
        history.observe(sample(term: 3, leader: nil, gossip: ["n1": "suspect", "n2": "alive", "n3": "alive"]), at: Timestamp(milliseconds: 4))
        history.observe(sample(term: 3, leader: "n2", gossip: ["n1": "dead", "n2": "alive", "n3": "alive"]), at: Timestamp(milliseconds: 5))
        // n4 joins as a learner and is promoted; n1 is removed.
        let four: [String: String] = ["n1": "voter", "n2": "voter", "n3": "voter", "n4": "learner"]
        history.observe(sample(term: 3, leader: "n2", members: four, gossip: ["n1": "dead", "n2": "alive", "n3": "alive"]), at: Timestamp(milliseconds: 6))
        let promoted: [String: String] = ["n2": "voter", "n3": "voter", "n4": "voter"]
        history.observe(sample(term: 3, leader: "n2", members: promoted, gossip: ["n2": "alive", "n3": "alive", "n4": "alive"]), at: Timestamp(milliseconds: 7))
        XCTAssertEqual(describe(history), [
            "1 leader n1 - 2",
            "3 gossip n1 alive suspect",
            "5 leader n2 - 3",
            "5 gossip n1 suspect dead",
            "6 membership n4 none learner",
            "7 membership n1 voter none",
            "7 membership n4 learner voter",
            "7 gossip n4 - alive",
        ], "the first sample gives only its leader; each later change once, a member gossip forgot is not a change")
    }

    func testOnlyTheNewestAreKept() {
        var history = ClusterHistory()
        for term in 1...UInt64(ClusterHistory.capacity + 30) {
            history.observe(sample(term: term, leader: term % 2 == 0 ? "n1" : "n2"), at: Timestamp(milliseconds: Int64(term)))
        }
        XCTAssertEqual(history.changes.count, ClusterHistory.capacity)
        XCTAssertEqual(history.changes.first?.to, "31", "the oldest are dropped first")
        XCTAssertEqual(history.changes.last?.to, String(ClusterHistory.capacity + 30))
    }
}
