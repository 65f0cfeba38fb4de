import RaftCore
import Wire

/// One payload on the peer link (DESIGN.md): a Raft message, a request a member makes of
/// another (forward a proposal, add or remove a member, move leadership), the answer to one,
/// or a chunk of a snapshot file streamed to a member that is too far behind.
///
/// Encoding: `[tag u8][body]`; a Raft message's body is `RaftCodec`'s (itself versioned).
public enum ClusterFrame: Equatable, Sendable {
    case raft(Message)
    /// `from` is the sender's peer address, so the answer can reach a node that is not yet a
    /// member (one asking to join).
    case request(id: UInt64, from: String, ClusterRequest)
    case response(id: UInt64, ClusterResponse)
    /// Bytes `offset..<offset+bytes.count` of the snapshot file at `index` (`total` bytes in all).
    case snapshotChunk(index: UInt64, term: UInt64, offset: UInt64, total: UInt64, bytes: [UInt8])

    /// Largest snapshot chunk: well under `PeerLink.frameBytesMax`.
    public static let chunkBytesMax = 1 << 20
    /// Largest snapshot file a chunk may announce (64 GiB).
    public static let snapshotBytesMax: UInt64 = 1 << 36

    public static func encode(_ frame: ClusterFrame) -> [UInt8] {
        switch frame {
        case .raft(let message):
            return [1] + RaftCodec.encode(message)
        case .request(let id, let from, let request):
            var writer = ByteWriter(capacity: 64)
            writer.write(UInt8(2)); writer.write(id); writer.write(from)
            switch request {
            case .propose(let command):
                writer.write(UInt8(1)); RaftCodec.writeBlob(command, to: &writer)
            case .addMember(let id, let peer, let api, let voter):
                writer.write(UInt8(2)); writer.write(id); writer.write(peer); writer.write(api); writer.write(voter)
            case .removeMember(let id):
                writer.write(UInt8(3)); writer.write(id)
            case .transferLeadership(let to):
                writer.write(UInt8(4)); writer.write(to)
            case .removed:
                writer.write(UInt8(5))
            case .status:
                writer.write(UInt8(6))
            }
            return writer.bytes
        case .response(let id, let response):
            var writer = ByteWriter(capacity: 64)
            writer.write(UInt8(3)); writer.write(id)
            switch response {
            case .proposed(let index, let term):
                writer.write(UInt8(1)); writer.write(index); writer.write(term)
            case .done:
                writer.write(UInt8(2))
            case .failed(let reason, let message, let leader):
                writer.write(UInt8(3)); writer.write(reason.rawValue); writer.write(message); writer.write(leader)
            case .status(let status):
                writer.write(UInt8(4)); writer.write(status.role); writer.write(status.term); writer.write(status.commitIndex)
                writer.write(status.appliedIndex); writer.write(status.leader)
            }
            return writer.bytes
        case .snapshotChunk(let index, let term, let offset, let total, let bytes):
            var writer = ByteWriter(capacity: bytes.count + 64)
            writer.write(UInt8(4)); writer.write(index); writer.write(term); writer.write(offset); writer.write(total)
            RaftCodec.writeBlob(bytes, to: &writer)
            return writer.bytes
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> ClusterFrame {
        guard let tag = bytes.first else { throw .truncated(needed: 1, remaining: 0) }
        if tag == 1 { return .raft(try RaftCodec.decode(Array(bytes[1...]))) }
        var reader = ByteReader(bytes)
        _ = try reader.readUInt8()
        let frame: ClusterFrame
        switch tag {
        case 2:
            let id = try reader.readUInt64(), from = try reader.readString()
            let request: ClusterRequest
            switch try reader.readUInt8() {
            case 1: request = .propose(try RaftCodec.readBlob(&reader))
            case 2:
                request = .addMember(id: try reader.readString(), peer: try reader.readString(), api: try reader.readString(), voter: try reader.readBool())
            case 3: request = .removeMember(id: try reader.readString())
            case 4: request = .transferLeadership(to: try reader.readOptionalString())
            case 5: request = .removed
            case 6: request = .status
            case let kind: throw .invalid("unknown cluster request \(kind)")
            }
            frame = .request(id: id, from: from, request)
        case 3:
            let id = try reader.readUInt64()
            let response: ClusterResponse
            switch try reader.readUInt8() {
            case 1: response = .proposed(index: try reader.readCounter("index"), term: try reader.readCounter("term"))
            case 2: response = .done
            case 3:
                let raw = try reader.readUInt8()
                guard let reason = ClusterResponse.Reason(rawValue: raw) else { throw .invalid("unknown failure reason \(raw)") }
                response = .failed(reason, message: try reader.readString(), leader: try reader.readOptionalString())
            case 4:
                let role = try reader.readString()
                guard MemberStatus.roles.contains(role) else { throw .invalid("unknown member role '\(role)'") }
                response = .status(MemberStatus(
                    role: role, term: try reader.readCounter("term"), commitIndex: try reader.readCounter("commit index"),
                    appliedIndex: try reader.readCounter("applied index"), leader: try reader.readOptionalString()))
            case let kind: throw .invalid("unknown cluster response \(kind)")
            }
            frame = .response(id: id, response)
        case 4:
            let index = try reader.readCounter("snapshot index"), term = try reader.readCounter("snapshot term")
            let offset = try reader.readUInt64(), total = try reader.readUInt64()
            let chunk = try RaftCodec.readBlob(&reader)
            guard total <= snapshotBytesMax else { throw .tooLarge(what: "snapshot", size: Int(clamping: total), max: Int(clamping: snapshotBytesMax)) }
            guard chunk.count <= chunkBytesMax, UInt64(chunk.count) <= total, offset <= total - UInt64(chunk.count) else {
                throw .invalid("snapshot chunk \(offset)+\(chunk.count) of \(total) is out of bounds")
            }
            frame = .snapshotChunk(index: index, term: term, offset: offset, total: total, bytes: chunk)
        default:
            throw .invalid("unknown cluster frame tag \(tag)")
        }
        guard reader.isAtEnd else { throw .invalid("\(reader.remaining) trailing bytes after a cluster frame") }
        return frame
    }
}

/// What one member asks of another; a member that is not the leader passes it on to the leader.
public enum ClusterRequest: Equatable, Sendable {
    /// Propose an encoded command; answered `.proposed(index, term)` as soon as the leader has
    /// appended it, so the asker can wait for that entry to be applied on its own copy.
    case propose([UInt8])
    /// Register a member's addresses and add it as a learner (promoted once caught up if `voter`).
    case addMember(id: String, peer: String, api: String, voter: Bool)
    case removeMember(id: String)
    /// Move leadership to `to`, or to the most caught-up voter when nil.
    case transferLeadership(to: String?)
    /// From the leader to a node that is no longer in the configuration (it may have missed the
    /// entry that removed it): stop.
    case removed
    /// How the asked member itself stands (its role, term, commit and applied index, leader):
    /// answered by that member, never passed on. An older member drops it as malformed, and the
    /// asker's wait ends without an answer.
    case status
}

public enum ClusterResponse: Equatable, Sendable {
    case proposed(index: UInt64, term: UInt64)
    case done
    case failed(Reason, message: String, leader: String?)
    case status(MemberStatus)

    public enum Reason: UInt8, Sendable {
        /// No leader is known, or the leader could not be reached: retry later.
        case unavailable = 1
        /// The request is invalid for the cluster as it is (unknown member, already a member...).
        case rejected = 2
        /// The leader's queues are full.
        case overloaded = 3
        /// The request was sent and no answer came in time: it may have taken effect.
        case noAnswer = 4
    }
}

/// A member's own account of itself (`ClusterRequest.status`).
public struct MemberStatus: Equatable, Sendable {
    /// What `role` may be.
    public static let roles: Set<String> = ["leader", "follower", "candidate", "learner", "none"]

    public var role: String
    public var term: UInt64
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var leader: String?

    public init(role: String, term: UInt64, commitIndex: UInt64, appliedIndex: UInt64, leader: String?) {
        self.role = role
        self.term = term
        self.commitIndex = commitIndex
        self.appliedIndex = appliedIndex
        self.leader = leader
    }
}
