import Synchronization

/// Login throttling, checked before any password is hashed (OWASP's authentication guidance):
/// a token bucket per client address, and an account lock after consecutive failures. A login
/// storm is answered with quick 429s and `Retry-After` instead of a hashing queue that makes
/// every login time out. Kept per node, in memory (the balancer spreads a client over the nodes,
/// so a cluster of N nodes grants up to N times these rates).
final class LoginGuard: Sendable {
    /// Logins per second one client address earns back, by default
    /// (`NodeConfiguration.loginsPerSecondPerAddress`, `--logins-per-address`).
    static let addressRefillPerSecond = 10.0
    /// Seconds of logins one client address may start at once.
    static let burstSeconds = 6.0
    /// Logins one client address may start at once, by default.
    static let addressBurstMax = Int(addressRefillPerSecond * burstSeconds)

    let burst: Double
    let refillPerSecond: Double

    /// `perSecond` logins a second per address, with a burst of `burstSeconds` worth.
    init(perSecond: Double = LoginGuard.addressRefillPerSecond) {
        refillPerSecond = perSecond
        burst = (perSecond * Self.burstSeconds).rounded(.up)
    }
    /// Failed logins in a row that lock an account.
    static let failuresBeforeLock = 5
    /// How long a lock lasts.
    static let lockSeconds = 60.0
    /// Addresses and accounts tracked; past it the oldest state is dropped (the map starts over).
    static let entriesMax = 20_000

    enum Refusal: Equatable {
        case addressThrottled(retryAfterSeconds: Int)
        case accountLocked(retryAfterSeconds: Int)
    }

    private struct State {
        var buckets: [String: (tokens: Double, at: Double)] = [:]
        var failures: [String: (count: Int, lockedUntil: Double)] = [:]
    }

    private let state = Mutex(State())

    private static let epoch = ContinuousClock.now

    /// Seconds on the monotonic clock (from a fixed start), the `now` the guard takes.
    static func now() -> Double {
        let elapsed = ContinuousClock.now - epoch
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Admits a login attempt from `address` for `account` at `now` (seconds), or says why not.
    func admit(address: String, account: String, now: Double) -> Refusal? {
        state.withLock { state in
            if let failure = state.failures[account], failure.lockedUntil > now {
                return .accountLocked(retryAfterSeconds: Int((failure.lockedUntil - now).rounded(.up)))
            }
            if state.buckets.count >= Self.entriesMax { state.buckets.removeAll(keepingCapacity: true) }
            var bucket = state.buckets[address] ?? (burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * refillPerSecond)
            bucket.at = now
            guard bucket.tokens >= 1 else {
                state.buckets[address] = bucket
                return .addressThrottled(retryAfterSeconds: Int(((1 - bucket.tokens) / refillPerSecond).rounded(.up)))
            }
            bucket.tokens -= 1
            state.buckets[address] = bucket
            return nil
        }
    }

    /// Records a login's result: a success clears the account's failures; the
    /// `failuresBeforeLock`-th failure in a row locks it for `lockSeconds`.
    func record(account: String, succeeded: Bool, now: Double) {
        state.withLock { state in
            guard !succeeded else {
                state.failures[account] = nil
                return
            }
            if state.failures.count >= Self.entriesMax { state.failures.removeAll(keepingCapacity: true) }
            var failure = state.failures[account] ?? (0, 0)
            failure.count += 1
            if failure.count >= Self.failuresBeforeLock {
                failure = (0, now + Self.lockSeconds)
            }
            state.failures[account] = failure
        }
    }
}
