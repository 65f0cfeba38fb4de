/// A Raft message between two members. `term` is the sender's term, except for pre-vote
/// requests and granted pre-vote responses, which carry the term the campaign would use.
public struct Message: Hashable, Sendable {
    public var from: NodeID
    public var to: NodeID
    public var term: Term
    public var kind: Kind

    public init(from: NodeID, to: NodeID, term: Term, kind: Kind) {
        self.from = from
        self.to = to
        self.term = term
        self.kind = kind
    }

    public enum Kind: Hashable, Sendable {
        /// Raft §9.6: would you vote for me at `term`? Changes no state at the receiver.
        case preVote(lastIndex: LogIndex, lastTerm: Term)
        case preVoteResponse(granted: Bool)
        /// Raft §3.4. `transfer` marks a campaign started by TimeoutNow (§3.10), which voters
        /// honour even while they hear from the current leader.
        case vote(lastIndex: LogIndex, lastTerm: Term, transfer: Bool)
        case voteResponse(granted: Bool)
        /// Raft §3.5. `commit` is the leader's commit index.
        case append(prevIndex: LogIndex, prevTerm: Term, entries: [Entry], commit: LogIndex)
        /// Success: `index` is the follower's last index matching the leader. Rejection:
        /// `index` is the rejected `prevIndex`, and the hint lets the leader skip a whole
        /// conflicting term at once (fast backtracking).
        case appendResponse(reject: Bool, index: LogIndex, hintIndex: LogIndex, hintTerm: Term)
        /// `round` confirms leadership for ReadIndex rounds up to it (Raft §6.4).
        case heartbeat(commit: LogIndex, round: UInt64)
        case heartbeatResponse(round: UInt64)
        /// Raft §5: the snapshot replaces the follower's log up to `snapshot.index`.
        case installSnapshot(Snapshot)
        /// Raft §3.10: campaign now, the leader is handing over.
        case timeoutNow
        /// A follower asks the leader for a read index on behalf of its clients.
        case readIndex(contexts: [UInt64])
        /// The leader's answer: the contexts may be served once `index` is applied.
        case readIndexResponse(contexts: [UInt64], index: LogIndex)
    }
}
