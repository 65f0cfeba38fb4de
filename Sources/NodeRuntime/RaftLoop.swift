import ContactCenter
import Foundation
import Logging
import RaftCore
import Storage
import Synchronization

/// Why a replicated proposal or read did not complete.
public enum ReplicationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The core refused it (not the leader, a transfer in progress, a full queue...).
    case raft(RaftError)
    /// Another leader's entry took the proposal's index: it was not committed.
    case lost(index: UInt64)
    /// The entry was applied before its outcome was asked for and is no longer remembered.
    case outcomeForgotten(index: UInt64)
    /// The deadline passed first; the proposal may still commit.
    case timedOut
    case overloaded
    case stopped
    /// This node's storage failed (a full disk, an I/O error) and its loop stopped. `inFlight`:
    /// the proposal was under way then and may still commit through the other members; else it
    /// was refused and not applied.
    case storageFailed(String, inFlight: Bool)

    public var description: String {
        switch self {
        case .raft(let error): error.description
        case .lost(let index): "the proposal at index \(index) was replaced by another leader's entry"
        case .outcomeForgotten(let index): "entry \(index) was applied too long ago for its outcome to be known"
        case .timedOut: "no outcome before the deadline"
        case .overloaded: "the node's input queue is full (RaftLoop.inputsMax)"
        case .stopped: "the node is stopping"
        case .storageFailed(let reason, true):
            "this node's storage failed (\(reason)) while the write was under way: it may still be applied through the other members"
        case .storageFailed(let reason, false): "this node's storage failed (\(reason)): it takes no writes until it is restarted"
        }
    }
}

/// The node loop that owns a Raft core (issue 4): inputs (peer messages, proposals, reads,
/// ticks, work) are queued and handled by one thread, which carries out each `Ready` in its
/// order: persist (`RaftStorage`, fsync) -> send -> install a snapshot / apply committed
/// entries to `state.sqlite` -> answer waiters and readers -> advance. Many proposals share each
/// fsync and each apply transaction.
///
/// A proposal is waited for by `(index, term)`: the entry applied at `index` either has that
/// term (it is the proposal, and its outcome is returned) or not (it was lost). The same wait
/// serves a proposal a follower forwarded to the leader: the leader answers with the index and
/// term it appended at, and the follower waits for that entry on its own copy.
public final class RaftLoop: @unchecked Sendable {
    // @unchecked: everything below `core` is touched only by the loop thread, except `inputs`,
    // `stopping` and `statusValue`, which `condition` guards.

    public struct Status: Sendable, Equatable {
        public var role: RaftCore.Role
        public var term: UInt64
        public var leader: String?
        public var commitIndex: UInt64
        public var appliedIndex: UInt64
        public var lastIndex: UInt64
        public var snapshotIndex: UInt64
        public var configuration: Configuration
        /// The leader's view of each member's log (empty on followers).
        public var matchIndexes: [String: UInt64]
        /// Apply transactions run and entries applied since start (entries / batches is the
        /// mean batch: bigger batches write fewer WAL pages per entry).
        public var applyBatches: UInt64 = 0
        public var appliedEntries: UInt64 = 0
        /// Apply transactions committed (a leader's hold puts several batches in one).
        public var applyCommits: UInt64 = 0
        /// Readies persisted (each is one fsync when it holds entries or a new term or vote).
        public var readies: UInt64 = 0
    }

    /// What the node does around applying: publish events and wake index waiters, and replace
    /// `state.sqlite` with a snapshot a leader sent.
    public struct Hooks: Sendable {
        public var applied: @Sendable (_ appliedIndex: UInt64, _ results: [ContactCenterMachine.Applied?]) -> Void
        public var installSnapshot: @Sendable (Snapshot) throws -> Void
        /// The loop stopped because storage failed: the error, once, with `status` current and
        /// before waiters are failed.
        public var storageFailed: @Sendable (String) -> Void

        public init(
            applied: @escaping @Sendable (UInt64, [ContactCenterMachine.Applied?]) -> Void,
            installSnapshot: @escaping @Sendable (Snapshot) throws -> Void,
            storageFailed: @escaping @Sendable (String) -> Void = { _ in }
        ) {
            self.applied = applied
            self.installSnapshot = installSnapshot
            self.storageFailed = storageFailed
        }
    }

    /// Most inputs queued for the loop; past it, proposals fail and peer messages are dropped.
    public static let inputsMax = 50_000
    /// Most committed entries a follower holds unapplied; past it, it applies at once.
    public static let unappliedMax = 512
    /// Outcomes of the most recently applied entries kept for waiters that ask late (their
    /// events are not kept: only the outcome is answered).
    public static let recentOutcomesMax = 8192

    public typealias Completion = @Sendable (Result<ContactCenterMachine.Applied?, ReplicationError>) -> Void

    private enum Input {
        case message(RaftCore.Message)
        case work((RaftLoop) -> Void)
    }

    private struct Waiter {
        var term: UInt64
        var deadline: Date
        /// Answered once the entry is executed (its outcome is final), without waiting for the
        /// commit that shows it to readers: for a caller that reads nothing back.
        var early: Bool
        var completion: Completion
    }

    private struct Read {
        var deadline: Date
        var completion: @Sendable (Result<Void, ReplicationError>) -> Void
    }

    public let id: NodeID
    private let tickInterval: TimeInterval
    private let storage: RaftStorage
    private let state: StateDatabase
    private let send: @Sendable (RaftCore.Message) -> Void
    private let hooks: Hooks
    private let logger: Logger
    private var core: Raft
    private let condition = NSCondition()
    private var inputs: [Input] = []
    private var stopping = false
    /// Why the loop stopped on its own: storage failed.
    private var storageFailure: String?
    private var statusValue: Status
    private let finished = DispatchSemaphore(value: 0)
    private var waiters: [UInt64: [Waiter]] = [:]
    private var recent: [UInt64: (term: UInt64, applied: ContactCenterMachine.Applied?)] = [:]
    private var recentOrder: [UInt64] = []
    private var recentHead = 0
    private var reads: [UInt64: Read] = [:]
    private var readsReady: [(index: UInt64, read: Read)] = []
    private var nextReadContext: UInt64 = 1
    private var started = false
    private var leaderSeen: String?
    private var applyBatches: UInt64 = 0
    private var appliedEntries: UInt64 = 0
    private var applyCommits: UInt64 = 0
    private var readies: UInt64 = 0
    /// What `state.sqlite` shows readers: the core's applied index less `unapplied` and less
    /// what the leader executed but has not committed.
    private var appliedThrough: UInt64
    /// Entries executed and not committed, with their results, oldest first.
    private var uncommitted: [(entry: Entry, result: ContactCenterMachine.Applied?)] = []
    /// What the leader executed in its open apply transaction (see `leaderCommitHold`).
    private var executedThrough: UInt64 { uncommitted.last?.entry.index ?? appliedThrough }
    private var uncommittedSince: ContinuousClock.Instant?
    /// Someone waits to see an executed entry (a proposal that reads back, a read): commit now.
    private var visibilityWanted = false
    /// How long a leader may keep executed entries uncommitted so that more batches share one
    /// SQLite commit (followers hold whole batches instead: `followerApplyDelay`).
    private let leaderCommitHold: TimeInterval
    /// Executed entries past which a leader commits at once.
    public static let uncommittedMax = 256
    /// `executedThrough`, for `X-Switchboard-Index` stamps read off the loop thread: stored
    /// before an early answer leaves `execute`, and by every `publishStatus`.
    private let executedIndexValue = Atomic<UInt64>(0)
    /// Committed entries a follower has not applied yet, oldest first (see `followerApplyDelay`).
    private var unapplied: [Entry] = []
    private var unappliedSince: ContinuousClock.Instant?
    /// How long a follower may hold committed entries before it applies them.
    private let followerApplyDelay: TimeInterval
    /// A `?minIndex=` read on this node waits for `index` (until `until`): committed entries are
    /// applied as they come instead of being held for a bigger batch.
    private var prompt: (index: UInt64, until: Date)?

    public init(
        id: NodeID, settings: RaftSettings, storage: RaftStorage, state: StateDatabase, tickInterval: TimeInterval = 0.05,
        followerApplyDelay: TimeInterval, leaderCommitHold: TimeInterval = 0, seed: UInt64, logger: Logger, hooks: Hooks = Hooks(applied: { _, _ in }, installSnapshot: { _ in }),
        send: @escaping @Sendable (RaftCore.Message) -> Void
    ) throws {
        self.id = id
        self.tickInterval = tickInterval
        self.followerApplyDelay = followerApplyDelay
        self.leaderCommitHold = leaderCommitHold
        self.storage = storage
        self.state = state
        self.send = send
        self.hooks = hooks
        self.logger = logger
        let applied = UInt64(try state.appliedIndex())
        appliedThrough = applied
        executedIndexValue.store(applied, ordering: .relaxed)
        let loaded = try storage.load(applied: applied)
        core = Raft(id: id, settings: settings, seed: seed, hardState: loaded.hardState, snapshot: loaded.snapshot, entries: loaded.entries, applied: applied)
        statusValue = Status(
            role: core.role, term: core.term, leader: core.leader, commitIndex: core.commitIndex, appliedIndex: applied,
            lastIndex: core.lastIndex, snapshotIndex: core.snapshotIndex, configuration: core.configuration, matchIndexes: [:])
    }

    public func start() {
        started = true
        let thread = Thread { [self] in run() }
        thread.name = "raft-\(id)"
        thread.start()
    }

    /// Stops the loop (once; later calls return at once); pending proposals and reads fail
    /// with `.stopped`.
    public func stop() {
        let first = condition.withLock {
            defer { stopping = true }
            condition.signal()
            return !stopping
        }
        if first, started { finished.wait() }
    }

    public var status: Status { condition.withLock { statusValue } }

    /// The last entry this node executed: its outcome is final, though on a leader readers may
    /// see it only a few milliseconds later (`leaderCommitHold`).
    public var executedIndex: UInt64 { executedIndexValue.load(ordering: .relaxed) }

    /// A message from a peer (dropped when the queue is full: Raft retransmits).
    public func receive(_ message: RaftCore.Message) {
        _ = enqueue(.message(message))
    }

    /// Proposes an encoded command on this node (it must be the leader); returns what applying
    /// it did once it is committed and applied here.
    ///
    /// With `early`, it returns as soon as the leader has executed the entry, before readers on
    /// this node can see it: for a caller that reads nothing back.
    public func propose(_ command: [UInt8], deadline: Date, early: Bool = false) async throws -> ContactCenterMachine.Applied? {
        try await waitFor { loop, completion in
            do throws(RaftError) {
                let (index, term) = try loop.core.propose(command)
                loop.wait(index: index, term: term, deadline: deadline, early: early, completion)
            } catch {
                completion(.failure(.raft(error)))
            }
        }
    }

    /// Proposes a command a follower forwarded; `reply` gets the index and term it was appended
    /// at, before the entry is sent to anyone (so the answer reaches the follower first on the
    /// same link).
    public func proposeForwarded(_ command: [UInt8], reply: @escaping @Sendable (Result<(index: UInt64, term: UInt64), ReplicationError>) -> Void) {
        if let refusal = enqueue(.work({ loop in
            do throws(RaftError) {
                let appended = try loop.core.propose(command)
                reply(.success(appended))
            } catch {
                reply(.failure(.raft(error)))
            }
        })) {
            reply(.failure(refusal))
        }
    }

    /// Returns the outcome of the entry at `index` once it is applied here, if it has `term`;
    /// throws `.lost` if another entry took that index.
    public func outcome(index: UInt64, term: UInt64, deadline: Date) async throws -> ContactCenterMachine.Applied? {
        try await waitFor { loop, completion in loop.wait(index: index, term: term, deadline: deadline, early: false, completion) }
    }

    /// Proposes a membership change; returns once it is applied here.
    public func changeConfiguration(_ change: ConfigurationChange, deadline: Date) async throws {
        _ = try await waitFor { loop, completion in
            do throws(RaftError) {
                let (index, term) = try loop.core.proposeConfigurationChange(change)
                loop.wait(index: index, term: term, deadline: deadline, early: false, completion)
            } catch {
                completion(.failure(.raft(error)))
            }
        }
    }

    /// Starts moving leadership to `target` (Raft §3.10); the caller watches `status`.
    public func transferLeadership(to target: NodeID) async throws {
        _ = try await waitFor { loop, completion in
            do throws(RaftError) {
                try loop.core.transferLeadership(to: target)
                completion(.success(nil))
            } catch {
                completion(.failure(.raft(error)))
            }
        }
    }

    /// Returns once this node has applied everything committed when the call was made
    /// (ReadIndex, Raft §6.4): a read after it is linearizable.
    public func linearizableBarrier(deadline: Date) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let completion: @Sendable (Result<Void, ReplicationError>) -> Void = { continuation.resume(with: $0.mapError { $0 }) }
            if let refusal = enqueue(.work({ loop in
                let context = loop.nextReadContext
                loop.nextReadContext += 1
                do throws(RaftError) {
                    try loop.core.readIndex(context: context)
                    loop.reads[context] = Read(deadline: deadline, completion: completion)
                } catch {
                    completion(.failure(.raft(error)))
                }
            })) {
                completion(.failure(refusal))
            }
        }
    }

    /// Someone on this node waits for `index` to be applied (a `?minIndex=` read): until it is,
    /// or until `deadline`, a follower applies committed entries at once instead of holding
    /// them for `followerApplyDelay`.
    public func applyPromptly(through index: UInt64, deadline: Date) {
        _ = enqueue(.work({ loop in
            let current = loop.promptIsWanted ? loop.prompt : nil
            loop.prompt = (max(index, current?.index ?? 0), max(deadline, current?.until ?? deadline))
        }))
    }

    /// A `?minIndex=` read still waits for an index this node has not applied.
    private var promptIsWanted: Bool {
        prompt.map { $0.index > appliedThrough && $0.until > Date() } ?? false
    }

    /// Takes a snapshot at `index` (at most the applied index) with `data` describing it, and
    /// drops the log entries it covers.
    public func compact(through index: UInt64, data: [UInt8]) async throws -> Snapshot {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Snapshot, any Error>) in
            if let refusal = enqueue(.work({ loop in
                do {
                    let snapshot = loop.core.compact(through: index, data: data)
                    try loop.storage.save(snapshot: snapshot)
                    loop.publishStatus()
                    continuation.resume(returning: snapshot)
                } catch {
                    continuation.resume(throwing: error)
                }
            })) {
                continuation.resume(throwing: refusal)
            }
        }
    }

    private func waitFor(_ body: @escaping (RaftLoop, @escaping Completion) -> Void) async throws -> ContactCenterMachine.Applied? {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ContactCenterMachine.Applied?, any Error>) in
            let completion: Completion = { continuation.resume(with: $0.mapError { $0 }) }
            if let refusal = enqueue(.work({ loop in body(loop, completion) })) { completion(.failure(refusal)) }
        }
    }

    /// Queues an input for the loop thread; returns why not when stopping or full.
    private func enqueue(_ input: Input) -> ReplicationError? {
        condition.withLock {
            if stopping { return storageFailure.map { .storageFailed($0, inFlight: false) } ?? .stopped }
            guard inputs.count < Self.inputsMax else { return .overloaded }
            inputs.append(input)
            condition.signal()
            return nil
        }
    }

    // MARK: The loop thread

    private func wait(index: UInt64, term: UInt64, deadline: Date, early: Bool, _ completion: @escaping Completion) {
        if index <= (early ? executedThrough : appliedThrough) {
            if let known = recent[index] {
                completion(known.term == term ? .success(known.applied) : .failure(.lost(index: index)))
            } else if core.term(at: index).map({ $0 != term }) ?? false {
                completion(.failure(.lost(index: index)))
            } else {
                completion(.failure(.outcomeForgotten(index: index)))
            }
            return
        }
        if index <= executedThrough { visibilityWanted = true }
        waiters[index, default: []].append(Waiter(term: term, deadline: deadline, early: early, completion: completion))
    }

    private func remember(index: UInt64, term: UInt64, applied: ContactCenterMachine.Applied?) {
        if recentOrder.count < Self.recentOutcomesMax {
            recentOrder.append(index)
        } else {
            recent[recentOrder[recentHead]] = nil
            recentOrder[recentHead] = index
            recentHead = (recentHead + 1) % Self.recentOutcomesMax
        }
        var outcome = applied
        outcome?.events = []
        recent[index] = (term, outcome)
    }

    private func run() {
        // Ticks, the follower's apply delay and the leader's commit hold run on the monotonic
        // clock: a wall-clock step (NTP, an operator) neither stalls elections nor fires them
        // early. NSCondition waits until a wall-clock date, so each wait is at most one tick
        // and the monotonic clock decides when the time is up.
        let clock = ContinuousClock()
        let tick = Duration.seconds(tickInterval)
        var nextTick = clock.now + tick
        while true {
            var wake = unappliedSince.map { min(nextTick, $0 + .seconds(followerApplyDelay)) } ?? nextTick
            if let since = uncommittedSince { wake = min(wake, since + .seconds(leaderCommitHold)) }
            let batch: [Input]? = condition.withLock {
                while inputs.isEmpty, !stopping, clock.now < wake {
                    _ = condition.wait(until: Date().addingTimeInterval(min(tickInterval, (wake - clock.now) / .seconds(1))))
                }
                if stopping { return nil }
                defer { inputs.removeAll(keepingCapacity: true) }
                return inputs
            }
            guard let batch else { break }
            for input in batch {
                switch input {
                case .message(let message): core.step(message)
                case .work(let body): body(self)
                }
            }
            let now = clock.now
            if now >= nextTick {
                core.tick()
                nextTick = now + tick
                expire(now: Date())
            }
            do {
                try processReady()
                // A forwarded write's wait registered above, or the delay ran out with no Ready.
                if applyIsDue { try applyUnapplied() }
                if commitIsDue { try commitExecuted() }
            } catch {
                // Persisting or applying failed (ENOSPC, EIO): the loop cannot go on without
                // lying about durability. It stops; the node reports not ready with the reason
                // (the balancer ejects it) and a restart recovers from what reached the disk.
                let reason = "\(error)"
                condition.withLock { storageFailure = reason }
                logger.critical(
                    "storage failed: this node takes no writes until it is restarted; free space or fix the disk, then restart it",
                    metadata: ["raft.node": "\(id)", "error": "\(reason)"])
                publishStatus()
                hooks.storageFailed(reason)
                break
            }
        }
        // Not needed for safety (a restart applies the log from state.sqlite's index), but a
        // node that stops cleanly leaves its state current.
        do { try applyUnapplied(); try commitExecuted() } catch { logger.error("applying before stopping failed: \(error)", metadata: ["raft.node": "\(id)"]) }
        // No more inputs are taken; those that arrived after the last batch still hold
        // continuations: run them (they register waits), then fail every wait once.
        let left = condition.withLock {
            stopping = true
            defer { inputs = [] }
            return inputs
        }
        for input in left { if case .work(let body) = input { body(self) } }
        let failure = condition.withLock { storageFailure }
        let inFlight: ReplicationError = failure.map { .storageFailed($0, inFlight: true) } ?? .stopped
        let refused: ReplicationError = failure.map { .storageFailed($0, inFlight: false) } ?? .stopped
        for (_, list) in waiters { for waiter in list { waiter.completion(.failure(inFlight)) } }
        for (_, read) in reads { read.completion(.failure(refused)) }
        for ready in readsReady { ready.read.completion(.failure(refused)) }
        waiters = [:]
        reads = [:]
        readsReady = []
        finished.signal()
    }

    /// Fails waits whose deadline passed.
    private func expire(now: Date) {
        for (index, list) in waiters where list.contains(where: { $0.deadline <= now }) {
            let (late, rest) = (list.filter { $0.deadline <= now }, list.filter { $0.deadline > now })
            for waiter in late { waiter.completion(.failure(.timedOut)) }
            waiters[index] = rest.isEmpty ? nil : rest
        }
        for (context, read) in reads where read.deadline <= now {
            reads[context] = nil
            read.completion(.failure(.timedOut))
        }
        readsReady.removeAll { ready in
            guard ready.read.deadline <= now else { return false }
            ready.read.completion(.failure(.timedOut))
            return true
        }
    }

    private func processReady() throws {
        while true {
            let wasLeader = core.role == .leader
            let ready = core.ready()
            if ready.isEmpty {
                core.advance(ready)
                break
            }
            // Raft §10.2.1: a leader sends its appends before its own fsync, so the followers'
            // fsyncs overlap it. Safe: this thread steps no acknowledgement before the persist
            // below completes, so the leader never counts its own unpersisted entries toward a
            // commit; and a leader's Ready carries no term or vote to make durable first (those
            // changed before it could lead). Anyone else persists first (votes, acknowledgements).
            //
            // A leader also applies before it persists: its committed entries were persisted in
            // an earlier Ready (a follower's acknowledgement of an entry is stepped only after the
            // cycle that appended it), so their clients need not wait for this Ready's fsync of
            // newer entries. A follower persists first: its acknowledgement waits for nothing else.
            // (The core counts the leader's own entries toward a commit only once `advance`
            // marks them persisted, so a single voter's committed entries were fsynced too.)
            if core.role == .leader, ready.snapshot == nil {
                for message in ready.messages { send(message) }            // 1. send
                try applyUnapplied()                                       // 2. apply (what it held
                try execute(ready.committed)                               //    as a follower first)
                try storage.persist(ready)                                 // 3. persist (fsync)
            } else {
                try storage.persist(ready)                                 // 1. persist (fsync)
                for message in ready.messages { send(message) }            // 2. send
                if let snapshot = ready.snapshot {                         // 3. install, then apply
                    try applyUnapplied()
                    try commitExecuted()
                    try hooks.installSnapshot(snapshot)
                    appliedThrough = snapshot.index
                    for (index, list) in waiters where index <= snapshot.index {
                        for waiter in list { waiter.completion(.failure(.outcomeForgotten(index: index))) }
                        waiters[index] = nil
                    }
                    hooks.applied(snapshot.index, [])
                }
                if !ready.committed.isEmpty {
                    if unapplied.isEmpty { unappliedSince = .now }
                    unapplied.append(contentsOf: ready.committed)
                }
            }
            readies += 1
            for readState in ready.readStates {                         // 4. reads
                if let read = reads.removeValue(forKey: readState.context) { readsReady.append((readState.index, read)) }
            }
            if applyIsDue { try applyUnapplied() }
            if commitIsDue { try commitExecuted() }
            readsReady.removeAll { ready in
                guard ready.index <= appliedThrough else { return false }
                ready.read.completion(.success(()))
                return true
            }
            core.advance(ready)                                          // 5. advance
            if (wasLeader && core.role != .leader) || core.leader != leaderSeen {
                // Deposed, or (on a follower) the leader a read was forwarded to is gone: the
                // pending reads will not be confirmed; their readers retry on the new leader at
                // once instead of waiting out their deadline. Proposals keep waiting: they may
                // still commit.
                for (_, read) in reads { read.completion(.failure(.raft(.notLeader(leader: core.leader)))) }
                reads = [:]
                leaderSeen = core.leader
            }
            publishStatus()
        }
    }

    /// Whether a follower's unapplied entries must be applied now rather than in a bigger batch
    /// later: they waited `followerApplyDelay`, there are `unappliedMax` of them, the node is no
    /// longer a plain follower, or someone waits for them (a forwarded write's outcome, a read,
    /// a `?minIndex=` read).
    private var applyIsDue: Bool {
        guard let since = unappliedSince else { return false }
        return core.role != .follower || unapplied.count >= Self.unappliedMax || ContinuousClock.now - since >= .seconds(followerApplyDelay)
            || !waiters.isEmpty || !readsReady.isEmpty || promptIsWanted
    }

    /// Whether the leader's executed entries must be committed now: someone waits to see them,
    /// they waited `leaderCommitHold`, there are `uncommittedMax` of them, or the node is no
    /// longer the leader.
    private var commitIsDue: Bool {
        guard let since = uncommittedSince else { return false }
        return visibilityWanted || !readsReady.isEmpty || promptIsWanted || core.role != .leader
            || uncommitted.count >= Self.uncommittedMax || ContinuousClock.now - since >= .seconds(leaderCommitHold)
    }

    private func applyUnapplied() throws {
        guard !unapplied.isEmpty else { return }
        let entries = unapplied
        unapplied.removeAll(keepingCapacity: true)
        unappliedSince = nil
        try apply(entries)
    }

    /// Executes committed entries (contiguous, after `executedThrough`) in the open apply
    /// transaction and answers the proposals that asked for an early answer; the rest are
    /// answered when `commitExecuted` shows the entries to readers.
    private func execute(_ committed: [Entry]) throws {
        guard let last = committed.last else { return }
        applyBatches += 1
        appliedEntries += UInt64(committed.count)
        let results = try state.execute(committed)
        if uncommitted.isEmpty { uncommittedSince = .now }
        executedIndexValue.store(last.index, ordering: .relaxed)
        for (entry, result) in zip(committed, results) {
            uncommitted.append((entry, result))
            remember(index: entry.index, term: entry.term, applied: result)
            guard var list = waiters[entry.index] else { continue }
            list.removeAll { waiter in
                guard waiter.early else { return false }
                waiter.completion(waiter.term == entry.term ? .success(result) : .failure(.lost(index: entry.index)))
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

    /// Commits what `execute` left uncommitted, then wakes those who waited to see it.
    private func commitExecuted() throws {
        guard let last = uncommitted.last else { return }
        let done = uncommitted
        uncommitted.removeAll(keepingCapacity: true)
        uncommittedSince = nil
        visibilityWanted = false
        try state.commitExecuted()
        applyCommits += 1
        appliedThrough = last.entry.index
        // Before anyone is woken: who waited for these entries sees them in `status` too.
        publishStatus()
        hooks.applied(last.entry.index, done.map(\.result))
        for (entry, result) in done {
            guard let list = waiters.removeValue(forKey: entry.index) else { continue }
            for waiter in list {
                waiter.completion(waiter.term == entry.term ? .success(result) : .failure(.lost(index: entry.index)))
            }
        }
    }

    /// Applies committed entries (contiguous, after `appliedThrough`) in one transaction, with
    /// anything executed before them, and answers the proposals waiting for them.
    private func apply(_ committed: [Entry]) throws {
        try execute(committed)
        try commitExecuted()
    }

    private func publishStatus() {
        let status = Status(
            role: core.role, term: core.term, leader: core.leader, commitIndex: core.commitIndex, appliedIndex: appliedThrough,
            lastIndex: core.lastIndex, snapshotIndex: core.snapshotIndex, configuration: core.configuration,
            matchIndexes: core.role == .leader ? core.matchIndexes : [:], applyBatches: applyBatches, appliedEntries: appliedEntries,
            applyCommits: applyCommits,
            readies: readies)
        executedIndexValue.store(executedThrough, ordering: .relaxed)
        condition.withLock { statusValue = status }
    }
}
