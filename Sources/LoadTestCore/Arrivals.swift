import Seeded

/// When customers arrive: an open process at `rate` per second, constant (evenly spaced) or
/// Poisson (exponential gaps from a seeded generator, so a run can be repeated). Sends are
/// scheduled on these intended times whatever the system answers, and latency is measured from
/// them: a stalled server makes the waiting count (no coordinated omission).
public struct Arrivals: Sendable {
    public enum Kind: String, Sendable, CaseIterable { case constant, poisson }

    public let rate: Double
    public let kind: Kind
    private var rng: SplitMix64
    private var next: Duration = .zero

    public init(rate: Double, kind: Kind, seed: UInt64) throws(LoadTestError) {
        guard rate > 0, rate <= 100_000, rate.isFinite else { throw LoadTestError.usage("--arrival-rate must be over 0 and at most 100000/s, got \(rate)") }
        self.rate = rate
        self.kind = kind
        rng = SplitMix64(seed: seed)
    }

    /// `--arrival-rate 20/s` (or `20`, or `1200/m`).
    public static func parseRate(_ text: String) throws(LoadTestError) -> Double {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let count = Double(parts.first ?? ""), count > 0, count.isFinite else {
            throw LoadTestError.usage("--arrival-rate '\(text)' is not a rate; write it like 20/s")
        }
        switch parts.count == 2 ? parts[1] : "s" {
        case "s": return count
        case "m": return count / 60
        case "h": return count / 3600
        default: throw LoadTestError.usage("--arrival-rate '\(text)': the unit after / must be s, m or h")
        }
    }

    /// The intended time of the next arrival, from the start of the run.
    public mutating func nextArrival() -> Duration {
        let now = next
        let gap: Double
        switch kind {
        case .constant:
            gap = 1 / rate
        case .poisson:
            // Inverse transform of a uniform in (0, 1].
            let uniform = (Double(rng.next() >> 11) + 1) / Double(1 << 53)
            gap = -log(uniform) / rate
        }
        next += .nanoseconds(Int64(gap * 1e9))
        return now
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
