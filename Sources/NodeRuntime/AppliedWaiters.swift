import Synchronization

/// Tasks waiting for `applied_index` to reach a value (read-your-writes, linearizable reads).
/// Bounded by `waitersMax`; every wait has a deadline.
final class AppliedWaiters: Sendable {
    static let waitersMax = 100_000

    private struct Waiter {
        var index: Int64
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var applied: Int64 = 0
        var nextId = 0
        var waiters: [Int: Waiter] = [:]
        var failure: String?
    }

    private let state = Mutex(State())

    var applied: Int64 { state.withLock { $0.applied } }
    var failure: String? { state.withLock { $0.failure } }

    /// Records progress and resumes every waiter at or below `index`.
    func advance(to index: Int64) {
        let ready: [CheckedContinuation<Void, any Error>] = state.withLock { state in
            state.applied = max(state.applied, index)
            let done = state.waiters.filter { $0.value.index <= index }
            for id in done.keys { state.waiters[id] = nil }
            return done.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume() }
    }

    /// Fails every present and future waiter: the node stopped applying.
    func fail(_ reason: String) {
        let all = state.withLock { state in
            state.failure = reason
            defer { state.waiters = [:] }
            return state.waiters.values.map(\.continuation)
        }
        for continuation in all { continuation.resume(throwing: NodeError.stopped(reason)) }
    }

    /// Returns once `applied >= index`, or throws `NodeError.timedOut` after `timeout`.
    func wait(for index: Int64, timeout: Duration) async throws {
        if state.withLock({ $0.applied >= index }) { return }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.waitUnbounded(for: index) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw NodeError.timedOut(waitingFor: index)
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private func waitUnbounded(for index: Int64) async throws {
        let id = state.withLock { state -> Int in
            defer { state.nextId += 1 }
            return state.nextId
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let immediate: Result<Void, NodeError>? = state.withLock { state in
                    if let failure = state.failure { return .failure(.stopped(failure)) }
                    if state.applied >= index { return .success(()) }
                    if Task.isCancelled { return .failure(.timedOut(waitingFor: index)) }
                    if state.waiters.count >= Self.waitersMax { return .failure(.overloaded("more than \(Self.waitersMax) reads are waiting")) }
                    state.waiters[id] = Waiter(index: index, continuation: continuation)
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            let removed = state.withLock { $0.waiters.removeValue(forKey: id) }
            removed?.continuation.resume(throwing: CancellationError())
        }
    }
}
