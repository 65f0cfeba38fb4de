/// A member's stable name: the node id (`n1`) or the balancer's id.
public typealias MemberID = String
/// SWIM §4.2: only the member itself raises its incarnation, to refute a suspicion or to
/// announce new metadata; a higher incarnation overrides everything said about a lower one.
public typealias Incarnation = UInt64

/// What the cluster believes about a member, in the order SWIM lets them override each other at
/// the same incarnation (alive < suspect < dead); `left` is a dead member that said goodbye.
public enum MemberStatus: UInt8, Sendable, Hashable, CustomStringConvertible {
    case alive = 0
    case suspect = 1
    case dead = 2
    case left = 3

    public var description: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .dead: "dead"
        case .left: "left"
        }
    }

    /// Alive and suspect members are probed and count towards the cluster size.
    public var isActive: Bool { self == .alive || self == .suspect }
}

/// Why a member takes part: a `node` holds data and votes; a `balancer` only observes.
public enum MemberRole: UInt8, Sendable, Hashable, CustomStringConvertible {
    case node = 0
    case balancer = 1

    public var description: String { self == .node ? "node" : "balancer" }
}

/// What a member says about itself, versioned by its incarnation: its role, the addresses of its
/// other listeners, and a small map it may update (the node publishes its Raft role there).
public struct Metadata: Sendable, Hashable {
    public static let tagsMax = 8
    public static let tagKeyBytesMax = 32
    public static let tagValueBytesMax = 64
    public static let addressBytesMax = 64

    public var role: MemberRole
    /// HTTP API `host:port`, if the member serves one.
    public var api: String?
    /// Raft peer-link `host:port`, if the member is a node.
    public var peer: String?
    public var tags: [String: String]

    public init(role: MemberRole = .node, api: String? = nil, peer: String? = nil, tags: [String: String] = [:]) {
        self.role = role
        self.api = api
        self.peer = peer
        self.tags = tags
    }

    /// Checks every bound, so that one member's state always fits one gossip packet.
    public func validate() throws(GossipError) {
        guard tags.count <= Self.tagsMax else { throw .invalid("metadata holds \(tags.count) tags, more than tagsMax \(Self.tagsMax)") }
        for (key, value) in tags {
            guard !key.isEmpty, key.utf8.count <= Self.tagKeyBytesMax else {
                throw .invalid("tag key '\(key.prefix(40))' must be 1...\(Self.tagKeyBytesMax) bytes")
            }
            guard value.utf8.count <= Self.tagValueBytesMax else {
                throw .invalid("tag '\(key)' value is \(value.utf8.count) bytes, more than tagValueBytesMax \(Self.tagValueBytesMax)")
            }
        }
        for address in [api, peer].compactMap({ $0 }) where address.utf8.count > Self.addressBytesMax {
            throw .invalid("address '\(address.prefix(40))' is longer than \(Self.addressBytesMax) bytes")
        }
    }
}

/// One member as this node sees it.
public struct Member: Sendable, Hashable {
    public static let idBytesMax = 64

    public var id: MemberID
    /// Its gossip (UDP) `host:port`.
    public var address: String
    public var status: MemberStatus
    public var incarnation: Incarnation
    public var metadata: Metadata

    public init(id: MemberID, address: String, status: MemberStatus = .alive, incarnation: Incarnation = 0, metadata: Metadata = Metadata()) {
        self.id = id
        self.address = address
        self.status = status
        self.incarnation = incarnation
        self.metadata = metadata
    }
}

/// A piece of membership news, piggybacked on probe traffic (SWIM §4.1) until it was sent
/// about log(N) times. A member's `dead` said by the member itself means it left.
public enum Update: Sendable, Hashable {
    case alive(id: MemberID, incarnation: Incarnation, address: String, metadata: Metadata)
    case suspect(id: MemberID, incarnation: Incarnation, from: MemberID)
    case dead(id: MemberID, incarnation: Incarnation, from: MemberID)

    /// The member the update is about.
    public var subject: MemberID {
        switch self {
        case .alive(let id, _, _, _), .suspect(let id, _, _), .dead(let id, _, _): id
        }
    }
}

/// The SWIM messages. Every packet may also carry updates.
public enum Message: Sendable, Hashable {
    /// SWIM §3.1: "are you `target`?"; answered with `ack(sequence)`.
    case ping(sequence: UInt32, target: MemberID)
    /// SWIM §3.1: "ping `target` at `targetAddress` for me"; the relay forwards the ack, and
    /// (Lifeguard §IV.A) answers `nack` if the target stays silent.
    case pingRequest(sequence: UInt32, target: MemberID, targetAddress: String)
    case ack(sequence: UInt32)
    case nack(sequence: UInt32)
    /// Full-state exchange (one chunk of it): the receiver merges `members` and, when
    /// `replyWanted`, answers with its own full state.
    case pushPull(replyWanted: Bool, members: [Member])
    /// Updates only, no answer expected (a member leaving, or news for a member thought dead).
    case gossip
}

/// One datagram's content: who sent it, what it asks, and the updates riding along.
public struct Packet: Sendable, Hashable {
    public var from: MemberID
    public var message: Message
    public var updates: [Update]

    public init(from: MemberID, message: Message, updates: [Update] = []) {
        self.from = from
        self.message = message
        self.updates = updates
    }
}

/// A change in this node's view of another member (or of itself).
public struct MemberChange: Sendable, Hashable {
    public var member: Member
    /// Its status before; nil when the member was not known.
    public var previous: MemberStatus?
}

/// What the shell must do, in order. Sends are best effort (UDP); the core never waits for them.
public enum Directive: Sendable, Hashable {
    case send(Packet, to: String)
    case changed(MemberChange)
}

public enum GossipError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let reason): reason
        }
    }
}
