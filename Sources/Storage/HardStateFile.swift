#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Wire

/// The Raft hard state that must survive a crash: the current term and the vote cast in it
/// (Raft §3.8, Figure 3.1). The commit index is volatile in Raft; a node restarts it from the
/// index `state.sqlite` has applied. Written only when the term or the vote changes (elections),
/// atomically: a temporary file is written and fsynced, renamed over the old one, and the
/// directory fsynced, before the vote may be sent.
public struct HardStateFile: Sendable {
    public static let magic: [UInt8] = Array("SWBHS001".utf8)
    public let path: String

    public struct Value: Equatable, Sendable {
        public var term: UInt64
        public var vote: String?
        public init(term: UInt64, vote: String?) {
            self.term = term
            self.vote = vote
        }
    }

    public init(path: String) { self.path = path }

    /// The saved state, or term 0 and no vote when none was ever saved. A file that exists but
    /// does not verify is corruption: the node must not start and forget a vote.
    public func load() throws -> Value {
        guard let bytes = try AtomicFile.read(path, bytesMax: 4096) else { return Value(term: 0, vote: nil) }
        do {
            var reader = ByteReader(bytes)
            guard try reader.readBytes(Self.magic.count) == Self.magic else { throw WireError.invalid("not a hard state file") }
            guard reader.remaining >= 4 else { throw WireError.truncated(needed: 4, remaining: reader.remaining) }
            let body = try reader.readBytes(reader.remaining - 4)
            let checksum = try reader.readUInt32()
            guard CRC32C.checksum(body) == checksum else { throw WireError.invalid("checksum mismatch") }
            var fields = ByteReader(body)
            let value = Value(term: try fields.readUInt64(), vote: try fields.readOptionalString())
            try fields.expectEnd()
            return value
        } catch let error as WireError {
            throw CommandLogError.corrupt(path: path, offset: 0, reason: error.description)
        }
    }

    public func save(_ value: Value) throws {
        var body = ByteWriter(capacity: 64)
        body.write(value.term)
        body.write(value.vote)
        var file = ByteWriter(capacity: 80)
        file.writeRaw(Self.magic)
        file.writeRaw(body.bytes)
        file.write(CRC32C.checksum(body.bytes))
        try AtomicFile.write(file.bytes, to: path)
    }
}

/// Whole-file replacement that a crash cannot tear: write a temporary file, fsync it, rename it
/// over the target, fsync the directory.
enum AtomicFile {
    static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw CommandLogError.io(operation: "open", path: temporary, errno: errno) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { SystemCalls.write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                let failure = errno
                close(descriptor)
                throw CommandLogError.io(operation: "write", path: temporary, errno: failure)
            }
            written += result
        }
        guard fsync(descriptor) == 0 else {
            let failure = errno
            close(descriptor)
            throw CommandLogError.io(operation: "fsync", path: temporary, errno: failure)
        }
        close(descriptor)
        guard rename(temporary, path) == 0 else { throw CommandLogError.io(operation: "rename", path: temporary, errno: errno) }
        try CommandLog.syncDirectory(of: path)
    }

    /// The file's bytes, or nil when it does not exist.
    static func read(_ path: String, bytesMax: Int) throws -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        if descriptor < 0 {
            if errno == ENOENT { return nil }
            throw CommandLogError.io(operation: "open", path: path, errno: errno)
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { SystemCalls.read(descriptor, $0.baseAddress!, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw CommandLogError.io(operation: "read", path: path, errno: errno) }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
            guard bytes.count <= bytesMax else { throw CommandLogError.corrupt(path: path, offset: 0, reason: "larger than \(bytesMax) bytes") }
        }
    }
}

/// The C library's read and write, named apart from the methods above.
enum SystemCalls {
    static func write(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.write(descriptor, buffer, count)
        #else
        Darwin.write(descriptor, buffer, count)
        #endif
    }

    static func read(_ descriptor: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.read(descriptor, buffer, count)
        #else
        Darwin.read(descriptor, buffer, count)
        #endif
    }
}
