/// The run's verdict as `--json` writes it. The top-level fields are a contract (scripts and CI
/// read them): `agents`, `durationSeconds`, `requests`, `availability`, `latencyMs`,
/// `assignmentLatencyMs`, `sessions`, `integrity`, `faults`, `terms`, `thresholds`, `passed`.
public struct Summary: Codable, Sendable, Equatable {
    public struct Requests: Codable, Sendable, Equatable {
        public var total = 0
        public var ok = 0
        public var failed = 0
        /// 429 answers with `Retry-After` (logins and creations shed before any hashing): not in
        /// `total`, not in the availability, not in the latencies.
        public var shed = 0
        public init() {}
    }

    public struct Latency: Codable, Sendable, Equatable {
        public var p50 = 0.0
        public var p90 = 0.0
        public var p99 = 0.0
        public var p999 = 0.0
        public var max = 0.0
        public init() {}
    }

    public struct AssignmentLatency: Codable, Sendable, Equatable {
        public var p50 = 0.0
        public var p99 = 0.0
        public init() {}
    }

    public struct Sessions: Codable, Sendable, Equatable {
        public var peak = 0
        public var drops = 0
        public var reconnectMsP99 = 0.0
        public var reconnectMsP50 = 0.0
        /// Sessions the balancer closed to move them to a node holding fewer (not drops; their
        /// reconnections are not in `reconnectMs*`), and their reconnection's p99.
        public var moves = 0
        public var movedReconnectMsP99 = 0.0
        /// Seconds from the start until every agent held a session at once; nil if that never
        /// happened.
        public var allConnectedAtSeconds: Int?
        public init() {}
    }

    public struct Integrity: Codable, Sendable, Equatable {
        public var lostMessages = 0
        public var duplicateMessages = 0
        public var doubleAssignments = 0
        public var capacityViolations = 0
        public var eventGaps = 0
        /// With customers on provider channels: agent replies the cluster acknowledged, and of
        /// those the ones the simulated provider never took, took more than once, or took for
        /// another customer (`ReplyLedger`).
        public var repliesChecked = 0
        public var lostReplies = 0
        public var duplicateReplies = DuplicateReplies()
        public var misdirectedReplies = 0
        public init() {}

        /// Explained: the message is marked `possibleDuplicate` (an attempt the provider may have
        /// taken without its answer committing). Unexplained: no mark, a violation.
        public struct DuplicateReplies: Codable, Sendable, Equatable {
            public var explained = 0
            public var unexplained = 0
            public init() {}
        }

        public var violations: Int {
            lostMessages + duplicateMessages + doubleAssignments + capacityViolations + eventGaps + lostReplies + duplicateReplies.unexplained
                + misdirectedReplies
        }
    }

    public struct Fault: Codable, Sendable, Equatable {
        public var atSeconds: Double
        public var kind: String
        public var node: String?
        public init(atSeconds: Double, kind: String, node: String?) {
            self.atSeconds = atSeconds
            self.kind = kind
            self.node = node
        }
    }

    public struct ThresholdResult: Codable, Sendable, Equatable {
        public var expression: String
        public var value: Double
        public var passed: Bool
    }

    /// The Raft term before the run and after it settled: each leader kill costs at least one
    /// election, and any rise beyond the kills is an election something else caused.
    public struct Terms: Codable, Sendable, Equatable {
        public var atStart: Int?
        public var atEnd: Int?
        public init() {}
        public var elections: Int? { atStart.flatMap { start in atEnd.map { $0 - start } } }
    }

    public var agents = 0
    public var durationSeconds = 0.0
    public var requests = Requests()
    public var availability = 1.0
    public var latencyMs = Latency()
    public var assignmentLatencyMs = AssignmentLatency()
    public var sessions = Sessions()
    public var integrity = Integrity()
    public var faults: [Fault] = []
    public var terms = Terms()
    public var thresholds: [ThresholdResult] = []
    public var passed = true

    public init() {}

    /// Exit status: 0 when every threshold passed and integrity held, 1 on an integrity
    /// violation (it outranks thresholds: lost data is never a tuning matter), 99 when a
    /// threshold failed. (2, a usage error, never gets this far.)
    public var exitCode: Int32 {
        if integrity.violations > 0 { return 1 }
        return thresholds.allSatisfy(\.passed) ? 0 : 99
    }

    /// Checks `thresholds` against this summary and records the results and `passed`.
    public mutating func evaluate(_ thresholds: [Threshold]) {
        self.thresholds = thresholds.map { threshold in
            let value = threshold.metric.value(in: self)
            return ThresholdResult(expression: threshold.expression, value: value, passed: threshold.holds(for: value))
        }
        passed = exitCode == 0
    }
}
