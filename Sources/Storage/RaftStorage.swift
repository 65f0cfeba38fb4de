import RaftCore
import RaftDriver
import RaftWire
import Wire

/// A member's durable Raft state in its data directory: the entry log (`raft.log`, a
/// `CommandLog` whose records hold each entry's payload), the term and vote
/// (`raft-hardstate`), and the latest snapshot's metadata (`raft-snapshot`).
///
/// `persist(_:)` carries out step 1 of a `Ready` (see its contract): snapshot, then entries,
/// then term and vote, each durable before it returns. Not thread-safe: the node loop owns it.
public final class RaftStorage {
    public let directory: String
    let log: CommandLog
    let hardStateFile: HardStateFile
    let snapshotPath: String
    private var savedTermAndVote: HardStateFile.Value
    public private(set) var snapshot: Snapshot
    /// The torn tail the log cut at open (see `CommandLog.repairedTail`), for the node to log.
    public var repairedLogTail: (offset: Int64, bytes: Int64, copy: String)? { log.repairedTail }

    /// Opens (or creates) the storage. `initial` is the snapshot a brand-new member starts from
    /// (index 0 with the bootstrap configuration, or an empty one for a joining member); an
    /// existing directory ignores it.
    public init(directory: String, initial: Snapshot) throws {
        self.directory = directory
        log = try CommandLog(path: directory + "/raft.log")
        hardStateFile = HardStateFile(path: directory + "/raft-hardstate")
        snapshotPath = directory + "/raft-snapshot"
        savedTermAndVote = try hardStateFile.load()
        if let bytes = try AtomicFile.read(snapshotPath, bytesMax: RaftCodec.blobBytesMax + 4096) {
            do {
                snapshot = try RaftCodec.decodeSnapshot(bytes)
            } catch {
                throw CommandLogError.corrupt(path: snapshotPath, offset: 0, reason: error.description)
            }
        } else {
            snapshot = initial
            try AtomicFile.write(RaftCodec.encode(initial), to: snapshotPath)
        }
        if log.lastIndex < log.firstIndex, log.firstIndex == 1 { log.startAfter(Int64(snapshot.index)) }
    }

    /// What `Raft.init` needs. `commit` is the caller's applied index (Raft's commit index is
    /// volatile; what was applied was committed).
    public func load(applied: LogIndex) throws -> (hardState: HardState, snapshot: Snapshot, entries: [Entry]) {
        let first = snapshot.index + 1
        guard log.lastIndex < first || log.firstIndex <= first else {
            throw CommandLogError.corrupt(path: log.path, offset: 0, reason: "the log starts at \(log.firstIndex), after the snapshot at \(snapshot.index)")
        }
        var entries: [Entry] = []
        var next = Int64(first)
        while next <= log.lastIndex {
            for record in try log.entries(from: next, maxCount: 4096) {
                let payload: EntryPayload
                do { payload = try RaftCodec.decodePayload(record.payload) } catch {
                    throw CommandLogError.corrupt(path: log.path, offset: 0, reason: "entry \(record.index): \(error)")
                }
                entries.append(Entry(term: record.term, index: LogIndex(record.index), payload: payload))
                next = record.index + 1
            }
        }
        let commit = min(max(applied, snapshot.index), entries.last?.index ?? snapshot.index)
        return (HardState(term: savedTermAndVote.term, vote: savedTermAndVote.vote, commit: commit), snapshot, entries)
    }

    /// Persists a `Ready`'s snapshot, entries and hard state (term and vote only).
    public func persist(_ ready: Ready) throws {
        if let installed = ready.snapshot { try save(snapshot: installed) }
        if let first = ready.entries.first {
            if Int64(first.index) <= log.lastIndex { try log.truncate(after: Int64(first.index) - 1) }
            try log.append(ready.entries.map { LogEntry(index: Int64($0.index), term: $0.term, payload: RaftCodec.encode($0.payload)) })
        }
        if let hardState = ready.hardState, hardState.term != savedTermAndVote.term || hardState.vote != savedTermAndVote.vote {
            let value = HardStateFile.Value(term: hardState.term, vote: hardState.vote)
            try hardStateFile.save(value)
            savedTermAndVote = value
        }
    }

    /// Saves a snapshot (one the application took, or one a leader sent) and drops the entries
    /// it covers. The metadata is written first, so a crash in between leaves extra entries
    /// that `load` skips, never a gap.
    public func save(snapshot new: Snapshot) throws {
        guard new.index > snapshot.index else { return }
        try AtomicFile.write(RaftCodec.encode(new), to: snapshotPath)
        let index = Int64(new.index)
        var keepsTail = false
        if index >= log.firstIndex, index <= log.lastIndex { keepsTail = try log.entries(from: index, maxCount: 1).first?.term == new.term }
        if keepsTail {
            try log.compact(through: Int64(new.index))
        } else {
            try log.compact(through: log.lastIndex)
            log.startAfter(Int64(new.index))
        }
        snapshot = new
    }
}

/// The driver persists each `Ready` here and saves the snapshots the node takes.
extension RaftStorage: ReplicaLogStore {}
