/// Why the node could not take a request now. The API maps these to 503/429 with `Retry-After`.
public enum NodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The proposal queue is full (`pendingProposalsMax`).
    case overloaded(String)
    /// The node is shutting down or its log failed; it takes no more writes.
    case stopped(String)
    /// The applied index did not reach the awaited value in time.
    case timedOut(waitingFor: Int64)

    public var description: String {
        switch self {
        case .overloaded(let why): "overloaded: \(why)"
        case .stopped(let why): "stopped: \(why)"
        case .timedOut(let index): "timed out waiting for log index \(index) to be applied"
        }
    }
}
