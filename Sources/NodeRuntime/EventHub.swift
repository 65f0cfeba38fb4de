import ContactCenter
import Synchronization

/// Fans applied events out to this node's WebSocket sessions, in memory.
///
/// Each subscription has a bounded buffer (`bufferEventsMax`). A subscriber that falls behind
/// is not allowed to grow memory: its buffer is dropped and it is told `overflowed`, after which
/// it catches up from the events table (every node holds the same events) and goes on. So a
/// slow client costs a database read, never an unbounded queue, and never a lost event.
public final class EventHub: Sendable {
    public static let bufferEventsMax = 1024
    /// Most live subscriptions on one node (WebSocket sessions).
    public static let subscriptionsMax = 20_000

    private struct State {
        var nextId = 0
        var subscriptions: [Int: EventSubscription] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public var subscriptionCount: Int { state.withLock { $0.subscriptions.count } }

    /// A subscription receiving every event published from now on that `accept` lets through;
    /// nil when `subscriptionsMax` are open.
    public func subscribe(accept: @escaping @Sendable (Event) -> Bool) -> EventSubscription? {
        state.withLock { state in
            guard state.subscriptions.count < Self.subscriptionsMax else { return nil }
            defer { state.nextId += 1 }
            let subscription = EventSubscription(id: state.nextId, hub: self, accept: accept)
            state.subscriptions[state.nextId] = subscription
            return subscription
        }
    }

    func remove(_ id: Int) {
        _ = state.withLock { $0.subscriptions.removeValue(forKey: id) }
    }

    /// Called by the pipeline after each applied batch, in log order.
    func publish(_ events: [Event]) {
        guard !events.isEmpty else { return }
        let subscriptions = state.withLock { Array($0.subscriptions.values) }
        for subscription in subscriptions { subscription.deliver(events) }
    }
}

/// One subscriber's view of the hub. `next()` is called by a single consumer task.
public final class EventSubscription: Sendable {
    public enum Delivery: Sendable {
        /// New events, in cursor order.
        case events([Event])
        /// Events were dropped from the buffer: re-read from the store after your last cursor.
        case overflowed
        /// The client asked for a pong.
        case pong
        /// The subscription was closed.
        case closed
    }

    private struct State {
        var buffer: [Event] = []
        var overflowed = false
        var pongRequested = false
        var closed = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    let id: Int
    private weak let hub: EventHub?
    private let accept: @Sendable (Event) -> Bool
    private let state = Mutex(State())

    init(id: Int, hub: EventHub, accept: @escaping @Sendable (Event) -> Bool) {
        self.id = id
        self.hub = hub
        self.accept = accept
    }

    func deliver(_ events: [Event]) {
        let accepted = events.filter(accept)
        guard !accepted.isEmpty else { return }
        update { state in
            guard !state.closed, !state.overflowed else { return }  // overflowed: catching up from the store
            if state.buffer.count + accepted.count > EventHub.bufferEventsMax {
                state.buffer = []
                state.overflowed = true
            } else {
                state.buffer.append(contentsOf: accepted)
            }
        }
    }

    /// Asks the consumer to send a pong (from the reading side of a WebSocket).
    public func requestPong() {
        update { $0.pongRequested = true }
    }

    public func close() {
        update { $0.closed = true }
        hub?.remove(id)
    }

    /// Changes the state under the lock, then wakes the consumer if it is waiting.
    private func update(_ change: (inout State) -> Void) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            change(&state)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Waits for the next delivery.
    public func next() async -> Delivery {
        while true {
            let ready: Delivery? = state.withLock { state in
                if state.closed { return .closed }
                if state.pongRequested {
                    state.pongRequested = false
                    return .pong
                }
                if state.overflowed {
                    state.overflowed = false
                    return .overflowed
                }
                if !state.buffer.isEmpty {
                    defer { state.buffer = [] }
                    return .events(state.buffer)
                }
                return nil
            }
            if let ready { return ready }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.closed || state.pongRequested || state.overflowed || !state.buffer.isEmpty { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }
}
