import Dispatch

/// Runs CPU-heavy work (password hashing) on a few dedicated dispatch queues so it never blocks
/// the cooperative thread pool that serves requests. `lanes` bounds how many run at once.
public final class Offload: Sendable {
    private let queues: [DispatchQueue]
    private let next = Counter()

    public init(label: String, lanes: Int) {
        precondition(lanes > 0, "offload lanes must be positive, got \(lanes)")
        queues = (0..<lanes).map { DispatchQueue(label: "\(label).\($0)") }
    }

    public func run<T: Sendable>(_ work: @Sendable @escaping () -> T) async -> T {
        let queue = queues[next.increment() % queues.count]
        return await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: work()) }
        }
    }
}
