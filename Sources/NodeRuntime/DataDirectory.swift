import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import RaftCore
import Storage

/// A node's data directory, opened once at start: the lock that keeps a second process out,
/// the Raft log (with the first snapshot of a new cluster, or of a joining member), the state
/// database, and the restore a crash interrupted. Everything here happens before the node
/// reads its state; the lock is held until `release()`.
final class DataDirectory: Sendable {
    let path: String
    let state: StateDatabase
    let snapshots: SnapshotStore
    /// True when this start created the cluster state (no earlier `raft-snapshot`).
    let freshStart: Bool
    private let lockDescriptor: Int32

    private init(path: String, state: StateDatabase, snapshots: SnapshotStore, freshStart: Bool, lockDescriptor: Int32) {
        self.path = path
        self.state = state
        self.snapshots = snapshots
        self.freshStart = freshStart
        self.lockDescriptor = lockDescriptor
    }

    /// Opens the directory; the Raft log goes to the loop that will own it.
    static func open(configuration: NodeConfiguration, logger: Logger) throws -> (DataDirectory, RaftStorage) {
        let directory = configuration.dataDirectory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw NodeStartError.dataDirectory(directory, reason: "\(error)")
        }
        let lock = Glibc.open(directory + "/LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw NodeStartError.dataDirectory(directory, reason: "cannot open LOCK") }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            close(lock)
            throw NodeStartError.locked(directory)
        }
        do {
            let freshStart = !FileManager.default.fileExists(atPath: directory + "/raft-snapshot")
            let initial: Snapshot
            switch configuration.start {
            case .bootstrap: initial = Snapshot(index: 0, term: 0, configuration: Configuration(voters: [configuration.id]), data: [])
            case .join: initial = Snapshot(index: 0, term: 0, configuration: Configuration(voters: []), data: [])
            }
            let storage = try RaftStorage(directory: directory, initial: initial)
            if let repaired = storage.repairedLogTail {
                logger.warning(
                    "raft.log ended in a torn record (a write cut by a crash, never acknowledged): cut it; the cut bytes are kept",
                    metadata: ["log.offset": "\(repaired.offset)", "log.cut_bytes": "\(repaired.bytes)", "log.copy": "\(repaired.copy)"])
            }
            let state = try StateDatabase(path: directory + "/state.sqlite")
            let snapshots = SnapshotStore(directory: directory + "/snapshots")
            // A crash between saving a received snapshot's metadata and restoring state.sqlite
            // from it: finish the restore before anything reads the state.
            if try UInt64(state.appliedIndex()) < storage.snapshot.index {
                try snapshots.restore(storage.snapshot, into: state, logger: logger)
            }
            let opened = DataDirectory(path: directory, state: state, snapshots: snapshots, freshStart: freshStart, lockDescriptor: lock)
            return (opened, storage)
        } catch {
            close(lock)
            throw error
        }
    }

    /// Lets another process take the directory (the node has stopped writing to it).
    func release() { flock(lockDescriptor, LOCK_UN) }

    deinit { close(lockDescriptor) }
}
