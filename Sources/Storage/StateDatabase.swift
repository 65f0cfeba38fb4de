import ContactCenter
import Foundation
import GRDB
import RaftCore
import Synchronization
import Wire

public enum StateDatabaseError: Error, CustomStringConvertible {
    case undecodableEntry(index: Int64, reason: String)
    case gap(appliedIndex: Int64, next: Int64)

    public var description: String {
        switch self {
        case .undecodableEntry(let index, let reason):
            "log entry \(index) cannot be decoded (\(reason)); refusing to apply it or anything after it"
        case .gap(let applied, let next): "apply must continue at \(applied + 1), got entry \(next)"
        }
    }
}

/// `state.sqlite`: the contact center's state, written only by `apply`, read by everyone.
///
/// WAL mode; `synchronous = NORMAL` is enough because the command log is the durable record:
/// `applied_index` commits in the same transaction as the rows it covers, and a crash that loses
/// a recent transaction is repaired by replaying the log from `applied_index`.
///
/// Checkpoints run in the background, on a connection of their own, every `checkpointInterval`
/// (PASSIVE: they never block the writer). SQLite's automatic checkpoint would run them inside
/// the apply transaction that crosses 1,000 WAL pages, and their fsyncs (8-10 ms under write
/// load) stalled every node's apply, and so every write in flight, a few times a second.
public final class StateDatabase: Sendable {
    public let pool: DatabasePool
    public let path: String
    private let commitObservers = Mutex<[@Sendable (StateChanges) -> Void]>([])
    // Dispatch sources are thread-safe; only `cancel` is called on it after init.
    nonisolated(unsafe) private let checkpoints: DispatchSourceTimer

    /// How often the background checkpoint copies the WAL back into the database.
    public static let checkpointInterval: DispatchTimeInterval = .milliseconds(100)
    /// WAL pages past which a commit checkpoints by itself (SQLite's automatic checkpoint), should
    /// the background one fail or fall behind: the WAL's bound (40 MiB of 4 KiB pages).
    public static let walPagesMax = 10_000

    /// Applies one command; `ContactCenterMachine.apply` outside tests.
    typealias Machine = @Sendable (CommandEnvelope, Int64, SQLiteStore) throws -> ContactCenterMachine.Applied
    private let machine: Machine
    private let redoneTransactions = Atomic<Int>(0)

    /// Apply transactions that a command failing after its writes made run a second time with a
    /// savepoint per command (`SQLiteStore.Atomicity`).
    public var redoneTransactionCount: Int { redoneTransactions.load(ordering: .relaxed) }

    public convenience init(path: String) throws {
        try self.init(path: path, machine: { try ContactCenterMachine.apply($0, index: $1, store: $2) })
    }

    init(path: String, machine: @escaping Machine) throws {
        self.path = path
        self.machine = machine
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.maximumReaderCount = 8
        // The background checkpoint is a connection outside the pool, and the last connection
        // to close checkpoints with an exclusive lock: wait out such a lock instead of failing.
        configuration.busyMode = .timeout(10)
        // `execute` leaves the apply transaction open between calls on purpose (see there).
        configuration.allowsUnsafeTransactions = true
        configuration.prepareDatabase { db in
            try db.cachedStatement(sql: "PRAGMA synchronous = NORMAL").execute()
            // Every command runs in a savepoint; its sub-journal (the pages it modified, as they
            // were) spills to a temporary file past 64 KiB unless temporary storage is memory.
            try db.cachedStatement(sql: "PRAGMA temp_store = MEMORY").execute()
            // Checkpoints are the background connection's job (see above); the automatic one
            // is only the backstop that bounds the WAL.
            _ = try Row.fetchOne(db, sql: "PRAGMA wal_autocheckpoint = \(Self.walPagesMax)")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Schema.migrator().migrate(pool)
        checkpoints = Self.startCheckpoints(path: path)
    }

    deinit { checkpoints.cancel() }

    private static func startCheckpoints(path: String) -> DispatchSourceTimer {
        let queue = DispatchQueue(label: "switchboard.checkpoint")
        let timer = DispatchSource.makeTimerSource(queue: queue)
        // Opened on the timer's queue at the first tick, closed with the handler when cancelled.
        nonisolated(unsafe) var connection: DatabaseQueue?
        timer.setEventHandler {
            do {
                if connection == nil {
                    var configuration = Configuration()
                    configuration.busyMode = .timeout(1)
                    connection = try DatabaseQueue(path: path, configuration: configuration)
                }
                _ = try connection?.writeWithoutTransaction { try $0.checkpoint(.passive) }
            } catch {
                // Busy or failing: the next tick tries again; the WAL only grows meanwhile.
            }
        }
        timer.setCancelHandler { connection = nil }
        timer.schedule(deadline: .now() + checkpointInterval, repeating: checkpointInterval, leeway: .milliseconds(20))
        timer.resume()
        return timer
    }

    public func appliedIndex() throws -> Int64 {
        try pool.read { db in try Self.appliedIndex(db) }
    }

    static func appliedIndex(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(try db.cachedStatement(sql: "SELECT value FROM meta WHERE key = 'applied_index'")) ?? 0
    }

    /// Calls `observer` after every apply transaction commits, on the applying thread and before
    /// `apply` returns, with what the transaction wrote. The caller publishes the new applied
    /// index only after `apply` returns, so an observer that drops rendered copies finishes before
    /// any reader can ask for the new index: no reader at or past it sees a dropped copy.
    public func onCommit(_ observer: @escaping @Sendable (StateChanges) -> Void) {
        commitObservers.withLock { $0.append(observer) }
    }

    /// Applies committed `entries` (contiguous, starting at `appliedIndex + 1`) in one
    /// transaction that also advances `applied_index`. Blocks the calling thread.
    public func apply(_ entries: [LogEntry]) throws -> [ContactCenterMachine.Applied] {
        let results = try executeCommitted(entries.map { ($0.index, $0.payload) })
        try commitExecuted()
        return results.map { $0! }
    }

    /// Applies committed Raft entries: commands run through the contact center; the leader's
    /// no-ops and configuration entries only advance `applied_index` (their result is nil).
    /// Commits them, with anything `execute` left uncommitted, before it returns.
    public func apply(_ entries: [Entry]) throws -> [ContactCenterMachine.Applied?] {
        let results = try execute(entries)
        try commitExecuted()
        return results
    }

    /// Runs committed Raft entries inside the open apply transaction (beginning one when none
    /// is open) and leaves it open: their outcomes are final, because the entries are committed
    /// in Raft and a crash replays the log from `applied_index`, but readers see them only once
    /// `commitExecuted` commits. Many batches then share one commit, whose WAL page writes
    /// were a fifth of a leader's apply at one commit per batch.
    public func execute(_ entries: [Entry]) throws -> [ContactCenterMachine.Applied?] {
        try executeCommitted(entries.map { entry in
            if case .command(let bytes) = entry.payload { return (Int64(entry.index), bytes) }
            return (Int64(entry.index), nil)
        })
    }

    /// Entries `execute` ran since the last commit.
    public var uncommittedCount: Int { uncommitted.withLock { $0.entries.count } }

    /// Commits the open apply transaction, if any, then tells the commit observers what it wrote.
    public func commitExecuted() throws {
        let changes: StateChanges? = try withOpenTransaction { db, pending in
            guard db.isInsideTransaction else { return nil }
            try db.commit()
            defer { pending = Uncommitted() }
            return pending.changes
        }
        if let changes, !changes.isEmpty {
            for observer in commitObservers.withLock({ $0 }) { observer(changes) }
        }
    }

    /// What the open apply transaction holds: its entries, kept to run them again should a
    /// later command in it need the transaction redone, and what they wrote. Bounded by the
    /// caller, which commits (`ReplicaLimits.uncommittedMax`).
    private struct Uncommitted {
        var entries: [(index: Int64, command: [UInt8]?)] = []
        var changes = StateChanges()
    }

    private let uncommitted = Mutex(Uncommitted())

    /// Runs `body` on the writer connection with what its open transaction holds. If `body`
    /// throws, nothing uncommitted is kept: the transaction rolls back, and the node's loop
    /// stops; a restart replays the log from `applied_index`.
    private func withOpenTransaction<T: Sendable>(_ body: (Database, inout Uncommitted) throws -> T) throws -> T {
        try pool.writeWithoutTransaction { db in
            try uncommitted.withLock { pending in
                do {
                    return try body(db, &pending)
                } catch {
                    if db.isInsideTransaction { try? db.rollback() }
                    pending = Uncommitted()
                    throw error
                }
            }
        }
    }

    private func executeCommitted(_ entries: [(index: Int64, command: [UInt8]?)]) throws -> [ContactCenterMachine.Applied?] {
        try withOpenTransaction { db, pending in
            if !db.isInsideTransaction { try db.beginTransaction(.immediate) }
            do {
                let (results, changes) = try run(entries, in: db, atomicity: .optimistic)
                pending.entries.append(contentsOf: entries)
                pending.changes.formUnion(changes)
                return results
            } catch is SQLiteStore.UndoUnavailable {
                // A command failed after writing: the whole transaction rolls back, and every
                // entry in it runs again, this time each in a savepoint of its own. The entries
                // of earlier batches give the same outcomes as before (apply is deterministic);
                // only this batch's are returned.
                redoneTransactions.add(1, ordering: .relaxed)
                try db.rollback()
                try db.beginTransaction(.immediate)
                let all = pending.entries + entries
                let (results, changes) = try run(all, in: db, atomicity: .savepoint)
                pending.entries = all
                pending.changes.formUnion(changes)
                return Array(results.suffix(entries.count))
            }
        }
    }

    /// Runs `entries` in the open transaction and advances `applied_index` in it.
    private func run(
        _ entries: [(index: Int64, command: [UInt8]?)], in db: Database, atomicity: SQLiteStore.Atomicity
    ) throws -> ([ContactCenterMachine.Applied?], StateChanges) {
        var expected = try Self.appliedIndex(db) + 1
        var results: [ContactCenterMachine.Applied?] = []
        results.reserveCapacity(entries.count)
        let store = SQLiteStore(db, atomicity: atomicity)
        for entry in entries {
            guard entry.index == expected else { throw StateDatabaseError.gap(appliedIndex: expected - 1, next: entry.index) }
            expected += 1
            guard let command = entry.command else {
                results.append(nil)
                continue
            }
            let envelope: CommandEnvelope
            do {
                envelope = try CommandEnvelope.decode(command)
            } catch {
                throw StateDatabaseError.undecodableEntry(index: entry.index, reason: error.description)
            }
            results.append(try machine(envelope, entry.index, store))
        }
        if let last = entries.last {
            try RawStatement(db, "UPDATE meta SET value = ? WHERE key = 'applied_index'").execute { $0.add(last.index) }
        }
        return (results, store.changes)
    }

    /// Reads one consistent snapshot through a `StateReader`.
    ///
    /// Runs synchronously on the calling task's thread: a read from SQLite's page cache takes
    /// tens of microseconds, far less than the thread hops and wake-ups of an async hand-off
    /// (measured: the async pool read cost ~500 µs of CPU per request at 64 connections).
    public func read<T: Sendable>(_ body: @Sendable @escaping (StateReader) throws -> T) async throws -> T {
        try readNow(body)
    }

    /// The synchronous read `read(_:)` uses (GRDB's async overload would win inside `async`).
    public func readNow<T>(_ body: (StateReader) throws -> T) throws -> T {
        try pool.read { db in try body(StateReader(db: db)) }
    }

    /// A stable textual dump of every table, rows in primary-key order: equal dumps mean equal state.
    public func dump() throws -> String {
        try pool.read { db in
            var out = ""
            for table in Schema.tables {
                out += "## \(table.name)\n"
                for row in try Row.fetchAll(try db.cachedStatement(sql: "SELECT * FROM \(table.name) ORDER BY \(table.orderBy)")) {
                    out += row.description + "\n"
                }
            }
            return out
        }
    }
}

extension StateDatabase {
    /// Writes a consistent copy of the state, `applied_index` included, to `path` (`VACUUM
    /// INTO` reads one snapshot of the database), without stopping writers: the copy a Raft
    /// snapshot is made of. Returns the applied index the copy holds. `path` must not exist.
    public func snapshot(to path: String) throws -> Int64 {
        try pool.unsafeRead { db in try db.execute(sql: "VACUUM INTO ?", arguments: [path]) }
        return try DatabaseQueue(path: path).read { db in try Self.appliedIndex(db) }
    }
}

extension StateDatabase {
    /// Replaces the whole state with the copy at `path` (a snapshot a leader sent), through
    /// SQLite's backup API inside the live pool: readers see the old state or the new one, never
    /// a mix. Returns the applied index the copy holds. Observers are told everything changed.
    @discardableResult
    public func restore(from path: String) throws -> Int64 {
        try commitExecuted()
        let source = try DatabaseQueue(path: path)
        let index = try source.read { db in try Self.appliedIndex(db) }
        try source.backup(to: pool)
        try source.close()
        for observer in commitObservers.withLock({ $0 }) { observer(.all) }
        return index
    }
}
