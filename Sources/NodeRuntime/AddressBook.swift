import ContactCenter
import Storage
import Synchronization
import Wire

/// Where the other members are: their registered addresses (replicated in `state.sqlite`, read
/// again after a snapshot or a membership entry), gossip's hints for members not registered
/// yet (gossip never adds or removes Raft members), when each was last heard over the peer
/// link, and the gossip view `/v1/cluster` shows.
final class AddressBook: Sendable {
    private let ownId: String
    private let state: StateDatabase
    private let members = Mutex<[String: ClusterMember]>([:])
    private let lastHeard = Mutex<[String: ContinuousClock.Instant]>([:])
    private let reloadedAt = Mutex<ContinuousClock.Instant?>(nil)
    private let gossipSource = Mutex<(@Sendable () -> [Node.GossipMember])?>(nil)

    init(ownId: String, state: StateDatabase) {
        self.ownId = ownId
        self.state = state
    }

    var all: [String: ClusterMember] { members.withLock { $0 } }

    /// `id`'s registration (or gossip's hint), if known.
    func member(_ id: String) -> ClusterMember? { members.withLock { $0[id] } }

    /// The peer address of `member`, if known.
    func peerAddress(of member: String) -> String? { self.member(member)?.peer }

    /// The peer address of `member`; when unknown, the registrations are read again first (a
    /// member registered by an entry applied moments ago), at most every 20 ms.
    func peerAddressReloading(of member: String) -> String? {
        if let known = peerAddress(of: member) { return known }
        let due = reloadedAt.withLock { last -> Bool in
            let now = ContinuousClock.now
            guard last.map({ now - $0 > .milliseconds(20) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return nil }
        reload()
        return peerAddress(of: member)
    }

    /// Reads the registered members from `state.sqlite`.
    func reload() {
        guard let registered = try? state.readNow({ try $0.clusterMembers() }) else { return }
        members.withLock { members in
            for member in registered { members[member.id] = member }
        }
    }

    /// Gossip saw `member` at `peer`: kept only while the member has no registration.
    func hint(peer: String, of member: String) {
        guard member != ownId, HostPort(peer) != nil else { return }
        members.withLock { members in
            if members[member] == nil { members[member] = ClusterMember(id: member, peer: peer, api: "", voter: false) }
        }
    }

    func heard(from member: String) { lastHeard.withLock { $0[member] = .now } }

    /// When this node last heard from `member` over the peer link.
    func lastContact(_ member: String) -> ContinuousClock.Instant? { lastHeard.withLock { $0[member] } }

    func attachGossip(_ view: @escaping @Sendable () -> [Node.GossipMember]) { gossipSource.withLock { $0 = view } }

    func gossipView() -> [Node.GossipMember] { gossipSource.withLock { $0 }?() ?? [] }
}
