import Wire

/// An HTTP answer as apply records it for an idempotency key: the status, the JSON body and the
/// entity version sent as `ETag`. A retry of the same request, on any node, gets these bytes.
public struct RecordedAnswer: Sendable, Equatable {
    public var status: Int
    /// JSON text; empty for a 204.
    public var body: String
    public var etag: Int64?

    public init(status: Int, body: String, etag: Int64? = nil) {
        self.status = status
        self.body = body
        self.etag = etag
    }
}

/// What a request carrying an `Idempotency-Key` brings to the log (Stripe's rules): the key,
/// the request it belongs to (method and path: with the actor, the key's scope) and a hash of
/// the request's body. The same key on the same route with another body is refused.
public struct Idempotency: Sendable, Equatable {
    public var key: String
    /// `"<METHOD> <path>"`, e.g. `"POST /v1/conversations/cv_1/resolve"`; empty in entries
    /// written before keys were scoped to the request.
    public var route: String
    /// SHA-256 of the request body (32 bytes), or empty in those older entries.
    public var requestHash: [UInt8]

    public init(key: String, route: String = "", requestHash: [UInt8] = []) {
        self.key = key
        self.route = route
        self.requestHash = requestHash
    }
}

/// A stored idempotency record: the answer recorded for the first request (an `Outcome`, which
/// is `.answered` for keyed requests since scoping), the request's hash, and its command time.
public struct IdempotencyRecord: Sendable, Equatable {
    public var outcome: [UInt8]
    public var requestHash: [UInt8]
    public var at: Timestamp

    public init(outcome: [UInt8], requestHash: [UInt8], at: Timestamp) {
        self.outcome = outcome
        self.requestHash = requestHash
        self.at = at
    }
}

/// The HTTP answer to a command, rendered from its outcome and the state just after it: one
/// rendering for the handler's answer and for the answer apply records under an idempotency
/// key, so a replay is byte for byte the first answer.
public enum Answer {
    /// The answer, or nil for commands no client request makes (timers, membership, logins).
    public static func render(_ command: Command, _ outcome: Outcome, store: some StateStore) throws -> RecordedAnswer? {
        switch outcome {
        case .answered(let answer):
            return answer
        case .rejected(let error):
            return RecordedAnswer(status: error.kind.httpStatus, body: rejection(error).serialized)
        case .session:
            return nil
        case .inbound(let conversationId, let messageId, let duplicate):
            let body: JSONValue = .members([
                "conversationId": .string(conversationId), "duplicate": .bool(duplicate), "messageId": .string(messageId),
            ])
            return RecordedAnswer(status: 202, body: body.serialized)
        case .agent(let id):
            guard let agent = try store.agent(id: id) else { throw missing("agent", id) }
            let status = if case .createAgent = command { 201 } else { 200 }
            return RecordedAnswer(status: status, body: Render.agent(agent).serialized, etag: agent.version)
        case .queue(let id):
            guard let queue = try store.queue(id: id) else { throw missing("queue", id) }
            return RecordedAnswer(status: 201, body: Render.queue(queue).serialized)
        case .rule(let id):
            guard let rule = try store.rules().first(where: { $0.id == id }) else { throw missing("rule", id) }
            return RecordedAnswer(status: 201, body: Render.rule(rule).serialized)
        case .contact(let id):
            guard let contact = try store.contact(id: id) else { throw missing("contact", id) }
            let status = if case .createContact = command { 201 } else { 200 }
            return RecordedAnswer(status: status, body: Render.contact(contact).serialized, etag: contact.version)
        case .message(_, let messageId):
            guard let message = try store.message(id: messageId) else { throw missing("message", messageId) }
            return RecordedAnswer(status: 201, body: Render.message(message).serialized)
        case .conversation(let id):
            guard let conversation = try store.conversation(id: id) else { throw missing("conversation", id) }
            return RecordedAnswer(status: 200, body: Render.conversation(conversation).serialized, etag: conversation.version)
        case .inbox(let id):
            guard let inbox = try store.inbox(id: id) else { throw missing("inbox", id) }
            let status = if case .createInbox = command { 201 } else { 200 }
            return RecordedAnswer(status: status, body: Render.inbox(inbox).serialized, etag: inbox.version)
        case .done:
            if case .deleteSession = command { return RecordedAnswer(status: 204, body: "") }
            if case .deleteInbox = command { return RecordedAnswer(status: 204, body: "") }
            return nil
        }
    }

    /// API.md's error shape: `{"error": {"code", "message", "field"?}}`.
    public static func rejection(_ error: DomainError) -> JSONValue {
        var members: [JSONValue.Member] = [.init("code", .string(error.code))]
        if let field = error.field { members.append(.init("field", .string(field))) }
        members.append(.init("message", .string(error.message)))
        return .members([.init("error", .members(members))])
    }

    /// An outcome names an entity its own command wrote: not finding it is a broken invariant,
    /// reported as an error (the read or apply fails), never a trap.
    private static func missing(_ what: String, _ id: String) -> DomainError {
        DomainError(.notFound, "\(what)_not_found", "no \(what) with id '\(id)'")
    }
}

extension DomainError.Kind {
    /// The HTTP status a rejection of this kind is answered with.
    public var httpStatus: Int {
        switch self {
        case .invalid: 422
        case .notFound: 404
        case .conflict: 409
        case .preconditionFailed: 412
        case .forbidden: 403
        }
    }
}
