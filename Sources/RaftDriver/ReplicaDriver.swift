import RaftCore

/// How long the driver lets time pass between steps of its cycle.
public struct ReplicaTimings: Sendable, Equatable {
    /// One Raft tick (elections and heartbeats count in ticks).
    public var tick: Duration
    /// How long a follower may hold committed entries before it applies them (bigger batches,
    /// fewer SQLite commits).
    public var followerApplyDelay: Duration
    /// How long a leader may keep executed entries uncommitted so that more batches share one
    /// commit of the state machine.
    public var leaderCommitHold: Duration

    public init(tick: Duration, followerApplyDelay: Duration = .zero, leaderCommitHold: Duration = .zero) {
        self.tick = tick
        self.followerApplyDelay = followerApplyDelay
        self.leaderCommitHold = leaderCommitHold
    }
}

/// The driver's bounds (a generic type cannot hold static stored properties).
public enum ReplicaLimits {
    /// Most committed entries a follower holds unapplied; past it, it applies at once.
    public static let unappliedMax = 512
    /// Executed entries past which a leader commits its open transaction at once.
    public static let uncommittedMax = 256
    /// Outcomes of the most recently applied entries kept for waiters that ask late (only
    /// `ReplicaStateMachine.remembered` of each is kept).
    public static let recentOutcomesMax = 8192
    /// Most reads waiting here for an index to be applied (`waitApplied` and ReadIndex reads
    /// whose index came back).
    public static let appliedWaitsMax = 100_000
}

/// Carries a Raft core's `Ready` out, the same way on a node (a thread and a queue around it)
/// and in the simulator (in memory): every seed exercises the order the node runs.
///
/// **One cycle** (`process`), for each `Ready` until the core has nothing more:
/// - A **follower or candidate** (or anyone installing a snapshot) persists first (one fsync:
///   its votes and acknowledgements are promises about durable state), then sends, then
///   installs the snapshot, then queues the committed entries to apply.
/// - A **leader** sends first, then applies, then persists (Raft thesis §10.2.1): the followers'
///   fsyncs overlap its own, and its committed entries were persisted in an earlier cycle (the
///   core counts the leader's own entries toward a commit only once `advance` marks them
///   persisted), so their clients need not wait for this cycle's fsync of newer entries.
/// - Reads whose index the core confirmed wait for that index to be visible, then are answered.
/// - `advance`; if leadership moved, pending reads fail at once (`notLeader`) so their readers
///   retry on the new leader instead of waiting out their deadline.
///
/// **Applying** runs in two steps. `execute` runs entries in the state machine's open
/// transaction: a waiter that asked for an early answer is answered then (the outcome is
/// final). `commitExecuted` makes them durable and visible, then fans out in this order, from
/// this one place: `ReplicaClients.committed` (events, index waiters), then every waiter of
/// those entries, in log order. A leader holds its open transaction up to `leaderCommitHold`; a
/// follower holds committed entries up to `followerApplyDelay` before executing them; both
/// stop holding at once when someone waits to see the entries, a bound is reached, or the role
/// changes.
///
/// A proposal is waited for by `(index, term)`: the entry applied at `index` either has that
/// term (it is the proposal, its outcome is answered) or not (`.lost`). The same wait serves a
/// proposal a follower forwarded: the leader answers with the index and term it appended at and
/// the follower waits for that entry on its own copy.
///
/// Not thread-safe: one owner calls it (the node's loop thread, the simulator).
public final class ReplicaDriver<Machine: ReplicaStateMachine, Clients: ReplicaClients> where Clients.Outcome == Machine.Outcome {
    public typealias Outcome = Machine.Outcome

    private struct Waiter {
        var term: Term
        var deadline: Duration
        /// Answered once the entry is executed (its outcome is final), without waiting for the
        /// commit that shows it to readers: for a caller that reads nothing back.
        var early: Bool
        var token: Clients.WaitToken
    }

    private struct PendingRead {
        var deadline: Duration
        var token: Clients.ReadToken
    }

    public private(set) var core: Raft
    private let log: any ReplicaLogStore
    public let machine: Machine
    private let transport: any ReplicaTransport
    private let clock: any ReplicaClock
    private let clients: Clients
    public let timings: ReplicaTimings

    private var nextTick: Duration
    private var waiters: [LogIndex: [Waiter]] = [:]
    private var recent: [LogIndex: (term: Term, outcome: Outcome)] = [:]
    private var recentOrder: [LogIndex] = []
    private var recentHead = 0
    private var reads: [UInt64: PendingRead] = [:]
    private var readsReady: [(index: LogIndex, read: PendingRead)] = []
    /// Read contexts name this driver's reads in the leader's answers. They start from a value
    /// the owner draws per start, so that an answer to a read sent before a crash, delivered to
    /// the restarted replica, matches none of its reads (counting from 1 again, it would, and a
    /// stale read index would serve a read).
    private var nextReadContext: UInt64
    private var leaderSeen: NodeID?

    /// What the state machine shows readers: what was executed and committed.
    public private(set) var appliedThrough: LogIndex
    /// Entries executed and not committed, with their outcomes, oldest first.
    private var uncommitted: [(entry: Entry, outcome: Outcome)] = []
    private var uncommittedSince: Duration?
    /// Someone waits to see an executed entry (a proposal that reads back, a read): commit now.
    private var visibilityWanted = false
    /// Committed entries a follower has not executed yet, oldest first.
    private var unapplied: [Entry] = []
    private var unappliedSince: Duration?
    /// A reader on this replica waits for `index` (until `until`): committed entries are applied
    /// as they come instead of being held for a bigger batch.
    private var prompt: (index: LogIndex, until: Duration)?

    /// Apply transactions run and entries applied (entries / batches is the mean batch).
    public private(set) var applyBatches: UInt64 = 0
    public private(set) var appliedEntries: UInt64 = 0
    /// State machine commits (a leader's hold puts several batches in one).
    public private(set) var applyCommits: UInt64 = 0
    /// Readies carried out (each is one fsync when it holds entries or a new term or vote).
    public private(set) var readies: UInt64 = 0

    /// `core` must have been built from what `log` holds, with `applied` the state machine's
    /// committed index. `firstReadContext` must differ per start (random on a node, drawn from
    /// the seed in the simulator).
    public init(
        core: Raft, applied: LogIndex, log: any ReplicaLogStore, machine: Machine, transport: any ReplicaTransport,
        clock: any ReplicaClock, clients: Clients, timings: ReplicaTimings, firstReadContext: UInt64
    ) {
        nextReadContext = firstReadContext
        self.core = core
        self.log = log
        self.machine = machine
        self.transport = transport
        self.clock = clock
        self.clients = clients
        self.timings = timings
        appliedThrough = applied
        nextTick = clock.now + timings.tick
    }

    /// The last entry executed: its outcome is final, though readers may see it only once the
    /// leader's hold ends.
    public var executedThrough: LogIndex { uncommitted.last?.entry.index ?? appliedThrough }

    /// When the owner must call `advanceClock` and `process` again if no input comes first.
    public var nextWake: Duration {
        var wake = nextTick
        if let since = unappliedSince { wake = min(wake, since + timings.followerApplyDelay) }
        if let since = uncommittedSince { wake = min(wake, since + timings.leaderCommitHold) }
        return wake
    }

    // MARK: Inputs

    public func step(_ message: Message) {
        core.step(message)
    }

    /// Ticks the core once a tick has passed, and fails the waits whose deadline passed.
    public func advanceClock() {
        let now = clock.now
        guard now >= nextTick else { return }
        core.tick()
        nextTick = now + timings.tick
        expire(now: now)
    }

    /// Proposes a command here (this replica must lead) and waits for its outcome.
    public func propose(_ command: [UInt8], deadline: Duration, early: Bool, token: Clients.WaitToken) throws(RaftError) {
        let (index, term) = try core.propose(command)
        wait(index: index, term: term, deadline: deadline, early: early, token: token)
    }

    /// Proposes a command a follower forwarded; the follower waits on its own copy.
    public func proposeForwarded(_ command: [UInt8]) throws(RaftError) -> (index: LogIndex, term: Term) {
        try core.propose(command)
    }

    /// Proposes a membership change and waits for it to be applied here.
    public func proposeConfigurationChange(_ change: ConfigurationChange, deadline: Duration, token: Clients.WaitToken) throws(RaftError) {
        let (index, term) = try core.proposeConfigurationChange(change)
        wait(index: index, term: term, deadline: deadline, early: false, token: token)
    }

    public func transferLeadership(to target: NodeID) throws(RaftError) {
        try core.transferLeadership(to: target)
    }

    /// Waits for the outcome of the entry at `index` if it has `term` (else `.lost`).
    public func wait(index: LogIndex, term: Term, deadline: Duration, early: Bool, token: Clients.WaitToken) {
        if index <= (early ? executedThrough : appliedThrough) {
            if let known = recent[index] {
                clients.answer(token, known.term == term ? .success(known.outcome) : .failure(.lost(index: index)))
            } else if core.term(at: index).map({ $0 != term }) ?? false {
                clients.answer(token, .failure(.lost(index: index)))
            } else {
                clients.answer(token, .failure(.outcomeForgotten(index: index)))
            }
            return
        }
        if index <= executedThrough { visibilityWanted = true }
        waiters[index, default: []].append(Waiter(term: term, deadline: deadline, early: early, token: token))
    }

    /// A linearizable read (ReadIndex, Raft §6.4): answered once this replica shows readers
    /// everything committed when it was asked.
    public func read(deadline: Duration, token: Clients.ReadToken) throws(RaftError) {
        let context = nextReadContext
        nextReadContext &+= 1
        try core.readIndex(context: context)
        reads[context] = PendingRead(deadline: deadline, token: token)
    }

    /// Answers `token` once `index` is applied here (a `?minIndex=` read, read-your-writes
    /// after a write on another member), with the reads ready, or fails it at `deadline`;
    /// meanwhile a follower applies committed entries at once. At most
    /// `ReplicaLimits.appliedWaitsMax` wait.
    public func waitApplied(through index: LogIndex, deadline: Duration, token: Clients.ReadToken) {
        if index <= appliedThrough {
            clients.answer(read: token, .success(()))
            return
        }
        guard readsReady.count < ReplicaLimits.appliedWaitsMax else {
            clients.answer(read: token, .failure(.overloaded))
            return
        }
        applyPromptly(through: index, until: deadline)
        readsReady.append((index, PendingRead(deadline: deadline, token: token)))
    }

    /// Someone here waits for `index` to be applied (a `?minIndex=` read): until it is, or
    /// until `until`, a follower applies committed entries at once.
    public func applyPromptly(through index: LogIndex, until: Duration) {
        let current = promptIsWanted ? prompt : nil
        prompt = (max(index, current?.index ?? 0), max(until, current?.until ?? until))
    }

    /// Takes a snapshot at `index` (at most what the state machine committed) with `data`
    /// describing it, saves it, and drops the log entries it covers.
    public func compact(through index: LogIndex, data: [UInt8]) throws -> Snapshot {
        precondition(index <= appliedThrough, "snapshot at \(index) beyond the committed state \(appliedThrough)")
        let snapshot = core.compact(through: index, data: data)
        try log.save(snapshot: snapshot)
        return snapshot
    }

    // MARK: The cycle

    /// Carries out every `Ready` the core has, then applies and commits what is due. An error
    /// is the log store's or the state machine's: the replica cannot go on without lying about
    /// durability, and the owner stops it (`fail`).
    public func process() throws {
        while true {
            let wasLeader = core.role == .leader
            let ready = core.ready()
            if ready.isEmpty {
                core.advance(ready)
                break
            }
            if core.role == .leader, ready.snapshot == nil {
                for message in ready.messages { transport.send(message) }    // 1. send
                try applyUnapplied()                                          // 2. apply (what it held
                try execute(ready.committed)                                  //    as a follower first)
                try log.persist(ready)                                        // 3. persist (fsync)
            } else {
                try log.persist(ready)                                        // 1. persist (fsync)
                for message in ready.messages { transport.send(message) }    // 2. send
                if let snapshot = ready.snapshot {                            // 3. install, then apply
                    try applyUnapplied()
                    try commitExecuted()
                    try machine.installSnapshot(snapshot)
                    appliedThrough = snapshot.index
                    for index in waiters.keys.sorted() where index <= snapshot.index {
                        for waiter in waiters.removeValue(forKey: index)! {
                            clients.answer(waiter.token, .failure(.outcomeForgotten(index: index)))
                        }
                    }
                    clients.committed(through: snapshot.index, outcomes: [])
                }
                if !ready.committed.isEmpty {
                    if unapplied.isEmpty { unappliedSince = clock.now }
                    unapplied.append(contentsOf: ready.committed)
                }
            }
            readies += 1
            for readState in ready.readStates {                               // 4. reads
                if let read = reads.removeValue(forKey: readState.context) { readsReady.append((readState.index, read)) }
            }
            try applyAndCommitIfDue()
            answerReadsReady()
            core.advance(ready)                                               // 5. advance
            if (wasLeader && core.role != .leader) || core.leader != leaderSeen {
                // Deposed, or (on a follower) the leader a read was forwarded to is gone. Proposals
                // keep waiting: they may still commit.
                for context in reads.keys.sorted() {
                    clients.answer(read: reads[context]!.token, .failure(.raft(.notLeader(leader: core.leader))))
                }
                reads = [:]
                leaderSeen = core.leader
            }
        }
        // A wait registered since the last cycle, or a hold ran out with no Ready.
        try applyAndCommitIfDue()
        answerReadsReady()
    }

    /// Applies and commits everything held (a replica that stops cleanly leaves its state
    /// current; not needed for safety: a restart applies the log after the committed index).
    public func finishApplying() throws {
        try applyUnapplied()
        try commitExecuted()
        answerReadsReady()
    }

    /// Fails every pending wait and read, once: the owner stops this replica. `storageFailure`
    /// says why, when the log store or the state machine failed.
    public func fail(storageFailure: String?) {
        let inFlight: ReplicationError = storageFailure.map { .storageFailed($0, inFlight: true) } ?? .stopped
        let refused: ReplicationError = storageFailure.map { .storageFailed($0, inFlight: false) } ?? .stopped
        for index in waiters.keys.sorted() { for waiter in waiters[index]! { clients.answer(waiter.token, .failure(inFlight)) } }
        for context in reads.keys.sorted() { clients.answer(read: reads[context]!.token, .failure(refused)) }
        for ready in readsReady { clients.answer(read: ready.read.token, .failure(refused)) }
        waiters = [:]
        reads = [:]
        readsReady = []
    }

    // MARK: Inside the cycle

    private var promptIsWanted: Bool {
        prompt.map { $0.index > appliedThrough && $0.until > clock.now } ?? false
    }

    /// Whether a follower's held entries must be applied now: they waited `followerApplyDelay`,
    /// there are `unappliedMax` of them, the replica is no longer a plain follower, or someone
    /// waits for them (an outcome, a read, a prompt read).
    private var applyIsDue: Bool {
        guard let since = unappliedSince else { return false }
        return core.role != .follower || unapplied.count >= ReplicaLimits.unappliedMax
            || clock.now - since >= timings.followerApplyDelay || !waiters.isEmpty || !readsReady.isEmpty || promptIsWanted
    }

    /// Whether executed entries must be committed now: someone waits to see them, they waited
    /// `leaderCommitHold`, there are `uncommittedMax` of them, or the replica no longer leads.
    private var commitIsDue: Bool {
        guard let since = uncommittedSince else { return false }
        return visibilityWanted || !readsReady.isEmpty || promptIsWanted || core.role != .leader
            || uncommitted.count >= ReplicaLimits.uncommittedMax || clock.now - since >= timings.leaderCommitHold
    }

    private func applyAndCommitIfDue() throws {
        if applyIsDue { try applyUnapplied() }
        if commitIsDue { try commitExecuted() }
    }

    private func answerReadsReady() {
        readsReady.removeAll { ready in
            guard ready.index <= appliedThrough else { return false }
            clients.answer(read: ready.read.token, .success(()))
            return true
        }
    }

    /// Fails waits whose deadline passed.
    private func expire(now: Duration) {
        for index in waiters.keys.sorted() {
            let list = waiters[index]!
            guard list.contains(where: { $0.deadline <= now }) else { continue }
            for waiter in list where waiter.deadline <= now { clients.answer(waiter.token, .failure(.timedOut)) }
            let rest = list.filter { $0.deadline > now }
            waiters[index] = rest.isEmpty ? nil : rest
        }
        for context in reads.keys.sorted() where reads[context]!.deadline <= now {
            clients.answer(read: reads.removeValue(forKey: context)!.token, .failure(.timedOut))
        }
        readsReady.removeAll { ready in
            guard ready.read.deadline <= now else { return false }
            clients.answer(read: ready.read.token, .failure(.timedOut))
            return true
        }
    }

    private func applyUnapplied() throws {
        guard !unapplied.isEmpty else { return }
        let entries = unapplied
        unapplied.removeAll(keepingCapacity: true)
        unappliedSince = nil
        try execute(entries)
        try commitExecuted()
    }

    /// Executes committed entries (contiguous, after `executedThrough`) in the open transaction
    /// and answers the waiters that asked for an early answer.
    private func execute(_ committed: [Entry]) throws {
        guard !committed.isEmpty else { return }
        let outcomes = try machine.execute(committed)
        precondition(outcomes.count == committed.count, "the state machine answered \(outcomes.count) outcomes for \(committed.count) entries")
        applyBatches += 1
        appliedEntries += UInt64(committed.count)
        if uncommitted.isEmpty { uncommittedSince = clock.now }
        for (entry, outcome) in zip(committed, outcomes) {
            uncommitted.append((entry, outcome))
            remember(index: entry.index, term: entry.term, outcome: outcome)
            guard var list = waiters[entry.index] else { continue }
            list.removeAll { waiter in
                guard waiter.early else { return false }
                clients.answer(waiter.token, waiter.term == entry.term ? .success(outcome) : .failure(.lost(index: entry.index)))
                return true
            }
            if list.isEmpty {
                waiters[entry.index] = nil
            } else {
                waiters[entry.index] = list
                visibilityWanted = true
            }
        }
    }

    /// Commits what `execute` left in the open transaction, then fans out: `committed` first,
    /// then the waiters of those entries in log order.
    private func commitExecuted() throws {
        guard let last = uncommitted.last else { return }
        try machine.commitExecuted()
        let done = uncommitted
        uncommitted.removeAll(keepingCapacity: true)
        uncommittedSince = nil
        visibilityWanted = false
        applyCommits += 1
        appliedThrough = last.entry.index
        clients.committed(through: last.entry.index, outcomes: done.map(\.outcome))
        for (entry, outcome) in done {
            guard let list = waiters.removeValue(forKey: entry.index) else { continue }
            for waiter in list {
                clients.answer(waiter.token, waiter.term == entry.term ? .success(outcome) : .failure(.lost(index: entry.index)))
            }
        }
    }

    private func remember(index: LogIndex, term: Term, outcome: Outcome) {
        if recentOrder.count < ReplicaLimits.recentOutcomesMax {
            recentOrder.append(index)
        } else {
            recent[recentOrder[recentHead]] = nil
            recentOrder[recentHead] = index
            recentHead = (recentHead + 1) % ReplicaLimits.recentOutcomesMax
        }
        recent[index] = (term, machine.remembered(outcome))
    }
}
