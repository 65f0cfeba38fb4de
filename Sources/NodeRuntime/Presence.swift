import ContactCenter
import Logging
import Storage
import Synchronization

/// Agents' presence leases as this node sees them: which agents hold event sockets here (at
/// most `eventSocketsPerAgentMax` each), the renewal of their leases while one is open (first
/// connections coalesced into one command), and, on the leader, the expiry of leases nobody
/// renewed (the agent goes offline and its conversations back to their queues).
///
/// A lease lives in the replicated state; this type only decides when to propose renewals and
/// expiries. Apply checks them again against the command's time.
public final class Presence: Sendable {
    /// Event sockets one agent may hold open on one node.
    public static let eventSocketsPerAgentMax = 8
    /// How long first connections are gathered into one lease renewal.
    static let renewalCoalescing: Duration = .milliseconds(100)

    private let propose: @Sendable (Command) async throws -> Void
    private let now: @Sendable () -> Timestamp
    private let isLeader: @Sendable () -> Bool
    private let state: StateDatabase
    private let tasks: BackgroundTasks
    private let leaseDuration: Duration
    private let logger: Logger
    /// Agents with an event WebSocket open on this node, with how many.
    private let connected = Mutex<[String: Int]>([:])
    /// Agents whose first socket opened here since the last coalesced renewal; nil while no
    /// renewal is scheduled.
    private let pendingRenewals = Mutex<Set<String>?>(nil)

    init(
        leaseDuration: Duration, state: StateDatabase, tasks: BackgroundTasks, logger: Logger, now: @escaping @Sendable () -> Timestamp,
        isLeader: @escaping @Sendable () -> Bool, propose: @escaping @Sendable (Command) async throws -> Void
    ) {
        self.leaseDuration = leaseDuration
        self.state = state
        self.tasks = tasks
        self.logger = logger
        self.now = now
        self.isLeader = isLeader
        self.propose = propose
    }

    /// The agent's event sockets open on this node.
    public func eventSockets(of agentId: String) -> Int {
        connected.withLock { $0[agentId] ?? 0 }
    }

    /// Counts a new event socket of the agent; false (nothing counted) when the agent already
    /// holds `eventSocketsPerAgentMax` here. An agent's first socket here renews its lease
    /// within `renewalCoalescing`; `renewLeases` renews it every `leaseRenewInterval` after.
    public func agentConnected(_ agentId: String) -> Bool {
        let admitted = connected.withLock { agents -> Bool? in
            let open = agents[agentId] ?? 0
            guard open < Self.eventSocketsPerAgentMax else { return nil }
            agents[agentId] = open + 1
            return open == 0
        }
        guard let first = admitted else { return false }
        if first { renewSoon(agentId) }
        return true
    }

    public func agentDisconnected(_ agentId: String) {
        connected.withLock { agents in
            agents[agentId, default: 1] -= 1
            if agents[agentId] == 0 { agents[agentId] = nil }
        }
    }

    /// Renews the agent's lease within `renewalCoalescing`, in one command with every other
    /// agent that connected meanwhile. When a node dies, its agents reconnect to the others all
    /// at once: one command per agent was thousands of proposals in a second, on the cores the
    /// reconnections needed (and each failed, logged, while the cluster elected).
    private func renewSoon(_ agentId: String) {
        let schedule = pendingRenewals.withLock { pending -> Bool in
            if pending == nil {
                pending = [agentId]
                return true
            }
            pending?.insert(agentId)
            return false
        }
        guard schedule else { return }
        tasks.spawn { [self] in
            guard (try? await Task.sleep(for: Self.renewalCoalescing)) != nil else { return }
            let agents = pendingRenewals.withLock { pending -> [String] in
                defer { pending = nil }
                return (pending ?? []).sorted()
            }
            await renewLeases(agents)
        }
    }

    /// Proposes one command renewing the leases of `agentIds` (default: every agent connected here).
    func renewLeases(_ agentIds: [String]? = nil) async {
        let ids = agentIds ?? connected.withLock { Array($0.keys) }.sorted()
        guard !ids.isEmpty else { return }
        let until = now().adding(milliseconds: leaseDuration.milliseconds)
        do {
            try await propose(.renewLeases(agentIds: ids, until: until))
        } catch {
            logger.warning("presence lease renewal failed", metadata: ["agents": "\(ids.count)", "error": "\(error)"])
        }
    }

    /// The leader's timer: agents whose lease ended (nobody renewed it) go offline and their
    /// conversations back to their queues.
    func expireLeases() async {
        guard isLeader() else { return }
        do {
            let time = now()
            let expired = try await state.read { try $0.expiredLeases(before: time, limit: 500) }
            guard !expired.isEmpty else { return }
            try await propose(.expireLeases(agentIds: expired))
            logger.notice("presence leases ended: agents set offline, their conversations re-queued", metadata: ["agents": "\(expired)"])
        } catch {
            logger.warning("presence lease expiry failed", metadata: ["error": "\(error)"])
        }
    }
}
