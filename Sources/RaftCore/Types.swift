/// A Raft term (Raft §3.3). Terms only grow.
public typealias Term = UInt64
/// A position in the replicated log, starting at 1; 0 means "before the first entry".
public typealias LogIndex = UInt64
/// A member's stable identity (the node id ops give with `--id`).
public typealias NodeID = String

/// Who votes and who only receives the log (Raft §4.1, learners §4.2.1).
public struct Configuration: Hashable, Sendable, CustomStringConvertible {
    public var voters: Set<NodeID>
    public var learners: Set<NodeID>

    public init(voters: Set<NodeID>, learners: Set<NodeID> = []) {
        precondition(voters.isDisjoint(with: learners), "a member is both voter and learner: \(voters.intersection(learners))")
        self.voters = voters
        self.learners = learners
    }

    public var members: Set<NodeID> { voters.union(learners) }
    public var quorum: Int { voters.count / 2 + 1 }

    public var description: String {
        "voters=\(voters.sorted()) learners=\(learners.sorted())"
    }
}

/// One server at a time (Raft §4.1): each change differs from the current configuration by one member.
public enum ConfigurationChange: Hashable, Sendable {
    /// Adds a non-voting member that receives the log and snapshots.
    case addLearner(NodeID)
    /// Makes a caught-up learner a voter.
    case promote(NodeID)
    /// Removes a voter or a learner.
    case remove(NodeID)
}

public enum EntryPayload: Hashable, Sendable {
    /// An application command, opaque to Raft.
    case command([UInt8])
    /// Appended by every new leader so it can commit entries of earlier terms (Raft §3.6.2).
    case noop
    /// The configuration in force from the moment this entry is appended (Raft §4.1).
    case configuration(Configuration)

    var byteCount: Int {
        switch self {
        case .command(let bytes): bytes.count
        case .noop: 0
        case .configuration(let configuration): 16 * configuration.members.count
        }
    }
}

public struct Entry: Hashable, Sendable {
    public var term: Term
    public var index: LogIndex
    public var payload: EntryPayload

    public init(term: Term, index: LogIndex, payload: EntryPayload) {
        self.term = term
        self.index = index
        self.payload = payload
    }
}

/// What must be on disk before a vote or an acknowledgement leaves the node (Raft §3.8 Figure 3.1).
public struct HardState: Hashable, Sendable {
    public var term: Term
    public var vote: NodeID?
    public var commit: LogIndex

    public init(term: Term = 0, vote: NodeID? = nil, commit: LogIndex = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// A snapshot of the application's state through `index` (Raft §5). `data` is opaque to the
/// core: the simulator puts its state there; a node puts a handle to its snapshot file.
public struct Snapshot: Hashable, Sendable {
    public var index: LogIndex
    public var term: Term
    public var configuration: Configuration
    public var data: [UInt8]

    public init(index: LogIndex, term: Term, configuration: Configuration, data: [UInt8]) {
        self.index = index
        self.term = term
        self.configuration = configuration
        self.data = data
    }
}

/// A linearizable read may be served once the application has applied `index` (Raft §6.4).
public struct ReadState: Hashable, Sendable {
    public var index: LogIndex
    public var context: UInt64

    public init(index: LogIndex, context: UInt64) {
        self.index = index
        self.context = context
    }
}

public enum Role: String, Sendable {
    case follower, preCandidate, candidate, leader
}

/// Why the core refused a request. Nothing changed.
public enum RaftError: Error, Hashable, Sendable, CustomStringConvertible {
    case notLeader(leader: NodeID?)
    case transferInProgress(to: NodeID)
    case configurationChangePending(index: LogIndex)
    case noEntryCommittedInTerm
    case unknownMember(NodeID)
    case alreadyMember(NodeID)
    case learnerBehind(NodeID, match: LogIndex, lastIndex: LogIndex)
    case removingLastVoter
    case proposalQueueFull(uncommitted: Int)
    case readsQueueFull(pending: Int)

    public var description: String {
        switch self {
        case .notLeader(let leader): "not the leader (leader: \(leader ?? "unknown"))"
        case .transferInProgress(let to): "leadership is being transferred to \(to)"
        case .configurationChangePending(let index): "a configuration change at index \(index) is not committed yet"
        case .noEntryCommittedInTerm: "the leader has not committed an entry in its term yet"
        case .unknownMember(let id): "\(id) is not a member"
        case .alreadyMember(let id): "\(id) is already a member"
        case .learnerBehind(let id, let match, let last): "learner \(id) has \(match) of \(last) entries; promote it once caught up"
        case .removingLastVoter: "the last voter cannot be removed"
        case .proposalQueueFull(let n): "\(n) proposals are uncommitted (uncommittedEntriesMax)"
        case .readsQueueFull(let n): "\(n) reads are pending (pendingReadsMax)"
        }
    }
}

/// Settings of one core, validated by `validate()`. Ticks are the shell's clock unit.
public struct RaftSettings: Sendable, Hashable {
    /// Followers wait a random number of ticks in [electionTicks, 2 * electionTicks) without
    /// hearing from a leader before they campaign (Raft §3.4).
    public var electionTicks = 10
    /// A leader sends heartbeats every `heartbeatTicks`.
    public var heartbeatTicks = 1
    /// Pipelined append messages in flight to one follower (etcd `MaxInflightMsgs`).
    public var inflightAppendsMax = 64
    /// Payload bytes in one append message (etcd `MaxSizePerMsg`); one entry always fits.
    public var appendBytesMax = 1 << 20
    /// Entries appended by the leader and not yet committed; proposals past it are refused.
    public var uncommittedEntriesMax = 100_000
    /// Reads waiting for leadership confirmation on the leader.
    public var pendingReadsMax = 100_000
    /// A learner is promoted only when it lags the leader's last index by at most this.
    public var promotionLagMax: UInt64 = 100
    /// Pre-vote (Raft §9.6): a partitioned node cannot inflate terms and depose a healthy leader.
    public var preVote = true
    /// A leader steps down after an election timeout without hearing from a quorum, and
    /// followers ignore campaigns while they hear from a leader.
    public var checkQuorum = true
    /// Serve reads from the leader's lease (guarded by check-quorum) instead of a heartbeat round.
    public var leaseReads = false

    public init() {}

    public func validate() throws(SettingsError) {
        guard electionTicks >= 2 else { throw SettingsError("electionTicks must be at least 2, got \(electionTicks)") }
        guard heartbeatTicks >= 1, heartbeatTicks < electionTicks else {
            throw SettingsError("heartbeatTicks must be in 1..<electionTicks (\(electionTicks)), got \(heartbeatTicks)")
        }
        guard inflightAppendsMax >= 1 else { throw SettingsError("inflightAppendsMax must be at least 1") }
        guard appendBytesMax >= 1 else { throw SettingsError("appendBytesMax must be at least 1") }
        guard uncommittedEntriesMax >= 1, pendingReadsMax >= 1 else { throw SettingsError("queue bounds must be at least 1") }
        guard !leaseReads || checkQuorum else { throw SettingsError("leaseReads needs checkQuorum") }
    }
}

public struct SettingsError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

