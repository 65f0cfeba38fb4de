import BalancerCore
import NIOConcurrencyHelpers
import NIOCore
import Seeded

/// `BalancerCore.Balancer` behind a lock, with the shell's clock: every proxy connection and
/// the health checker share one policy.
public final class Policy: Sendable {
    private let core: NIOLockedValueBox<BalancerCore.Balancer>

    public init(settings: BalancerSettings = BalancerSettings()) throws {
        core = NIOLockedValueBox(try BalancerCore.Balancer(settings: settings, seed: UInt64.random(in: .min ... .max)))
    }

    static func now() -> Duration { Monotonic.now() }

    public var settings: BalancerSettings { core.withLockedValue { $0.settings } }
    public var backends: [Backend] { core.withLockedValue { $0.all } }
    public var inPanic: Bool { core.withLockedValue { $0.inPanic } }

    /// Everything the admin port shows, read at once.
    public var snapshot: (backends: [Backend], panic: Bool, panicRoutes: Int, retries: Int, retriesRefused: Int, socketsMoved: Int) {
        core.withLockedValue { ($0.all, $0.inPanic, $0.panicRoutes, $0.retries, $0.retriesRefused, $0.socketsMoved) }
    }

    public func gossip(id: String, address: String, verdict: GossipVerdict) {
        core.withLockedValue { $0.onGossip(id: id, address: address, verdict: verdict, now: Self.now()) }
    }

    public func addStatic(id: String, address: String) {
        core.withLockedValue { $0.addStatic(id: id, address: address, now: Self.now()) }
    }

    func check(id: String, outcome: Outcome) {
        core.withLockedValue { $0.onCheck(id: id, outcome: outcome, now: Self.now()) }
    }

    /// Counts the request toward the retry budget (a retry does not) and chooses its backend.
    func chooseForRequest(excluding: [String]) -> BalancerCore.Balancer.Choice? {
        let now = Self.now()
        return core.withLockedValue { balancer in
            if excluding.isEmpty { balancer.onRequestStarted(now: now) }
            return balancer.chooseForRequest(excluding: excluding, now: now)
        }
    }

    func finished(id: String, outcome: Outcome) {
        core.withLockedValue { $0.onRequestFinished(id: id, outcome: outcome, now: Self.now()) }
    }

    func chooseForWebSocket(excluding: [String] = []) -> BalancerCore.Balancer.Choice? {
        core.withLockedValue { $0.chooseForWebSocket(excluding: excluding, now: Self.now()) }
    }

    /// Event sockets each node should close now for their clients to reconnect elsewhere.
    func webSocketsToMove() -> [String: Int] {
        core.withLockedValue { $0.webSocketsToMove(now: Self.now()) }
    }

    func recordMoved(_ count: Int) {
        core.withLockedValue { $0.recordMoved(count) }
    }

    func webSocketClosed(id: String) {
        core.withLockedValue { $0.onWebSocketClosed(id: id) }
    }

    /// A failure outside a counted request (a WebSocket upgrade): ejects like one.
    func failed(id: String, reason: String, unreachable: Bool = false) {
        core.withLockedValue { $0.onFailure(id: id, outcome: unreachable ? .unreachable(reason) : .failure(reason), now: Self.now()) }
    }

    func mayRetry(method: String, hasIdempotencyKey: Bool, neverSent: Bool = false) -> Bool {
        core.withLockedValue { $0.mayRetry(method: method, hasIdempotencyKey: hasIdempotencyKey, neverSent: neverSent, now: Self.now()) }
    }
}
