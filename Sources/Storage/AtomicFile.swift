#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file replacement that a crash cannot tear: write a temporary file, fsync it, rename it
/// over the target, fsync the directory.
enum AtomicFile {
    static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw CommandLogError.io(operation: "open", path: temporary, errno: errno) }
        defer { close(descriptor) }
        try FileIO.writeFully(descriptor, bytes, at: 0, path: temporary)
        guard fsync(descriptor) == 0 else { throw CommandLogError.io(operation: "fsync", path: temporary, errno: errno) }
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
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw CommandLogError.io(operation: "fstat", path: path, errno: errno) }
        let size = Int(status.st_size)
        guard size <= bytesMax else { throw CommandLogError.corrupt(path: path, offset: 0, reason: "\(size) bytes, more than \(bytesMax)") }
        return try FileIO.readFully(descriptor, count: size, at: 0, path: path)
    }
}
