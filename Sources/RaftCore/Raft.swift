import Seeded
/// One member's Raft state machine (Ongaro's dissertation), pure and deterministic: no I/O, no
/// clock, no system randomness. The shell drives it with `tick()`, `step(_:)`, `propose(_:)`,
/// `readIndex(context:)`, `transferLeadership(to:)` and `proposeConfigurationChange(_:)`, then
/// takes a `Ready`, carries it out in the order its documentation gives and calls `advance(_:)`.
public struct Raft: Sendable {
    public let id: NodeID
    public let settings: RaftSettings

    public internal(set) var term: Term
    public internal(set) var vote: NodeID?
    public internal(set) var role: Role = .follower
    /// The leader of `term` as far as this member knows.
    public internal(set) var leader: NodeID?

    var log: RaftLog
    var random: SplitMix64
    /// Ticks since this core was created (leases and restart hold-off).
    var ticks: UInt64 = 0
    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    /// Responses to this member's (pre-)campaign.
    var votes: [NodeID: Bool] = [:]
    /// Leader only: every other member's log.
    var progress: [NodeID: Progress] = [:]
    /// Leader only: new entries wait for `ready()` so that many proposals share each message.
    var broadcastPending = false
    /// Leader only: the commit index moved, or a member whose pipeline drained was told an older
    /// one. The next `ready()` tells every member with nothing in flight, by an append with no
    /// entries if none is going out to it (the others are told when their acknowledgements come
    /// back, `onAppendResponse`): a follower applies, and answers the writes it forwarded and the
    /// `?minIndex=` reads waiting on it, as soon as the commit is known, not at the next
    /// heartbeat (which made a lone write through a follower take 13 ms instead of 2).
    var commitToAnnounce = false
    var transferTarget: NodeID?
    var transferElapsed = 0

    // ReadIndex (Raft §6.4), leader side.
    var reads = ReadQueue()
    // Follower side: contexts to forward to the leader at the next `ready()`.
    var forwardedReads: [UInt64] = []

    // Output of the current `Ready`.
    var messages: [Message] = []
    var readStates: [ReadState] = []
    var snapshotToInstall: Snapshot?
    var persistedHardState: HardState
    var readyOutstanding = false

    /// Restores a member from what it persisted: `hardState`, the latest `snapshot` (for a new
    /// cluster, a snapshot at index 0 that holds the initial configuration; for a member that
    /// is joining, one with an empty configuration) and the entries after it. `applied` is the
    /// last index the application has already applied (entries after it are handed out again).
    public init(
        id: NodeID, settings: RaftSettings = RaftSettings(), seed: UInt64,
        hardState: HardState = HardState(), snapshot: Snapshot, entries: [Entry] = [], applied: LogIndex = 0
    ) {
        do { try settings.validate() } catch { preconditionFailure("invalid RaftSettings: \(error)") }
        self.id = id
        self.settings = settings
        term = hardState.term
        vote = hardState.vote
        log = RaftLog(snapshot: snapshot, entries: entries, commitIndex: hardState.commit, appliedIndex: applied)
        random = SplitMix64(seed: seed ^ UInt64(truncatingIfNeeded: id.hashValueStable))
        persistedHardState = hardState
        resetElectionTimeout()
    }

    // MARK: Status

    public var commitIndex: LogIndex { log.commitIndex }
    public var appliedIndex: LogIndex { log.appliedIndex }
    public var lastIndex: LogIndex { log.lastIndex }
    public var lastTerm: Term { log.lastTerm }
    public var configuration: Configuration { log.configuration }
    public var snapshotIndex: LogIndex { log.snapshot.index }
    public var isVoter: Bool { log.configuration.voters.contains(id) }
    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.commitIndex) }
    /// The term of the entry at `index`, when it is in memory or is the snapshot's.
    public func term(at index: LogIndex) -> Term? { log.term(at: index) }
    /// Leader only: each other member's matched index.
    public var matchIndexes: [NodeID: LogIndex] { progress.mapValues(\.match) }
    /// One line per follower (leader only), for traces: match, next, state, in flight.
    public var progressDescription: String {
        progress.keys.sorted().map { id in
            let peer = progress[id]!
            return "\(id){match \(peer.match) next \(peer.next) \(peer.state) inflight \(peer.inflight.count) probeSent \(peer.probeSent) active \(peer.recentlyActive)}"
        }.joined(separator: " ")
    }

    /// A leader may serve reads and accept configuration changes once an entry of its term is committed.
    public var hasCommittedInTerm: Bool { log.term(at: log.commitIndex) == term }

    // MARK: Time

    /// Advances the logical clock by one tick: elections on followers and candidates;
    /// heartbeats, check-quorum and transfer timeouts on the leader.
    public mutating func tick() {
        ticks += 1
        if role == .leader {
            tickLeader()
        } else {
            electionElapsed += 1
            if isVoter && electionElapsed >= randomizedElectionTimeout {
                campaign(settings.preVote ? .preElection : .election)
            }
        }
    }

    private mutating func tickLeader() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if transferTarget != nil {
            transferElapsed += 1
            if transferElapsed >= settings.electionTicks { transferTarget = nil }  // the target did not take over in time
        }
        for id in progress.keys.sorted() where progress[id]!.tickPaused(settings.electionTicks, inflightMax: settings.inflightAppendsMax) { sendAppend(to: id) }
        if electionElapsed >= settings.electionTicks {
            electionElapsed = 0
            if settings.checkQuorum {
                let active = log.configuration.voters.filter { $0 == id || progress[$0]?.recentlyActive == true }.count
                guard active >= log.configuration.quorum else {
                    becomeFollower(term: term, leader: nil)  // check-quorum: no majority heard from us
                    return
                }
                for id in progress.keys { progress[id]!.recentlyActive = false }
            }
        }
        if heartbeatElapsed >= settings.heartbeatTicks {
            heartbeatElapsed = 0
            broadcastHeartbeat()
        }
    }

    mutating func resetElectionTimeout() {
        electionElapsed = 0
        randomizedElectionTimeout = settings.electionTicks + Int(random.next() % UInt64(settings.electionTicks))
    }

    /// While it hears from a leader (and for `electionTicks - 1` ticks after a restart, when it
    /// cannot know), a member with check-quorum ignores campaigns: a partitioned node cannot
    /// depose a healthy leader, and a leader's lease (`leaseReads`, one tick shorter than an
    /// election timeout) holds across a follower's restart.
    var inLease: Bool {
        settings.checkQuorum && electionElapsed < settings.electionTicks && (leader != nil || ticks < UInt64(settings.electionTicks - 1))
    }

    // MARK: Role changes

    mutating func becomeFollower(term newTerm: Term, leader newLeader: NodeID?) {
        precondition(newTerm >= term, "term went back: \(newTerm) < \(term)")
        if newTerm > term {
            term = newTerm
            vote = nil
        }
        role = .follower
        leader = newLeader
        votes = [:]
        progress = [:]
        broadcastPending = false
        commitToAnnounce = false
        transferTarget = nil
        reads = ReadQueue()
        heartbeatElapsed = 0
        resetElectionTimeout()
    }

    enum Campaign { case preElection, election, transfer }

    mutating func campaign(_ kind: Campaign) {
        precondition(isVoter, "\(id) campaigns without being a voter")
        let voters = log.configuration.voters
        votes = [id: true]
        leader = nil
        resetElectionTimeout()
        if kind == .preElection {
            role = .preCandidate
            if voters.count == 1 { return campaign(.election) }
            for voter in voters.sorted() where voter != id {
                send(to: voter, term: term + 1, .preVote(lastIndex: log.lastIndex, lastTerm: log.lastTerm))
            }
            return
        }
        role = .candidate
        term += 1
        vote = id
        if voters.count == 1 { return becomeLeader() }
        for voter in voters.sorted() where voter != id {
            send(to: voter, term: term, .vote(lastIndex: log.lastIndex, lastTerm: log.lastTerm, transfer: kind == .transfer))
        }
    }

    mutating func becomeLeader() {
        precondition(role == .candidate, "\(id) becomes leader from \(role)")
        role = .leader
        leader = id
        votes = [:]
        heartbeatElapsed = 0
        electionElapsed = 0
        reads = ReadQueue()
        progress = [:]
        for member in log.configuration.members where member != id {
            var peer = Progress(next: log.lastIndex + 1)
            peer.recentlyActive = true
            progress[member] = peer
        }
        // Raft §3.6.2: commit entries of earlier terms by committing one of this term.
        appendEntry(.noop)
        broadcastPending = true
    }

    mutating func send(to: NodeID, term: Term? = nil, _ kind: Message.Kind) {
        precondition(to != id, "\(id) sends to itself")
        messages.append(Message(from: id, to: to, term: term ?? self.term, kind: kind))
    }
}

extension String {
    /// FNV-1a: a hash that is the same in every process (Swift's `hashValue` is seeded per run).
    var hashValueStable: UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return hash
    }
}
