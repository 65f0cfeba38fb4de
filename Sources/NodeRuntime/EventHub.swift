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

    /// Subscriptions by the agent whose events they take; `everyone` takes every event
    /// (supervisors, the admin). Publishing looks each event's audience up, so its cost grows
    /// with the sockets that take it, not with every socket on the node: on the Raft loop's
    /// thread, a filter run per event per socket cost about a sixth of the node's CPU at 3,000
    /// sockets.
    private struct State {
        var nextId = 0
        var byAudience: [String: [Int: EventSubscription]] = [:]
        var everyone: [Int: EventSubscription] = [:]
        var count = 0
        /// Subscriptions to one conversation's messages (web chat visitors), under the audience
        /// key `conversation:<id>`.
        var conversations = 0
    }

    /// The audience key of a conversation's message events (a web chat visitor's socket).
    public static func conversationAudience(_ conversationId: String) -> String { "conversation:" + conversationId }

    private let state = Mutex(State())

    public init() {}

    public var subscriptionCount: Int { state.withLock { $0.count } }

    /// A subscription receiving every event published from now on for `audience` (an agent id:
    /// the events whose `audienceAgentId` it is), or every event when `audience` is nil; nil
    /// when `subscriptionsMax` are open.
    public func subscribe(audience: String?) -> EventSubscription? {
        state.withLock { state in
            guard state.count < Self.subscriptionsMax else { return nil }
            defer { state.nextId += 1 }
            let subscription = EventSubscription(id: state.nextId, audience: audience, hub: self)
            if let audience {
                state.byAudience[audience, default: [:]][state.nextId] = subscription
                if audience.hasPrefix("conversation:") { state.conversations += 1 }
            } else {
                state.everyone[state.nextId] = subscription
            }
            state.count += 1
            return subscription
        }
    }

    func remove(_ subscription: EventSubscription) {
        state.withLock { state in
            if let audience = subscription.audience {
                guard state.byAudience[audience]?.removeValue(forKey: subscription.id) != nil else { return }
                if state.byAudience[audience]?.isEmpty == true { state.byAudience[audience] = nil }
                if audience.hasPrefix("conversation:") { state.conversations -= 1 }
            } else {
                guard state.everyone.removeValue(forKey: subscription.id) != nil else { return }
            }
            state.count -= 1
        }
    }

    /// Called by the pipeline after each applied batch, in log order.
    func publish(_ events: [Event]) {
        guard !events.isEmpty else { return }
        var byAudience: [String: [Event]] = [:]
        for event in events {
            if let audience = event.audienceAgentId { byAudience[audience, default: []].append(event) }
        }
        if state.withLock({ $0.conversations }) > 0 {
            // Message and typing events also go to the sockets watching their conversation.
            for event in events where event.type == .messageCreated || event.type == .messageUpdated || event.type == .conversationTyping {
                if let conversationId = Self.conversationId(inEvent: event.data) {
                    byAudience[Self.conversationAudience(conversationId), default: []].append(event)
                }
            }
        }
        let (targets, everyone) = state.withLock { state in
            (
                byAudience.compactMap { audience, events in state.byAudience[audience].map { (Array($0.values), events) } },
                Array(state.everyone.values)
            )
        }
        for (subscriptions, events) in targets {
            for subscription in subscriptions { subscription.deliver(events) }
        }
        for subscription in everyone { subscription.deliver(events) }
    }
}

extension EventHub {
    /// The `conversationId` of a message or typing event's data (`{"message":{...,"conversationId":
    /// "cv_..."}}`, `{...,"conversationId":"cv_..."}`, rendered by apply), found without parsing
    /// the JSON.
    static func conversationId(inEvent data: String) -> String? {
        let marker = #""conversationId":""#
        guard let start = data.range(of: marker)?.upperBound, let end = data[start...].firstIndex(of: "\"") else { return nil }
        return String(data[start..<end])
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
    /// The agent whose events this takes; nil for every event.
    let audience: String?
    private weak let hub: EventHub?
    private let state = Mutex(State())

    init(id: Int, audience: String?, hub: EventHub) {
        self.id = id
        self.audience = audience
        self.hub = hub
    }

    /// `events` are this subscription's already (the hub looked its audience up).
    func deliver(_ accepted: [Event]) {
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
        hub?.remove(self)
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

    /// Waits for the next delivery. A cancelled consumer closes the subscription (and gets
    /// `.closed`): a waiting socket's task ends when its group is cancelled.
    public func next() async -> Delivery {
        await withTaskCancellationHandler {
            await waitForDelivery()
        } onCancel: {
            close()
        }
    }

    private func waitForDelivery() async -> Delivery {
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
