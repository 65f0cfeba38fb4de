@_exported import RaftDriver
import ContactCenter
import Foundation
import Logging
import Metrics
import Telemetry
import RaftCore
import Seeded
import Storage
import Synchronization

/// The node's Raft thread: inputs (peer messages, proposals, reads, work) are queued and
/// handled by one thread, which hands them to a `ReplicaDriver` and lets it carry out each
/// `Ready` (its order is documented there, and is the one the simulator runs). This type adds
/// only what a process needs around the driver: the queue and its bound, the thread, callers'
/// deadlines put on the driver's clock, the published `status`, and stopping.
public final class RaftLoop: @unchecked Sendable {
    // @unchecked: `driver` is touched only by the loop thread; `inputs`, `stopping`,
    // `storageFailure` and `statusValue` are guarded by `condition`.

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

    public typealias Completion = @Sendable (Result<ContactCenterMachine.Applied?, ReplicationError>) -> Void
    typealias Driver = ReplicaDriver<NodeStateMachine, NodeReplicaClients>

    private enum Input {
        case message(RaftCore.Message)
        case work((Driver) -> Void)
    }

    public let id: NodeID
    private let hooks: Hooks
    private let logger: Logger
    private let clock: MonotonicClock
    /// `switchboard_commit_duration_seconds`: from a proposal on this leader to its answer
    /// (replicated to a quorum and executed here; `answer="early"` before readers see it).
    private let commitDuration = Metrics.Timer(label: "switchboard_commit_duration_seconds", dimensions: [("answer", "applied")])
    private let commitDurationEarly = Metrics.Timer(label: "switchboard_commit_duration_seconds", dimensions: [("answer", "early")])
    private let driver: Driver
    private let condition = NSCondition()
    private var inputs: [Input] = []
    private var stopping = false
    /// Why the loop stopped on its own: storage failed.
    private var storageFailure: String?
    private var statusValue: Status
    private let finished = DispatchSemaphore(value: 0)
    private var started = false
    /// `driver.executedThrough`, for `X-Switchboard-Index` stamps read off the loop thread:
    /// stored before an early answer leaves the driver, and with every status.
    private let executedIndexValue: SharedIndex
    private let appliedIndexValue: SharedIndex

    public init(
        id: NodeID, settings: RaftSettings, storage: RaftStorage, state: StateDatabase, tickInterval: TimeInterval = 0.05,
        followerApplyDelay: TimeInterval, leaderCommitHold: TimeInterval = 0, seed: UInt64, logger: Logger, hooks: Hooks = Hooks(applied: { _, _ in }, installSnapshot: { _ in }),
        send: @escaping @Sendable (RaftCore.Message) -> Void
    ) throws {
        self.id = id
        self.hooks = hooks
        self.logger = logger
        let applied = UInt64(try state.appliedIndex())
        let executedIndexValue = SharedIndex(applied)
        self.executedIndexValue = executedIndexValue
        appliedIndexValue = SharedIndex(applied)
        let loaded = try storage.load(applied: applied)
        let core = Raft(id: id, settings: settings, seed: seed, hardState: loaded.hardState, snapshot: loaded.snapshot, entries: loaded.entries, applied: applied)
        statusValue = Status(
            role: core.role, term: core.term, leader: core.leader, commitIndex: core.commitIndex, appliedIndex: applied,
            lastIndex: core.lastIndex, snapshotIndex: core.snapshotIndex, configuration: core.configuration, matchIndexes: [:])
        let clock = MonotonicClock()
        self.clock = clock
        let clients = NodeReplicaClients(applied: hooks.applied)
        let machine = NodeStateMachine(state: state, installSnapshot: hooks.installSnapshot, executed: { executedIndexValue.store($0) })
        driver = ReplicaDriver(
            core: core, applied: applied, log: storage, machine: machine, transport: NodeTransport(send: send), clock: clock, clients: clients,
            timings: ReplicaTimings(tick: .seconds(tickInterval), followerApplyDelay: .seconds(followerApplyDelay), leaderCommitHold: .seconds(leaderCommitHold)),
            firstReadContext: UInt64.random(in: 0...UInt64.max))
        // Whoever is woken by a commit sees it in `status` too.
        clients.beforeFanOut = { [weak self] in self?.publishStatus() }
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
    public var executedIndex: UInt64 { executedIndexValue.load() }

    /// A message from a peer (dropped when the queue is full: Raft retransmits).
    public func receive(_ message: RaftCore.Message) {
        _ = enqueue(.message(message))
    }

    /// Proposes an encoded command on this node (it must be the leader); returns what applying
    /// it did once it is committed and applied here.
    ///
    /// With `early`, it returns as soon as the leader has executed the entry, before readers on
    /// this node can see it: for a caller that reads nothing back.
    public func propose(_ command: [UInt8], deadline: Monotonic.Instant, early: Bool = false) async throws -> ContactCenterMachine.Applied? {
        let started = ContinuousClock.now
        let outcome = try await waitFor { loop, driver, completion in
            do throws(RaftError) {
                try driver.propose(command, deadline: loop.monotonic(deadline), early: early, token: completion)
            } catch {
                completion(.failure(.raft(error)))
            }
        }
        (early ? commitDurationEarly : commitDuration).record(ContinuousClock.now - started)
        return outcome
    }

    /// Proposes a command a follower forwarded; `reply` gets the index and term it was appended
    /// at, before the entry is sent to anyone (so the answer reaches the follower first on the
    /// same link).
    public func proposeForwarded(_ command: [UInt8], reply: @escaping @Sendable (Result<(index: UInt64, term: UInt64), ReplicationError>) -> Void) {
        if let refusal = enqueue(.work({ driver in
            do throws(RaftError) {
                reply(.success(try driver.proposeForwarded(command)))
            } catch {
                reply(.failure(.raft(error)))
            }
        })) {
            reply(.failure(refusal))
        }
    }

    /// Returns the outcome of the entry at `index` once it is applied here, if it has `term`;
    /// throws `.lost` if another entry took that index.
    public func outcome(index: UInt64, term: UInt64, deadline: Monotonic.Instant) async throws -> ContactCenterMachine.Applied? {
        try await waitFor { loop, driver, completion in
            driver.wait(index: index, term: term, deadline: loop.monotonic(deadline), early: false, token: completion)
        }
    }

    /// Proposes a membership change; returns once it is applied here.
    public func changeConfiguration(_ change: ConfigurationChange, deadline: Monotonic.Instant) async throws {
        _ = try await waitFor { loop, driver, completion in
            do throws(RaftError) {
                try driver.proposeConfigurationChange(change, deadline: loop.monotonic(deadline), token: completion)
            } catch {
                completion(.failure(.raft(error)))
            }
        }
    }

    /// Starts moving leadership to `target` (Raft §3.10); the caller watches `status`.
    public func transferLeadership(to target: NodeID) async throws {
        _ = try await waitFor { _, driver, completion in
            do throws(RaftError) {
                try driver.transferLeadership(to: target)
                completion(.success(nil))
            } catch {
                completion(.failure(.raft(error)))
            }
        }
    }

    /// Returns once this node has applied everything committed when the call was made
    /// (ReadIndex, Raft §6.4): a read after it is linearizable.
    public func linearizableBarrier(deadline: Monotonic.Instant) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let completion: NodeReplicaClients.ReadToken = { continuation.resume(with: $0.mapError { $0 }) }
            if let refusal = enqueue(.work({ [self] driver in
                do throws(RaftError) {
                    try driver.read(deadline: monotonic(deadline), token: completion)
                } catch {
                    completion(.failure(.raft(error)))
                }
            })) {
                completion(.failure(refusal))
            }
        }
    }

    /// Returns once `index` is applied here (a `?minIndex=` read); meanwhile a follower applies
    /// committed entries at once instead of holding them for `followerApplyDelay`. The driver
    /// keeps the wait with every other (one registry).
    public func waitApplied(through index: UInt64, deadline: Monotonic.Instant) async throws {
        if appliedIndex >= index { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let completion: NodeReplicaClients.ReadToken = { continuation.resume(with: $0.mapError { $0 }) }
            if let refusal = enqueue(.work({ [self] driver in driver.waitApplied(through: index, deadline: monotonic(deadline), token: completion) })) {
                completion(.failure(refusal))
            }
        }
    }

    /// Someone on this node waits for `index` to be applied: until it is, or until `deadline`,
    /// a follower applies committed entries at once instead of holding them for
    /// `followerApplyDelay`.
    public func applyPromptly(through index: UInt64, deadline: Monotonic.Instant) {
        _ = enqueue(.work({ [self] driver in driver.applyPromptly(through: index, until: monotonic(deadline)) }))
    }

    /// The last index applied (committed to `state.sqlite`) here, published before anyone is
    /// told of the commit.
    public var appliedIndex: UInt64 { appliedIndexValue.load() }

    /// Why the loop stopped taking work (a storage failure, or a stop), nil while it runs.
    public var failure: String? {
        condition.withLock {
            storageFailure.map { "storage failed (\($0)); this node takes no writes until it is restarted" } ?? (stopping ? "the node stopped" : nil)
        }
    }

    /// Takes a snapshot at `index` (at most the applied index) with `data` describing it, and
    /// drops the log entries it covers.
    public func compact(through index: UInt64, data: [UInt8]) async throws -> Snapshot {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Snapshot, any Error>) in
            if let refusal = enqueue(.work({ [self] driver in
                do {
                    let snapshot = try driver.compact(through: index, data: data)
                    publishStatus()
                    continuation.resume(returning: snapshot)
                } catch {
                    continuation.resume(throwing: error)
                }
            })) {
                continuation.resume(throwing: refusal)
            }
        }
    }

    private func waitFor(_ body: @escaping (RaftLoop, Driver, @escaping Completion) -> Void) async throws -> ContactCenterMachine.Applied? {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ContactCenterMachine.Applied?, any Error>) in
            let completion: Completion = { continuation.resume(with: $0.mapError { $0 }) }
            if let refusal = enqueue(.work({ [self] driver in body(self, driver, completion) })) { completion(.failure(refusal)) }
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

    /// A caller's deadline on the driver's clock.
    private func monotonic(_ deadline: Monotonic.Instant) -> Duration {
        Monotonic.duration(of: deadline)
    }

    // MARK: The loop thread

    private func run() {
        // Ticks and the driver's holds run on the monotonic clock: a wall-clock step (NTP, an
        // operator) neither stalls elections nor fires them early. NSCondition waits until a
        // wall-clock date, so each wait is at most one tick and the monotonic clock decides when
        // the time is up.
        let tick = driver.timings.tick
        while true {
            let wake = driver.nextWake
            let batch: [Input]? = condition.withLock {
                while inputs.isEmpty, !stopping, clock.now < wake {
                    _ = condition.wait(until: Date().addingTimeInterval(min(tick, wake - clock.now) / .seconds(1)))
                }
                if stopping { return nil }
                defer { inputs.removeAll(keepingCapacity: true) }
                return inputs
            }
            guard let batch else { break }
            for input in batch {
                switch input {
                case .message(let message): driver.step(message)
                case .work(let body): body(driver)
                }
            }
            driver.advanceClock()
            do {
                try driver.process()
                publishStatus()
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
        do { try driver.finishApplying() } catch { logger.error("applying before stopping failed: \(error)", metadata: ["raft.node": "\(id)"]) }
        // No more inputs are taken; those that arrived after the last batch still hold
        // continuations: run them (they register waits), then fail every wait once.
        let left = condition.withLock {
            stopping = true
            defer { inputs = [] }
            return inputs
        }
        for input in left { if case .work(let body) = input { body(driver) } }
        driver.fail(storageFailure: condition.withLock { storageFailure })
        finished.signal()
    }

    private func publishStatus() {
        let core = driver.core
        let status = Status(
            role: core.role, term: core.term, leader: core.leader, commitIndex: core.commitIndex, appliedIndex: driver.appliedThrough,
            lastIndex: core.lastIndex, snapshotIndex: core.snapshotIndex, configuration: core.configuration,
            matchIndexes: core.role == .leader ? core.matchIndexes : [:], applyBatches: driver.applyBatches,
            appliedEntries: driver.appliedEntries, applyCommits: driver.applyCommits, readies: driver.readies)
        executedIndexValue.store(driver.executedThrough)
        appliedIndexValue.store(driver.appliedThrough)
        condition.withLock { statusValue = status }
    }
}

/// `state.sqlite` as the driver's state machine.
final class NodeStateMachine: ReplicaStateMachine {
    private let state: StateDatabase
    /// `switchboard_apply_duration_seconds`: executing a batch, and committing what was executed.
    private let executing = Metrics.Timer(label: "switchboard_apply_duration_seconds", dimensions: [("phase", "execute")])
    private let committing = Metrics.Timer(label: "switchboard_apply_duration_seconds", dimensions: [("phase", "commit")])
    private let install: @Sendable (Snapshot) throws -> Void
    private let executed: (UInt64) -> Void

    init(state: StateDatabase, installSnapshot: @escaping @Sendable (Snapshot) throws -> Void, executed: @escaping (UInt64) -> Void) {
        self.state = state
        install = installSnapshot
        self.executed = executed
    }

    func execute(_ entries: [Entry]) throws -> [ContactCenterMachine.Applied?] {
        let started = ContinuousClock.now
        let outcomes = try state.execute(entries)
        executing.record(ContinuousClock.now - started)
        // Before any early answer leaves the driver: a response stamped with it names an index
        // this node executed.
        if let last = entries.last { executed(last.index) }
        return outcomes
    }

    func commitExecuted() throws {
        let started = ContinuousClock.now
        try state.commitExecuted()
        committing.record(ContinuousClock.now - started)
    }

    func installSnapshot(_ snapshot: Snapshot) throws { try install(snapshot) }

    /// Events are delivered once, by `committed`; a late waiter gets only the outcome.
    func remembered(_ outcome: ContactCenterMachine.Applied?) -> ContactCenterMachine.Applied? {
        var kept = outcome
        kept?.events = []
        return kept
    }
}

/// The node's waiters: each token is the completion of a waiting request.
final class NodeReplicaClients: ReplicaClients {
    typealias WaitToken = RaftLoop.Completion
    typealias ReadToken = @Sendable (Result<Void, ReplicationError>) -> Void

    private let applied: @Sendable (UInt64, [ContactCenterMachine.Applied?]) -> Void
    /// Publishes the loop's status, before anyone is told of a commit.
    var beforeFanOut: () -> Void = {}

    init(applied: @escaping @Sendable (UInt64, [ContactCenterMachine.Applied?]) -> Void) {
        self.applied = applied
    }

    func committed(through index: LogIndex, outcomes: [ContactCenterMachine.Applied?]) {
        beforeFanOut()
        applied(index, outcomes)
    }

    func answer(_ token: WaitToken, _ result: Result<ContactCenterMachine.Applied?, ReplicationError>) { token(result) }

    func answer(read token: ReadToken, _ result: Result<Void, ReplicationError>) { token(result) }
}

/// The peer link as the driver's transport.
final class NodeTransport: ReplicaTransport {
    private let deliver: @Sendable (RaftCore.Message) -> Void
    init(send: @escaping @Sendable (RaftCore.Message) -> Void) { deliver = send }
    func send(_ message: RaftCore.Message) { deliver(message) }
}

/// The driver's view of the process's one monotonic clock.
final class MonotonicClock: ReplicaClock {
    var now: Duration { Monotonic.now() }
}

/// An index written by the loop thread and read by request handlers.
final class SharedIndex: Sendable {
    private let value: Atomic<UInt64>
    init(_ initial: UInt64) { value = Atomic(initial) }
    func load() -> UInt64 { value.load(ordering: .relaxed) }
    func store(_ index: UInt64) { value.store(index, ordering: .relaxed) }
}
