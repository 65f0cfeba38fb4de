#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Wire

/// One entry of the durable log. `term` is 0 until Raft assigns terms.
public struct LogEntry: Sendable, Equatable {
    public var index: Int64
    public var term: UInt64
    public var payload: [UInt8]

    public init(index: Int64, term: UInt64, payload: [UInt8]) {
        self.index = index
        self.term = term
        self.payload = payload
    }
}

public enum CommandLogError: Error, CustomStringConvertible {
    case io(operation: String, path: String, errno: Int32)
    case corrupt(path: String, offset: Int64, reason: String)
    case entryTooLarge(bytes: Int, max: Int)
    case notContiguous(expected: Int64, got: Int64)

    public var description: String {
        switch self {
        case .io(let operation, let path, let code): "\(operation) \(path): \(String(cString: strerror(code)))"
        case .corrupt(let path, let offset, let reason): "\(path) is corrupt at byte \(offset): \(reason)"
        case .entryTooLarge(let bytes, let max): "log entry of \(bytes) bytes exceeds entryBytesMax \(max)"
        case .notContiguous(let expected, let got): "log append must continue at index \(expected), got \(got)"
        }
    }
}

/// The durable, append-only command log: the storage the Raft log will use.
///
/// File layout: an 8-byte magic, then records `[u32 payloadLength][u32 crc32c][u64 index]
/// [u64 term][payload]`, the checksum covering index, term and payload. `append` writes a whole
/// batch and fsyncs once (group commit) before it returns: an entry is durable when `append`
/// returns, never before. On open, a torn or checksum-failing last record (a write cut by a
/// crash, so never acknowledged) is cut off, and a copy of the cut bytes kept beside the log
/// (`<path>.broken-<offset>`); a failing record followed by an intact one is damage, not a torn
/// write, and open throws without changing anything. Indexes must be contiguous.
///
/// Preallocation: the file is extended with zeros `preallocationBytes` at a time, ahead of the
/// records, so an append overwrites bytes the file already has and `fdatasync` flushes data
/// alone, without an ext4 journal commit for the new size (which every member's log and SQLite
/// files share, and which made the log's fsync the longest wait of a write under load). Past the
/// last record there are only zeros: open keeps an all-zero remainder as preallocated space and
/// cuts anything else as a torn tail; truncation and compaction cut the file at the last record.
///
/// Not thread-safe: one owner (the node's pipeline thread) calls it.
public final class CommandLog {
    public static let magic: [UInt8] = Array("SWBLOG01".utf8)
    static let recordHeaderBytes = 24
    /// Largest payload one entry may carry.
    public static let entryBytesMax = 4 << 20
    /// Zeros written ahead of the records whenever an append would pass the end of the file.
    public static let preallocationBytes: Int64 = 4 << 20

    public let path: String
    private var descriptor: Int32
    /// Byte offset of each entry's record, entry `firstIndex + i` at `offsets[i]`.
    private var offsets: [Int64] = []
    private var endOffset: Int64
    /// The file's size: `endOffset` plus the zeros preallocated after it.
    private var allocatedEnd: Int64 = 0
    public private(set) var firstIndex: Int64 = 1
    public private(set) var lastTerm: UInt64 = 0
    /// Number of bytes cut from a torn tail when the log was opened.
    public private(set) var truncatedTailBytes: Int64 = 0
    /// The torn tail cut when the log was opened: where, how many bytes, and the file that
    /// keeps a copy of them (`<path>.broken-<offset>`), for the node to log.
    public private(set) var repairedTail: (offset: Int64, bytes: Int64, copy: String)?

    public var lastIndex: Int64 { firstIndex + Int64(offsets.count) - 1 }
    public var sizeBytes: Int64 { endOffset }

    public init(path: String) throws {
        self.path = path
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw CommandLogError.io(operation: "open", path: path, errno: errno) }
        endOffset = 0
        do {
            try recover()
        } catch {
            close(descriptor)
            throw error
        }
    }

    deinit { close(descriptor) }

    private func recover() throws {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw CommandLogError.io(operation: "fstat", path: path, errno: errno) }
        let fileSize = Int64(status.st_size)
        if fileSize < Int64(Self.magic.count) {
            // New (or a file cut before its magic was synced): start it.
            try writeFully(Self.magic, at: 0)
            guard ftruncate(descriptor, off_t(Int64(Self.magic.count))) == 0 else { throw CommandLogError.io(operation: "ftruncate", path: path, errno: errno) }
            try sync()
            endOffset = Int64(Self.magic.count)
            allocatedEnd = endOffset
            return
        }
        guard try readFully(count: Self.magic.count, at: 0) == Self.magic else {
            throw CommandLogError.corrupt(path: path, offset: 0, reason: "not a Switchboard command log")
        }
        var offset = Int64(Self.magic.count)
        while offset < fileSize {
            guard fileSize - offset >= Int64(Self.recordHeaderBytes) else { break }
            var header = ByteReader(try readFully(count: Self.recordHeaderBytes, at: offset))
            let length = Int(try header.readUInt32())
            let checksum = try header.readUInt32()
            let index = try header.readInt64()
            let term = try header.readUInt64()
            guard length <= Self.entryBytesMax, fileSize - offset - Int64(Self.recordHeaderBytes) >= Int64(length) else { break }
            let payload = try readFully(count: length, at: offset + Int64(Self.recordHeaderBytes))
            guard Self.checksum(index: index, term: term, payload: payload) == checksum else { break }
            if offsets.isEmpty {
                firstIndex = index
            } else if index != lastIndex + 1 {
                throw CommandLogError.corrupt(path: path, offset: offset, reason: "index \(index) follows \(lastIndex)")
            }
            offsets.append(offset)
            lastTerm = term
            offset += Int64(Self.recordHeaderBytes + length)
        }
        endOffset = offset
        allocatedEnd = fileSize
        if offset < fileSize, try !isZero(from: offset, to: fileSize) {
            if let next = try validRecordAfter(badRecordAt: offset, fileSize: fileSize) {
                // A whole record follows the bad one: not a write cut by a crash, but damage
                // inside the log. Cutting here would drop acknowledged entries; refuse instead.
                throw CommandLogError.corrupt(
                    path: path, offset: offset,
                    reason: """
                        the record of entry \(lastIndex + 1) fails its checksum and entry \(next) follows it intact, so this is damage, \
                        not a write cut by a crash. Nothing was changed. Rebuild this member from the others: stop it, move its data \
                        directory aside, and start it again with --join to catch up from the leader (or restore a backup)
                        """)
            }
            // A torn last record (a write a crash cut, never acknowledged): keep a copy of what
            // is cut, as etcd's WAL repair does, then cut it.
            let brokenPath = "\(path).broken-\(offset)"
            try FileIO.copy(descriptor, from: offset, to: fileSize, into: brokenPath, path: path)
            truncatedTailBytes = fileSize - offset
            allocatedEnd = offset
            guard ftruncate(descriptor, off_t(offset)) == 0 else { throw CommandLogError.io(operation: "ftruncate", path: path, errno: errno) }
            try sync()
            repairedTail = (offset: offset, bytes: truncatedTailBytes, copy: brokenPath)
        }
    }

    /// The index of an intact record right after the failing one at `offset`, if there is one:
    /// the failing record's length is plausible and the record after it has a valid checksum and
    /// the next index but one.
    private func validRecordAfter(badRecordAt offset: Int64, fileSize: Int64) throws -> Int64? {
        guard fileSize - offset >= Int64(Self.recordHeaderBytes) else { return nil }
        var header = ByteReader(try readFully(count: Self.recordHeaderBytes, at: offset))
        let length = Int64(try header.readUInt32())
        let next = offset + Int64(Self.recordHeaderBytes) + length
        guard length <= Int64(Self.entryBytesMax), fileSize - next >= Int64(Self.recordHeaderBytes) else { return nil }
        var nextHeader = ByteReader(try readFully(count: Self.recordHeaderBytes, at: next))
        let nextLength = Int(try nextHeader.readUInt32())
        let checksum = try nextHeader.readUInt32()
        let index = try nextHeader.readInt64()
        let term = try nextHeader.readUInt64()
        let expected = offsets.isEmpty ? nil : lastIndex + 2
        guard nextLength <= Self.entryBytesMax, fileSize - next - Int64(Self.recordHeaderBytes) >= Int64(nextLength),
              expected == nil || index == expected
        else { return nil }
        let payload = try readFully(count: nextLength, at: next + Int64(Self.recordHeaderBytes))
        return Self.checksum(index: index, term: term, payload: payload) == checksum ? index : nil
    }

    static func checksum(index: Int64, term: UInt64, payload: [UInt8]) -> UInt32 {
        var writer = ByteWriter(capacity: 16)
        writer.write(index)
        writer.write(term)
        return CRC32C.checksum(payload, seed: CRC32C.checksum(writer.bytes))
    }

    /// Appends `entries` (contiguous, starting at `lastIndex + 1`) and fsyncs once.
    public func append(_ entries: [LogEntry]) throws {
        guard !entries.isEmpty else { return }
        var writer = ByteWriter(capacity: entries.reduce(0) { $0 + $1.payload.count + Self.recordHeaderBytes })
        var newOffsets: [Int64] = []
        var expected = lastIndex + 1
        for entry in entries {
            guard entry.index == expected else { throw CommandLogError.notContiguous(expected: expected, got: entry.index) }
            guard entry.payload.count <= Self.entryBytesMax else {
                throw CommandLogError.entryTooLarge(bytes: entry.payload.count, max: Self.entryBytesMax)
            }
            newOffsets.append(endOffset + Int64(writer.bytes.count))
            writer.write(UInt32(entry.payload.count))
            writer.write(Self.checksum(index: entry.index, term: entry.term, payload: entry.payload))
            writer.write(entry.index)
            writer.write(entry.term)
            writer.writeRaw(entry.payload)
            expected += 1
        }
        if offsets.isEmpty { firstIndex = entries[0].index }
        let end = endOffset + Int64(writer.bytes.count)
        if end > allocatedEnd { try preallocate(through: end) }
        try writeFully(writer.bytes, at: endOffset)
        // Inside the preallocated size: no metadata the data needs to be read back.
        guard fdatasync(descriptor) == 0 else { throw CommandLogError.io(operation: "fdatasync", path: path, errno: errno) }
        offsets.append(contentsOf: newOffsets)
        endOffset += Int64(writer.bytes.count)
        lastTerm = entries[entries.count - 1].term
    }

    /// Entries from `start` through at most `maxCount` entries, stopping at `lastIndex`.
    public func entries(from start: Int64, maxCount: Int) throws -> [LogEntry] {
        precondition(start >= firstIndex, "reading compacted index \(start) < first \(firstIndex)")
        guard start <= lastIndex, maxCount > 0 else { return [] }
        let end = min(lastIndex, start + Int64(maxCount) - 1)
        let from = offsets[Int(start - firstIndex)]
        let to = end == lastIndex ? endOffset : offsets[Int(end + 1 - firstIndex)]
        var reader = ByteReader(try readFully(count: Int(to - from), at: from))
        var result: [LogEntry] = []
        while !reader.isAtEnd {
            let length = Int(try reader.readUInt32())
            _ = try reader.readUInt32()
            let index = try reader.readInt64()
            let term = try reader.readUInt64()
            let payload = try reader.readBytes(length)
            result.append(LogEntry(index: index, term: term, payload: payload))
        }
        return result
    }

    /// Removes every entry after `index` (Raft: a follower's conflicting suffix) and fsyncs.
    public func truncate(after index: Int64) throws {
        guard index < lastIndex else { return }
        precondition(index >= firstIndex - 1, "truncating below the first index \(firstIndex)")
        let keep = Int(index - firstIndex + 1)
        let newEnd = offsets[keep]
        guard ftruncate(descriptor, off_t(newEnd)) == 0 else { throw CommandLogError.io(operation: "ftruncate", path: path, errno: errno) }
        try sync()
        offsets.removeSubrange(keep...)
        endOffset = newEnd
        allocatedEnd = newEnd
    }

    /// Raft compaction (§5): drops every entry through `index`, which a snapshot now covers.
    /// The entries after it are copied to a new file that replaces this one atomically
    /// (write, fsync, rename, fsync the directory): a crash leaves either file, never half.
    public func compact(through index: Int64) throws {
        guard index >= firstIndex else { return }
        let keepFrom = min(index + 1, lastIndex + 1)
        let tailStart = keepFrom <= lastIndex ? offsets[Int(keepFrom - firstIndex)] : endOffset
        let tail = try readFully(count: Int(endOffset - tailStart), at: tailStart)
        let temporary = path + ".compact"
        let replacement = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard replacement >= 0 else { throw CommandLogError.io(operation: "open", path: temporary, errno: errno) }
        let previous = descriptor
        descriptor = replacement
        do {
            try writeFully(Self.magic + tail, at: 0)
            try sync()
        } catch {
            descriptor = previous
            close(replacement)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            descriptor = previous
            close(replacement)
            throw CommandLogError.io(operation: "rename", path: temporary, errno: errno)
        }
        close(previous)
        try Self.syncDirectory(of: path)
        let shift = tailStart - Int64(Self.magic.count)
        offsets = offsets.dropFirst(Int(keepFrom - firstIndex)).map { $0 - shift }
        endOffset -= shift
        allocatedEnd = endOffset
        firstIndex = index + 1
    }

    /// An empty log (new, or compacted to nothing) continues after `index` (a snapshot's).
    public func startAfter(_ index: Int64) {
        precondition(offsets.isEmpty, "startAfter(\(index)) on a log holding \(firstIndex)...\(lastIndex)")
        firstIndex = index + 1
    }

    public static func syncDirectory(of path: String) throws {
        var directory = "."
        if let slash = path.lastIndex(of: "/") { directory = slash == path.startIndex ? "/" : String(path[..<slash]) }
        let descriptor = open(directory, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw CommandLogError.io(operation: "open", path: directory, errno: errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw CommandLogError.io(operation: "fsync", path: directory, errno: errno) }
    }

    /// Extends the file with zeros to `preallocationBytes` past `end` and fsyncs it (the new
    /// size included), so that the appends up to there only overwrite.
    private func preallocate(through end: Int64) throws {
        let chunk = 1 << 20
        let target = (end + Self.preallocationBytes + Int64(chunk) - 1) / Int64(chunk) * Int64(chunk)
        let zeros = [UInt8](repeating: 0, count: chunk)
        var offset = allocatedEnd
        while offset < target {
            let count = Int(min(Int64(chunk), target - offset))
            try writeFully(count == chunk ? zeros : Array(zeros[0..<count]), at: offset)
            offset += Int64(count)
        }
        try sync()
        allocatedEnd = target
    }

    /// Whether every byte in `from..<to` is zero (preallocated space, not a torn record).
    private func isZero(from: Int64, to: Int64) throws -> Bool {
        var offset = from
        while offset < to {
            let count = Int(min(Int64(1 << 20), to - offset))
            guard try readFully(count: count, at: offset).allSatisfy({ $0 == 0 }) else { return false }
            offset += Int64(count)
        }
        return true
    }

    private func sync() throws {
        guard fsync(descriptor) == 0 else { throw CommandLogError.io(operation: "fsync", path: path, errno: errno) }
    }

    private func writeFully(_ bytes: [UInt8], at offset: Int64) throws {
        try FileIO.writeFully(descriptor, bytes, at: offset, path: path)
    }

    private func readFully(count: Int, at offset: Int64) throws -> [UInt8] {
        try FileIO.readFully(descriptor, count: count, at: offset, path: path)
    }
}

/// Positional reads and writes that finish (retrying short transfers and EINTR) or throw.
enum FileIO {
    static func writeFully(_ descriptor: Int32, _ bytes: [UInt8], at offset: Int64, path: String) throws {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                pwrite(descriptor, buffer.baseAddress! + written, bytes.count - written, off_t(offset + Int64(written)))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw CommandLogError.io(operation: "pwrite", path: path, errno: errno)
            }
            written += result
        }
    }

    /// Copies `from..<to` of an open file into a new file at `copyPath` (0600), fsynced.
    static func copy(_ descriptor: Int32, from: Int64, to: Int64, into copyPath: String, path: String) throws {
        let target = open(copyPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard target >= 0 else { throw CommandLogError.io(operation: "open", path: copyPath, errno: errno) }
        defer { close(target) }
        var offset = from
        while offset < to {
            let count = Int(min(Int64(1 << 20), to - offset))
            try writeFully(target, try readFully(descriptor, count: count, at: offset, path: path), at: offset - from, path: copyPath)
            offset += Int64(count)
        }
        guard fsync(target) == 0 else { throw CommandLogError.io(operation: "fsync", path: copyPath, errno: errno) }
    }

    static func readFully(_ descriptor: Int32, count: Int, at offset: Int64, path: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset + Int64(done)))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw CommandLogError.io(operation: "pread", path: path, errno: errno)
            }
            if result == 0 { throw CommandLogError.corrupt(path: path, offset: offset, reason: "unexpected end of file") }
            done += result
        }
        return bytes
    }
}
