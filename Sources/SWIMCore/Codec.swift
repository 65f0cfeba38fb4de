import Wire

/// The binary form of a `Packet` (before the shell seals it): a version byte, the sender, the
/// message and its updates. Decoding checks every length and bound, never traps, and rejects
/// trailing bytes; the shell drops and counts what fails.
public enum SWIMCodec {
    public static let version: UInt8 = 1
    /// Most updates or members one packet may carry (a 1,400-byte packet holds far fewer).
    public static let itemsMax = 256

    public static func encode(_ packet: Packet) -> [UInt8] {
        var writer = ByteWriter(capacity: 256)
        writeHeader(packet.from, packet.message, into: &writer)
        writer.write(UInt16(packet.updates.count))
        for update in packet.updates { write(update, into: &writer) }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Packet {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == Self.version else { throw .invalid("gossip packet version \(version), expected \(Self.version)") }
        let from = try readID(&reader)
        let message: Message
        switch try reader.readUInt8() {
        case 1: message = .ping(sequence: try reader.readUInt32(), target: try readID(&reader))
        case 2: message = .pingRequest(sequence: try reader.readUInt32(), target: try readID(&reader), targetAddress: try readAddress(&reader))
        case 3: message = .ack(sequence: try reader.readUInt32())
        case 4: message = .nack(sequence: try reader.readUInt32())
        case 5:
            let replyWanted = try reader.readBool()
            let count = try readCount(&reader)
            var members: [Member] = []
            for _ in 0..<count { members.append(try readMember(&reader)) }
            message = .pushPull(replyWanted: replyWanted, members: members)
        case 6: message = .gossip
        case let tag: throw .invalid("message tag \(tag)")
        }
        let count = try readCount(&reader)
        var updates: [Update] = []
        for _ in 0..<count { updates.append(try readUpdate(&reader)) }
        try reader.expectEnd()
        return Packet(from: from, message: message, updates: updates)
    }

    /// Bytes `update` adds to a packet.
    public static func size(of update: Update) -> Int {
        var writer = ByteWriter(capacity: 128)
        write(update, into: &writer)
        return writer.bytes.count
    }

    /// Bytes `member` adds to a push-pull packet.
    public static func size(of member: Member) -> Int {
        var writer = ByteWriter(capacity: 128)
        write(member, into: &writer)
        return writer.bytes.count
    }

    /// Bytes of a packet with `message` and no updates, plus the update count.
    public static func size(from: MemberID, _ message: Message) -> Int {
        var writer = ByteWriter(capacity: 128)
        writeHeader(from, message, into: &writer)
        return writer.bytes.count + 2
    }

    // MARK: Writing

    private static func writeHeader(_ from: MemberID, _ message: Message, into writer: inout ByteWriter) {
        writer.write(version)
        writer.write(from)
        switch message {
        case .ping(let sequence, let target):
            writer.write(UInt8(1)); writer.write(sequence); writer.write(target)
        case .pingRequest(let sequence, let target, let address):
            writer.write(UInt8(2)); writer.write(sequence); writer.write(target); writer.write(address)
        case .ack(let sequence):
            writer.write(UInt8(3)); writer.write(sequence)
        case .nack(let sequence):
            writer.write(UInt8(4)); writer.write(sequence)
        case .pushPull(let replyWanted, let members):
            writer.write(UInt8(5)); writer.write(replyWanted); writer.write(UInt16(members.count))
            for member in members { write(member, into: &writer) }
        case .gossip:
            writer.write(UInt8(6))
        }
    }

    private static func write(_ update: Update, into writer: inout ByteWriter) {
        switch update {
        case .alive(let id, let incarnation, let address, let metadata):
            writer.write(UInt8(1)); writer.write(id); writer.write(incarnation); writer.write(address); write(metadata, into: &writer)
        case .suspect(let id, let incarnation, let from):
            writer.write(UInt8(2)); writer.write(id); writer.write(incarnation); writer.write(from)
        case .dead(let id, let incarnation, let from):
            writer.write(UInt8(3)); writer.write(id); writer.write(incarnation); writer.write(from)
        }
    }

    private static func write(_ member: Member, into writer: inout ByteWriter) {
        writer.write(member.id)
        writer.write(member.address)
        writer.write(member.status.rawValue)
        writer.write(member.incarnation)
        write(member.metadata, into: &writer)
    }

    private static func write(_ metadata: Metadata, into writer: inout ByteWriter) {
        writer.write(metadata.role.rawValue)
        writer.write(metadata.api)
        writer.write(metadata.peer)
        writer.write(metadata.tags)
    }

    // MARK: Reading

    private static func readCount(_ reader: inout ByteReader) throws(WireError) -> Int {
        let count = Int(try reader.readUInt16())
        guard count <= itemsMax else { throw .tooLarge(what: "gossip item count", size: count, max: itemsMax) }
        return count
    }

    private static func readBounded(_ reader: inout ByteReader, _ what: String, max: Int) throws(WireError) -> String {
        let value = try reader.readString()
        guard value.utf8.count <= max else { throw .tooLarge(what: what, size: value.utf8.count, max: max) }
        return value
    }

    private static func readID(_ reader: inout ByteReader) throws(WireError) -> MemberID {
        let id = try readBounded(&reader, "member id", max: Member.idBytesMax)
        guard !id.isEmpty else { throw .invalid("empty member id") }
        return id
    }

    private static func readAddress(_ reader: inout ByteReader) throws(WireError) -> String {
        try readBounded(&reader, "address", max: Metadata.addressBytesMax)
    }

    private static func readUpdate(_ reader: inout ByteReader) throws(WireError) -> Update {
        switch try reader.readUInt8() {
        case 1:
            return .alive(id: try readID(&reader), incarnation: try reader.readCounter("incarnation"), address: try readAddress(&reader), metadata: try readMetadata(&reader))
        case 2: return .suspect(id: try readID(&reader), incarnation: try reader.readCounter("incarnation"), from: try readID(&reader))
        case 3: return .dead(id: try readID(&reader), incarnation: try reader.readCounter("incarnation"), from: try readID(&reader))
        case let tag: throw .invalid("update tag \(tag)")
        }
    }

    private static func readMember(_ reader: inout ByteReader) throws(WireError) -> Member {
        let id = try readID(&reader)
        let address = try readAddress(&reader)
        let rawStatus = try reader.readUInt8()
        guard let status = MemberStatus(rawValue: rawStatus) else { throw .invalid("member status \(rawStatus)") }
        return Member(id: id, address: address, status: status, incarnation: try reader.readCounter("incarnation"), metadata: try readMetadata(&reader))
    }

    private static func readMetadata(_ reader: inout ByteReader) throws(WireError) -> Metadata {
        let rawRole = try reader.readUInt8()
        guard let role = MemberRole(rawValue: rawRole) else { throw .invalid("member role \(rawRole)") }
        let api = try reader.readOptionalString()
        let peer = try reader.readOptionalString()
        let tags = try reader.readStringMap()
        let metadata = Metadata(role: role, api: api, peer: peer, tags: tags)
        do { try metadata.validate() } catch { throw .invalid("metadata: \(error)") }
        return metadata
    }
}
