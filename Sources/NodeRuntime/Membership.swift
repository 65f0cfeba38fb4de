import ContactCenter
import Foundation
import Logging
import RaftCore
import Seeded
import RaftWire
import Storage
import Synchronization
import Wire

/// Cluster life: requests members make of each other (forwarded to the leader when this node
/// is not it), the leader carrying them out (join, promotion, removal, hand-over), this node's
/// own upkeep (registration, joining, stopping when removed, snapshots), readiness and the view
/// `/v1/cluster` shows.
public final class Membership: Sendable {
    /// How long a node that knew a leader stays ready without one: longer than an election
    /// takes here (about 0.3 s), short enough that a node cut off from the majority leaves the
    /// balancer within a second and a half.
    public static let leaderlessGrace: Duration = .seconds(1)

    let id: String
    let configuration: NodeConfiguration
    private let loop: RaftLoop
    private let book: AddressBook
    private let peers: PeerService
    private let state: StateDatabase
    private let snapshots: SnapshotStore
    private let logger: Logger
    /// True when this start created the cluster state (no earlier `raft-snapshot`).
    private let freshStart: Bool
    private let propose: @Sendable (Command) async throws -> Void
    /// When `readiness` last saw a leader (nil until it first does).
    private let leaderLastSeen = Mutex<ContinuousClock.Instant?>(nil)
    private let history = Mutex(ClusterHistory())

    init(
        configuration: NodeConfiguration, loop: RaftLoop, book: AddressBook, peers: PeerService, state: StateDatabase, snapshots: SnapshotStore,
        logger: Logger, freshStart: Bool, propose: @escaping @Sendable (Command) async throws -> Void
    ) {
        id = configuration.id
        self.configuration = configuration
        self.loop = loop
        self.book = book
        self.peers = peers
        self.state = state
        self.snapshots = snapshots
        self.logger = logger
        self.freshStart = freshStart
        self.propose = propose
    }

    // MARK: Admin operations (any node)

    /// Registers `id`'s addresses and adds it as a learner; it is promoted to voter once caught
    /// up when `voter` is true.
    public func addMember(id member: String, peer: String, api: String, voter: Bool) async throws {
        try check(await serve(.addMember(id: member, peer: peer, api: api, voter: voter)))
    }

    public func removeMember(id member: String) async throws {
        try check(await serve(.removeMember(id: member)))
    }

    /// Moves leadership to `to` (nil: the most caught-up voter) and returns once it moved.
    public func transferLeadership(to target: String?) async throws {
        try check(await serve(.transferLeadership(to: target)))
    }

    private func check(_ response: ClusterResponse) throws {
        switch response {
        case .done, .proposed, .status: return
        case .failed(.rejected, let message, _): throw NodeError.clusterRejected(message)
        case .failed(.overloaded, let message, _): throw NodeError.overloaded(message)
        case .failed(.noAnswer, let message, _): throw NodeError.unknownOutcome(message)
        case .failed(.unavailable, let message, _): throw NodeError.noLeader(message)
        }
    }

    /// Carries out `request` if this node leads, else passes it to the leader, waiting up to
    /// `leaderWaitMax` for one to be known.
    func serve(_ request: ClusterRequest) async -> ClusterResponse {
        // A member's account of itself is this node's to give, whoever leads.
        if case .status = request { return .status(ownStatus()) }
        let leaderDeadline = Monotonic.after(configuration.leaderWaitMax)
        while true {
            let status = loop.status
            if status.role == .leader { return await lead(request) }
            if let leader = status.leader, leader != id, let address = book.peerAddress(of: leader) {
                let response = await peers.call(request, to: leader, address: address, timeout: configuration.writeWaitMax)
                if case .failed(.unavailable, _, _) = response, ContinuousClock.now < leaderDeadline {
                    try? await Task.sleep(for: .milliseconds(20))
                    continue
                }
                return response
            }
            guard ContinuousClock.now < leaderDeadline else {
                return .failed(.unavailable, message: "no leader known to \(id) within \(configuration.leaderWaitMax)", leader: nil)
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The leader's side of a request.
    private func lead(_ request: ClusterRequest) async -> ClusterResponse {
        let deadline = Monotonic.after(configuration.writeWaitMax)
        do {
            switch request {
            case .propose(let command):
                return await withCheckedContinuation { continuation in peers.appendForwarded(command) { continuation.resume(returning: $0) } }
            case .addMember(let member, let peer, let api, let voter):
                guard Self.validMemberId(member) else {
                    return .failed(.rejected, message: "member id must be 1-64 letters, digits, '-', '_' or '.'; got '\(member)'", leader: nil)
                }
                guard HostPort(peer) != nil, HostPort(api) != nil else {
                    return .failed(.rejected, message: "peer and api must be host:port", leader: nil)
                }
                let registration = ClusterMember(id: member, peer: peer, api: api, voter: voter)
                if book.member(member) != registration {
                    try await propose(.setMember(registration))
                    book.reload()
                }
                if loop.status.configuration.members.contains(member) { return .done }
                try await changeConfiguration(.addLearner(member), deadline: deadline)
                logger.notice("added a member as a learner", metadata: ["member.id": "\(member)", "member.peer": "\(peer)", "member.voter": "\(voter)"])
                return .done
            case .removed:
                return .failed(.rejected, message: "not a request for the leader", leader: nil)
            case .status:
                return .status(ownStatus())
            case .removeMember(let member):
                guard loop.status.configuration.members.contains(member) else {
                    return .failed(.rejected, message: "\(member) is not a member", leader: nil)
                }
                try await changeConfiguration(.remove(member), deadline: deadline)
                logger.notice("removed a member", metadata: ["member.id": "\(member)"])
                peers.tellRemoved(member)
                return .done
            case .transferLeadership(let requested):
                let status = loop.status
                if let requested, requested != id, !status.configuration.voters.contains(requested) {
                    return .failed(.rejected, message: "\(requested) is not a voter", leader: nil)
                }
                let targets = requested.map { [$0] } ?? handOverCandidates(status)
                guard !targets.isEmpty else {
                    return .failed(.rejected, message: "no other voter the peer link heard from recently to take over", leader: nil)
                }
                // A voter chosen here may have stopped since the peer link last heard it (`cluster
                // down` stops members one after another): each gets about one election timeout
                // to take over before the next is asked. A requested target gets the whole wait.
                let electionTimeoutMax = configuration.tickInterval * (2 * configuration.raft.electionTicks)
                for target in targets {
                    if target == id { return .done }
                    try await loop.transferLeadership(to: target)
                    let until = requested == nil ? min(deadline, Monotonic.after(electionTimeoutMax)) : deadline
                    while ContinuousClock.now < until {
                        let now = loop.status
                        if now.leader == target { return .done }
                        if now.role != .leader, now.leader != nil, now.leader != id { return .done }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                }
                return .failed(
                    .unavailable, message: "\(targets.joined(separator: ", ")) did not take over within \(configuration.writeWaitMax)", leader: id)
            }
        } catch let error as ReplicationError {
            switch error {
            case .raft(.notLeader(let leader)): return .failed(.unavailable, message: error.description, leader: leader)
            case .raft(.unknownMember), .raft(.alreadyMember), .raft(.removingLastVoter), .raft(.learnerBehind):
                return .failed(.rejected, message: error.description, leader: nil)
            case .raft(.proposalQueueFull), .overloaded: return .failed(.overloaded, message: error.description, leader: nil)
            case .timedOut, .outcomeForgotten: return .failed(.noAnswer, message: error.description, leader: nil)
            default: return .failed(.unavailable, message: error.description, leader: nil)
            }
        } catch let error as NodeError {
            return .failed(.unavailable, message: error.description, leader: nil)
        } catch {
            return .failed(.unavailable, message: "\(error)", leader: nil)
        }
    }

    /// The loop stopped on a storage failure. A leader tells its best successor
    /// (`handOverCandidates`) to campaign at once (Raft §3.10's TimeoutNow): the cluster has a
    /// leader again after one round trip, not an election timeout. Safe whatever that voter
    /// holds: it still needs a majority's votes, which only an up-to-date log wins, and this
    /// node, stopped, neither votes nor acknowledges again.
    func handOverAfterStorageFailure() {
        let status = loop.status
        guard status.role == .leader, let successor = handOverCandidates(status).first else { return }
        peers.route(RaftCore.Message(from: id, to: successor, term: status.term, kind: .timeoutNow))
        logger.warning(
            "storage failed on the leader: handing leadership to the most caught-up voter",
            metadata: ["raft.node": "\(id)", "raft.successor": "\(successor)", "raft.term": "\(status.term)"])
    }

    /// The voters a leader hands over to, best first: only those the peer link heard from within
    /// an election timeout (a live follower answers every heartbeat; one silent that long cannot
    /// take over in time), those heard within four heartbeats first, then the most caught-up.
    func handOverCandidates(_ status: RaftLoop.Status) -> [String] {
        let fresh = configuration.tickInterval * (4 * configuration.raft.heartbeatTicks)
        let alive = configuration.tickInterval * configuration.raft.electionTicks
        let now = ContinuousClock.now
        let ranked = status.configuration.voters.subtracting([id]).compactMap { member -> (id: String, fresh: Int, match: UInt64)? in
            guard let heard = book.lastContact(member), now - heard <= alive else { return nil }
            return (member, now - heard <= fresh ? 1 : 0, status.matchIndexes[member] ?? 0)
        }
        // Fresh first, then the highest match; ties go to the lowest id, so the choice is stable.
        return ranked.sorted { ($0.fresh, $0.match, $1.id) > ($1.fresh, $1.match, $0.id) }.map(\.id)
    }

    /// Proposes a membership change, waiting (until `deadline`) while another one is pending.
    private func changeConfiguration(_ change: ConfigurationChange, deadline: Monotonic.Instant) async throws {
        while true {
            do {
                try await loop.changeConfiguration(change, deadline: deadline)
                return
            } catch ReplicationError.raft(.configurationChangePending), ReplicationError.raft(.noEntryCommittedInTerm) {
                guard ContinuousClock.now < deadline else { throw ReplicationError.timedOut }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    public static func validMemberId(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
    }

    // MARK: Housekeeping (NodeService calls it every `housekeepingInterval`)

    /// One round of the node's own upkeep. Returns false when the node must stop (it was removed).
    func housekeep(_ memory: inout HousekeepingMemory) async -> Bool {
        let status = loop.status
        let sample = ClusterHistory.Sample(
            term: status.term, leader: status.leader,
            members: Dictionary(uniqueKeysWithValues: status.configuration.voters.map { ($0, "voter") } + status.configuration.learners.map { ($0, "learner") }),
            gossip: Dictionary(book.gossipView().map { ($0.id, $0.status) }, uniquingKeysWith: { first, _ in first }))
        history.withLock { $0.observe(sample, at: Node.wallClock()) }
        if status.appliedIndex != memory.bookApplied {
            book.reload()
            memory.bookApplied = status.appliedIndex
        }
        let isMember = status.configuration.members.contains(id)
        if isMember { memory.wasMember = true }
        if peers.removedNotice.withLock({ $0.confirmed }) || (memory.wasMember && !isMember && !status.configuration.members.isEmpty) {
            logger.notice("this node was removed from the cluster; stopping", metadata: ["raft.configuration": "\(status.configuration)"])
            return false
        }
        let now = ContinuousClock.now
        // A member whose registered addresses are not its own (first start, or new flags). A
        // node without a peer link registers "-" as its peer address.
        if isMember, status.leader != nil, let api = configuration.apiAddress, memory.nextRegistration.map { now >= $0 } ?? true {
            let registered = book.member(id)
            let wanted = ClusterMember(
                id: id, peer: configuration.peerAddress ?? "-", api: api, voter: registered?.voter ?? status.configuration.voters.contains(id))
            if registered != wanted {
                memory.nextRegistration = now + .seconds(2)
                try? await propose(.setMember(wanted))
            }
        }
        // A joining node asks until it is in the configuration.
        if !isMember, !memory.wasMember, case .join(let address) = configuration.start, freshStart || status.lastIndex == 0,
            let peer = configuration.peerAddress, memory.nextJoin.map { now >= $0 } ?? true
        {
            memory.nextJoin = now + .seconds(1)
            let response = await peers.call(
                .addMember(id: id, peer: peer, api: configuration.apiAddress ?? "", voter: true), to: "@" + address, address: address,
                timeout: .seconds(2), verifyingIdentity: false)
            switch response {
            case .done: logger.info("joined the cluster as a learner; catching up", metadata: ["join.via": "\(address)"])
            case .failed(let reason, let message, _):
                logger.warning("join request failed; retrying", metadata: ["join.via": "\(address)", "join.reason": "\(reason)", "join.error": "\(message)"])
            case .proposed, .status: break
            }
        }
        guard status.role == .leader else { return true }
        // The leader promotes learners that are to vote once they have caught up.
        for learner in status.configuration.learners where book.member(learner)?.voter ?? false {
            let match = status.matchIndexes[learner] ?? 0
            guard match > 0, match + configuration.raft.promotionLagMax >= status.lastIndex else { continue }
            do {
                try await loop.changeConfiguration(.promote(learner), deadline: now + .seconds(2))
                logger.notice("promoted a learner to voter", metadata: ["member.id": "\(learner)", "raft.match_index": "\(match)"])
            } catch {
                logger.debug("promotion deferred", metadata: ["member.id": "\(learner)", "error": "\(error)"])
            }
        }
        return true
    }

    /// Takes a snapshot when enough entries were applied since the last one.
    func snapshotIfDue() async {
        let status = loop.status
        guard status.appliedIndex >= status.snapshotIndex + configuration.snapshotEntries else { return }
        do {
            _ = try await snapshots.take(from: state, loop: loop, logger: logger)
        } catch {
            logger.error("snapshot failed", metadata: ["error": "\(error)"])
        }
    }

    /// On SIGTERM: a leader hands over to the most caught-up voter before it stops.
    public func handOverLeadership() async {
        guard loop.status.role == .leader, loop.status.configuration.voters.count > 1 else { return }
        let response = await serve(.transferLeadership(to: nil))
        logger.notice("handed over leadership before stopping", metadata: ["result": "\(response)", "raft.leader": "\(loop.status.leader ?? "none")"])
    }

    // MARK: The view

    /// `GET /v1/cluster` from this node's view.
    public func clusterView() -> ClusterView {
        let status = loop.status
        let registered = book.all
        let gossip = Dictionary(book.gossipView().map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let ids = status.configuration.members.union(registered.keys).union([id]).union(gossip.keys).sorted()
        let nodes = ids.map { member -> ClusterView.Member in
            let contact: Int64? =
                member == id ? 0 : book.lastContact(member).map { $0.duration(to: .now).milliseconds }
            return ClusterView.Member(
                id: member, api: registered[member]?.api ?? (member == id ? configuration.apiAddress : gossip[member]?.api),
                peer: registered[member]?.peer ?? (member == id ? configuration.peerAddress : nil), role: role(of: member, in: status),
                voter: status.configuration.voters.contains(member), matchIndex: status.matchIndexes[member].map { Int64($0) },
                appliedIndex: member == id ? Int64(status.appliedIndex) : nil, lastContactMs: contact,
                gossip: gossip[member])
        }
        return ClusterView(
            self: id, leader: status.leader, term: status.term, commitIndex: status.commitIndex, nodes: nodes,
            recentChanges: history.withLock { $0.changes }, balancerPage: configuration.balancerPage)
    }

    /// This node's account of itself, as another member asks for it (`ClusterRequest.status`).
    func ownStatus() -> MemberStatus {
        let status = loop.status
        return MemberStatus(
            role: role(of: id, in: status), term: status.term, commitIndex: status.commitIndex, appliedIndex: status.appliedIndex,
            leader: status.leader)
    }

    /// `clusterView()` with each member's own account, asked over the peer link all at once and
    /// awaited at most `wait` each: a member that is down (or too old to know the question)
    /// has none, and the view still comes within `wait`.
    public func clusterView(askingMembersFor wait: Duration) async -> ClusterView {
        var view = clusterView()
        let asked = view.nodes.compactMap { member -> (String, String)? in
            guard member.id != id, let address = book.peerAddress(of: member.id) else { return nil }
            return (member.id, address)
        }
        var reports: [String: MemberStatus] = [id: ownStatus()]
        await withTaskGroup(of: (String, MemberStatus?).self) { group in
            for (member, address) in asked {
                group.addTask { [peers] in
                    guard case .status(let status) = await peers.call(.status, to: member, address: address, timeout: wait) else { return (member, nil) }
                    return (member, status)
                }
            }
            for await (member, status) in group where status != nil { reports[member] = status }
        }
        for index in view.nodes.indices {
            guard let report = reports[view.nodes[index].id] else { continue }
            view.nodes[index].reported = report
            view.nodes[index].appliedIndex = Int64(report.appliedIndex)
        }
        return view
    }

    /// A member's role as `/v1/cluster` names it, from this node's view.
    private func role(of member: String, in status: RaftLoop.Status) -> String {
        let configuration = status.configuration
        guard configuration.members.contains(member) else { return "none" }
        if configuration.learners.contains(member) { return "learner" }
        if member == status.leader { return "leader" }
        if member == id, status.role == .candidate || status.role == .preCandidate { return "candidate" }
        return "follower"
    }

    /// Ready: a leader is known and this node is not catching up: it applied everything it knows
    /// to be committed, but for the batch a follower holds back on purpose (at most
    /// `ReplicaLimits.unappliedMax` entries, see `RaftLoop.followerApplyDelay`).
    public var readiness: (ready: Bool, reason: String?) {
        if let failure = loop.failure { return (false, failure) }
        let status = loop.status
        let now = ContinuousClock.now
        guard let leader = status.leader else {
            // An election under way after the leader died: this node is alive and will know the
            // next leader within a few hundred milliseconds. Saying "not ready" at once made the
            // balancer eject every survivor together, just as the dead leader's sockets came back.
            let lastSeen = leaderLastSeen.withLock { $0 }
            if let lastSeen, now - lastSeen < Self.leaderlessGrace { return (true, nil) }
            return (false, "no leader known")
        }
        leaderLastSeen.withLock { $0 = now }
        guard status.appliedIndex + UInt64(ReplicaLimits.unappliedMax) >= status.commitIndex else {
            return (false, "applying the log: \(status.appliedIndex) of \(status.commitIndex) (leader \(leader))")
        }
        return (true, nil)
    }
}

/// What the housekeeping rounds remember between calls.
struct HousekeepingMemory {
    var bookApplied: UInt64 = .max
    var wasMember = false
    var nextRegistration: Monotonic.Instant?
    var nextJoin: Monotonic.Instant?
}

public struct ClusterView: Sendable {
    public struct Member: Sendable {
        public var id: String
        public var api: String?
        public var peer: String?
        public var role: String
        public var voter: Bool
        public var matchIndex: Int64?
        public var appliedIndex: Int64?
        public var lastContactMs: Int64?
        /// This node's gossip view of the member; nil when gossip is off or has not heard of it.
        public var gossip: Node.GossipMember?
        /// The member's own account (`clusterView(askingMembersFor:)`); nil when not asked or no answer came.
        public var reported: MemberStatus?
    }

    public var `self`: String
    public var leader: String?
    public var term: UInt64
    public var commitIndex: UInt64
    public var nodes: [Member]
    /// What this node saw change since it started, oldest first (`ClusterHistory`).
    public var recentChanges: [ClusterChange]
    /// `--balancer-page`, if the node was given one.
    public var balancerPage: String?
}

/// One change `ClusterHistory` recorded: `kind` "leader" (`member` leads from term `to`),
/// "membership" (`member` went from `from` to `to`: "none", "learner", "voter") or "gossip"
/// (gossip saw `member` go from `from`, nil when first heard of, to `to`).
public struct ClusterChange: Sendable, Equatable {
    public var at: Timestamp
    public var kind: String
    public var member: String
    public var from: String?
    public var to: String
}
