import ContactCenter
import Foundation
import Logging
import RaftCore
import Storage

/// Why a replicated proposal or read did not complete.
public enum ReplicationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The core refused it (not the leader, a transfer in progress, a full queue...).
    case raft(RaftError)
    case lost(index: UInt64)
    case overloaded
    case stopped

    public var description: String {
        switch self {
        case .raft(let error): error.description
        case .lost(let index): "the proposal at index \(index) was replaced by another leader's entry"
        case .overloaded: "the node's input queue is full (RaftLoop.inputsMax)"
        case .stopped: "the node is stopping"
        }
    }
}

/// The node loop that owns a Raft core (issue 4): inputs (peer messages, proposals, reads,
/// ticks) are queued and handled by one thread, which carries out each `Ready` in its order:
/// persist (`RaftStorage`, fsync) -> send -> apply committed entries to `state.sqlite` ->
/// answer proposers and readers -> advance. Many proposals share each fsync and each apply
/// transaction.
public final class RaftLoop: @unchecked Sendable {
    // @unchecked: the mutable state below is touched only by the loop thread, except `inputs`
    // and `stopping`, which `condition` guards.

    public struct Status: Sendable, Equatable {
        public var role: RaftCore.Role
        public var term: UInt64
        public var leader: String?
        public var commitIndex: UInt64
        public var appliedIndex: UInt64
    }

    /// Most inputs queued for the loop; past it, proposals fail and peer messages are dropped.
    public static let inputsMax = 50_000

    private enum Input {
        case message(RaftCore.Message)
        case propose([UInt8], CheckedContinuation<ContactCenterMachine.Applied, any Error>)
        case read(CheckedContinuation<Void, any Error>)
    }

    public let id: NodeID
    private let tickInterval: TimeInterval
    private let storage: RaftStorage
    private let state: StateDatabase
    private let send: @Sendable (RaftCore.Message) -> Void
    private let logger: Logger
    private var core: Raft
    private let condition = NSCondition()
    private var inputs: [Input] = []
    private var stopping = false
    private var statusValue: Status
    private let finished = DispatchSemaphore(value: 0)
    private var proposals: [UInt64: (term: UInt64, continuation: CheckedContinuation<ContactCenterMachine.Applied, any Error>)] = [:]
    private var reads: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    private var readsReady: [(index: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextReadContext: UInt64 = 1

    public init(
        id: NodeID, settings: RaftSettings, storage: RaftStorage, state: StateDatabase, tickInterval: TimeInterval = 0.05,
        seed: UInt64, logger: Logger, send: @escaping @Sendable (RaftCore.Message) -> Void
    ) throws {
        self.id = id
        self.tickInterval = tickInterval
        self.storage = storage
        self.state = state
        self.send = send
        self.logger = logger
        let applied = UInt64(try state.appliedIndex())
        let loaded = try storage.load(applied: applied)
        core = Raft(id: id, settings: settings, seed: seed, hardState: loaded.hardState, snapshot: loaded.snapshot, entries: loaded.entries, applied: applied)
        statusValue = Status(role: core.role, term: core.term, leader: core.leader, commitIndex: core.commitIndex, appliedIndex: applied)
    }

    private var started = false

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

    /// A message from a peer (dropped when the queue is full: Raft retransmits).
    public func receive(_ message: RaftCore.Message) {
        _ = enqueue(.message(message))  // dropped when refused: Raft retransmits
    }

    /// Proposes an encoded command; returns what applying it did, once it is committed and
    /// applied here.
    public func propose(_ command: [UInt8]) async throws -> ContactCenterMachine.Applied {
        try await withCheckedThrowingContinuation { continuation in
            if let refusal = enqueue(.propose(command, continuation)) { continuation.resume(throwing: refusal) }
        }
    }

    /// Returns once this node has applied everything committed when the call was made
    /// (ReadIndex, Raft §6.4): a read after it is linearizable.
    public func linearizableBarrier() async throws {
        try await withCheckedThrowingContinuation { continuation in
            if let refusal = enqueue(.read(continuation)) { continuation.resume(throwing: refusal) }
        }
    }

    /// Queues an input for the loop thread; returns why not when stopping or full.
    private func enqueue(_ input: Input) -> ReplicationError? {
        condition.withLock {
            if stopping { return .stopped }
            guard inputs.count < Self.inputsMax else { return .overloaded }
            inputs.append(input)
            condition.signal()
            return nil
        }
    }

    private func run() {
        var nextTick = Date().addingTimeInterval(tickInterval)
        while true {
            let batch: [Input]? = condition.withLock {
                while inputs.isEmpty, !stopping, Date() < nextTick { _ = condition.wait(until: nextTick) }
                if stopping { return nil }
                defer { inputs.removeAll(keepingCapacity: true) }
                return inputs
            }
            guard let batch else { break }
            for input in batch { handle(input) }
            if Date() >= nextTick {
                core.tick()
                nextTick = Date().addingTimeInterval(tickInterval)
            }
            do {
                try processReady()
            } catch {
                logger.critical("raft loop stopped: \(error)", metadata: ["raft.node": "\(id)"])
                break
            }
        }
        for (_, proposal) in proposals { proposal.continuation.resume(throwing: ReplicationError.stopped) }
        for (_, read) in reads { read.resume(throwing: ReplicationError.stopped) }
        for read in readsReady { read.continuation.resume(throwing: ReplicationError.stopped) }
        proposals = [:]
        reads = [:]
        readsReady = []
        finished.signal()
    }

    private func handle(_ input: Input) {
        switch input {
        case .message(let message):
            core.step(message)
        case .propose(let command, let continuation):
            do {
                let (index, term) = try core.propose(command)
                proposals[index] = (term, continuation)
            } catch {
                continuation.resume(throwing: ReplicationError.raft(error))
            }
        case .read(let continuation):
            let context = nextReadContext
            nextReadContext += 1
            do {
                try core.readIndex(context: context)
                reads[context] = continuation
            } catch {
                continuation.resume(throwing: ReplicationError.raft(error))
            }
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
            try storage.persist(ready)                                // 1. persist (fsync)
            for message in ready.messages { send(message) }            // 2. send
            if let snapshot = ready.snapshot {
                // Installing a leader's snapshot into state.sqlite is issue 4's snapshot streaming.
                logger.warning("snapshot install not wired yet", metadata: ["raft.snapshot.index": "\(snapshot.index)"])
            }
            if !ready.committed.isEmpty {                               // 3. apply
                let results = try state.apply(ready.committed)
                for (entry, result) in zip(ready.committed, results) {
                    guard let proposal = proposals.removeValue(forKey: entry.index) else { continue }
                    if proposal.term == entry.term, let result {
                        proposal.continuation.resume(returning: result)
                    } else {
                        proposal.continuation.resume(throwing: ReplicationError.lost(index: entry.index))
                    }
                }
            }
            for readState in ready.readStates {                         // 4. reads
                if let continuation = reads.removeValue(forKey: readState.context) { readsReady.append((readState.index, continuation)) }
            }
            let applied = core.appliedIndex
            readsReady.removeAll { read in
                guard read.index <= applied else { return false }
                read.continuation.resume()
                return true
            }
            core.advance(ready)                                          // 5. advance
            if wasLeader, core.role != .leader {
                // Deposed: our uncommitted proposals may never commit here; their proposers retry.
                for (index, proposal) in proposals { proposal.continuation.resume(throwing: ReplicationError.lost(index: index)) }
                proposals = [:]
                for (_, read) in reads { read.resume(throwing: ReplicationError.raft(.notLeader(leader: core.leader))) }
                reads = [:]
            }
            condition.withLock {
                statusValue = Status(role: core.role, term: core.term, leader: core.leader, commitIndex: core.commitIndex, appliedIndex: core.appliedIndex)
            }
        }
    }
}
