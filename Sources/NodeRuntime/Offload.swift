import Dispatch
import Synchronization

/// Runs CPU-heavy work (password hashing) on a few dedicated dispatch queues so it never blocks
/// the cooperative thread pool that serves requests. `lanes` bounds how many run at once;
/// `queuedMax` bounds how many may wait: past it, work is refused as overloaded (HTTP 429).
public final class Offload: Sendable {
    private let queues: [DispatchQueue]
    private let next = Counter()
    private let queued = Atomic<Int>(0)
    let queuedMax: Int

    public init(label: String, lanes: Int, queuedMax: Int) {
        precondition(lanes > 0, "offload lanes must be positive, got \(lanes)")
        precondition(queuedMax >= lanes, "queuedMax \(queuedMax) below lanes \(lanes)")
        queues = (0..<lanes).map { DispatchQueue(label: "\(label).\($0)") }
        self.queuedMax = queuedMax
    }

    public func run<T: Sendable>(_ work: @Sendable @escaping () -> T) async throws -> T {
        guard queued.add(1, ordering: .relaxed).newValue <= queuedMax else {
            queued.subtract(1, ordering: .relaxed)
            throw NodeError.overloaded("more than \(queuedMax) password checks are waiting")
        }
        let queue = queues[next.increment() % queues.count]
        return await withCheckedContinuation { continuation in
            queue.async {
                let result = work()
                self.queued.subtract(1, ordering: .relaxed)
                continuation.resume(returning: result)
            }
        }
    }
}
