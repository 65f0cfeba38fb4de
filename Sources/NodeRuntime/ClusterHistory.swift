import ContactCenter

/// The changes this node has seen in its cluster since it started: each leader it learned
/// (with the term), members joining, leaving or gaining a vote, and members' gossip states.
/// `GET /v1/cluster` shows them as `recentChanges` (the console's operations view).
///
/// Pure: housekeeping hands it a `Sample` each round (every 200 ms) and it records what differs
/// from the previous one, so a state that came and went within one round is not seen. The first
/// sample is the baseline: only its leader is recorded. At most `capacity` changes are kept, the
/// oldest dropped first; they live in memory and a restarted node starts again.
struct ClusterHistory: Sendable {
    static let capacity = 100

    struct Sample: Sendable, Equatable {
        var term: UInt64
        var leader: String?
        /// Each member of the Raft configuration: "voter" or "learner".
        var members: [String: String]
        /// Each member gossip knows of: its status ("alive", "suspect", "dead", "left").
        var gossip: [String: String]
    }

    /// Oldest first.
    private(set) var changes: [ClusterChange] = []
    private var last: Sample?

    mutating func observe(_ sample: Sample, at: Timestamp) {
        defer { last = sample }
        guard sample != last else { return }
        if let leader = sample.leader, leader != last?.leader || sample.term != last?.term {
            record(ClusterChange(at: at, kind: "leader", member: leader, from: nil, to: String(sample.term)))
        }
        guard let last else { return }
        for member in Set(last.members.keys).union(sample.members.keys).sorted() where last.members[member] != sample.members[member] {
            record(ClusterChange(at: at, kind: "membership", member: member, from: last.members[member] ?? "none", to: sample.members[member] ?? "none"))
        }
        for member in Set(last.gossip.keys).union(sample.gossip.keys).sorted() where last.gossip[member] != sample.gossip[member] {
            guard let status = sample.gossip[member] else { continue }
            record(ClusterChange(at: at, kind: "gossip", member: member, from: last.gossip[member], to: status))
        }
    }

    private mutating func record(_ change: ClusterChange) {
        changes.append(change)
        if changes.count > Self.capacity { changes.removeFirst(changes.count - Self.capacity) }
    }
}
