import Logging
import Metrics
import NodeRuntime
import PeerLink
import SWIMCore
import SWIMShell
import ServiceLifecycle
import Telemetry

/// Connects a node to its gossip member: `/v1/cluster` shows the gossip view, peer addresses seen
/// in gossip are address hints for Raft (gossip never decides Raft membership), the node's Raft
/// role is published in its gossip tags, and the gossip counters become metrics.
struct GossipBridge: Service {
    let node: Node
    let gossip: Gossip
    /// How often the Raft role tag and the metrics are refreshed.
    let refreshInterval: Duration

    init(node: Node, gossip: Gossip, refreshInterval: Duration = .milliseconds(500)) {
        self.node = node
        self.gossip = gossip
        self.refreshInterval = refreshInterval
    }

    func run() async throws {
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
        // Growing counts are Prometheus counters (`_total`).
        func dropped(_ reason: String) -> RunningTotal {
            RunningTotal(Metrics.Counter(label: "switchboard_gossip_packets_dropped_total", dimensions: [("reason", reason)]))
        }
        let malformed = dropped("malformed"), unknownKey = dropped("unknown_key"), forged = dropped("forged")
        let undecodable = dropped("undecodable"), replayed = dropped("replayed"), stale = dropped("stale")
        let sent = RunningTotal(Metrics.Counter(label: "switchboard_gossip_packets_sent_total"))
        let received = RunningTotal(Metrics.Counter(label: "switchboard_gossip_packets_received_total"))
        // The peer link's counts, refreshed with gossip's.
        let peerFailures = RunningTotal(Metrics.Counter(label: "switchboard_peer_link_failures_total"))
        let peerRefused = RunningTotal(Metrics.Counter(label: "switchboard_peer_link_refused_total"))
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
            malformed.record(counters.droppedMalformed)
            unknownKey.record(counters.droppedUnknownKey)
            forged.record(counters.droppedForged)
            undecodable.record(counters.droppedUndecodable)
            replayed.record(counters.droppedReplayed)
            stale.record(counters.droppedStale)
            sent.record(counters.packetsSent)
            received.record(counters.packetsReceived)
            if let link = node.peerLinkCounters {
                peerFailures.record(link.failures)
                peerRefused.record(link.refused)
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: refreshInterval) }
        }
    }
}
