/// The leader's view of one follower's log (etcd's `Progress`).
struct Progress: Sendable {
    enum State: Sendable, Equatable {
        /// One append at a time until the follower's match is found.
        case probe
        /// Appends are pipelined, bounded by `inflightAppendsMax`.
        case replicate
        /// A snapshot at `index` is on its way; nothing else is sent until it is acknowledged.
        case snapshot(index: LogIndex)
    }

    var match: LogIndex = 0
    var next: LogIndex
    var state: State = .probe
    /// Probe: an append is outstanding; wait for its answer or the next heartbeat.
    var probeSent = false
    /// Last indexes of the appends in flight, oldest first (replicate state).
    var inflight: [LogIndex] = []
    /// The commit index this follower was last sent in an append.
    var commitSent: LogIndex = 0

    /// Nothing in flight will bring this follower another append, and it was last told a commit
    /// older than `commit`: only an append with no entries tells it now.
    func lacksCommit(_ commit: LogIndex) -> Bool {
        state == .replicate && inflight.isEmpty && commitSent < commit
    }
    /// Heard from since the last check-quorum.
    var recentlyActive = false
    /// Highest ReadIndex round this follower has confirmed.
    var readRound: UInt64 = 0
    /// Ticks spent waiting on a probe or a snapshot with no answer.
    var pausedTicks = 0

    init(next: LogIndex) { self.next = next }

    mutating func becomeProbe() {
        if case .snapshot(let index) = state {
            next = max(match + 1, index + 1)
        } else {
            next = match + 1
        }
        state = .probe
        probeSent = false
        inflight.removeAll()
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        inflight.removeAll()
    }

    mutating func becomeSnapshot(_ index: LogIndex) {
        state = .snapshot(index: index)
        inflight.removeAll()
    }

    /// A successful append response up to `index`. Returns true when match moved.
    mutating func acknowledge(_ index: LogIndex) -> Bool {
        var moved = false
        if index > match {
            match = index
            moved = true
            probeSent = false
            pausedTicks = 0
        }
        next = max(next, index + 1)
        while let first = inflight.first, first <= index {
            inflight.removeFirst()
            pausedTicks = 0
        }
        return moved
    }

    /// A rejected append at `rejected`; `hint` is where to retry. Returns false for stale rejections.
    mutating func rejected(_ rejected: LogIndex, retryAt hint: LogIndex) -> Bool {
        if state == .replicate {
            guard rejected > match else { return false }  // stale
            next = match + 1
            return true
        }
        guard next - 1 == rejected else { return false }  // not the probe we sent
        next = max(min(rejected, hint + 1), match + 1)
        probeSent = false
        return true
    }

    /// Counts a tick of waiting: on a probe, a snapshot, or a full pipeline with no
    /// acknowledgement. After `limit` such ticks (what was sent was lost), falls back to
    /// probing from the match. Returns true when the leader should send again.
    mutating func tickPaused(_ limit: Int, inflightMax: Int) -> Bool {
        let waiting: Bool
        switch state {
        case .probe: waiting = probeSent
        case .snapshot: waiting = true
        case .replicate: waiting = inflight.count >= inflightMax
        }
        guard waiting else { pausedTicks = 0; return false }
        pausedTicks += 1
        guard pausedTicks >= limit else { return false }
        pausedTicks = 0
        becomeProbe()
        return true
    }

    func isPaused(inflightMax: Int) -> Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflight.count >= inflightMax
        case .snapshot: true
        }
    }
}
