/// Why the node could not take a request now. The API maps these to 503/429 with `Retry-After`.
public enum NodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A queue is full (proposals, reads, forwarded calls).
    case overloaded(String)
    /// The node is shutting down or its log failed; it takes no more writes.
    case stopped(String)
    /// The applied index did not reach the awaited value in time.
    case timedOut(waitingFor: Int64)
    /// No leader was known, or reachable, within `leaderWaitMax`.
    case noLeader(String)
    /// The write reached the leader but its fate is unknown (no answer in time): retry it with
    /// the same `Idempotency-Key`.
    case unknownOutcome(String)
    /// The write was not committed (another leader's entry took its place): retrying is safe.
    case notCommitted(String)
    /// The cluster refused a membership or leadership request as it stands.
    case clusterRejected(String)

    public var description: String {
        switch self {
        case .overloaded(let why): "overloaded: \(why)"
        case .stopped(let why): "stopped: \(why)"
        case .timedOut(let index): "timed out waiting for log index \(index) to be applied"
        case .noLeader(let why): "no leader: \(why)"
        case .unknownOutcome(let why): "outcome unknown: \(why)"
        case .notCommitted(let why): "not committed: \(why)"
        case .clusterRejected(let why): why
        }
    }
}
