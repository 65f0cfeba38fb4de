import ContactCenter
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NodeRuntime

extension API {
    /// Events read from the store per catch-up query.
    static let catchUpPageEvents = 500
    /// Largest inbound WebSocket message (clients only send pings).
    static let inboundMessageBytesMax = 4096
    /// Cursor seq that sorts after every event of an entry: "everything at this index was seen".
    static let entryEndSeq = 999_999

    func addEventRoutes(to router: Router<APIRequestContext>, metrics: APIMetrics) {
        router.ws("/v1/events") { request, _ in
            try requireAgentOrAdmin(try await authenticate(request, allowQueryToken: true))
            _ = try parseSince(request)
            guard node.hub.subscriptionCount < EventHub.subscriptionsMax else {
                throw APIError(.serviceUnavailable, "too_many_sessions", "this node holds \(EventHub.subscriptionsMax) event sessions", retryAfter: 1)
            }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            let principal = try await authenticate(context.request, allowQueryToken: true)
            let since = try parseSince(context.request)
            let audience = principal.supervises ? nil : principal.agent?.id
            guard let subscription = node.hub.subscribe(accept: API.accepts(audience)) else {
                try await outbound.close(.unknown(1013), reason: "too many event sessions")
                return
            }
            defer { subscription.close() }
            // While the socket is open this node renews the agent's presence lease.
            if let agentId = principal.agent?.id { node.agentConnected(agentId) }
            defer { if let agentId = principal.agent?.id { node.agentDisconnected(agentId) } }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await message in inbound.messages(maxSize: API.inboundMessageBytesMax) {
                        if case .text(let text) = message, API.isPing(text) { subscription.requestPong() }
                    }
                    subscription.close()
                }
                group.addTask {
                    try await stream(subscription, since: since, audience: audience, outbound: outbound)
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Which live events a socket takes: an agent its own, a supervisor or the admin (`audience`
    /// nil) every one. The store catch-up applies the same rule in its query.
    static func accepts(_ audience: String?) -> @Sendable (Event) -> Bool {
        { event in audience == nil || event.audienceAgentId == audience }
    }

    func parseSince(_ request: Request) throws -> EventCursor? {
        guard let raw = request.uri.queryParameters.get("since") else { return nil }
        guard let cursor = EventCursor(raw) else { throw APIError.malformed("since must be a cursor such as 42-0", field: "since") }
        return cursor
    }

    static func isPing(_ text: String) -> Bool {
        struct Frame: Decodable { var type: String }
        return (try? JSONDecoder().decode(Frame.self, from: Data(text.utf8)))?.type == "ping"
    }

    /// Sends every event after `since` exactly once, in cursor order: first from the store,
    /// then live from the subscription (opened before the store read, so nothing falls between;
    /// events seen twice are skipped by cursor). An overflowed subscription catches up from the
    /// store again.
    func stream(
        _ subscription: EventSubscription, since: EventCursor?, audience: String?, outbound: WebSocketOutboundWriter
    ) async throws {
        if let since {
            // A cursor from a node that is ahead of this one: wait (bounded) until this node has
            // applied that far, so the stream continues instead of resetting.
            try? await node.waitApplied(since.index)
        }
        let (trimmedBefore, applied) = try await read { (try $0.eventsTrimmedBefore(), try $0.appliedIndex()) }
        var last: EventCursor
        if let since, since.index >= trimmedBefore, since.index <= applied {
            last = since
        } else {
            last = EventCursor(index: applied, seq: API.entryEndSeq)
            if since != nil {
                // The cursor is older than the kept window, or beyond anything this node could
                // apply in time: the client must re-read its state.
                try await outbound.write(.text("{\"cursor\":\"\(last)\",\"type\":\"reset\"}"))
            }
        }
        last = try await catchUp(after: last, audience: audience, outbound: outbound)
        while true {
            switch await subscription.next() {
            case .closed: return
            case .pong: try await outbound.write(.text("{\"type\":\"pong\"}"))
            case .overflowed: last = try await catchUp(after: last, audience: audience, outbound: outbound)
            case .events(let events):
                for event in events where event.cursor > last {
                    try await outbound.write(.text(event.frame))
                    last = event.cursor
                }
            }
        }
    }

    /// Sends what the store holds after `start`: an agent's own events (read through their
    /// index), or every event for a supervisor or the admin (`audience` nil).
    private func catchUp(after start: EventCursor, audience: String?, outbound: WebSocketOutboundWriter) async throws -> EventCursor {
        var last = start
        while true {
            let from = last
            let page = try await read { reader in
                if let audience { return try reader.events(after: from, forAgent: audience, limit: API.catchUpPageEvents) }
                return try reader.events(after: from, limit: API.catchUpPageEvents)
            }
            // The agent's own query already filtered; a supervisor takes everything.
            for event in page { try await outbound.write(.text(event.frame)) }
            if let final = page.last { last = final.cursor }
            if page.count < API.catchUpPageEvents { return last }
        }
    }
}
