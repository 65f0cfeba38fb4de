import ContactCenter
import Logging
import ServiceLifecycle

/// Runs the node's housekeeping until graceful shutdown, then stops the pipeline. Placed first
/// in the `ServiceGroup`, so it stops last: after the API has finished its in-flight requests.
public struct NodeService: Service {
    let node: Node
    /// How often the events window is checked.
    let trimInterval: Duration

    public init(node: Node, trimInterval: Duration = .seconds(10)) {
        self.node = node
        self.trimInterval = trimInterval
    }

    public func run() async throws {
        defer { node.shutdown() }
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: trimInterval) }
                } catch {
                    break
                }
                await trimEventsIfDue()
            }
        } onGracefulShutdown: {
            node.logger.info("graceful shutdown: the node stops after the API drains", metadata: ["node.id": "\(node.id)"])
        }
    }

    /// Proposes `trimEvents` when the kept window has grown past `eventsWindowEntries`. The
    /// trim point is decided here, before proposing; apply only executes it.
    func trimEventsIfDue() async {
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
