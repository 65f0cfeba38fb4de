import Metrics
import Prometheus
import Synchronization

/// Switchboard's one metrics path: swift-metrics types (`Counter`, `Gauge`, `Timer`) made by a
/// `PrometheusMetricsFactory` over a process's registry, which only renders the text format.
public enum Telemetry {
    /// The factory a process's metrics are made by: latency histograms from 0.5 ms to 10 s.
    /// Every factory over one registry must be made here (a registry refuses one histogram
    /// name with two bucket sets).
    public static func factory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10),
        ]
        return factory
    }
}

/// A Prometheus counter (`_total`) fed from a count kept elsewhere (the Raft loop's, gossip's,
/// the peer link's): each `record` adds what the count grew by since the last one. A count that
/// went down (a restarted component) starts over from it.
public final class RunningTotal: Sendable {
    private let counter: Metrics.Counter
    private let last = Mutex(0)

    public init(_ counter: Metrics.Counter) { self.counter = counter }

    public func record(_ count: Int) {
        let grown = last.withLock { last in
            defer { last = count }
            return count >= last ? count - last : count
        }
        if grown > 0 { counter.increment(by: grown) }
    }
}

extension Metrics.Timer {
    /// Records a duration read off the monotonic clock.
    public func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
