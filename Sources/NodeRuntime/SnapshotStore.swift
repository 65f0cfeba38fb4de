import Crypto
import Foundation
import Logging
import PeerLink
import RaftCore
import Seeded
import RaftWire
import Storage
import Synchronization
import Wire

/// Snapshot files of `state.sqlite` in `<data>/snapshots/`: `state-<index>.sqlite`, taken here
/// (`VACUUM INTO`, without stopping writes) or received from a leader in chunks.
///
/// Streaming: when the core sends InstallSnapshot to a member, the file goes first, in
/// `ClusterFrame.chunkBytesMax` chunks on the same ordered link, then the InstallSnapshot
/// message itself. The receiver writes the chunks to `incoming-<index>.part`, fsyncs and renames
/// it when whole, and hands InstallSnapshot to its core only if that file is there and its
/// SHA-256 is the one the message names; otherwise it drops the message (and a file that fails
/// the check) and the leader sends both again.
///
/// Integrity: a snapshot's `data` names its file and the SHA-256 of its bytes
/// (`state-<index>.sqlite sha256=<hex>`). A file is fsynced before its rename and the directory
/// after; the checksum is verified before a received file is accepted and before any file is
/// restored, so a damaged copy is refused, never installed.
final class SnapshotStore: Sendable {
    let directory: String
    /// Snapshot files kept; older ones are deleted once a newer one is in place.
    static let filesKept = 2
    /// A stream of the same snapshot to the same member is not restarted within this time.
    static let restreamInterval: Duration = .seconds(5)

    private struct State {
        var taking = false
        var streams: [String: (index: UInt64, at: Monotonic.Instant)] = [:]
        var incoming: (index: UInt64, handle: FileHandle, size: UInt64)?
        /// The last file whose checksum was verified (the leader repeats InstallSnapshot).
        var verified: (index: UInt64, sha256: String)?
    }

    private let state = Mutex(State())
    private let streamQueue = DispatchQueue(label: "switchboard.snapshot-stream")
    private let takeQueue = DispatchQueue(label: "switchboard.snapshot-take")

    init(directory: String) {
        self.directory = directory
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func path(_ index: UInt64) -> String { directory + "/state-\(index).sqlite" }

    // MARK: Taking

    /// Copies the state, then compacts the log through the index the copy holds. Returns nil
    /// when a snapshot is already being taken.
    func take(from database: StateDatabase, loop: RaftLoop, logger: Logger) async throws -> Snapshot? {
        guard state.withLock({ state in
            defer { state.taking = true }
            return !state.taking
        }) else { return nil }
        defer { state.withLock { $0.taking = false } }
        let started = ContinuousClock.now
        let temporary = directory + "/taking-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        // A dedicated queue, not the cooperative pool: copying a large state.sqlite blocks for
        // seconds and would stall request handling on a two-core machine.
        let index: Int64 = try await withCheckedThrowingContinuation { continuation in
            takeQueue.async { continuation.resume(with: Result { try database.snapshot(to: temporary) }) }
        }
        guard index > 0, index > loop.status.snapshotIndex else { return nil }
        let target = path(UInt64(index))
        try Self.fsync(temporary)
        let sha256 = try Self.sha256(ofFile: temporary)
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.moveItem(atPath: temporary, toPath: target)
        try CommandLog.syncDirectory(of: directory + "/x")
        let snapshot = try await loop.compact(through: UInt64(index), data: Self.reference(index: UInt64(index), sha256: sha256))
        prune(keeping: snapshot.index)
        let size = (try? FileManager.default.attributesOfItem(atPath: target)[.size] as? Int) ?? 0
        logger.info(
            "took a snapshot and compacted the log",
            metadata: [
                "raft.snapshot.index": "\(snapshot.index)", "snapshot.bytes": "\(size)",
                "snapshot.ms": "\((ContinuousClock.now - started).milliseconds)",
            ])
        return snapshot
    }

    /// Deletes snapshot files older than the `filesKept` newest, never `keeping`.
    func prune(keeping: UInt64) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let indexes = names.compactMap { name -> UInt64? in
            guard name.hasPrefix("state-"), name.hasSuffix(".sqlite") else { return nil }
            return UInt64(name.dropFirst(6).dropLast(7))
        }.sorted(by: >)
        for index in indexes.dropFirst(Self.filesKept) where index != keeping {
            try? FileManager.default.removeItem(atPath: path(index))
        }
    }

    // MARK: Streaming (leader side)

    /// Streams the snapshot file to `member`, then the InstallSnapshot `message`.
    func stream(_ snapshot: Snapshot, message: RaftCore.Message, to member: String, host: String, port: Int, link: PeerLink, logger: Logger) {
        let now = ContinuousClock.now
        let start = state.withLock { state -> Bool in
            if let last = state.streams[member], last.index == snapshot.index, now - last.at < Self.restreamInterval { return false }
            state.streams[member] = (snapshot.index, now)
            return true
        }
        guard start else { return }
        let file = path(snapshot.index)
        streamQueue.async {
            guard let handle = FileHandle(forReadingAtPath: file) else {
                logger.error("cannot stream a snapshot: its file is missing", metadata: ["snapshot.path": "\(file)", "peer.id": "\(member)"])
                return
            }
            defer { try? handle.close() }
            let total = UInt64((try? handle.seekToEnd()) ?? 0)
            try? handle.seek(toOffset: 0)
            var offset: UInt64 = 0
            logger.info("streaming a snapshot", metadata: ["peer.id": "\(member)", "raft.snapshot.index": "\(snapshot.index)", "snapshot.bytes": "\(total)"])
            repeat {
                let chunk = [UInt8]((try? handle.read(upToCount: ClusterFrame.chunkBytesMax)) ?? Data())
                let frame = ClusterFrame.snapshotChunk(index: snapshot.index, term: snapshot.term, offset: offset, total: total, bytes: chunk)
                guard link.send(ClusterFrame.encode(frame), to: member, host: host, port: port) else {
                    logger.info("snapshot stream interrupted; the leader retries", metadata: ["peer.id": "\(member)"])
                    return
                }
                offset += UInt64(chunk.count)
                if chunk.isEmpty { break }
                Thread.sleep(forTimeInterval: 0.002)  // let heartbeats and appends interleave
            } while offset < total
            link.send(ClusterFrame.encode(.raft(message)), to: member, host: host, port: port)
        }
    }

    // MARK: Receiving (follower side)

    /// One chunk of the file of the snapshot at `index`. Chunks arrive in order on one link; a
    /// chunk that does not continue the file being written restarts or drops it.
    func receive(index: UInt64, term: UInt64, offset: UInt64, total: UInt64, bytes: [UInt8], logger: Logger) {
        let part = directory + "/incoming-\(index).part"
        state.withLock { state in
            if offset == 0 {
                if let incoming = state.incoming { try? incoming.handle.close() }
                state.incoming = nil
                FileManager.default.createFile(atPath: part, contents: nil)
                guard let handle = FileHandle(forWritingAtPath: part) else { return }
                state.incoming = (index, handle, 0)
            }
            guard var incoming = state.incoming, incoming.index == index, incoming.size == offset else {
                if let incoming = state.incoming { try? incoming.handle.close() }
                state.incoming = nil
                return
            }
            do {
                try incoming.handle.write(contentsOf: Data(bytes))
                incoming.size += UInt64(bytes.count)
                state.incoming = incoming
                if incoming.size == total {
                    try incoming.handle.synchronize()
                    try incoming.handle.close()
                    state.incoming = nil
                    try? FileManager.default.removeItem(atPath: path(index))
                    try FileManager.default.moveItem(atPath: part, toPath: path(index))
                    try CommandLog.syncDirectory(of: directory + "/x")
                    logger.info("received a snapshot", metadata: ["raft.snapshot.index": "\(index)", "snapshot.bytes": "\(total)"])
                }
            } catch {
                logger.warning("cannot write a received snapshot", metadata: ["snapshot.path": "\(part)", "error": "\(error)"])
                try? incoming.handle.close()
                state.incoming = nil
            }
        }
    }

    /// Whether the file for `snapshot` is here, whole, with the checksum `snapshot` names. A
    /// file that fails the check is deleted (the leader sends it again).
    func hasReceived(_ snapshot: Snapshot, logger: Logger) -> Bool {
        let file = path(snapshot.index)
        guard FileManager.default.fileExists(atPath: file) else { return false }
        guard let expected = Self.sha256(named: snapshot.data) else { return true }
        if let verified = state.withLock({ $0.verified }), verified.index == snapshot.index, verified.sha256 == expected { return true }
        let actual = try? Self.sha256(ofFile: file)
        guard actual == expected else {
            logger.warning(
                "a received snapshot fails its SHA-256 check: deleted, the leader sends it again",
                metadata: ["snapshot.path": "\(file)", "snapshot.sha256.expected": "\(expected)", "snapshot.sha256.actual": "\(actual ?? "unreadable")"])
            try? FileManager.default.removeItem(atPath: file)
            return false
        }
        state.withLock { $0.verified = (snapshot.index, expected) }
        return true
    }

    // MARK: Integrity

    /// A snapshot's `data`: its file's name and the SHA-256 of the file.
    static func reference(index: UInt64, sha256: String) -> [UInt8] { Array("state-\(index).sqlite sha256=\(sha256)".utf8) }

    /// The SHA-256 a snapshot's `data` names; nil for snapshots taken before checksums.
    static func sha256(named data: [UInt8]) -> String? {
        guard let text = String(validating: data, as: UTF8.self), let range = text.range(of: " sha256=") else { return nil }
        let hex = String(text[range.upperBound...])
        return hex.count == 64 && hex.allSatisfy(\.isHexDigit) ? hex : nil
    }

    /// The SHA-256 of a file's bytes, read 1 MiB at a time, in lowercase hex.
    static func sha256(ofFile path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path]) }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return Secrets.hex(Array(hasher.finalize()))
    }

    /// fsync of a file, so its bytes are on disk before a rename makes it visible.
    static func fsync(_ path: String) throws {
        guard let handle = FileHandle(forUpdatingAtPath: path) else { throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path]) }
        defer { try? handle.close() }
        try handle.synchronize()
    }

    /// Replaces `state.sqlite`'s content with the snapshot's file.
    func restore(_ snapshot: Snapshot, into database: StateDatabase, logger: Logger) throws {
        let file = path(snapshot.index)
        guard FileManager.default.fileExists(atPath: file) else {
            throw NodeStartError.dataDirectory(directory, reason: "the snapshot file for index \(snapshot.index) is missing")
        }
        if let expected = Self.sha256(named: snapshot.data) {
            let actual = try Self.sha256(ofFile: file)
            guard actual == expected else {
                throw NodeStartError.dataDirectory(
                    directory,
                    reason: """
                        snapshot file \(file) fails its SHA-256 check (expected \(expected), got \(actual)); nothing was restored. \
                        Rebuild this member from the others: stop it, move its data directory aside, and start it again with --join
                        """)
            }
        }
        let applied = try database.restore(from: file)
        guard applied == Int64(snapshot.index) else {
            throw NodeStartError.dataDirectory(directory, reason: "snapshot file \(file) holds index \(applied), expected \(snapshot.index)")
        }
        prune(keeping: snapshot.index)
        logger.info("restored state.sqlite from a snapshot", metadata: ["raft.snapshot.index": "\(snapshot.index)"])
    }
}
