import Histogram
import Synchronization

/// Every measurement of a run, shared by all its tasks. Latencies go into HdrHistograms in
/// microseconds (1 us to 1 hour, 3 significant digits); the timeline keeps one bucket per second
/// for the progress line and the per-second availability.
public final class Recorder: Sendable {
    public struct Second: Sendable, Equatable {
        public var ok = 0
        public var failed = 0
        public var sessions = 0
        /// Latency percentiles of the requests due in this second (2 significant digits).
        public var p50Ms = 0.0
        public var p99Ms = 0.0
        public init(ok: Int = 0, failed: Int = 0, sessions: Int = 0, p50Ms: Double = 0, p99Ms: Double = 0) {
            self.ok = ok
            self.failed = failed
            self.sessions = sessions
            self.p50Ms = p50Ms
            self.p99Ms = p99Ms
        }
    }

    private struct State {
        var latency = Histogram<UInt64>(highestTrackableValue: 3_600_000_000)
        var assignment = Histogram<UInt64>(highestTrackableValue: 3_600_000_000)
        var reconnect = Histogram<UInt64>(highestTrackableValue: 3_600_000_000)
        var reconnectAfterMove = Histogram<UInt64>(highestTrackableValue: 3_600_000_000)
        var ok = 0
        var failed = 0
        var shed = 0
        var sessions = 0
        var peakSessions = 0
        var firstFullSecond: Int?
        var agents = 0
        var drops = 0
        var moves = 0
        var timeline: [Second] = []
        /// One coarse histogram per second of the first `perSecondLatencyMax` seconds.
        var perSecond: [Histogram<UInt64>] = []
        var failures: [String: Int] = [:]
    }

    /// Seconds that keep their own latency histogram (about 20 KiB each).
    public static let perSecondLatencyMax = 7200
    static let perSecondHighestMicros: UInt64 = 120_000_000

    /// Distinct failure reasons kept (the rest are counted under "other").
    public static let failureReasonsMax = 50
    private let state = Mutex(State())

    public init() {}

    /// A request that was due at `second` of the run, answered `ok` or not after `micros`.
    public func request(second: Int, micros: UInt64, ok: Bool, failure: String? = nil) {
        state.withLock { state in
            _ = state.latency.record(max(1, micros))
            if second >= 0, second < Self.perSecondLatencyMax {
                while state.perSecond.count <= second {
                    state.perSecond.append(Histogram(highestTrackableValue: Self.perSecondHighestMicros, numberOfSignificantValueDigits: .two))
                }
                _ = state.perSecond[second].record(min(max(1, micros), Self.perSecondHighestMicros))
            }
            bucket(&state, second) { ok ? ($0.ok += 1) : ($0.failed += 1) }
            if ok {
                state.ok += 1
            } else {
                state.failed += 1
                let reason = state.failures.count < Self.failureReasonsMax || state.failures[failure ?? ""] != nil ? (failure ?? "unknown") : "other"
                state.failures[reason, default: 0] += 1
            }
        }
    }

    /// A request the cluster shed on purpose (429 with `Retry-After`, before any work): the
    /// client was told when to come back, so it counts apart from answered and failed requests
    /// (an agent application waits and retries, as the load tester does).
    public func shed() { state.withLock { $0.shed += 1 } }

    /// Agents the run starts: the second at which every one of them holds a session is recorded.
    public func expect(agents: Int) { state.withLock { $0.agents = agents } }

    public func assignment(micros: UInt64) { state.withLock { _ = $0.assignment.record(max(1, micros)) } }
    /// A session open again `micros` after it closed: after a drop (its node died, or the
    /// connection broke), or after the balancer moved it to a node holding fewer sockets, a
    /// planned close measured apart.
    public func reconnected(micros: UInt64, afterMove: Bool = false) {
        state.withLock { state in
            if afterMove {
                _ = state.reconnectAfterMove.record(max(1, micros))
            } else {
                _ = state.reconnect.record(max(1, micros))
            }
        }
    }

    public func sessionOpened(second: Int) {
        state.withLock { state in
            state.sessions += 1
            state.peakSessions = max(state.peakSessions, state.sessions)
            if state.firstFullSecond == nil, state.agents > 0, state.sessions >= state.agents { state.firstFullSecond = second }
            let sessions = state.sessions
            bucket(&state, second) { $0.sessions = sessions }
        }
    }

    /// A session closed: `dropped` when the run did not end it, `moved` when the balancer did
    /// to move it (not a drop).
    public func sessionClosed(second: Int, dropped: Bool, moved: Bool = false) {
        state.withLock { state in
            state.sessions -= 1
            if moved {
                state.moves += 1
            } else if dropped {
                state.drops += 1
            }
            let sessions = state.sessions
            bucket(&state, second) { $0.sessions = sessions }
        }
    }

    private func bucket(_ state: inout State, _ second: Int, _ change: (inout Second) -> Void) {
        guard second >= 0, second < 86_400 else { return }
        while state.timeline.count <= second { state.timeline.append(Second(sessions: state.sessions)) }
        change(&state.timeline[second])
    }

    /// One entry per second of the run, with that second's latency percentiles.
    public var timeline: [Second] {
        state.withLock { state in
            var timeline = state.timeline
            for (second, histogram) in state.perSecond.enumerated() where second < timeline.count && histogram.totalCount > 0 {
                timeline[second].p50Ms = Double(histogram.valueAtPercentile(50)) / 1000
                timeline[second].p99Ms = Double(histogram.valueAtPercentile(99)) / 1000
            }
            return timeline
        }
    }
    public var sessions: Int { state.withLock { $0.sessions } }
    /// Requests shed with `Retry-After` so far.
    public var shedTotal: Int { state.withLock { $0.shed } }
    /// Failed requests so far.
    public var failedTotal: Int { state.withLock { $0.failed } }

    /// Requests (answered or failed) due in `second` of the run; 0 outside the timeline.
    public func requests(inSecond second: Int) -> Int {
        state.withLock { state in
            guard second >= 0, second < state.timeline.count else { return 0 }
            return state.timeline[second].ok + state.timeline[second].failed
        }
    }
    public var failures: [String: Int] { state.withLock { $0.failures } }

    /// The p99 request latency in milliseconds so far.
    public var p99Ms: Double { state.withLock { $0.latency.totalCount == 0 ? 0 : Double($0.latency.valueAtPercentile(99)) / 1000 } }

    /// Fills the measured parts of `summary` (requests, availability, latencies, sessions).
    /// Availability is answered requests over answered and failed ones; sheds are counted apart.
    public func fill(_ summary: inout Summary) {
        state.withLock { state in
            func ms(_ histogram: Histogram<UInt64>, _ percentile: Double) -> Double {
                histogram.totalCount == 0 ? 0 : (Double(histogram.valueAtPercentile(percentile)) / 1000 * 100).rounded() / 100
            }
            summary.requests.total = state.ok + state.failed
            summary.requests.ok = state.ok
            summary.requests.failed = state.failed
            summary.requests.shed = state.shed
            summary.availability = summary.requests.total == 0 ? 1 : Double(state.ok) / Double(summary.requests.total)
            summary.latencyMs.p50 = ms(state.latency, 50)
            summary.latencyMs.p90 = ms(state.latency, 90)
            summary.latencyMs.p99 = ms(state.latency, 99)
            summary.latencyMs.p999 = ms(state.latency, 99.9)
            summary.latencyMs.max = state.latency.totalCount == 0 ? 0 : Double(state.latency.maxRecorded) / 1000
            summary.assignmentLatencyMs.p50 = ms(state.assignment, 50)
            summary.assignmentLatencyMs.p99 = ms(state.assignment, 99)
            summary.sessions.peak = state.peakSessions
            summary.sessions.drops = state.drops
            summary.sessions.reconnectMsP99 = ms(state.reconnect, 99)
            summary.sessions.reconnectMsP50 = ms(state.reconnect, 50)
            summary.sessions.moves = state.moves
            summary.sessions.movedReconnectMsP99 = ms(state.reconnectAfterMove, 99)
            summary.sessions.allConnectedAtSeconds = state.firstFullSecond
        }
    }
}
