/// A pass/fail rule on the summary: `availability>=0.999`, `p99<250ms`, `lost==0`.
public struct Threshold: Sendable, Equatable, CustomStringConvertible {
    public enum Metric: String, Sendable, CaseIterable {
        case availability
        case p50, p90, p99, p999, max
        case assignmentP50 = "assignment_p50"
        case assignmentP99 = "assignment_p99"
        case reconnectP99 = "reconnect_p99"
        case failed, drops, lost, duplicates
        case doubleAssignments = "double_assignments"
        case capacityViolations = "capacity_violations"
        case eventGaps = "event_gaps"
        case lostReplies = "lost_replies"
        case duplicateReplies = "duplicate_replies"
        case unexplainedDuplicates = "unexplained_duplicates"

        /// Latencies are compared in milliseconds; availability as a fraction; the rest as counts.
        var isLatency: Bool { [.p50, .p90, .p99, .p999, .max, .assignmentP50, .assignmentP99, .reconnectP99].contains(self) }

        public func value(in summary: Summary) -> Double {
            switch self {
            case .availability: summary.availability
            case .p50: summary.latencyMs.p50
            case .p90: summary.latencyMs.p90
            case .p99: summary.latencyMs.p99
            case .p999: summary.latencyMs.p999
            case .max: summary.latencyMs.max
            case .assignmentP50: summary.assignmentLatencyMs.p50
            case .assignmentP99: summary.assignmentLatencyMs.p99
            case .reconnectP99: summary.sessions.reconnectMsP99
            case .failed: Double(summary.requests.failed)
            case .drops: Double(summary.sessions.drops)
            case .lost: Double(summary.integrity.lostMessages)
            case .duplicates: Double(summary.integrity.duplicateMessages)
            case .doubleAssignments: Double(summary.integrity.doubleAssignments)
            case .capacityViolations: Double(summary.integrity.capacityViolations)
            case .eventGaps: Double(summary.integrity.eventGaps)
            case .lostReplies: Double(summary.integrity.lostReplies)
            case .duplicateReplies: Double(summary.integrity.duplicateReplies.explained + summary.integrity.duplicateReplies.unexplained)
            case .unexplainedDuplicates: Double(summary.integrity.duplicateReplies.unexplained)
            }
        }
    }

    public enum Comparison: String, Sendable, CaseIterable {
        case lessOrEqual = "<=", greaterOrEqual = ">=", equal = "==", less = "<", greater = ">"
    }

    public let expression: String
    public let metric: Metric
    public let comparison: Comparison
    /// In the metric's unit: milliseconds for latencies, a fraction for availability.
    public let bound: Double

    public var description: String { expression }

    /// Parses `metric op number[unit]`; units: `ms`, `s` for latencies, `%` for availability.
    public init(_ text: String) throws(LoadTestError) {
        let expression = text.filter { !$0.isWhitespace }
        guard let comparison = Comparison.allCases.first(where: { expression.firstRange(of: $0.rawValue) != nil }),
            let range = expression.firstRange(of: comparison.rawValue)
        else {
            throw LoadTestError.usage("threshold '\(text)' has no comparison; write it like availability>=0.999 or p99<250ms")
        }
        let name = String(expression[..<range.lowerBound])
        guard let metric = Metric(rawValue: name) else {
            throw LoadTestError.usage(
                "threshold '\(text)': unknown metric '\(name)'; known: \(Metric.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var number = String(expression[range.upperBound...])
        var scale = 1.0
        if metric.isLatency {
            if number.hasSuffix("ms") {
                number.removeLast(2)
            } else if number.hasSuffix("s") {
                number.removeLast()
                scale = 1000
            } else {
                throw LoadTestError.usage("threshold '\(text)': give \(name) a unit, ms or s (e.g. \(name)<250ms)")
            }
        } else if metric == .availability, number.hasSuffix("%") {
            number.removeLast()
            scale = 0.01
        }
        guard let value = Double(number), value.isFinite else {
            throw LoadTestError.usage("threshold '\(text)': '\(number)' is not a number")
        }
        self.expression = expression
        self.metric = metric
        self.comparison = comparison
        self.bound = value * scale
    }

    public func holds(for value: Double) -> Bool {
        switch comparison {
        case .less: value < bound
        case .lessOrEqual: value <= bound
        case .greater: value > bound
        case .greaterOrEqual: value >= bound
        case .equal: value == bound
        }
    }
}

public enum LoadTestError: Error, Equatable, CustomStringConvertible {
    case usage(String)

    public var description: String {
        switch self {
        case .usage(let message): message
        }
    }
}

/// `30s`, `10m`, `250ms`, `1h`, or bare seconds.
public func parseDuration(_ text: String, option: String) throws(LoadTestError) -> Duration {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        guard let value = Double(text.dropLast(suffix.count)), value >= 0, value.isFinite else { break }
        return .milliseconds(Int64((value * scale * 1000).rounded()))
    }
    if let value = Double(text), value >= 0, value.isFinite { return .milliseconds(Int64((value * 1000).rounded())) }
    throw LoadTestError.usage("\(option) '\(text)' is not a duration; write it like 30s, 10m, 250ms")
}

/// `1%` or `0.01`: a share from 0 to 1.
public func parseShare(_ text: String, option: String) throws(LoadTestError) -> Double {
    let trimmed = text.filter { $0 != " " }
    let value = trimmed.hasSuffix("%") ? Double(trimmed.dropLast()).map { $0 / 100 } : Double(trimmed)
    guard let value, (0...1).contains(value) else { throw .usage("\(option) must be a share such as 1% or 0.01, got '\(text)'") }
    return value
}
