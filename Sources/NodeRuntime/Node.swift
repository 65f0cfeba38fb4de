import ContactCenter
import Foundation
import Logging
import PeerLink
import RaftCore
import Seeded
import RaftWire
import Storage
import Synchronization
import Wire

/// How a node with an empty data directory enters a cluster. A directory that already belongs
/// to a cluster ignores it: the node restarts as the member it was.
public enum ClusterStart: Sendable, Equatable {
    /// A new cluster with this node as its only voter.
    case bootstrap
    /// Ask the member whose peer link listens at `host:port` to add this node.
    case join(String)
}

/// Settings of one node; defaults suit a single machine.
public struct NodeConfiguration: Sendable {
    public var id: String
    /// Holds `raft.log`, `raft-hardstate`, `raft-snapshot`, `state.sqlite`, `snapshots/` and `LOCK`.
    public var dataDirectory: String
    /// The API's `host:port`, as shown in `/v1/cluster` and told to other members.
    public var apiAddress: String?
    /// The balancer's status page, shown in `GET /v1/cluster` for the console to link.
    public var balancerPage: String?
    /// The peer link's listen `host:port`; nil runs a single-member node without a peer link.
    public var peerAddress: String?
    /// The cluster secret members prove to each other; required with a peer link.
    public var secret: String?
    /// Earlier cluster secrets still accepted from peers while the secret rotates.
    public var previousSecrets: [String] = []
    /// This member's certificate and key and the members' authority: peers must prove their id
    /// with a certificate from it (`PeerIdentity`).
    public var peerIdentity: PeerIdentity?
    public var start: ClusterStart = .bootstrap
    /// SHA-256 (hex) of the admin token.
    public var adminTokenHash: String
    /// SHA-256 (hex) of the channel webhook token, if one is set.
    public var channelTokenHash: String?
    /// Argon2id cost of new password hashes (OWASP's by default).
    public var passwordCost: PasswordHasher.Cost = .owasp
    /// Logins a second one client address may start on this node (a burst of six seconds'
    /// worth); past it, 429 `too_many_logins` before any hashing. Raise it for many agents
    /// behind one address (a contact center's NAT, a load tester).
    public var loginsPerSecondPerAddress = 10.0
    /// How long a session token stays valid after login.
    public var sessionLifetime: Duration = .seconds(12 * 3600)
    /// How long before a session expires its agent gets `session.expiring`.
    public var sessionExpiryWarning: Duration = .seconds(10 * 60)
    /// Events (and idempotency records) older than this many log entries are trimmed.
    public var eventsWindowEntries: Int64 = 200_000
    /// How long a read may wait for `minIndex` or a linearizable barrier.
    public var readWaitMax: Duration = .seconds(5)
    /// How long a write may wait to be committed and applied here.
    public var writeWaitMax: Duration = .seconds(5)
    /// How long a request waits for a leader to be known before it gets 503.
    public var leaderWaitMax: Duration = .seconds(3)
    /// The Raft clock: heartbeats every `raft.heartbeatTicks` ticks, elections after
    /// `raft.electionTicks` to twice that.
    public var tickInterval: Duration = .milliseconds(25)
    public var raft = RaftSettings()
    /// How long a follower may hold committed entries to apply them in a bigger batch (see
    /// `RaftLoop`); zero applies each batch as it commits.
    public var followerApplyDelay: Duration = .milliseconds(40)
    /// How long a leader may keep executed entries uncommitted so that several batches share one
    /// SQLite commit (see `RaftLoop`); zero commits each batch as it executes.
    public var leaderCommitHold: Duration = .milliseconds(10)
    /// An agent's presence lease: renewed every `leaseRenewInterval` while its event WebSocket
    /// is open on some node; once it ends the leader sets the agent offline and re-queues its
    /// conversations.
    public var leaseDuration: Duration = .seconds(30)
    public var leaseRenewInterval: Duration = .seconds(5)
    /// A snapshot of `state.sqlite` is taken, and the log compacted, every this many applied entries.
    public var snapshotEntries: UInt64 = 100_000

    public init(id: String, dataDirectory: String, adminTokenHash: String, channelTokenHash: String? = nil) {
        self.id = id
        self.dataDirectory = dataDirectory
        self.adminTokenHash = adminTokenHash
        self.channelTokenHash = channelTokenHash
    }
}

public enum NodeStartError: Error, CustomStringConvertible {
    case dataDirectory(String, reason: String)
    case locked(String)
    case configuration(String)

    public var description: String {
        switch self {
        case .dataDirectory(let path, let reason): "cannot use data directory \(path): \(reason)"
        case .locked(let path): "data directory \(path) is in use by another switchboard process (\(path)/LOCK is held)"
        case .configuration(let why): why
        }
    }
}

/// What one proposal became.
public struct Proposal: Sendable {
    public var outcome: Outcome
    /// The command repeated an idempotency key; `outcome` is the first request's answer.
    public var replayed: Bool = false
}

/// A running node, put together from its roles: the data directory, replication (the Raft
/// loop), the peer service and address book, membership, presence, and the event hub.
/// Requests turn into commands here, everything non-deterministic resolved here; a write taken
/// by a follower is forwarded to the leader and answered once it is applied here.
public final class Node: Sendable {
    public let configuration: NodeConfiguration
    public let state: StateDatabase
    public let hub: EventHub
    public let passwords: PasswordHasher
    public let loop: RaftLoop
    let link: PeerLink?
    let snapshots: SnapshotStore
    /// Owns every task the node starts; `shutdown` cancels them.
    let tasks = BackgroundTasks()
    private let started = Atomic(false)
    /// Frames in and out over the peer link (see `PeerService`).
    let peers: PeerService
    /// Where the other members are (see `AddressBook`).
    let book: AddressBook
    /// Join, promotion, removal, hand-over, upkeep, readiness, `/v1/cluster` (see `Membership`).
    public let membership: Membership
    /// Which agents hold event sockets here, and their presence leases (see `Presence`).
    public let presence: Presence
    let counters = Mutex(Counters())
    /// Password hashing: on every core but one (one at least), so a login storm leaves a core to
    /// the Raft loop and the API; at most `kdfQueuedMax` waiting, so a refused login is a quick
    /// 429 rather than a wait past the client's timeout (256 waiting hashes were about 10 s).
    private let kdf = Offload(label: "switchboard.kdf", lanes: Node.kdfLanes, queuedMax: Node.kdfQueuedMax)
    public static let kdfLanes = max(1, ProcessInfo.processInfo.activeProcessorCount - 1)
    public static let kdfQueuedMax = 32
    /// The lock, the log and the state database (see `DataDirectory`).
    let data: DataDirectory
    /// True when this start created the cluster state (no earlier `raft-snapshot`).
    public let freshStart: Bool
    public let logger: Logger

    public struct Counters: Sendable, Equatable {
        public var malformedFrames = 0
        public var unroutableMessages = 0
        public var forwardedWrites = 0
        /// Keyed writes proposed again after a leader change lost their fate.
        public var keyedReproposals = 0
    }

    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        try configuration.raft.validate()
        if configuration.peerAddress != nil, (configuration.secret ?? "").isEmpty {
            throw NodeStartError.configuration("a node with a peer link needs the cluster secret (--secret-file or SWITCHBOARD_SECRET)")
        }
        let (data, storage) = try DataDirectory.open(configuration: configuration, logger: logger)
        self.data = data
        freshStart = data.freshStart
        let state = data.state
        self.state = state
        snapshots = data.snapshots
        book = AddressBook(ownId: configuration.id, state: state)
        let hub = EventHub()
        self.hub = hub
        passwords = PasswordHasher(cost: configuration.passwordCost)
        let box = NodeBox()
        link = configuration.peerAddress.map { _ in
            PeerLink(
                localId: configuration.id, secret: configuration.secret ?? "", previousSecrets: configuration.previousSecrets,
                identity: configuration.peerIdentity, logger: logger) { peer, bytes in
                box.node?.peers.received(bytes, from: peer)
            }
        }
        let snapshots = self.snapshots
        loop = try RaftLoop(
            id: configuration.id, settings: configuration.raft, storage: storage, state: state,
            tickInterval: configuration.tickInterval.seconds, followerApplyDelay: configuration.followerApplyDelay.seconds,
            leaderCommitHold: configuration.leaderCommitHold.seconds,
            seed: UInt64.random(in: 0...UInt64.max), logger: logger,
            hooks: RaftLoop.Hooks(
                applied: { index, results in
                    let events = results.compactMap { $0?.events }.flatMap { $0 }
                    if !events.isEmpty { hub.publish(events) }
                },
                installSnapshot: { snapshot in
                    try snapshots.restore(snapshot, into: state, logger: logger)
                    box.node?.book.reload()
                },
                storageFailed: { _ in
                    // Not ready from now on (`failureReason`): the balancer ejects this node.
                    box.node?.membership.handOverAfterStorageFailure()
                }),
            send: { message in box.node?.peers.route(message) })
        peers = PeerService(
            link: link, book: book, loop: loop, snapshots: snapshots, tasks: tasks, logger: logger, ownPeerAddress: configuration.peerAddress,
            serve: { request in await box.node?.membership.serve(request) ?? .failed(.unavailable, message: "the node is stopping", leader: nil) })
        membership = Membership(
            configuration: configuration, loop: loop, book: book, peers: peers, state: state, snapshots: snapshots, logger: logger,
            freshStart: data.freshStart,
            propose: { command in
                guard let node = box.node else { return }
                _ = try await node.propose(command, actor: .system)
            })
        presence = Presence(
            leaseDuration: configuration.leaseDuration, state: state, tasks: tasks, logger: logger, now: { Node.wallClock() },
            isLeader: { box.node?.loop.status.role == .leader },
            propose: { command in
                guard let node = box.node else { return }
                _ = try await node.propose(command, actor: .system)
            })
        box.node = self
        book.reload()
        if !freshStart {
            logger.info("the data directory belongs to a cluster: restarting as the member it was (--bootstrap and --join do not apply)",
                        metadata: ["node.id": "\(configuration.id)"])
        }
    }

    /// Starts the Raft loop's thread (once; `NodeService.run` calls it, so the node runs under
    /// the service group). Until then, members' messages wait in the loop's queue.
    public func start() {
        guard started.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        loop.start()
        logger.info(
            "node started",
            metadata: [
                "node.id": "\(configuration.id)", "node.data": "\(data.path)", "raft.applied_index": "\(loop.status.appliedIndex)",
                "raft.configuration": "\(loop.status.configuration)",
            ])
    }

    public var id: String { configuration.id }
    public var appliedIndex: Int64 { Int64(loop.appliedIndex) }
    /// The index a response stamps (`X-Switchboard-Index`): what this node applied, or executed
    /// and will show readers within `leaderCommitHold`. A `?minIndex=` read of it on any node
    /// sees every write this node answered before.
    public var responseIndex: Int64 { Int64(max(loop.appliedIndex, loop.executedIndex)) }
    public var lastIndex: Int64 { Int64(loop.status.lastIndex) }
    public var peerCounters: Counters {
        var counts = counters.withLock { $0 }
        let peer = peers.counts.withLock { $0 }
        counts.malformedFrames = peer.malformedFrames
        counts.unroutableMessages = peer.unroutableMessages
        return counts
    }
    /// The peer link's counts (nil without a peer link).
    public var peerLinkCounters: PeerLink.Counters? { link?.counters }
    /// Non-nil once the node can no longer apply (log or database failure).
    public var failureReason: String? { loop.failure }

    /// Starts accepting members' connections; returns the bound port.
    @discardableResult
    public func listen() async throws -> Int? {
        guard let link, let text = configuration.peerAddress else { return nil }
        guard let address = HostPort(text) else { throw NodeStartError.configuration("'\(text)' is not host:port") }
        return try await link.listen(host: address.host, port: address.port)
    }

    /// The node's clock reading, carried by commands. Apply never reads a clock itself.
    public func now() -> Timestamp { Self.wallClock() }

    static func wallClock() -> Timestamp {
        Timestamp(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
    }

    // MARK: Writes

    /// Proposes `command` and returns once it is committed and applied on this node. On a
    /// follower the command is forwarded to the leader, which answers with the log position;
    /// this node then waits for that entry on its own copy.
    ///
    /// A caller that reads nothing back passes `readsBack: false`: on the leader it is answered
    /// once the command is executed, before the commit that shows it to this node's readers
    /// (`NodeConfiguration.leaderCommitHold`). Its outcome is final either way, and a read that
    /// follows on any node still sees it (reads wait for the index they need).
    ///
    /// A command with an idempotency key whose fate a leader change lost (the leader died with
    /// the forwarded call, or the entry was not committed, or no leader answered yet) is proposed
    /// again, the same bytes, until `writeWaitMax`: apply answers the first outcome if the first
    /// copy was applied, or applies this one. So a keyed write fails across a leader kill only
    /// when no leader emerges in time. A command without a key cannot be sent twice: its caller
    /// hears the ambiguity (`unknownOutcome`). A login (`Command.isRepeatable`) is treated as
    /// keyed: its fresh token hash makes a second copy a no-op.
    public func propose(_ command: Command, actor: Actor, idempotency: Idempotency? = nil, readsBack: Bool = true) async throws -> Proposal {
        let envelope = CommandEnvelope(at: now(), actor: actor, idempotency: idempotency, command: command)
        let bytes = envelope.encoded()
        let deadline = Monotonic.after(configuration.writeWaitMax)
        var leaderDeadline = Monotonic.after(configuration.leaderWaitMax)
        /// Throws `error` unless the command is keyed, the error leaves its fate open (or says it
        /// was not applied), and there is time for another attempt.
        func proposeAgainOrThrow(_ error: NodeError) throws {
            switch error {
            case .unknownOutcome, .notCommitted, .noLeader:
                guard idempotency != nil || command.isRepeatable, ContinuousClock.now < deadline else { throw error }
                counters.withLock { $0.keyedReproposals += 1 }
                leaderDeadline = max(leaderDeadline, min(deadline, Monotonic.after(configuration.leaderWaitMax)))
            default:
                throw error
            }
        }
        while true {
            let status = loop.status
            if status.role == .leader {
                do {
                    return try proposal(try await loop.propose(bytes, deadline: deadline, early: !readsBack))
                } catch ReplicationError.raft(.notLeader) {
                    // Deposed between the status read and the proposal: look again.
                } catch ReplicationError.raft(.transferInProgress) {
                    // Leadership is moving: wait for the new leader.
                } catch let error as ReplicationError {
                    try proposeAgainOrThrow(nodeError(error))
                } catch let error as NodeError {
                    try proposeAgainOrThrow(error)
                }
            } else if let leader = status.leader, let address = peerAddress(of: leader) {
                counters.withLock { $0.forwardedWrites += 1 }
                let response = await peers.call(.propose(bytes), to: leader, address: address, timeout: configuration.writeWaitMax, whileLeading: true)
                switch response {
                case .proposed(let index, let term):
                    do {
                        return try proposal(try await loop.outcome(index: index, term: term, deadline: deadline))
                    } catch let error as ReplicationError {
                        try proposeAgainOrThrow(nodeError(error))
                    } catch let error as NodeError {
                        try proposeAgainOrThrow(error)
                    }
                case .failed(.unavailable, _, _):
                    break  // the leader moved or is unreachable: look again
                case .failed(.overloaded, let message, _): throw NodeError.overloaded(message)
                case .failed(.noAnswer, let message, _): try proposeAgainOrThrow(NodeError.unknownOutcome(message))
                case .failed(.rejected, let message, _): throw NodeError.clusterRejected(message)
                case .done, .status: throw NodeError.unknownOutcome("the leader answered a proposal without its position")
                }
            }
            guard ContinuousClock.now < leaderDeadline else {
                throw NodeError.noLeader("none known to \(id) within \(configuration.leaderWaitMax)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    private func proposal(_ applied: ContactCenterMachine.Applied?) throws -> Proposal {
        guard let applied else { throw NodeError.unknownOutcome("the entry applied was not a command") }
        return Proposal(outcome: applied.outcome, replayed: applied.replayed)
    }

    func nodeError(_ error: ReplicationError) -> NodeError {
        switch error {
        case .raft(.proposalQueueFull), .raft(.readsQueueFull), .overloaded: .overloaded(error.description)
        case .raft(let refusal): .noLeader(refusal.description)
        case .lost: .notCommitted(error.description)
        case .outcomeForgotten, .timedOut: .unknownOutcome(error.description)
        case .stopped, .storageFailed(_, inFlight: false): .stopped(error.description)
        case .storageFailed(_, inFlight: true): .unknownOutcome(error.description)
        }
    }

    // MARK: Reads

    /// Waits until `index` is applied here, at most `readWaitMax`; a follower holding committed
    /// entries for a bigger batch applies them at once for it.
    public func waitApplied(_ index: Int64) async throws {
        do {
            try await loop.waitApplied(through: UInt64(max(0, index)), deadline: Monotonic.after(configuration.readWaitMax))
        } catch let error as ReplicationError {
            if case .timedOut = error { throw NodeError.timedOut(waitingFor: index) }
            throw nodeError(error)
        }
    }

    /// A linearizable read point (ReadIndex, Raft §6.4): every write acknowledged anywhere
    /// before this call is applied here when it returns.
    public func linearizableBarrier() async throws {
        let deadline = Monotonic.after(configuration.readWaitMax)
        let leaderDeadline = Monotonic.after(configuration.leaderWaitMax)
        while true {
            do {
                try await loop.linearizableBarrier(deadline: deadline)
                return
            } catch ReplicationError.raft(.notLeader), ReplicationError.raft(.noEntryCommittedInTerm) {
                guard ContinuousClock.now < leaderDeadline else { throw NodeError.noLeader("none known to \(id) within \(configuration.leaderWaitMax)") }
                try await Task.sleep(for: .milliseconds(10))
            } catch ReplicationError.timedOut {
                throw NodeError.noLeader("the leader did not confirm a read within \(configuration.readWaitMax)")
            } catch let error as ReplicationError {
                throw nodeError(error)
            }
        }
    }

    // MARK: Passwords

    public func hashPassword(_ password: String) async throws -> String {
        let passwords = self.passwords
        return try await kdf.run { Result { try passwords.hash(password) } }.get()
    }

    /// A fresh hash of `password` when `stored` is weaker than what this node writes (an older
    /// scheme or fewer rounds), for a login that just verified it; nil when it is current.
    public func rehashIfWeaker(_ password: String, stored: String) async throws -> String? {
        guard passwords.needsRehash(stored) else { return nil }
        return try await hashPassword(password)
    }

    public func verifyPassword(_ password: String, against stored: String) async throws -> Bool {
        let passwords = self.passwords
        return try await kdf.run { passwords.verify(password, against: stored) }
    }

    // MARK: Peers

    func peerAddress(of member: String) -> String? { book.peerAddress(of: member) }

    /// One member as gossip sees it (what `/v1/cluster` shows and Raft takes as address hints).
    public struct GossipMember: Sendable {
        public var id: String
        public var address: String
        public var status: String
        public var incarnation: UInt64
        public var api: String?
        public var peer: String?

        public init(id: String, address: String, status: String, incarnation: UInt64, api: String?, peer: String?) {
            self.id = id
            self.address = address
            self.status = status
            self.incarnation = incarnation
            self.api = api
            self.peer = peer
        }
    }

    /// Connects the gossip view (set once gossip runs; `/v1/cluster` shows `gossip: null` before).
    public func attachGossip(_ view: @escaping @Sendable () -> [GossipMember]) { book.attachGossip(view) }

    /// Gossip saw `member` with its peer address: a hint for a member whose address this node
    /// has not registered yet (gossip never adds or removes Raft members).
    public func hintPeerAddress(_ peer: String, of member: String) { book.hint(peer: peer, of: member) }

    /// The leader's timer: agents whose lease ended (nobody renewed it) go offline and their
    /// conversations back to their queues.
    /// The leader proposes `Command.expire` when sessions expired, sessions are to be warned
    /// (`session.expiring`, `sessionExpiryWarning` ahead) or idempotency keys outlived their
    /// lifetime. What is due is decided again in apply, against the command's time.
    func expireSessionsAndKeys() async {
        guard loop.status.role == .leader else { return }
        do {
            let time = now()
            let warnThrough = time.adding(milliseconds: Int64(configuration.sessionExpiryWarning.seconds * 1000))
            let keysThrough = time.adding(milliseconds: -Limits.idempotencyKeyLifetimeMilliseconds)
            let due = try await state.read { try $0.expiryDue(now: time, warnThrough: warnThrough, keysThrough: keysThrough) }
            guard due else { return }
            _ = try await propose(.expire(warnSessionsThrough: warnThrough), actor: .system)
        } catch {
            logger.warning("session and idempotency key expiry failed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Lifecycle

    /// Stops the node: its tasks, the loop, the peer link, and releases the data directory.
    /// Idempotent.
    public func stop() async {
        shutdown()
        await link?.close()
    }

    /// `stop` without waiting for the peer link's connections to close (the process is about
    /// to exit, or the node never listened).
    public func shutdown() {
        tasks.cancelAll()
        loop.stop()
        data.release()
        logger.info("node stopped", metadata: ["node.id": "\(configuration.id)", "raft.applied_index": "\(appliedIndex)"])
    }
}

/// Breaks the reference cycle between the node and the closures its loop holds.
final class NodeBox: @unchecked Sendable {
    // @unchecked: set once, during `Node.init`, before the loop thread starts.
    weak var node: Node?
}

/// `host:port`, as flags, the peer link and the address book carry it.
/// `host:port`, parsed in one place (Wire.HostPort) for every module.
public typealias HostPort = Wire.HostPort
