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
