import RaftCore

/// Why a replicated proposal or read did not complete.
public enum ReplicationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The core refused it (not the leader, a transfer in progress, a full queue...).
    case raft(RaftError)
    /// Another leader's entry took the proposal's index: it was not committed.
    case lost(index: UInt64)
    /// The entry was applied before its outcome was asked for and is no longer remembered.
    case outcomeForgotten(index: UInt64)
    /// The deadline passed first; the proposal may still commit.
    case timedOut
    /// The node's input queue is full (the node's loop, not the driver, refuses with it).
    case overloaded
    case stopped
    /// This replica's storage failed (a full disk, an I/O error) and its loop stopped.
    /// `inFlight`: the proposal was under way then and may still commit through the other
    /// members; else it was refused and not applied.
    case storageFailed(String, inFlight: Bool)

    public var description: String {
        switch self {
        case .raft(let error): error.description
        case .lost(let index): "the proposal at index \(index) was replaced by another leader's entry"
        case .outcomeForgotten(let index): "entry \(index) was applied too long ago for its outcome to be known"
        case .timedOut: "no outcome before the deadline"
        case .overloaded: "the node's input queue is full (RaftLoop.inputsMax)"
        case .stopped: "the node is stopping"
        case .storageFailed(let reason, true):
            "this node's storage failed (\(reason)) while the write was under way: it may still be applied through the other members"
        case .storageFailed(let reason, false): "this node's storage failed (\(reason)): it takes no writes until it is restarted"
        }
    }
}
