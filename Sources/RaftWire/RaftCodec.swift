import RaftCore
import Wire

/// Raft messages as bytes for the peer link: `[version][from][to][term][kind tag][fields]`.
/// Decoding checks every length against what remains and a named bound, and rejects unknown
/// versions, tags and trailing bytes: a malformed frame is an error, never a crash.
public enum RaftCodec {
    public static let version: UInt8 = 1
    /// Most entries one append may carry (`RaftSettings.appendBytesMax` keeps real ones smaller).
    public static let entriesPerMessageMax = 65_536
    /// Most read contexts one message may carry.
    public static let contextsPerMessageMax = 100_000
    /// Longest command payload or inline snapshot data.
    public static let blobBytesMax = 16 << 20

    public static func encode(_ message: Message) -> [UInt8] {
        var writer = ByteWriter(capacity: 256)
        writer.write(version)
        writer.write(message.from)
        writer.write(message.to)
        writer.write(message.term)
        switch message.kind {
        case .preVote(let lastIndex, let lastTerm):
            writer.write(UInt8(1)); writer.write(lastIndex); writer.write(lastTerm)
        case .preVoteResponse(let granted):
            writer.write(UInt8(2)); writer.write(granted)
        case .vote(let lastIndex, let lastTerm, let transfer):
            writer.write(UInt8(3)); writer.write(lastIndex); writer.write(lastTerm); writer.write(transfer)
        case .voteResponse(let granted):
            writer.write(UInt8(4)); writer.write(granted)
        case .append(let prevIndex, let prevTerm, let entries, let commit):
            writer.write(UInt8(5)); writer.write(prevIndex); writer.write(prevTerm); writer.write(commit)
            writer.write(UInt32(entries.count))
            for entry in entries { write(entry, to: &writer) }
        case .appendResponse(let reject, let index, let hintIndex, let hintTerm):
            writer.write(UInt8(6)); writer.write(reject); writer.write(index); writer.write(hintIndex); writer.write(hintTerm)
        case .heartbeat(let commit, let round):
            writer.write(UInt8(7)); writer.write(commit); writer.write(round)
        case .heartbeatResponse(let round):
            writer.write(UInt8(8)); writer.write(round)
        case .installSnapshot(let snapshot):
            writer.write(UInt8(9)); writer.write(snapshot.index); writer.write(snapshot.term)
            write(snapshot.configuration, to: &writer); writeBlob(snapshot.data, to: &writer)
        case .timeoutNow:
            writer.write(UInt8(10))
        case .readIndex(let contexts):
            writer.write(UInt8(11)); writeContexts(contexts, to: &writer)
        case .readIndexResponse(let contexts, let index):
            writer.write(UInt8(12)); writeContexts(contexts, to: &writer); writer.write(index)
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Message {
        var reader = ByteReader(bytes)
        let frameVersion = try reader.readUInt8()
        guard frameVersion == version else { throw .invalid("raft message version \(frameVersion), this node speaks \(version)") }
        let from = try reader.readString()
        let to = try reader.readString()
        let term = try reader.readCounter("term")
        let tag = try reader.readUInt8()
        let kind: Message.Kind
        switch tag {
        case 1: kind = .preVote(lastIndex: try reader.readCounter("last index"), lastTerm: try reader.readCounter("last term"))
        case 2: kind = .preVoteResponse(granted: try reader.readBool())
        case 3: kind = .vote(lastIndex: try reader.readCounter("last index"), lastTerm: try reader.readCounter("last term"), transfer: try reader.readBool())
        case 4: kind = .voteResponse(granted: try reader.readBool())
        case 5:
            let prevIndex = try reader.readCounter("previous index"), prevTerm = try reader.readCounter("previous term")
            let commit = try reader.readCounter("commit index")
            let count = Int(try reader.readUInt32())
            guard count <= entriesPerMessageMax else { throw .tooLarge(what: "entries in one append", size: count, max: entriesPerMessageMax) }
            var entries: [Entry] = []
            entries.reserveCapacity(min(count, reader.remaining / 17))
            for _ in 0..<count { entries.append(try readEntry(&reader)) }
            // Indexes and terms are at most counterMax (2^62) and count at most 65,536: no sum overflows.
            var previousTerm = prevTerm
            for (offset, entry) in entries.enumerated() {
                guard entry.index == prevIndex + 1 + UInt64(offset) else {
                    throw .invalid("append entries are not contiguous after \(prevIndex): entry \(offset) has index \(entry.index)")
                }
                // A log's terms never decrease, and a leader sends no entry of a later term than its own.
                guard entry.term >= previousTerm, entry.term <= term else {
                    throw .invalid("append entry \(entry.index) has term \(entry.term): after term \(previousTerm), from a leader of term \(term)")
                }
                previousTerm = entry.term
            }
            kind = .append(prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit)
        case 6:
            kind = .appendResponse(
                reject: try reader.readBool(), index: try reader.readCounter("index"), hintIndex: try reader.readCounter("hint index"),
                hintTerm: try reader.readCounter("hint term"))
        case 7: kind = .heartbeat(commit: try reader.readCounter("commit index"), round: try reader.readCounter("round"))
        case 8: kind = .heartbeatResponse(round: try reader.readCounter("round"))
        case 9:
            let index = try reader.readCounter("snapshot index"), snapshotTerm = try reader.readCounter("snapshot term")
            let configuration = try readConfiguration(&reader)
            kind = .installSnapshot(Snapshot(index: index, term: snapshotTerm, configuration: configuration, data: try readBlob(&reader)))
        case 10: kind = .timeoutNow
        case 11: kind = .readIndex(contexts: try readContexts(&reader))
        case 12: kind = .readIndexResponse(contexts: try readContexts(&reader), index: try reader.readCounter("read index"))
        default: throw .invalid("unknown raft message tag \(tag)")
        }
        try reader.expectEnd()
        guard !from.isEmpty, !to.isEmpty else { throw .invalid("raft message without sender or receiver") }
        return Message(from: from, to: to, term: term, kind: kind)
    }

    /// An entry's payload alone (the durable log stores index and term in its record header).
    public static func encode(_ payload: EntryPayload) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writePayload(payload, to: &writer)
        return writer.bytes
    }

    public static func decodePayload(_ bytes: [UInt8]) throws(WireError) -> EntryPayload {
        var reader = ByteReader(bytes)
        let payload = try readPayload(&reader)
        try reader.expectEnd()
        return payload
    }

    /// A snapshot's metadata and data, as the node keeps it on disk.
    public static func encode(_ snapshot: Snapshot) -> [UInt8] {
        var writer = ByteWriter(capacity: 64 + snapshot.data.count)
        writer.write(version)
        writer.write(snapshot.index)
        writer.write(snapshot.term)
        write(snapshot.configuration, to: &writer)
        writeBlob(snapshot.data, to: &writer)
        return writer.bytes
    }

    public static func decodeSnapshot(_ bytes: [UInt8]) throws(WireError) -> Snapshot {
        var reader = ByteReader(bytes)
        let frameVersion = try reader.readUInt8()
        guard frameVersion == version else { throw .invalid("snapshot version \(frameVersion), this node speaks \(version)") }
        let index = try reader.readCounter("snapshot index"), term = try reader.readCounter("snapshot term")
        let snapshot = Snapshot(index: index, term: term, configuration: try readConfiguration(&reader), data: try readBlob(&reader))
        try reader.expectEnd()
        return snapshot
    }

    private static func write(_ entry: Entry, to writer: inout ByteWriter) {
        writer.write(entry.term)
        writer.write(entry.index)
        writePayload(entry.payload, to: &writer)
    }

    private static func writePayload(_ payload: EntryPayload, to writer: inout ByteWriter) {
        switch payload {
        case .command(let bytes): writer.write(UInt8(1)); writeBlob(bytes, to: &writer)
        case .noop: writer.write(UInt8(2))
        case .configuration(let configuration): writer.write(UInt8(3)); write(configuration, to: &writer)
        }
    }

    private static func readEntry(_ reader: inout ByteReader) throws(WireError) -> Entry {
        let term = try reader.readCounter("entry term"), index = try reader.readCounter("entry index")
        return Entry(term: term, index: index, payload: try readPayload(&reader))
    }

    private static func readPayload(_ reader: inout ByteReader) throws(WireError) -> EntryPayload {
        let tag = try reader.readUInt8()
        switch tag {
        case 1: return .command(try readBlob(&reader))
        case 2: return .noop
        case 3: return .configuration(try readConfiguration(&reader))
        default: throw .invalid("unknown entry payload tag \(tag)")
        }
    }

    private static func write(_ configuration: Configuration, to writer: inout ByteWriter) {
        writer.write(configuration.voters.sorted())
        writer.write(configuration.learners.sorted())
    }

    private static func readConfiguration(_ reader: inout ByteReader) throws(WireError) -> Configuration {
        let voters = Set(try reader.readStrings()), learners = Set(try reader.readStrings())
        guard voters.isDisjoint(with: learners) else { throw .invalid("a member is both voter and learner") }
        return Configuration(voters: voters, learners: learners)
    }

    static func writeBlob(_ bytes: [UInt8], to writer: inout ByteWriter) {
        writer.write(UInt32(bytes.count))
        writer.writeRaw(bytes)
    }

    static func readBlob(_ reader: inout ByteReader) throws(WireError) -> [UInt8] {
        let count = Int(try reader.readUInt32())
        guard count <= blobBytesMax else { throw .tooLarge(what: "raft payload", size: count, max: blobBytesMax) }
        return try reader.readBytes(count)
    }

    private static func writeContexts(_ contexts: [UInt64], to writer: inout ByteWriter) {
        writer.write(UInt32(contexts.count))
        for context in contexts { writer.write(context) }
    }

    private static func readContexts(_ reader: inout ByteReader) throws(WireError) -> [UInt64] {
        let count = Int(try reader.readUInt32())
        guard count <= contextsPerMessageMax else { throw .tooLarge(what: "read contexts", size: count, max: contextsPerMessageMax) }
        guard count * 8 <= reader.remaining else { throw .truncated(needed: count * 8, remaining: reader.remaining) }
        return try (0..<count).map { _ throws(WireError) in try reader.readUInt64() }
    }
}
