import Synchronization

/// The owner of a node's background tasks (a coalesced lease renewal, serving a member's
/// request, a peer call's deadline): each is cancelled when the node stops, and none starts
/// after it.
final class BackgroundTasks: Sendable {
    private struct State {
        var next: UInt64 = 0
        var running: [UInt64: Task<Void, Never>] = [:]
        var stopped = false
    }

    private let state = Mutex(State())

    /// Runs `body` in a task this owner cancels at `cancelAll`; false (nothing runs) once stopped.
    @discardableResult
    func spawn(_ body: @escaping @Sendable () async -> Void) -> Bool {
        state.withLock { state in
            guard !state.stopped else { return false }
            let id = state.next
            state.next += 1
            // The task removes itself under the same lock, so never before it was inserted.
            state.running[id] = Task { [weak self] in
                await body()
                self?.finished(id)
            }
            return true
        }
    }

    /// Cancels every running task; later `spawn`s run nothing.
    func cancelAll() {
        let running = state.withLock { state in
            state.stopped = true
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for task in running { task.cancel() }
    }

    private func finished(_ id: UInt64) {
        _ = state.withLock { $0.running.removeValue(forKey: id) }
    }
}
