import ContactCenter
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NodeRuntime
import ServiceLifecycle
import Storage

extension API {
    /// Events read from the store per catch-up query.
    static let catchUpPageEvents = 500
    /// Largest inbound WebSocket message (clients only send pings).
    static let inboundMessageBytesMax = 4096
    /// Cursor seq that sorts after every event of an entry: "everything at this index was seen".
    static let entryEndSeq = 999_999

    func addEventRoutes(to router: Router<APIRequestContext>, metrics: APIMetrics) {
        router.ws("/v1/events") { request, _ in
            let principal = try await authenticate(request, allowQueryToken: true)
            try requireAgentOrAdmin(principal)
            _ = try parseSince(request)
            guard node.hub.subscriptionCount < EventHub.subscriptionsMax else {
                throw APIError(.serviceUnavailable, "too_many_sessions", "this node holds \(EventHub.subscriptionsMax) event sessions", retryAfter: 1)
            }
            if let agentId = principal.agent?.id, node.presence.eventSockets(of: agentId) >= Presence.eventSocketsPerAgentMax {
                throw APIError(
                    .tooManyRequests, "too_many_sockets",
                    "this agent holds \(Presence.eventSocketsPerAgentMax) event sockets on this node (eventSocketsPerAgentMax); close one first",
                    retryAfter: 5)
            }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            let principal = try await authenticate(context.request, allowQueryToken: true)
            let since = try parseSince(context.request)
            let audience = principal.supervises ? nil : principal.agent?.id
            // While the socket is open this node renews the agent's presence lease.
            if let agentId = principal.agent?.id, !node.presence.agentConnected(agentId) {
                try await outbound.close(.unknown(1008), reason: "too many event sockets for this agent")
                return
            }
            defer { if let agentId = principal.agent?.id { node.presence.agentDisconnected(agentId) } }
            guard let subscription = node.hub.subscribe(audience: audience) else {
                try await outbound.close(.unknown(1013), reason: "too many event sessions")
                return
            }
            defer { subscription.close() }
            let end = try await withThrowingTaskGroup(of: SocketEnd?.self) { group in
                group.addTask {
                    for try await message in inbound.messages(maxSize: API.inboundMessageBytesMax) {
                        if case .text(let text) = message, API.isPing(text) { subscription.requestPong() }
                    }
                    subscription.close()
                    return nil
                }
                group.addTask {
                    try await stream(subscription, since: since, audience: audience, principal: principal, outbound: outbound).map(SocketEnd.sessionEnded)
                }
                group.addTask {
                    // The node is stopping: the socket closes at once instead of holding the
                    // API's drain (and the node's stop) until its client leaves.
                    try await gracefulShutdown()
                    return .nodeStopping
                }
                let first = try await group.next() ?? nil
                subscription.close()
                group.cancelAll()
                return first
            }
            switch end {
            case .sessionEnded(let reason):
                // The session ended (logout, password change, disabled, role change): 4401, as
                // an HTTP 401, with the reason; the client logs in again.
                try await outbound.close(.unknown(API.sessionEndedCloseCode), reason: reason)
            case .nodeStopping:
                // The WebSocket library closes the socket on graceful shutdown too, with 1000,
                // and its handler usually runs first; 1001 is what this node means. Either way
                // the client reconnects (through the balancer, to another node) and resumes
                // from its last cursor: only 4401 ends a session.
                try await outbound.close(.goingAway, reason: "this node is stopping; reconnect and resume from your last cursor")
            case nil:
                break
            }
        }
    }

    /// Why the node ends an events socket.
    enum SocketEnd: Sendable {
        case sessionEnded(String)
        case nodeStopping
    }

    /// The close code of an events socket whose session ended.
    static let sessionEndedCloseCode: UInt16 = 4401

    /// Why the socket's session no longer holds, after a `session.ended` event about its agent:
    /// the session is gone or expired, the agent disabled, or its role changed (the audience
    /// of the socket with it). Nil while it holds. Reads this node's state, which has applied
    /// the event, so an old `session.ended` met while catching up closes nothing.
    func sessionEndReason(_ principal: Principal, event: Event) async throws -> String? {
        guard event.type == .sessionEnded, case .agent(let agent, let tokenHash) = principal, event.audienceAgentId == agent.id else {
            return nil
        }
        sessions.evict(tokenHash: tokenHash)
        let now = node.now()
        let current = try await read { reader -> (Session?, Agent?) in
            (try reader.session(tokenHash: tokenHash), try reader.store.agent(id: agent.id))
        }
        guard let session = current.0, session.expiresAt > now else { return "session ended" }
        guard let fresh = current.1, !fresh.disabled else { return "agent disabled" }
        guard fresh.role == agent.role else { return "role changed; connect again" }
        return nil
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
    /// Returns the reason when the socket's session ends (see `sessionEndReason`), nil when the
    /// subscription closes.
    func stream(
        _ subscription: EventSubscription, since: EventCursor?, audience: String?, principal: Principal, outbound: WebSocketOutboundWriter
    ) async throws -> String? {
        // A cursor from a node ahead of this one (the leader that just died, usually) needs no
        // wait while this node's log holds its index: the entry that made the event is committed,
        // so the same entry will be applied here, and its events, cursors at or below `since`,
        // are skipped when they come live. Waiting for this node to apply that far was waiting
        // for the next leader's first commit: an election's length added to every reconnection
        // after a leader's death. Only a cursor beyond this node's log waits (bounded).
        let lastLogIndex = Int64(clamping: node.loop.status.lastIndex)
        if let since, since.index > lastLogIndex {
            try? await node.waitApplied(since.index)
        }
        // Where to start and the first page of the catch-up, in one read: a node's death sends
        // thousands of sockets here at once, and each read is a trip to a reader connection.
        let (start, reset, firstPage) = try await read { reader -> (EventCursor, Bool, [Event]) in
            let trimmedBefore = try reader.eventsTrimmedBefore()
            let applied = try reader.appliedIndex()
            guard let since, since.index >= trimmedBefore, since.index <= max(applied, lastLogIndex) else {
                // Without a cursor the stream starts at the present. A cursor older than the kept
                // window, or beyond anything this node could apply in time: the client must
                // re-read its state.
                return (EventCursor(index: applied, seq: API.entryEndSeq), since != nil, [])
            }
            return (since, false, try Self.catchUpPage(reader, after: since, audience: audience))
        }
        if reset { try await outbound.write(.text("{\"cursor\":\"\(start)\",\"type\":\"reset\"}")) }
        var ended: String?
        var last = try await catchUp(after: start, firstPage: firstPage, audience: audience, principal: principal, outbound: outbound, ended: &ended)
        while ended == nil {
            switch await subscription.next() {
            case .closed: return nil
            case .pong: try await outbound.write(.text("{\"type\":\"pong\"}"))
            case .overflowed: last = try await catchUp(after: last, audience: audience, principal: principal, outbound: outbound, ended: &ended)
            case .events(let events):
                for event in events where event.cursor > last {
                    try await outbound.write(.text(event.frame))
                    last = event.cursor
                    if ended == nil { ended = try await sessionEndReason(principal, event: event) }
                }
            }
        }
        return ended
    }

    /// One page of what the store holds after `cursor`: an agent's own events (read through
    /// their index), or every event for a supervisor or the admin (`audience` nil).
    static func catchUpPage(_ reader: StateReader, after cursor: EventCursor, audience: String?) throws -> [Event] {
        if let audience { return try reader.events(after: cursor, forAgent: audience, limit: API.catchUpPageEvents) }
        return try reader.events(after: cursor, limit: API.catchUpPageEvents)
    }

    /// Sends what the store holds after `start`, beginning with `firstPage` when it was read
    /// already (nil: read it here).
    private func catchUp(
        after start: EventCursor, firstPage: [Event]? = nil, audience: String?, principal: Principal, outbound: WebSocketOutboundWriter,
        ended: inout String?
    ) async throws -> EventCursor {
        var last = start
        var prefetched = firstPage
        while true {
            let from = last
            let page: [Event]
            if let prefetched {
                page = prefetched
            } else {
                page = try await read { reader in try Self.catchUpPage(reader, after: from, audience: audience) }
            }
            prefetched = nil
            // The agent's own query already filtered; a supervisor takes everything.
            for event in page {
                try await outbound.write(.text(event.frame))
                if ended == nil { ended = try await sessionEndReason(principal, event: event) }
            }
            if let final = page.last { last = final.cursor }
            if page.count < API.catchUpPageEvents { return last }
        }
    }
}
