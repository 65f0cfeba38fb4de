extension Raft {
    // MARK: Proposals

    /// Appends a command to the leader's log. Returns its index and term: the command is
    /// committed when an entry with this index *and term* comes out in `Ready.committed`; if
    /// another entry comes out at that index, the proposal was lost (a leader change).
    public mutating func propose(_ command: [UInt8]) throws(RaftError) -> (index: LogIndex, term: Term) {
        try checkCanPropose()
        let index = appendEntry(.command(command))
        return (index, term)
    }

    func checkCanPropose() throws(RaftError) {
        guard role == .leader else { throw .notLeader(leader: leader) }
        if let target = transferTarget { throw .transferInProgress(to: target) }
        let uncommitted = Int(log.lastIndex - log.commitIndex)
        guard uncommitted < settings.uncommittedEntriesMax else { throw .proposalQueueFull(uncommitted: uncommitted) }
    }

    @discardableResult
    mutating func appendEntry(_ payload: EntryPayload) -> LogIndex {
        let index = log.lastIndex + 1
        log.append(Entry(term: term, index: index, payload: payload))
        broadcastPending = true
        return index
    }

    // MARK: Membership (Raft §4.1, one server at a time; learners §4.2.1)

    /// Proposes a one-member change. It takes effect on each member as soon as the entry is in
    /// its log; a second change waits until the first is committed.
    public mutating func proposeConfigurationChange(_ change: ConfigurationChange) throws(RaftError) -> (index: LogIndex, term: Term) {
        try checkCanPropose()
        guard log.configurationIndex <= log.commitIndex else { throw .configurationChangePending(index: log.configurationIndex) }
        guard hasCommittedInTerm else { throw .noEntryCommittedInTerm }
        var next = log.configuration
        switch change {
        case .addLearner(let member):
            guard !next.members.contains(member) else { throw .alreadyMember(member) }
            next.learners.insert(member)
        case .promote(let member):
            guard next.learners.contains(member) else { throw .unknownMember(member) }
            let match = progress[member]?.match ?? 0
            guard log.lastIndex - min(match, log.lastIndex) <= settings.promotionLagMax else {
                throw .learnerBehind(member, match: match, lastIndex: log.lastIndex)
            }
            next.learners.remove(member)
            next.voters.insert(member)
        case .remove(let member):
            guard next.members.contains(member) else { throw .unknownMember(member) }
            guard next.voters != [member] else { throw .removingLastVoter }
            next.voters.remove(member)
            next.learners.remove(member)
        }
        let index = appendEntry(.configuration(next))
        syncProgressWithConfiguration()
        maybeCommit()  // removing a voter can shrink the quorum
        return (index, term)
    }

    mutating func syncProgressWithConfiguration() {
        let members = log.configuration.members
        for member in members where member != id && progress[member] == nil {
            var peer = Progress(next: log.lastIndex)  // probe from the configuration entry
            peer.recentlyActive = true
            progress[member] = peer
        }
        for member in progress.keys where !members.contains(member) { progress[member] = nil }
    }

    // MARK: Leadership transfer (Raft §3.10)

    /// Hands leadership to `target`: proposals stop, the target is brought up to date and
    /// told to campaign at once. Gives up after an election timeout.
    public mutating func transferLeadership(to target: NodeID) throws(RaftError) {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard target != id else { return }
        guard log.configuration.voters.contains(target), progress[target] != nil else { throw .unknownMember(target) }
        transferTarget = target
        transferElapsed = 0
        if progress[target]!.match == log.lastIndex {
            send(to: target, .timeoutNow)
        } else {
            sendAppend(to: target)
        }
    }

    // MARK: Leader side of replication (Raft §3.5)

    /// Sends what flow control allows to `member`: entries from its `next`, or the snapshot
    /// when they are compacted. With `allowEmpty`, an append with no entries still goes out
    /// (a probe for where the follower is). With `announceCommit`, one goes out to a follower
    /// that has nothing in flight (so no acknowledgement will bring it another append soon) and
    /// was last told an older commit index: it learns the commit now, not at the next heartbeat.
    mutating func sendAppend(to member: NodeID, allowEmpty: Bool = false, announceCommit: Bool = false) {
        guard var peer = progress[member] else { return }
        defer { progress[member] = peer }
        var sentEmpty = false
        while !peer.isPaused(inflightMax: settings.inflightAppendsMax) {
            let prevIndex = peer.next - 1
            guard let prevTerm = log.term(at: prevIndex) else {
                // Compacted: only the snapshot can bring this member up (Raft §5).
                peer.becomeSnapshot(log.snapshot.index)
                send(to: member, .installSnapshot(log.snapshot))
                return
            }
            let entries = log.entries(from: peer.next, bytesMax: settings.appendBytesMax)
            if entries.isEmpty {
                let announce = announceCommit && peer.lacksCommit(log.commitIndex)
                guard (allowEmpty || announce || peer.state == .probe) && !sentEmpty else { return }
                sentEmpty = true
            }
            send(to: member, .append(prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: log.commitIndex))
            peer.commitSent = max(peer.commitSent, log.commitIndex)
            switch peer.state {
            case .probe:
                peer.probeSent = true
            case .replicate:
                if let last = entries.last {
                    peer.next = last.index + 1
                    peer.inflight.append(last.index)
                } else {
                    return
                }
            case .snapshot:
                return
            }
        }
    }

    /// Sends every member what it lacks; with `announceCommit`, the commit index too (see
    /// `sendAppend`).
    mutating func broadcastAppend(announceCommit: Bool = false) {
        for member in progress.keys.sorted() { sendAppend(to: member, announceCommit: announceCommit) }
    }

    mutating func broadcastHeartbeat() {
        let round = reads.startRound(at: ticks)
        for member in progress.keys.sorted() {
            send(to: member, .heartbeat(commit: min(progress[member]!.match, log.commitIndex), round: round))
        }
        confirmReads()  // a single voter confirms alone
    }

    mutating func onAppendResponse(from member: NodeID, reject: Bool, index: LogIndex, hintIndex: LogIndex, hintTerm: Term) {
        progress[member]!.recentlyActive = true
        if reject {
            var retryAt = hintIndex
            if hintTerm > 0 { retryAt = log.lastIndex(atOrBefore: hintIndex, termAtMost: hintTerm) }
            if progress[member]!.rejected(index, retryAt: retryAt) {
                if progress[member]!.state == .replicate { progress[member]!.becomeProbe() }
                sendAppend(to: member)
            }
            return
        }
        let moved = progress[member]!.acknowledge(index)
        switch progress[member]!.state {
        case .probe where moved || progress[member]!.match == index:
            // The probe found the match: pipeline from here.
            progress[member]!.becomeReplicate()
        case .snapshot(let snapshotIndex) where progress[member]!.match >= snapshotIndex:
            progress[member]!.becomeProbe()
        default:
            break
        }
        if moved, maybeCommit() { broadcastPending = true }
        if moved, member == transferTarget, progress[member]!.match == log.lastIndex { send(to: member, .timeoutNow) }
        sendAppend(to: member)
        // Its pipeline drained and it was told an older commit: tell it in `ready()`, by then
        // with the entries proposed in the same batch of inputs if there are any.
        // (The commit may have removed this leader, and with it `progress`.)
        if progress[member]?.lacksCommit(log.commitIndex) == true { commitToAnnounce = true }
    }

    mutating func onHeartbeatResponse(from member: NodeID, round: UInt64) {
        progress[member]!.recentlyActive = true
        progress[member]!.probeSent = false
        progress[member]!.readRound = max(progress[member]!.readRound, round)
        if progress[member]!.match < log.lastIndex {
            // Behind: probe where it is (an empty append at `next` is refused if something was
            // lost, which turns the pipeline back into a probe). A full pipeline waits for its
            // acknowledgements or the stall timeout in `tickPaused`.
            sendAppend(to: member, allowEmpty: true)
        }
        confirmReads()
    }

    /// Raft §3.6.2: commit the highest index a quorum of voters holds, if it is of this term.
    /// The leader holds what it has persisted (`stableIndex`), not what it has appended: it may
    /// send its entries before its own fsync (§10.2.1), but an entry it counts toward a commit,
    /// and so hands out to be applied, is on its disk. A single voter commits in `advance`.
    @discardableResult
    mutating func maybeCommit() -> Bool {
        guard role == .leader else { return false }
        let configuration = log.configuration
        var matches = configuration.voters.map { $0 == id ? log.stableIndex : (progress[$0]?.match ?? 0) }
        guard !matches.isEmpty else { return false }
        matches.sort(by: >)
        let candidate = matches[configuration.quorum - 1]
        guard candidate > log.commitIndex, log.term(at: candidate) == term else { return false }
        log.commit(to: candidate)
        commitToAnnounce = true
        onCommitAdvanced()
        return true
    }

    private mutating func onCommitAdvanced() {
        reads.onCommittedInTerm(commit: log.commitIndex, committedInTerm: hasCommittedInTerm)
        confirmReads()
        // Raft §4.2.2: a leader that removed itself steps down once the removal is committed.
        if !log.configuration.voters.contains(id), log.configurationIndex <= log.commitIndex {
            becomeFollower(term: term, leader: nil)
        }
    }

    // MARK: Compaction (Raft §5)

    /// The application has saved its state through `index` (applied and persisted) as `data`:
    /// entries through it leave memory, and members that need them get this snapshot instead.
    /// Returns the snapshot (with the term and configuration at `index`) for the shell to persist.
    public mutating func compact(through index: LogIndex, data: [UInt8]) -> Snapshot {
        precondition(index <= log.appliedIndex, "snapshot at \(index) beyond applied \(log.appliedIndex)")
        guard index > log.snapshot.index, let term = log.term(at: index) else { return log.snapshot }
        let snapshot = Snapshot(index: index, term: term, configuration: log.configuration(at: index), data: data)
        log.compact(to: snapshot)
        return snapshot
    }
}
