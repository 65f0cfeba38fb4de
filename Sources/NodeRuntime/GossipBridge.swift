import Logging
import Metrics
import PeerLink
import SWIMCore
import SWIMShell
import ServiceLifecycle

/// Connects a node to its gossip member: `/v1/cluster` shows the gossip view, peer addresses seen
/// in gossip are address hints for Raft (gossip never decides Raft membership), the node's Raft
/// role is published in its gossip tags, and the gossip counters become metrics.
public struct GossipBridge: Service {
    let node: Node
    let gossip: Gossip
    /// How often the Raft role tag and the metrics are refreshed.
    let refreshInterval: Duration

    public init(node: Node, gossip: Gossip, refreshInterval: Duration = .milliseconds(500)) {
        self.node = node
        self.gossip = gossip
        self.refreshInterval = refreshInterval
    }

    public func run() async throws {
        node.attachGossip { [gossip] in
            gossip.members.map { member in
                Node.GossipMember(
                    id: member.id, address: member.address, status: "\(member.status)", incarnation: member.incarnation,
                    api: member.metadata.api, peer: member.metadata.peer)
            }
        }
        for member in gossip.members { hint(member) }
        let changes = gossip.changes()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await change in changes { hint(change.member) }
            }
            group.addTask { await refreshUntilShutdown() }
            await group.next()
            group.cancelAll()
        }
    }

    private func hint(_ member: Member) {
        guard member.metadata.role == .node, member.status.isActive, let peer = member.metadata.peer else { return }
        node.hintPeerAddress(peer, of: member.id)
    }

    private func refreshUntilShutdown() async {
        var published: String?
        let statuses: [MemberStatus] = [.alive, .suspect, .dead, .left]
        let gauges = statuses.map { Gauge(label: "switchboard_gossip_members", dimensions: [("status", "\($0)")]) }
        let health = Gauge(label: "switchboard_gossip_local_health")
        // Growing counts are Prometheus counters (`_total`), advanced by what grew since the
        // last refresh.
        var counted = CountedSoFar()
        let dropped = CountedSoFar.Reason.allCases.map { Metrics.Counter(label: "switchboard_gossip_packets_dropped_total", dimensions: [("reason", $0.rawValue)]) }
        let sent = Metrics.Counter(label: "switchboard_gossip_packets_sent_total")
        let received = Metrics.Counter(label: "switchboard_gossip_packets_received_total")
        // The peer link's counts, refreshed with gossip's.
        let peerFailures = Metrics.Counter(label: "switchboard_peer_link_failures_total")
        let peerRefused = Metrics.Counter(label: "switchboard_peer_link_refused_total")
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let role = "\(node.loop.status.role)"
            if role != published {
                do {
                    try await gossip.updateTags(["raft": role])
                    published = role
                } catch {
                    node.logger.warning("cannot publish the raft role in gossip", metadata: ["error": "\(error)"])
                }
            }
            let members = gossip.members
            for (status, gauge) in zip(statuses, gauges) { gauge.record(members.filter { $0.status == status }.count) }
            let counters = gossip.counters
            health.record(gossip.localHealth)
            let now = CountedSoFar(gossip: counters, link: node.link?.counters)
            for (index, reason) in CountedSoFar.Reason.allCases.enumerated() {
                dropped[index].increment(by: now.dropped(reason) - counted.dropped(reason))
            }
            sent.increment(by: now.sent - counted.sent)
            received.increment(by: now.received - counted.received)
            peerFailures.increment(by: now.peerFailures - counted.peerFailures)
            peerRefused.increment(by: now.peerRefused - counted.peerRefused)
            counted = now
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: refreshInterval) }
        }
    }
}

/// The gossip's and the peer link's running counts at one refresh.
struct CountedSoFar {
    enum Reason: String, CaseIterable {
        case malformed, unknownKey = "unknown_key", forged, undecodable, replayed, stale
    }

    var droppedBy: [Reason: Int] = [:]
    var sent = 0
    var received = 0
    var peerFailures = 0
    var peerRefused = 0

    init() {}

    init(gossip: Gossip.Counters, link: PeerLink.Counters?) {
        droppedBy = [
            .malformed: gossip.droppedMalformed, .unknownKey: gossip.droppedUnknownKey, .forged: gossip.droppedForged,
            .undecodable: gossip.droppedUndecodable, .replayed: gossip.droppedReplayed, .stale: gossip.droppedStale,
        ]
        sent = gossip.packetsSent
        received = gossip.packetsReceived
        peerFailures = link?.failures ?? 0
        peerRefused = link?.refused ?? 0
    }

    func dropped(_ reason: Reason) -> Int { droppedBy[reason] ?? 0 }
}
