import Foundation
import RaftWire
import Synchronization
import Wire

/// Requests this node made of another member and is waiting on, by request id. Every call has
/// a deadline; at most `callsMax` are outstanding.
final class PeerCalls: Sendable {
    static let callsMax = 20_000

    private struct State {
        var next: UInt64 = 1
        var pending: [UInt64: CheckedContinuation<ClusterResponse, Never>] = [:]
    }

    private let state = Mutex(State())
    /// Owns each call's deadline task.
    private let tasks: BackgroundTasks

    init(tasks: BackgroundTasks) { self.tasks = tasks }

    /// Sends a request with a fresh id through `send` (false: it could not be sent) and returns
    /// the answer, or `.failed(.noAnswer)` after `timeout` or as soon as `abandon` (polled every
    /// 10 ms) says the answer is not worth waiting for (the member asked is no longer the leader).
    func call(timeout: Duration, abandon: @escaping @Sendable () -> Bool = { false }, send: @escaping @Sendable (UInt64) -> Bool) async -> ClusterResponse {
        await withCheckedContinuation { continuation in
            let id: UInt64? = state.withLock { state in
                guard state.pending.count < Self.callsMax else { return nil }
                defer { state.next += 1 }
                state.pending[state.next] = continuation
                return state.next
            }
            guard let id else {
                continuation.resume(returning: .failed(.overloaded, message: "\(Self.callsMax) peer calls are outstanding", leader: nil))
                return
            }
            if !send(id) {
                complete(id, .failed(.unavailable, message: "the peer link could not send the request", leader: nil))
                return
            }
            let watched = tasks.spawn {
                let deadline = ContinuousClock.now + timeout
                while ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(10))
                    if !self.isPending(id) { return }
                    if Task.isCancelled {
                        self.complete(id, .failed(.unavailable, message: "this node is stopping", leader: nil))
                        return
                    }
                    if abandon() {
                        self.complete(id, .failed(.noAnswer, message: "the member asked stopped leading before it answered", leader: nil))
                        return
                    }
                }
                self.complete(id, .failed(.noAnswer, message: "no answer within \(timeout)", leader: nil))
            }
            if !watched { complete(id, .failed(.unavailable, message: "this node is stopping", leader: nil)) }
        }
    }

    private func isPending(_ id: UInt64) -> Bool { state.withLock { $0.pending[id] != nil } }

    /// Delivers an answer; answers to unknown (finished or timed-out) calls are ignored.
    func complete(_ id: UInt64, _ response: ClusterResponse) {
        let continuation = state.withLock { $0.pending.removeValue(forKey: id) }
        continuation?.resume(returning: response)
    }
}
