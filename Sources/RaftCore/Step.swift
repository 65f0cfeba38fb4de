extension Raft {
    /// Handles one message from another member. Messages from older terms are answered (so a
    /// stale leader learns the new term) or ignored; nothing a message says is trusted beyond
    /// what its term allows.
    public mutating func step(_ message: Message) {
        guard message.to == id, message.from != id else { return }
        if message.term > term {
            switch message.kind {
            case .preVote, .vote(_, _, transfer: false):
                if inLease { return }  // we hear from a leader: do not help depose it
            default: break
            }
            switch message.kind {
            case .preVote:
                break  // a pre-vote changes nothing at the receiver (Raft §9.6)
            case .preVoteResponse(granted: true):
                break  // carries the term our pre-campaign would use
            case .append, .heartbeat, .installSnapshot:
                becomeFollower(term: message.term, leader: message.from)
            default:
                becomeFollower(term: message.term, leader: nil)
            }
        } else if message.term < term {
            switch message.kind {
            case .append, .heartbeat:
                // A deposed leader (partitioned, then healed) learns the current term and steps down.
                send(to: message.from, .heartbeatResponse(round: 0))
            case .preVote:
                send(to: message.from, .preVoteResponse(granted: false))
            default:
                break
            }
            return
        }

        switch message.kind {
        case .preVote(let lastIndex, let lastTerm):
            onVoteRequest(message, lastIndex: lastIndex, lastTerm: lastTerm, preVote: true)
        case .vote(let lastIndex, let lastTerm, _):
            onVoteRequest(message, lastIndex: lastIndex, lastTerm: lastTerm, preVote: false)
        case .preVoteResponse(let granted):
            guard role == .preCandidate, message.term == term + 1 else { return }
            onVoteResponse(from: message.from, granted: granted, preVote: true)
        case .voteResponse(let granted):
            guard role == .candidate else { return }
            onVoteResponse(from: message.from, granted: granted, preVote: false)
        case .append(let prevIndex, let prevTerm, let entries, let commit):
            followLeader(message.from)
            onAppend(from: message.from, prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit)
        case .heartbeat(let commit, let round):
            followLeader(message.from)
            log.commit(to: min(commit, log.lastIndex))
            send(to: message.from, .heartbeatResponse(round: round))
        case .installSnapshot(let snapshot):
            followLeader(message.from)
            onInstallSnapshot(from: message.from, snapshot)
        case .appendResponse(let reject, let index, let hintIndex, let hintTerm):
            guard role == .leader, progress[message.from] != nil else { return }
            onAppendResponse(from: message.from, reject: reject, index: index, hintIndex: hintIndex, hintTerm: hintTerm)
        case .heartbeatResponse(let round):
            guard role == .leader, progress[message.from] != nil else { return }
            onHeartbeatResponse(from: message.from, round: round)
        case .timeoutNow:
            // Raft §3.10: the leader hands over; campaign at once, without a pre-vote.
            if isVoter, role != .leader { campaign(.transfer) }
        case .readIndex(let contexts):
            guard role == .leader else { return }  // the follower's clients time out and retry
            for context in contexts { requestRead(context: context, from: message.from) }
        case .readIndexResponse(let contexts, let index):
            for context in contexts { readStates.append(ReadState(index: index, context: context)) }
        }
    }

    /// A message from the leader of our term.
    private mutating func followLeader(_ from: NodeID) {
        precondition(role != .leader, "two leaders in term \(term): \(id) and \(from)")
        if role != .follower { becomeFollower(term: term, leader: from) }
        leader = from
        electionElapsed = 0
    }

    private mutating func onVoteRequest(_ message: Message, lastIndex: LogIndex, lastTerm: Term, preVote: Bool) {
        // Raft §3.4/§3.6.1; a pre-vote for a later term may be granted whoever we voted for.
        let canVote = vote == message.from || (vote == nil && leader == nil) || (preVote && message.term > term)
        let granted = canVote && log.isUpToDate(lastIndex: lastIndex, lastTerm: lastTerm)
        if preVote {
            send(to: message.from, term: granted ? message.term : term, .preVoteResponse(granted: granted))
            return
        }
        if granted {
            vote = message.from
            electionElapsed = 0
        }
        send(to: message.from, .voteResponse(granted: granted))
    }

    private mutating func onVoteResponse(from: NodeID, granted: Bool, preVote: Bool) {
        let voters = log.configuration.voters
        guard voters.contains(from), votes[from] == nil else { return }
        votes[from] = granted
        let yes = votes.filter { voters.contains($0.key) && $0.value }.count
        let no = votes.filter { voters.contains($0.key) && !$0.value }.count
        if yes >= log.configuration.quorum {
            if preVote { campaign(.election) } else { becomeLeader() }
        } else if no >= log.configuration.quorum {
            becomeFollower(term: term, leader: nil)
        }
    }

    // MARK: Follower side of replication (Raft §3.5, §5)

    private mutating func onAppend(from leader: NodeID, prevIndex: LogIndex, prevTerm: Term, entries: [Entry], commit: LogIndex) {
        if prevIndex < log.commitIndex {
            // Already committed here (a duplicate or a late message): say how far we are.
            send(to: leader, .appendResponse(reject: false, index: log.commitIndex, hintIndex: 0, hintTerm: 0))
            return
        }
        guard log.matches(index: prevIndex, term: prevTerm) else {
            // Fast backtracking: the last index that could match, skipping our conflicting term.
            let hintIndex = log.lastIndex(atOrBefore: min(prevIndex, log.lastIndex), termAtMost: prevTerm)
            send(to: leader, .appendResponse(reject: true, index: prevIndex, hintIndex: hintIndex, hintTerm: log.term(at: hintIndex) ?? 0))
            return
        }
        let lastNew = log.merge(after: prevIndex, entries)
        log.commit(to: min(commit, lastNew))
        send(to: leader, .appendResponse(reject: false, index: lastNew, hintIndex: 0, hintTerm: 0))
    }

    private mutating func onInstallSnapshot(from leader: NodeID, _ snapshot: Snapshot) {
        if snapshot.index <= log.commitIndex {
            send(to: leader, .appendResponse(reject: false, index: log.commitIndex, hintIndex: 0, hintTerm: 0))
            return
        }
        if log.matches(index: snapshot.index, term: snapshot.term) {
            // We hold the snapshot's last entry: it is committed; keep our log.
            log.commit(to: snapshot.index)
            send(to: leader, .appendResponse(reject: false, index: log.commitIndex, hintIndex: 0, hintTerm: 0))
            return
        }
        log.restore(snapshot)
        snapshotToInstall = snapshot
        send(to: leader, .appendResponse(reject: false, index: snapshot.index, hintIndex: 0, hintTerm: 0))
    }
}
