import ContactCenter
import Logging
import PeerLink
import RaftCore
import RaftWire
import Synchronization
import Wire

/// The node's side of the peer link. In: a member's frames (Raft messages to the loop, requests
/// served, answers to this node's calls, snapshot chunks), malformed ones dropped and counted;
/// a proposal forwarded to this leader is appended and answered with its position from the loop
/// thread. Out: Raft messages routed by the address book (snapshots streamed first), requests
/// to a member with a deadline (`PeerCalls`), and the leader's "you are no longer a member"
/// notices. What a request does is the node's (`serve`).
final class PeerService: Sendable {
    struct Counts: Sendable {
        var malformedFrames = 0
        var unroutableMessages = 0
    }

    let link: PeerLink?
    private let book: AddressBook
    private let loop: RaftLoop
    private let snapshots: SnapshotStore
    private let calls: PeerCalls
    private let tasks: BackgroundTasks
    private let logger: Logger
    /// This node's peer address, told to the asked member so its answer comes back.
    private let ownPeerAddress: String?
    private let serve: @Sendable (ClusterRequest) async -> ClusterResponse
    let counts = Mutex(Counts())
    /// The leader's notices that this node was removed; housekeeping stops the node once one
    /// is confirmed (see `RemovedNotices`).
    let removedNotice = Mutex(RemovedNotices())
    private let removedTold = Mutex<[String: ContinuousClock.Instant]>([:])

    init(
        link: PeerLink?, book: AddressBook, loop: RaftLoop, snapshots: SnapshotStore, tasks: BackgroundTasks, logger: Logger,
        ownPeerAddress: String?, serve: @escaping @Sendable (ClusterRequest) async -> ClusterResponse
    ) {
        self.link = link
        self.book = book
        self.loop = loop
        self.snapshots = snapshots
        calls = PeerCalls(tasks: tasks)
        self.tasks = tasks
        self.logger = logger
        self.ownPeerAddress = ownPeerAddress
        self.serve = serve
    }

    /// Sends a Raft message to its member (dropped and counted when its address is unknown).
    func route(_ message: RaftCore.Message) {
        guard let link, let address = book.peerAddressReloading(of: message.to).flatMap(HostPort.init) else {
            counts.withLock { $0.unroutableMessages += 1 }
            return
        }
        if case .installSnapshot(let snapshot) = message.kind {
            snapshots.stream(snapshot, message: message, to: message.to, host: address.host, port: address.port, link: link, logger: logger)
            return
        }
        link.send(ClusterFrame.encode(.raft(message)), to: message.to, host: address.host, port: address.port)
    }

    func send(_ frame: ClusterFrame, to member: String, address: String, verifyingIdentity: Bool = true) -> Bool {
        guard let link, let target = HostPort(address) else { return false }
        return link.send(ClusterFrame.encode(frame), to: member, host: target.host, port: target.port, verifyingIdentity: verifyingIdentity)
    }

    /// Asks `member` (at `address`) to carry out `request`.
    /// With `whileLeading`, the wait ends early when this node learns `member` no longer leads.
    func call(_ request: ClusterRequest, to member: String, address: String, timeout: Duration, verifyingIdentity: Bool = true,
              whileLeading: Bool = false) async -> ClusterResponse {
        guard let from = ownPeerAddress else {
            return .failed(.unavailable, message: "this node has no peer link", leader: nil)
        }
        let loop = self.loop
        let abandon: @Sendable () -> Bool = { whileLeading && loop.status.leader != member }
        return await calls.call(timeout: timeout, abandon: abandon) { [self] requestId in
            send(.request(id: requestId, from: from, request), to: member, address: address, verifyingIdentity: verifyingIdentity)
        }
    }

    /// A payload from an authenticated member.
    func received(_ bytes: [UInt8], from peer: String) {
        let frame: ClusterFrame
        do {
            frame = try ClusterFrame.decode(bytes)
        } catch {
            counts.withLock { $0.malformedFrames += 1 }
            logger.warning("dropped a malformed peer frame", metadata: ["peer.id": "\(peer)", "peer.error": "\(error)"])
            return
        }
        book.heard(from: peer)
        switch frame {
        case .raft(let message):
            guard message.from == peer else {
                counts.withLock { $0.malformedFrames += 1 }
                return
            }
            let status = loop.status
            if status.role == .leader, !status.configuration.members.contains(peer) {
                tellRemoved(peer)
                return
            }
            if case .installSnapshot(let snapshot) = message.kind, !snapshots.hasReceived(snapshot, logger: logger) {
                return  // its file did not arrive whole; the leader sends it again
            }
            loop.receive(message)
        case .request(let requestId, let from, let request):
            if case .propose(let command) = request, loop.status.role == .leader {
                // Answered from the loop thread before the entry is sent anywhere, so on our one
                // link to the asker the answer arrives before the entry does.
                appendForwarded(command) { [self] response in _ = send(.response(id: requestId, response), to: peer, address: from) }
                return
            }
            if case .removed = request {
                // Only the leader of our own cluster says so, and only if we are not in its view.
                if loop.status.leader == peer || loop.status.leader == nil {
                    let confirmed = removedNotice.withLock { $0.record(at: ContinuousClock.now) }
                    logger.notice(
                        confirmed ? "the leader says again this node is no longer a member" : "the leader says this node is no longer a member",
                        metadata: ["raft.leader": "\(peer)"])
                }
                return
            }
            tasks.spawn { [self] in
                let response = await serve(request)
                _ = send(.response(id: requestId, response), to: peer, address: from)
            }
        case .response(let requestId, let response):
            calls.complete(requestId, response)
        case .snapshotChunk(let index, let term, let offset, let total, let chunk):
            snapshots.receive(index: index, term: term, offset: offset, total: total, bytes: chunk, logger: logger)
        }
    }

    /// The leader's "you are not a member" notices. One alone proves nothing: a leader's view of
    /// its configuration is published after its loop runs, so a node it has just added can hear
    /// from it before that view includes it (seen at a cluster's start, where it stopped a new
    /// voter for good). A node stops when a second notice comes at least `confirmAfter` after the
    /// first, within `window`: a node really removed keeps hearing it, once a second.
    struct RemovedNotices {
        static let confirmAfter: Duration = .seconds(1)
        static let window: Duration = .seconds(10)
        var first: ContinuousClock.Instant?
        var confirmed = false

        /// Records a notice; true once it is confirmed.
        mutating func record(at now: ContinuousClock.Instant) -> Bool {
            if let first, now - first >= Self.confirmAfter, now - first <= Self.window {
                confirmed = true
            } else if first.map({ now - $0 > Self.window }) ?? true {
                first = now
            }
            return confirmed
        }
    }

    /// Tells a node that is not in the configuration (it missed the entry removing it, or was
    /// down) to stop; at most once a second per node.
    func tellRemoved(_ member: String) {
        let now = ContinuousClock.now
        let due = removedTold.withLock { told in
            guard told[member].map({ now - $0 > .seconds(1) }) ?? true else { return false }
            told[member] = now
            return true
        }
        guard due, let address = book.peerAddress(of: member), let from = ownPeerAddress else { return }
        _ = send(.request(id: 0, from: from, .removed), to: member, address: address)
    }


    /// The leader appends a command another member forwarded and answers with its position
    /// (from the loop thread, before the entry is sent anywhere).
    func appendForwarded(_ command: [UInt8], reply: @escaping @Sendable (ClusterResponse) -> Void) {
        let loop = self.loop
        loop.proposeForwarded(command) { result in
            let response: ClusterResponse = switch result {
            case .success(let position): .proposed(index: position.index, term: position.term)
            case .failure(.overloaded), .failure(.raft(.proposalQueueFull)): .failed(.overloaded, message: "\(result)", leader: nil)
            case .failure(let error): .failed(.unavailable, message: error.description, leader: loop.status.leader)
            }
            reply(response)
        }
    }
}
