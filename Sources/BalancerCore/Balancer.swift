import Seeded

/// A backend's standing with the balancer. Only `healthy` and `warming` backends take new
/// requests (unless every backend is out: panic mode).
public enum BackendState: Sendable, Hashable, CustomStringConvertible {
    /// Readmitted at `since`: takes a growing share of requests until `warmupDuration` passed.
    case warming(since: Duration)
    case healthy
    /// Out until `readmitChecks` consecutive good checks.
    case ejected(reason: String)
    /// Left gracefully (gossip `left`): no new requests; those in flight finish.
    case draining

    public var description: String {
        switch self {
        case .warming: "warming"
        case .healthy: "healthy"
        case .ejected: "ejected"
        case .draining: "draining"
        }
    }

    public var takesRequests: Bool {
        switch self {
        case .warming, .healthy: true
        case .ejected, .draining: false
        }
    }
}

/// What gossip says of a node (the balancer uses a node only while gossip says alive).
public enum GossipVerdict: Sendable, Hashable {
    case alive, suspect, dead, left
}

/// How a request or an active check went.
public enum Outcome: Sendable, Hashable {
    case success
    /// The connection was reset, the backend timed out, or answered 5xx: eject at once.
    case failure(String)
    /// No connection could be made (refused, or the connect timed out): nothing is listening.
    /// Ejects like a failure; in panic mode such a backend is chosen only when no other is left.
    case unreachable(String)

    /// The reason of a failure or an unreachable backend; nil for a success.
    public var failureReason: String? {
        switch self {
        case .success: nil
        case .failure(let reason), .unreachable(let reason): reason
        }
    }

    var isUnreachable: Bool {
        if case .unreachable = self { return true }
        return false
    }
}

public struct BalancerSettings: Sendable, Hashable {
    /// Active `/readyz` checks of every backend this often.
    public var checkInterval: Duration = .milliseconds(250)
    /// An ejected backend comes back after this many consecutive good checks.
    public var readmitChecks = 2
    /// A readmitted backend's share grows linearly from `warmupWeightMin` to full over this.
    public var warmupDuration: Duration = .seconds(5)
    public var warmupWeightMin = 0.1
    /// Retries may add at most this fraction of the requests (a token bucket, Finagle-style).
    public var retryBudgetRatio = 0.2
    /// Retries always allowed per second, however few requests there were.
    public var retryBudgetFloorPerSecond = 10.0
    /// Tokens the bucket holds at most (bounds a burst of retries after a quiet spell).
    public var retryBudgetTokensMax = 100.0
    /// Recent transitions kept per backend for the status page.
    public var transitionsKept = 20
    /// Backends the balancer tracks at most.
    public var backendsMax = 256
    /// Event sockets a second moved off a node holding more than its share, to a node holding
    /// less (0: never). A node that died and came back holds none of the sockets its death sent
    /// elsewhere; without moving them, the next death sends half of every socket back through
    /// the balancer at once instead of a third.
    public var rebalanceSocketsPerSecond = 100.0
    /// A node holds more than its share past `fair * (1 + tolerance) + 1`, less under
    /// `fair * (1 - tolerance) - 1`, where `fair` is the eligible nodes' sockets over their number.
    public var rebalanceTolerance = 0.2

    public init() {}

    public func validate() throws(BalancerError) {
        guard checkInterval > .zero, warmupDuration >= .zero else { throw .invalid("checkInterval must be positive and warmupDuration not negative") }
        guard readmitChecks >= 1 else { throw .invalid("readmitChecks must be at least 1, got \(readmitChecks)") }
        guard (0...1).contains(retryBudgetRatio), retryBudgetFloorPerSecond >= 0, retryBudgetTokensMax >= 1 else {
            throw .invalid("retryBudgetRatio must be in 0...1, the floor not negative and the bucket at least 1")
        }
        guard warmupWeightMin > 0, warmupWeightMin <= 1 else { throw .invalid("warmupWeightMin must be in (0, 1]") }
        guard transitionsKept >= 1, backendsMax >= 1 else { throw .invalid("bounds must be positive") }
        guard rebalanceSocketsPerSecond >= 0, rebalanceSocketsPerSecond.isFinite, (0..<1).contains(rebalanceTolerance) else {
            throw .invalid("rebalanceSocketsPerSecond must not be negative and rebalanceTolerance must be in [0, 1)")
        }
    }
}

public enum BalancerError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self {
        case .invalid(let reason): reason
        }
    }
}

/// One state change of a backend, for the status page and the logs.
public struct Transition: Sendable, Hashable {
    public var backend: String
    public var at: Duration
    public var from: String
    public var to: String
    public var reason: String
}

public struct Backend: Sendable, Hashable {
    public var id: String
    /// The node's API `host:port`.
    public var address: String
    public var state: BackendState
    public var gossip: GossipVerdict
    public var inFlight = 0
    public var webSockets = 0
    public var consecutiveGoodChecks = 0
    public var transitions: [Transition] = []
    /// Requests sent to it, of which failed (passive), and times it was ejected, since known.
    public var requests = 0
    public var failures = 0
    public var ejections = 0
    /// The last attempt to reach it made no connection (`Outcome.unreachable`); cleared by any
    /// success. Panic mode routes to such a backend only when no other is left.
    public var unreachable = false

    /// Takes requests: its checks put it in service and gossip says it is alive.
    public var isEligible: Bool { state.takesRequests && gossip == .alive }
}

/// The balancer's policy as a pure state machine (DESIGN.md): which backend takes a request,
/// and when a backend is ejected, readmitted, warmed up, drained or forgotten. Time comes in as
/// `now`; randomness from the seed.
public struct Balancer: Sendable {
    public let settings: BalancerSettings
    public private(set) var backends: [String: Backend] = [:]
    /// The keys of `backends` in order: choosing walks them without sorting on every request.
    private var ids: [String] = []
    private var rng: SplitMix64
    private var retryTokens: Double
    private var lastRefill: Duration?
    /// Requests routed while no backend was eligible.
    public private(set) var panicRoutes = 0
    public private(set) var retriesRefused = 0
    public private(set) var retries = 0
    /// Event sockets closed to move them to another node since start (`recordMoved`).
    public private(set) var socketsMoved = 0
    private var moveTokens = 0.0
    private var lastMoveRefill: Duration?

    public init(settings: BalancerSettings = BalancerSettings(), seed: UInt64) throws(BalancerError) {
        try settings.validate()
        self.settings = settings
        rng = SplitMix64(seed: seed)
        retryTokens = settings.retryBudgetFloorPerSecond
    }

    /// Backends sorted by id.
    public var all: [Backend] { ids.map { backends[$0]! } }

    public var eligible: [Backend] { all.filter(\.isEligible) }

    /// Panic mode: nothing is eligible, so requests go to every known backend that is not draining.
    public var inPanic: Bool { eligible.isEmpty && !backends.isEmpty }

    // MARK: Inputs

    /// Gossip's word on a node: alive nodes are known (ejected until their checks pass when
    /// new), suspect and dead ones ejected at once, left ones drained.
    public mutating func onGossip(id: String, address: String, verdict: GossipVerdict, now: Duration) {
        guard var backend = backends[id] else {
            guard verdict == .alive, backends.count < settings.backendsMax else { return }
            backends[id] = Backend(id: id, address: address, state: .ejected(reason: "new: waiting for its checks"), gossip: .alive)
            ids.insert(id, at: ids.firstIndex { $0 > id } ?? ids.endIndex)
            record(id, from: "unknown", to: "ejected", reason: "seen alive in gossip; waiting for \(settings.readmitChecks) good checks", now: now)
            return
        }
        backend.address = address
        backend.gossip = verdict
        backends[id] = backend
        switch verdict {
        case .alive:
            // Back from a leave (restarted): it earns its place with checks like a new node.
            if case .draining = backend.state { transition(id, to: .ejected(reason: "rejoined"), reason: "alive again after leaving", now: now) }
        case .suspect, .dead:
            eject(id, reason: "gossip says \(verdict)", now: now)
        case .left:
            transition(id, to: .draining, reason: "left the cluster", now: now)
        }
    }

    /// A backend given by hand (`--backend`), without gossip: it counts as alive.
    public mutating func addStatic(id: String, address: String, now: Duration) {
        onGossip(id: id, address: address, verdict: .alive, now: now)
    }

    /// An active check (`GET /readyz`) finished.
    public mutating func onCheck(id: String, outcome: Outcome, now: Duration) {
        guard var backend = backends[id] else { return }
        backend.unreachable = outcome.isUnreachable
        switch outcome {
        case .failure(let reason), .unreachable(let reason):
            backend.consecutiveGoodChecks = 0
            backends[id] = backend
            eject(id, reason: "check failed: \(reason)", now: now)
        case .success:
            backend.consecutiveGoodChecks += 1
            backends[id] = backend
            if case .ejected = backend.state, backend.gossip == .alive, backend.consecutiveGoodChecks >= settings.readmitChecks {
                transition(id, to: .warming(since: now), reason: "\(backend.consecutiveGoodChecks) good checks", now: now)
            }
        }
        if case .warming(let since) = backends[id]!.state, now - since >= settings.warmupDuration {
            transition(id, to: .healthy, reason: "warmed up", now: now)
        }
    }

    /// A proxied request finished (passive health): a failure ejects the backend at once.
    public mutating func onRequestFinished(id: String, outcome: Outcome, now: Duration) {
        guard var backend = backends[id] else { return }
        precondition(backend.inFlight > 0, "request finished on \(id) with none in flight")
        backend.inFlight -= 1
        backend.unreachable = outcome.isUnreachable
        if outcome.failureReason != nil { backend.failures += 1 }
        backends[id] = backend
        if let reason = outcome.failureReason { eject(id, reason: reason, now: now) }
        if case .draining = backend.state, backend.inFlight == 0, backend.webSockets == 0 { forget(id) }
    }

    /// A failure outside a counted request (a WebSocket upgrade the backend refused or dropped).
    public mutating func onFailure(id: String, outcome: Outcome, now: Duration) {
        guard backends[id] != nil else { return }
        backends[id]!.unreachable = outcome.isUnreachable
        if let reason = outcome.failureReason { eject(id, reason: reason, now: now) }
    }

    public mutating func onWebSocketClosed(id: String) {
        guard var backend = backends[id], backend.webSockets > 0 else { return }
        backend.webSockets -= 1
        backends[id] = backend
        if case .draining = backend.state, backend.inFlight == 0, backend.webSockets == 0 { forget(id) }
    }

    // MARK: Choosing

    public struct Choice: Sendable, Hashable {
        public var backend: String
        public var address: String
        /// No backend was eligible: this one was chosen among all (never eject the last one).
        public var panic: Bool
    }

    /// Power of two choices on in-flight requests (weighted by warm-up), among eligible backends
    /// not in `excluding`; counts the request in flight on the chosen one.
    public mutating func chooseForRequest(excluding: [String] = [], now: Duration) -> Choice? {
        guard let choice = choose(excluding: excluding, now: now, load: { Double($0.inFlight + 1) }) else { return nil }
        backends[choice.backend]!.inFlight += 1
        backends[choice.backend]!.requests += 1
        return choice
    }

    /// Fewest open WebSockets (weighted by warm-up); counts the socket on the chosen one.
    public mutating func chooseForWebSocket(excluding: [String] = [], now: Duration) -> Choice? {
        guard let choice = choose(excluding: excluding, now: now, load: { Double($0.webSockets + 1) }, twoChoices: false) else { return nil }
        backends[choice.backend]!.webSockets += 1
        return choice
    }

    /// Runs on every proxied request. The usual case (every backend eligible or excluded, no
    /// panic) reads the backends in place: no copies of them, no sorting, no dictionary of scores.
    private mutating func choose(excluding: [String], now: Duration, load: (Backend) -> Double, twoChoices: Bool = true) -> Choice? {
        var candidates: [String] = []
        candidates.reserveCapacity(ids.count)
        var anyEligible = false
        for id in ids where backends[id]!.isEligible {
            anyEligible = true
            if !excluding.contains(id) { candidates.append(id) }
        }
        var panic = false
        if candidates.isEmpty {
            guard !anyEligible else { return nil }  // the eligible ones were excluded: no retry target
            // Every backend is out, usually all at once for one cause (no leader during an
            // election: every /readyz says 503). Route to those that may still answer; one that
            // refused its last connection or that gossip declared dead only as a last resort.
            let standing = ids.filter { id in !excluding.contains(id) && backends[id]!.state != .draining }
            let mayAnswer = standing.filter { id in
                let backend = backends[id]!
                return !backend.unreachable && backend.gossip != .dead && backend.gossip != .left
            }
            candidates = mayAnswer.isEmpty ? standing : mayAnswer
            guard !candidates.isEmpty else { return nil }
            panic = true
            panicRoutes += 1
        }
        let settings = self.settings
        func score(_ id: String) -> Double {
            let backend = backends[id]!
            return load(backend) / Self.weight(backend, settings: settings, now: now)
        }
        let best: String
        if twoChoices, candidates.count > 2 {
            let first = Int(rng.next() % UInt64(candidates.count))
            var second = Int(rng.next() % UInt64(candidates.count - 1))
            if second >= first { second += 1 }
            best = score(candidates[second]) < score(candidates[first]) ? candidates[second] : candidates[first]
        } else {
            best = candidates.min { (score($0), $0) < (score($1), $1) }!
        }
        return Choice(backend: best, address: backends[best]!.address, panic: panic)
    }

    private static func weight(_ backend: Backend, settings: BalancerSettings, now: Duration) -> Double {
        guard case .warming(let since) = backend.state, settings.warmupDuration > .zero else { return 1 }
        let fraction = min(1, max(0, (now - since) / settings.warmupDuration))
        return settings.warmupWeightMin + (1 - settings.warmupWeightMin) * fraction
    }

    // MARK: Rebalancing event sockets

    /// How many event sockets each node should close now so that their clients reconnect to a
    /// node holding fewer. The shares are uneven when a node holds more than
    /// `fair * (1 + rebalanceTolerance) + 1` or a warmed-up node less than
    /// `fair * (1 - rebalanceTolerance) - 1` (`fair`: the eligible nodes' sockets over their
    /// number). Then the nodes over `fair` give, fullest first, down to it, as many as the
    /// warmed-up nodes under it lack (`healthy`, not `warming`: a node just back may go again),
    /// at most `rebalanceSocketsPerSecond` on average (a bucket of one second's worth). The
    /// shell reports what it moved (`recordMoved`); the sockets leave `webSockets` as they close.
    public mutating func webSocketsToMove(now: Duration) -> [String: Int] {
        let rate = settings.rebalanceSocketsPerSecond
        if let last = lastMoveRefill, now > last {
            moveTokens = min(max(rate, 1), moveTokens + rate * ((now - last) / .seconds(1)))
        }
        lastMoveRefill = now
        let eligible = ids.compactMap { backends[$0]!.isEligible ? backends[$0]! : nil }
        guard rate > 0, eligible.count >= 2, moveTokens >= 1 else { return [:] }
        let fair = Double(eligible.reduce(0) { $0 + $1.webSockets }) / Double(eligible.count)
        let tolerance = settings.rebalanceTolerance
        let receivers = eligible.filter { $0.state == .healthy && Double($0.webSockets) < fair }
        let uneven =
            eligible.contains { Double($0.webSockets) > fair * (1 + tolerance) + 1 }
            || receivers.contains { Double($0.webSockets) < fair * (1 - tolerance) - 1 }
        guard uneven else { return [:] }
        var room = receivers.reduce(0) { $0 + Int(fair.rounded(.down)) - $1.webSockets }
        var moves: [String: Int] = [:]
        for backend in eligible.sorted(by: { ($0.webSockets, $1.id) > ($1.webSockets, $0.id) }) {
            let count = min(backend.webSockets - Int(fair.rounded(.up)), Int(moveTokens), room)
            guard count > 0 else { break }
            moves[backend.id] = count
            moveTokens -= Double(count)
            room -= count
        }
        return moves
    }

    /// Sockets the shell closed to move them (`webSocketsToMove`), for /metrics.
    public mutating func recordMoved(_ count: Int) {
        socketsMoved += count
    }

    // MARK: Retries

    /// Whether a failed request may be tried again on another backend: only when nothing of the
    /// answer reached the client (or it was a 503), only for methods safe to repeat (GET, HEAD,
    /// PUT, DELETE, or POST with an Idempotency-Key) or a request no node ever saw (the
    /// connection to the node could not be made: nothing was sent), and only within the retry
    /// budget.
    public mutating func mayRetry(method: String, hasIdempotencyKey: Bool, neverSent: Bool = false, now: Duration) -> Bool {
        let method = method.uppercased()
        guard neverSent || ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"].contains(method) || (method == "POST" && hasIdempotencyKey) else {
            return false
        }
        refill(now)
        guard retryTokens >= 1 - 1e-9 else {  // 5 x 0.2 must buy a whole retry despite rounding
            retriesRefused += 1
            return false
        }
        retryTokens = max(0, retryTokens - 1)
        retries += 1
        return true
    }

    /// Every request adds `retryBudgetRatio` tokens.
    public mutating func onRequestStarted(now: Duration) {
        refill(now)
        retryTokens = min(settings.retryBudgetTokensMax, retryTokens + settings.retryBudgetRatio)
    }

    private mutating func refill(_ now: Duration) {
        defer { lastRefill = now }
        guard let last = lastRefill, now > last else { return }
        retryTokens = min(settings.retryBudgetTokensMax, retryTokens + settings.retryBudgetFloorPerSecond * ((now - last) / .seconds(1)))
    }

    // MARK: Transitions

    private mutating func eject(_ id: String, reason: String, now: Duration) {
        guard let backend = backends[id] else { return }
        backends[id]!.consecutiveGoodChecks = 0
        switch backend.state {
        case .ejected, .draining: return
        case .warming, .healthy:
            backends[id]!.ejections += 1
            transition(id, to: .ejected(reason: reason), reason: reason, now: now)
        }
    }

    private mutating func transition(_ id: String, to state: BackendState, reason: String, now: Duration) {
        guard let backend = backends[id], backend.state != state else { return }
        record(id, from: "\(backend.state)", to: "\(state)", reason: reason, now: now)
        backends[id]!.state = state
        if case .draining = state, backend.inFlight == 0, backend.webSockets == 0 { forget(id) }
    }

    private mutating func record(_ id: String, from: String, to: String, reason: String, now: Duration) {
        var transitions = backends[id]?.transitions ?? []
        transitions.append(Transition(backend: id, at: now, from: from, to: to, reason: reason))
        if transitions.count > settings.transitionsKept { transitions.removeFirst(transitions.count - settings.transitionsKept) }
        backends[id]?.transitions = transitions
    }

    private mutating func forget(_ id: String) {
        backends[id] = nil
        ids.removeAll { $0 == id }
    }
}
