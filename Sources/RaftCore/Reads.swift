/// Leader-side bookkeeping of linearizable reads (Raft §6.4). Reads are batched: every read
/// that arrives while a round of heartbeats is in flight joins the next round, so any number
/// of reads costs one heartbeat round.
struct ReadQueue: Sendable {
    struct Pending: Sendable {
        var context: UInt64
        var from: NodeID
        var index: LogIndex
        var round: UInt64
    }

    /// Reads that arrived before the leader committed an entry of its term.
    var waitingForCommit: [(context: UInt64, from: NodeID)] = []
    /// Reads with their index, waiting for a quorum to confirm `round`. Rounds only grow.
    var pending: [Pending] = []
    /// Last round started and last round a quorum confirmed.
    var round: UInt64 = 0
    /// The last round started has not left in a `Ready` yet: a read may still join it.
    var roundOpen = false
    var confirmed: UInt64 = 0
    /// Tick at which each unconfirmed round was sent, for the lease (bounded by `roundsTrackedMax`).
    var roundTicks: [(round: UInt64, tick: UInt64)] = []
    /// Tick at which the latest confirmed round was sent: a quorum heard from us after it.
    var leaseStart: UInt64?

    static let roundsTrackedMax = 1024

    var count: Int { waitingForCommit.count + pending.count }

    mutating func startRound(at tick: UInt64) -> UInt64 {
        round += 1
        roundOpen = true
        roundTicks.append((round, tick))
        if roundTicks.count > Self.roundsTrackedMax { roundTicks.removeFirst(roundTicks.count - Self.roundsTrackedMax) }
        return round
    }

    /// A quorum confirmed `newConfirmed`: returns the reads it releases.
    mutating func confirm(_ newConfirmed: UInt64) -> [Pending] {
        guard newConfirmed > confirmed else { return [] }
        confirmed = newConfirmed
        if let sent = roundTicks.last(where: { $0.round <= newConfirmed }) { leaseStart = sent.tick }
        roundTicks.removeAll { $0.round <= newConfirmed }
        let released = pending.prefix { $0.round <= newConfirmed }
        pending.removeFirst(released.count)
        return Array(released)
    }

    mutating func onCommittedInTerm(commit: LogIndex, committedInTerm: Bool) {
        guard committedInTerm, !waitingForCommit.isEmpty else { return }
        for read in waitingForCommit { pending.append(Pending(context: read.context, from: read.from, index: commit, round: round + 1)) }
        waitingForCommit.removeAll()
    }
}

extension Raft {
    /// Asks for a linearizable read. A `ReadState` with this `context` comes out in a later
    /// `Ready` once leadership is confirmed; the read may be served when the application has
    /// applied its index. Without a leader, throws; if the leader changes first, no
    /// `ReadState` comes and the shell's timeout answers the client.
    public mutating func readIndex(context: UInt64) throws(RaftError) {
        guard reads.count + forwardedReads.count < settings.pendingReadsMax else {
            throw .readsQueueFull(pending: reads.count + forwardedReads.count)
        }
        if role == .leader {
            requestRead(context: context, from: id)
        } else if leader != nil {
            forwardedReads.append(context)
        } else {
            throw .notLeader(leader: nil)
        }
    }

    mutating func requestRead(context: UInt64, from: NodeID) {
        guard reads.count < settings.pendingReadsMax else { return }  // a follower's client times out
        guard hasCommittedInTerm else {
            reads.waitingForCommit.append((context, from))
            return
        }
        if leaseIsValid {
            answer([ReadQueue.Pending(context: context, from: from, index: log.commitIndex, round: 0)])
            return
        }
        // Join the round whose heartbeats have not left yet, else the next one; start it now
        // unless a round is in flight (its confirmation starts the next).
        let joinsOpenRound = reads.roundOpen && reads.confirmed < reads.round
        reads.pending.append(ReadQueue.Pending(context: context, from: from, index: log.commitIndex, round: joinsOpenRound ? reads.round : reads.round + 1))
        if !joinsOpenRound, reads.confirmed == reads.round { broadcastHeartbeat() }
    }

    /// Lease reads: a quorum heard from us within the last election timeout (less a tick of
    /// margin), and each of them ignores campaigns for an election timeout after hearing from
    /// us, so no other leader can exist yet.
    var leaseIsValid: Bool {
        guard settings.leaseReads, role == .leader, transferTarget == nil, let start = reads.leaseStart else { return false }
        return ticks < start + UInt64(settings.electionTicks) - 1
    }

    /// Releases the reads of every round a quorum of voters has confirmed.
    mutating func confirmReads() {
        guard role == .leader else { return }
        let configuration = log.configuration
        var rounds = configuration.voters.map { $0 == id ? reads.round : (progress[$0]?.readRound ?? 0) }
        guard !rounds.isEmpty else { return }
        rounds.sort(by: >)
        let released = reads.confirm(rounds[configuration.quorum - 1])
        answer(released)
        if let next = reads.pending.first, next.round > reads.round { broadcastHeartbeat() }
    }

    private mutating func answer(_ released: [ReadQueue.Pending]) {
        var byFollower: [NodeID: (contexts: [UInt64], index: LogIndex)] = [:]
        for read in released {
            if read.from == id {
                readStates.append(ReadState(index: read.index, context: read.context))
            } else {
                byFollower[read.from, default: ([], 0)].contexts.append(read.context)
                byFollower[read.from]!.index = max(byFollower[read.from]!.index, read.index)
            }
        }
        for (follower, batch) in byFollower.sorted(by: { $0.key < $1.key }) where progress[follower] != nil {
            send(to: follower, .readIndexResponse(contexts: batch.contexts, index: batch.index))
        }
    }
}
