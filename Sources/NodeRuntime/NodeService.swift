import ContactCenter
import Logging
import ServiceLifecycle

/// Runs the node's upkeep until graceful shutdown, then stops the node. Placed first in the
/// `ServiceGroup`, so it stops last: after the API has finished its in-flight requests.
///
/// Upkeep: registering this node's addresses, asking to join, promoting caught-up learners,
/// stopping when removed, snapshots, renewing the presence leases of agents connected here,
/// and the leader's timers (presence lease expiry, events trimming).
public struct NodeService: Service {
    let node: Node
    let housekeepingInterval: Duration
    /// How often the leader checks the events window.
    let trimInterval: Duration

    public init(node: Node, housekeepingInterval: Duration = .milliseconds(200), trimInterval: Duration = .seconds(10)) {
        self.node = node
        self.housekeepingInterval = housekeepingInterval
        self.trimInterval = trimInterval
    }

    public func run() async throws {
        node.start()
        var memory = HousekeepingMemory()
        var nextTrim = ContinuousClock.now + trimInterval
        var nextRenewal = ContinuousClock.now + node.configuration.leaseRenewInterval
        var nextExpiry = ContinuousClock.now + .seconds(1)
        var nextSessionExpiry = ContinuousClock.now + .seconds(5)
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: housekeepingInterval) }
                } catch {
                    break
                }
                guard await node.membership.housekeep(&memory) else { break }
                await node.membership.snapshotIfDue()
                if ContinuousClock.now >= nextRenewal {
                    nextRenewal = ContinuousClock.now + node.configuration.leaseRenewInterval
                    await node.presence.renewLeases()
                }
                if ContinuousClock.now >= nextExpiry {
                    nextExpiry = ContinuousClock.now + .seconds(1)
                    await node.presence.expireLeases()
                }
                if ContinuousClock.now >= nextSessionExpiry {
                    nextSessionExpiry = ContinuousClock.now + .seconds(5)
                    await node.expireSessionsAndKeys()
                }
                if ContinuousClock.now >= nextTrim {
                    nextTrim = ContinuousClock.now + trimInterval
                    await trimEventsIfDue()
                }
            }
        } onGracefulShutdown: {
            node.logger.info("graceful shutdown: the API has stopped; a leader hands over, then the node stops", metadata: ["node.id": "\(node.id)"])
        }
        // The API has drained (it stops first); a leader hands over before the loop stops.
        await node.membership.handOverLeadership()
        await node.stop()
    }

    /// The leader proposes `trimEvents` when the kept window has grown past
    /// `eventsWindowEntries`. The trim point is decided here, before proposing; apply only
    /// executes it.
    func trimEventsIfDue() async {
        guard node.loop.status.role == .leader else { return }
        let window = node.configuration.eventsWindowEntries
        let applied = node.appliedIndex
        guard applied > window else { return }
        do {
            let trimmed = try await node.state.read { try $0.eventsTrimmedBefore() }
            let target = applied - window
            // Trim in steps of a tenth of the window, not on every tick.
            guard target - trimmed >= max(1, window / 10) else { return }
            _ = try await node.propose(.trimEvents(beforeIndex: target), actor: .system)
        } catch {
            node.logger.warning("events trim failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Placed last in the `ServiceGroup`, so it is told of a graceful shutdown first: logs the
/// signal's first step (the API closes its event sockets with 1001 and drains its requests)
/// before any service stops.
public struct ShutdownNotice: Service {
    let node: Node

    public init(node: Node) { self.node = node }

    public func run() async throws {
        try? await gracefulShutdown()
        guard Task.isShuttingDownGracefully else { return }
        node.logger.notice(
            "graceful shutdown: closing event sockets (1001, clients resume elsewhere) and draining requests",
            metadata: ["node.id": "\(node.id)", "events.sockets": "\(node.hub.subscriptionCount)", "raft.role": "\(node.loop.status.role)"])
    }
}
