/// What the shell must do after feeding the core, in this order:
///
/// 1. **Persist** `snapshot` (if any), then `entries` (each replaces whatever the log holds at
///    its index and after), then `hardState` (if any), with one fsync covering them. A vote or
///    an acknowledgement in `messages` is a promise about this durable state: sending before
///    persisting can elect two leaders or lose committed entries.
/// 2. **Send** `messages` (best effort; Raft tolerates loss, duplication and reordering).
/// 3. **Apply** `snapshot` (if any) and then `committed` to the state machine, in order. Only
///    committed entries are ever here; each comes out once per core lifetime (a restarted core
///    hands out again what follows the `applied` index it was given).
/// 4. Serve `readStates` once the applied index reaches each one's index.
/// 5. Call `advance(_:)` with this `Ready` before feeding the core anything else.
///
/// **The leader's exception** (Raft thesis §10.2.1, as etcd-io/raft documents it): a leader may
/// send `messages` and apply `committed` *before* persisting `entries`, so that its followers'
/// fsyncs overlap its own and its clients do not wait for the fsync of newer entries. It is safe
/// because a leader's `Ready` carries no new term or vote (those changed before it could lead),
/// its `committed` entries were persisted in an earlier `Ready` (the core counts the leader's own
/// entries toward a commit only once `advance` marks them persisted), and the shell steps no
/// acknowledgement before this `Ready`'s persist completes. A `Ready` holding a `snapshot`, and
/// any `Ready` of a follower or candidate, keeps the order above. `RaftDriver.ReplicaDriver`
/// carries out both orders, for the node and the simulator alike.
public struct Ready: Sendable {
    public var snapshot: Snapshot?
    public var entries: [Entry]
    public var hardState: HardState?
    public var messages: [Message]
    public var committed: [Entry]
    public var readStates: [ReadState]

    public var isEmpty: Bool {
        snapshot == nil && entries.isEmpty && hardState == nil && messages.isEmpty && committed.isEmpty && readStates.isEmpty
    }
}

extension Raft {
    /// Most committed entries handed out in one `Ready`.
    public static let committedEntriesPerReadyMax = 4096

    /// Collects everything the shell must persist, send and apply since the last `Ready`.
    public mutating func ready() -> Ready {
        precondition(!readyOutstanding, "ready() called again before advance()")
        if role == .leader, broadcastPending || commitToAnnounce {
            broadcastAppend(announceCommit: commitToAnnounce)
            broadcastPending = false
            commitToAnnounce = false
        }
        if !forwardedReads.isEmpty {
            if role != .leader, let leader { send(to: leader, .readIndex(contexts: forwardedReads)) }
            forwardedReads.removeAll()
        }
        let hardState = self.hardState
        let ready = Ready(
            snapshot: snapshotToInstall, entries: log.unstableEntries,
            hardState: hardState == persistedHardState ? nil : hardState,
            messages: messages, committed: log.takeCommitted(limit: Self.committedEntriesPerReadyMax), readStates: readStates)
        messages.removeAll(keepingCapacity: true)
        reads.roundOpen = false
        readStates.removeAll()
        snapshotToInstall = nil
        readyOutstanding = true
        return ready
    }

    /// The shell has carried out `ready` (persisted, sent, applied).
    public mutating func advance(_ ready: Ready) {
        precondition(readyOutstanding, "advance() without ready()")
        if let last = ready.entries.last {
            log.markStable(through: last.index)
            maybeCommit()  // the leader's own entries count once persisted (a single voter commits here)
        }
        if let hardState = ready.hardState { persistedHardState = hardState }
        readyOutstanding = false
    }
}
