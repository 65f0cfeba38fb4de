/// Applies commands to a `StateStore`: validation against state, routing, keyword rules,
/// capacity, idempotency, events.
///
/// Determinism: apply reads only the envelope, the log index and the store. It never reads a
/// clock, a random source, the network or node-local state, so every node that applies the
/// same log ends with the same rows.
public enum ContactCenterMachine {
    /// The effect of one applied log entry.
    public struct Applied: Sendable {
        public var outcome: Outcome
        /// Events produced, in cursor order; empty when the command was rejected or repeated.
        public var events: [Event]
        /// The command repeated an idempotency key: `outcome` is the first request's, and
        /// nothing happened this time.
        public var replayed: Bool

        public init(outcome: Outcome, events: [Event], replayed: Bool = false) {
            self.outcome = outcome
            self.events = events
            self.replayed = replayed
        }
    }

    /// Applies `envelope` committed at log `index`. A command that breaks a domain rule is
    /// rejected with no effect (its writes are rolled back); store failures are rethrown and are
    /// fatal for the caller, which must not advance `applied_index` past this entry.
    public static func apply(_ envelope: CommandEnvelope, index: Int64, store: some StateStore) throws -> Applied {
        precondition(index > 0, "log indexes start at 1, got \(index)")
        guard let idempotency = envelope.idempotency else { return try run(envelope, index: index, store: store) }
        // A key is the actor's, on one route (Stripe's scoping); entries from before scoping
        // have an empty route and keep their old scope.
        let scope = idempotency.route.isEmpty ? envelope.actor.description : "\(envelope.actor) \(idempotency.route)"
        if let record = try store.idempotencyRecord(scope: scope, key: idempotency.key),
            record.at.milliseconds > envelope.at.milliseconds - Limits.idempotencyKeyLifetimeMilliseconds
        {
            guard record.requestHash == idempotency.requestHash else {
                return Applied(
                    outcome: .rejected(DomainError(
                        .invalid, "idempotency_key_reused",
                        "Idempotency-Key '\(idempotency.key)' was used with a different request body; use a new key for a new request",
                        field: "Idempotency-Key")),
                    events: [])
            }
            // A retry: the first answer stands, nothing happens a second time. A record that
            // does not decode is corruption: apply fails (the node stops applying), it does not trap.
            let outcome: Outcome
            do {
                outcome = try Outcome.decode(record.outcome)
            } catch {
                throw CorruptIdempotencyRecord(scope: scope, key: idempotency.key, index: index, reason: error.description)
            }
            return Applied(outcome: outcome, events: [], replayed: true)
        }
        let applied = try run(envelope, index: index, store: store)
        var recorded = applied.outcome
        if !idempotency.route.isEmpty {
            // The first request is answered with what a retry will get: the recorded answer.
            do {
                if let answer = try Answer.render(envelope.command, applied.outcome, store: store) { recorded = .answered(answer) }
            } catch let error as DomainError {
                recorded = .rejected(error)
            }
        }
        try store.save(
            IdempotencyRecord(outcome: recorded.encoded(), requestHash: idempotency.requestHash, at: envelope.at),
            scope: scope, key: idempotency.key, index: index)
        return Applied(outcome: recorded, events: applied.events)
    }

    private static func run(_ envelope: CommandEnvelope, index: Int64, store: some StateStore) throws -> Applied {
        do {
            return try store.atomically {
                var context = ApplyContext(store: store, index: index, at: envelope.at, actor: envelope.actor)
                let outcome = try context.run(envelope.command)
                precondition(context.unsavedConversationId == nil, "command \(index) created a conversation it never saved")
                for event in context.events { try store.insert(event) }
                return Applied(outcome: outcome, events: context.events)
            }
        } catch let error as DomainError {
            return Applied(outcome: .rejected(error), events: [])
        }
    }
}

/// An idempotency record this code wrote that no longer decodes.
public struct CorruptIdempotencyRecord: Error, CustomStringConvertible {
    public var scope: String
    public var key: String
    public var index: Int64
    public var reason: String
    public var description: String { "corrupt idempotency record for \(scope)/\(key) at log index \(index): \(reason)" }
}

/// One command's apply: the store, where in the log we are, and the events produced so far.
struct ApplyContext<Store: StateStore> {
    let store: Store
    let index: Int64
    let at: Timestamp
    let actor: Actor
    var events: [Event] = []
    private var messageOrdinal = 0
    /// A conversation this command created and has not written yet (see `save`).
    var unsavedConversationId: String?

    init(store: Store, index: Int64, at: Timestamp, actor: Actor) {
        self.store = store
        self.index = index
        self.at = at
        self.actor = actor
    }

    // MARK: Actor checks

    /// The acting agent (re-read from state), or nil for admin/system actors.
    func actingAgent() throws -> Agent? {
        guard case .agent(let id) = actor else { return nil }
        guard let agent = try store.agent(id: id) else {
            throw DomainError(.forbidden, "unknown_agent", "the acting agent '\(id)' no longer exists")
        }
        return agent
    }

    /// Admin token, system, or an agent whose role supervises.
    func requireSupervisor() throws {
        switch actor {
        case .admin, .system: return
        case .channel: throw DomainError(.forbidden, "forbidden", "a channel token cannot do this")
        case .agent:
            guard try actingAgent()?.role.supervises == true else {
                throw DomainError(.forbidden, "forbidden", "this needs a supervisor or admin")
            }
        }
    }

    /// Channel tokens may only deliver customer messages.
    func refuseChannel(_ action: String) throws {
        if actor == .channel { throw DomainError(.forbidden, "forbidden", "a channel token cannot \(action)") }
    }

    func requireAdmin() throws {
        switch actor {
        case .admin, .system: return
        case .channel: throw DomainError(.forbidden, "forbidden", "a channel token cannot do this")
        case .agent:
            guard try actingAgent()?.role == .admin else { throw DomainError(.forbidden, "forbidden", "this needs an admin") }
        }
    }

    // MARK: Events

    mutating func emit(_ type: EventType, audience: String?, _ data: JSONValue) {
        events.append(Event(cursor: EventCursor(index: index, seq: events.count), type: type, at: at, audienceAgentId: audience, data: data.serialized))
    }

    mutating func emitAgentUpdated(_ agent: Agent) {
        emit(.agentUpdated, audience: agent.id, .members(["agent": Render.agent(agent)]))
    }

    mutating func emitConversationUpdated(_ conversation: Conversation) {
        emit(.conversationUpdated, audience: conversation.assigneeId, .members(["conversation": Render.conversation(conversation)]))
    }

    mutating func nextMessagePosition() -> Int {
        defer { messageOrdinal += 1 }
        return messageOrdinal
    }

    // MARK: Dispatch

    mutating func run(_ command: Command) throws -> Outcome {
        switch command {
        case .createAgent(let id, let name, let email, let passwordHash, let role, let skills, let capacity):
            return try createAgent(id: id, name: name, email: email, passwordHash: passwordHash, role: role, skills: skills, capacity: capacity)
        case .updateAgent(let id, let name, let role, let skills, let capacity, let expectedVersion, let passwordHash, let disabled):
            return try updateAgent(
                id: id, name: name, role: role, skills: skills, capacity: capacity, expectedVersion: expectedVersion,
                passwordHash: passwordHash, disabled: disabled)
        case .setPresence(let agentId, let status):
            return try setPresence(agentId: agentId, status: status)
        case .createSession(let tokenHash, let agentId, let expiresAt):
            return try createSession(tokenHash: tokenHash, agentId: agentId, expiresAt: expiresAt)
        case .deleteSession(let tokenHash):
            return try deleteSession(tokenHash: tokenHash)
        case .createQueue(let id, let name, let skills, let priority, let channels):
            try requireAdmin()
            try Limits.check(priority, in: Limits.priorityRange, "priority", name: "priorityRange", field: "priority")
            let queues = try store.queues().count
            guard queues < Limits.queuesMax else {
                throw Limits.exceeded("the number of queues", value: queues + 1, bound: Limits.queuesMax, name: "queuesMax")
            }
            guard try store.queue(name: name) == nil else {
                throw DomainError(.conflict, "queue_name_taken", "a queue named '\(name)' exists", field: "name")
            }
            try store.insert(Queue(id: id, name: name, skills: skills, priority: priority, channels: channels, createdIndex: index, createdAt: at))
            return .queue(id: id)
        case .createRule(let id, let name, let keywords, let action, let reply, let queueId, let order):
            return try createRule(id: id, name: name, keywords: keywords, action: action, reply: reply, queueId: queueId, order: order)
        case .createContact(let id, let name, let identifiers, let attributes):
            return try createContact(id: id, name: name, identifiers: identifiers, attributes: attributes)
        case .updateContact(let id, let name, let attributes, let expectedVersion):
            return try updateContact(id: id, name: name, attributes: attributes, expectedVersion: expectedVersion)
        case .inboundMessage(let channel, let from, let text, let externalId, let name, let contactId, let conversationId, let messageId,
                             let inboxId, let attachments, let references):
            return try inboundMessage(
                channel: channel, from: from, text: text, externalId: externalId, name: name, newContactId: contactId,
                newConversationId: conversationId, messageId: messageId, inboxId: inboxId, attachments: attachments,
                references: references)
        case .postMessage(let conversationId, let messageId, let text, let isPrivate, let template):
            return try postMessage(conversationId: conversationId, messageId: messageId, text: text, isPrivate: isPrivate, template: template)
        case .createInbox(let id, let name, let channel, let queueId, let settings, let tokenHash):
            return try createInbox(id: id, name: name, channel: channel, queueId: queueId, settings: settings, tokenHash: tokenHash)
        case .updateInbox(let id, let name, let queueId, let settings, let expectedVersion):
            return try updateInbox(id: id, name: name, queueId: queueId, settings: settings, expectedVersion: expectedVersion)
        case .deleteInbox(let id):
            return try deleteInbox(id: id)
        case .outboxAttempt(let messageId, let attempt):
            return try outboxAttempt(messageId: messageId, attempt: attempt)
        case .outboxResult(let messageId, let attempt, let result):
            return try outboxResult(messageId: messageId, attempt: attempt, result: result)
        case .deliveryStatus(let inboxId, let providerId, let status, let reason):
            return try deliveryStatus(inboxId: inboxId, providerId: providerId, status: status, reason: reason)
        case .typing(let conversationId):
            return try typing(conversationId: conversationId)
        case .webChatReceipt(let conversationId, let messageId, let status):
            return try webChatReceipt(conversationId: conversationId, messageId: messageId, status: status)
        case .assign(let conversationId, let agentId, let queueId):
            return try assign(conversationId: conversationId, agentId: agentId, queueId: queueId)
        case .transfer(let conversationId, let agentId, let queueId):
            return try transfer(conversationId: conversationId, agentId: agentId, queueId: queueId)
        case .resolve(let conversationId):
            return try resolve(conversationId: conversationId)
        case .reopen(let conversationId):
            return try reopen(conversationId: conversationId)
        case .trimEvents(let beforeIndex):
            guard actor == .system || actor == .admin else { throw DomainError(.forbidden, "forbidden", "only the node trims events") }
            try store.trimEvents(before: beforeIndex)
            return .done
        case .renewLeases(let agentIds, let until):
            guard actor == .system else { throw DomainError(.forbidden, "forbidden", "only nodes renew presence leases") }
            for agentId in agentIds where try store.agent(id: agentId) != nil { try store.renewLease(agentId: agentId, until: until) }
            return .done
        case .expireLeases(let agentIds):
            guard actor == .system else { throw DomainError(.forbidden, "forbidden", "only the leader expires presence leases") }
            for agentId in agentIds.sorted() { try expireLease(agentId: agentId) }
            return .done
        case .expire(let warnThrough):
            guard actor == .system else { throw DomainError(.forbidden, "forbidden", "only the leader expires sessions") }
            return try expire(warnSessionsThrough: warnThrough)
        case .upgradePasswordHash(let agentId, let from, let to):
            guard actor == .agent(id: agentId) || actor == .system else {
                throw DomainError(.forbidden, "forbidden", "only the agent's own login upgrades its password hash")
            }
            return try upgradePasswordHash(agentId: agentId, from: from, to: to)
        case .setMember(let member):
            guard actor == .system || actor == .admin else { throw DomainError(.forbidden, "forbidden", "only nodes register members") }
            try store.put(member)
            return .done
        }
    }
}
