import ContactCenter
import Foundation
import Logging
import Storage
import Synchronization

/// What one proposal became: its log index and the outcome of applying it.
public struct Proposal: Sendable {
    public var index: Int64
    public var outcome: Outcome
}

/// The single-node commit path: proposals -> append to the command log (one fsync per batch:
/// group commit) -> apply the batch to `state.sqlite` in one transaction -> publish events ->
/// answer the proposers.
///
/// Ordering contract: an entry is applied only after `CommandLog.append` returned (it is
/// durable), and a proposer is answered only after its entry is applied, so an acknowledged
/// write survives `kill -9`. With Raft, "durable locally" becomes "committed by a majority";
/// the apply half stays as it is.
///
/// One dedicated thread runs the loop: fsync and SQLite block, and they must not block the
/// cooperative pool that serves requests.
final class CommandPipeline: @unchecked Sendable {
    // @unchecked: `pending`, `stopping` and `failure` are guarded by `condition`; `log` is used
    // only by the pipeline thread after `start()`; the rest is immutable or itself Sendable.

    /// Most proposals queued and not yet appended; over it a proposal fails as overloaded.
    static let pendingProposalsMax = 20_000
    /// Most entries appended with one fsync and applied in one transaction.
    static let batchEntriesMax = 512

    private struct Pending {
        var payload: [UInt8]
        var continuation: CheckedContinuation<Proposal, any Error>
    }

    private let condition = NSCondition()
    private var pending: [Pending] = []
    private var stopping = false
    private var failure: String?
    private let finished = DispatchSemaphore(value: 0)

    private let log: CommandLog
    private let state: StateDatabase
    private let logger: Logger
    let waiters = AppliedWaiters()
    private let lastAppended = Atomic<Int64>(0)
    private let logBytes = Atomic<Int64>(0)
    private let publish: @Sendable ([Event]) -> Void

    init(log: CommandLog, state: StateDatabase, logger: Logger, publish: @escaping @Sendable ([Event]) -> Void) {
        self.log = log
        self.state = state
        self.logger = logger
        self.publish = publish
    }

    var appliedIndex: Int64 { waiters.applied }
    var lastIndex: Int64 { lastAppended.load(ordering: .acquiring) }
    var logSizeBytes: Int64 { logBytes.load(ordering: .relaxed) }

    /// Replays entries the log holds beyond `applied_index` (a crash between append and apply),
    /// then starts the loop thread.
    func start() throws {
        var applied = try state.appliedIndex()
        precondition(applied <= log.lastIndex, "state.sqlite applied \(applied) but the log ends at \(log.lastIndex)")
        if log.truncatedTailBytes > 0 {
            logger.warning("cut a torn tail off the command log", metadata: ["log.bytes": "\(log.truncatedTailBytes)"])
        }
        let replayFrom = applied + 1
        while applied < log.lastIndex {
            let entries = try log.entries(from: applied + 1, maxCount: Self.batchEntriesMax)
            _ = try state.apply(entries)
            applied = entries.last!.index
        }
        if replayFrom <= applied {
            logger.info("replayed the command log", metadata: ["log.from": "\(replayFrom)", "log.to": "\(applied)"])
        }
        waiters.advance(to: applied)
        lastAppended.store(log.lastIndex, ordering: .releasing)
        logBytes.store(log.sizeBytes, ordering: .relaxed)
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "switchboard-pipeline"
        thread.start()
    }

    /// Queues `payload` for the log and returns once it is durable and applied.
    func submit(_ payload: [UInt8]) async throws -> Proposal {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            if let failure {
                condition.unlock()
                continuation.resume(throwing: NodeError.stopped(failure))
                return
            }
            if stopping {
                condition.unlock()
                continuation.resume(throwing: NodeError.stopped("shutting down"))
                return
            }
            if pending.count >= Self.pendingProposalsMax {
                condition.unlock()
                continuation.resume(throwing: NodeError.overloaded("\(Self.pendingProposalsMax) proposals are already queued"))
                return
            }
            pending.append(Pending(payload: payload, continuation: continuation))
            condition.signal()
            condition.unlock()
        }
    }

    /// Stops taking proposals, finishes the queued ones, and joins the loop thread.
    func stop() {
        condition.lock()
        let wasRunning = !stopping
        stopping = true
        condition.signal()
        condition.unlock()
        if wasRunning { finished.wait() }
    }

    /// Why the loop stopped on its own, if it did.
    var failureReason: String? {
        condition.lock()
        defer { condition.unlock() }
        return failure
    }

    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopping { condition.wait() }
            if pending.isEmpty && stopping {
                condition.unlock()
                return
            }
            let count = min(pending.count, Self.batchEntriesMax)
            let batch = Array(pending.prefix(count))
            pending.removeFirst(count)
            condition.unlock()
            do {
                try commit(batch)
            } catch {
                fail(batch, reason: "\(error)")
                return
            }
        }
    }

    private func commit(_ batch: [Pending]) throws {
        var index = log.lastIndex
        let entries = batch.map { item -> LogEntry in
            index += 1
            return LogEntry(index: index, term: 0, payload: item.payload)
        }
        try log.append(entries)
        lastAppended.store(log.lastIndex, ordering: .releasing)
        logBytes.store(log.sizeBytes, ordering: .relaxed)
        let results = try state.apply(entries)
        waiters.advance(to: entries.last!.index)
        publish(results.flatMap(\.events))
        for (item, (entry, result)) in zip(batch, zip(entries, results)) {
            item.continuation.resume(returning: Proposal(index: entry.index, outcome: result.outcome))
        }
    }

    /// The log or the database failed: nothing more can be applied safely. Fail every proposer.
    private func fail(_ batch: [Pending], reason: String) {
        logger.critical("command pipeline stopped", metadata: ["error": "\(reason)"])
        condition.lock()
        failure = reason
        let rest = pending
        pending = []
        condition.unlock()
        for item in batch + rest { item.continuation.resume(throwing: NodeError.stopped(reason)) }
        waiters.fail(reason)
    }
}
