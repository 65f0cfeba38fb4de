/// Inbound messages, keyword rules, replies, assignment, resolve and reopen.
extension ApplyContext {
    mutating func inboundMessage(
        channel: Channel, from: String, text: String, externalId: String, name: String?, newContactId: String,
        newConversationId: String, messageId: String, inboxId: String? = nil, attachments: String? = nil, references: [String] = []
    ) throws -> Outcome {
        switch actor {
        case .channel, .admin, .system: break
        case .agent: try requireAdmin()
        }
        var inbox: Inbox?
        if let inboxId {
            guard let found = try store.inbox(id: inboxId) else { throw DomainError.notFound("inbox", inboxId) }
            guard found.channel == channel else {
                throw DomainError(.invalid, "wrong_channel", "inbox '\(inboxId)' is a \(found.channel.rawValue) inbox, not \(channel.rawValue)")
            }
            inbox = found
        }
        if let existing = try store.externalMessage(channel: channel, externalId: externalId) {
            // A redelivered webhook: stored once.
            return .inbound(conversationId: existing.conversationId, messageId: existing.messageId, duplicate: true)
        }
        let contactId: String
        var contactIsNew = false
        if let known = try store.contactId(channel: channel.rawValue, identifier: from) {
            contactId = known
        } else {
            contactIsNew = true
            contactId = newContactId
            try store.insert(Contact(
                id: contactId, name: name ?? from, identifiers: [channel.rawValue: from], attributes: [:], version: 1,
                createdAt: at, updatedAt: at))
        }
        var conversation: Conversation
        let isNew: Bool
        // An answer to a message of an open conversation joins it (an e-mail's In-Reply-To and
        // References), whoever sends it; else the contact's open conversation on the channel.
        var open: Conversation?
        for reference in references.prefix(Limits.referencesMax) {
            if let known = try store.externalMessage(channel: channel, externalId: reference),
                let conversation = try store.conversation(id: known.conversationId), conversation.isOpen
            {
                open = conversation
                break
            }
        }
        // A contact created just now has no conversation yet.
        if open == nil, !contactIsNew { open = try store.openConversation(contactId: contactId, channel: channel) }
        if let full = open, full.messageCount + 2 > Limits.conversationMessagesMax {
            // The customer's message and a bot reply would not fit: the full conversation is
            // resolved and the message starts a new one (a customer's message is never refused).
            try resolve(conversationId: full.id, byBound: true)
            open = nil
        }
        if let open {
            conversation = open
            isNew = false
        } else {
            conversation = Conversation(
                id: newConversationId, contactId: contactId, channel: channel, status: .bot, queueId: nil, assigneeId: nil,
                priority: 0, enqueuedIndex: index, createdAt: at, firstResponseAt: nil, resolvedAt: nil, updatedAt: at, version: 1)
            // Inserted by the first `save`, once rules and routing have settled its state: one
            // write instead of an insert followed by updates.
            unsavedConversationId = conversation.id
            isNew = true
        }
        let message = Message(
            id: messageId, conversationId: conversation.id, author: .customer, agentId: nil, text: text, isPrivate: false,
            externalId: externalId, createdAt: at, logIndex: index, ordinal: nextMessagePosition(), attachments: attachments)
        try store.insert(message)
        conversation.messageCount += 1
        // Replies leave through the inbox the customer last wrote in; WhatsApp's window counts
        // from now.
        if let inbox { conversation.inboxId = inbox.id }
        conversation.customerAt = at
        try store.insertExternalMessage(channel: channel, externalId: externalId, conversationId: conversation.id, messageId: messageId)
        emit(.messageCreated, audience: conversation.assigneeId, .members(["message": Render.message(message)]))

        if conversation.status == .bot {
            try runRules(on: &conversation, text: text, isNew: isNew, replyIdBase: messageId, inbox: inbox)
        } else {
            // The body (and so the ETag) changed: it holds the new message.
            conversation.updatedAt = at
            conversation.version += 1
            try save(conversation)
        }
        return .inbound(conversationId: conversation.id, messageId: messageId, duplicate: false)
    }

    /// Keyword rules, first match in `order`: `reply` keeps the bot answering, `route` queues,
    /// `handoff` answers and queues. No match queues to the channel's default queue.
    /// `inbox`: the conversation's inbox, already read by the caller.
    private mutating func runRules(on conversation: inout Conversation, text: String, isNew: Bool, replyIdBase: String, inbox: Inbox?) throws {
        let rules = try store.rules()
        let textWords = rules.isEmpty ? [] : Keywords.words(text)
        let rule = rules.first { Keywords.matches(textWords: textWords, keywords: $0.keywords) }
        if let rule, rule.action != .route, let reply = rule.reply {
            var botMessage = Message(
                id: replyIdBase + "-bot", conversationId: conversation.id, author: .bot, agentId: nil, text: reply,
                isPrivate: false, externalId: nil, createdAt: at, logIndex: index, ordinal: nextMessagePosition())
            try queueForDelivery(&botMessage, in: conversation, template: nil)
            try store.insert(botMessage)
            conversation.messageCount += 1
            emit(.messageCreated, audience: nil, .members(["message": Render.message(botMessage)]))
        }
        if let rule, rule.action == .reply {
            conversation.updatedAt = at
            if !isNew { conversation.version += 1 }
            try save(conversation)
            emitConversationUpdated(conversation)
            return
        }
        let queue = try rule?.queueId.flatMap(store.queue(id:)) ?? inbox?.queueId.flatMap(store.queue(id:)) ?? defaultQueue(for: conversation.channel)
        try enqueue(&conversation, in: queue)
    }

    /// The queue that takes a channel's conversations when no rule says otherwise: a queue that
    /// lists the channel (highest priority, then oldest), else the oldest queue, else none.
    func defaultQueue(for channel: Channel) throws -> Queue? {
        let queues = try store.queues()
        let listing = queues.filter { $0.channels.contains(channel) }
        if let best = listing.max(by: { ($0.priority, -$0.createdIndex) < ($1.priority, -$1.createdIndex) }) { return best }
        return queues.first
    }

    mutating func postMessage(conversationId: String, messageId: String, text: String, isPrivate: Bool, template: String? = nil) throws -> Outcome {
        guard var conversation = try store.conversation(id: conversationId) else { throw DomainError.notFound("conversation", conversationId) }
        let agent = try actingAgent()
        if let agent, !agent.role.supervises, conversation.assigneeId != agent.id {
            throw DomainError(.forbidden, "not_assignee", "only the assignee or a supervisor may write in this conversation")
        }
        try refuseChannel("post agent messages")
        guard conversation.status != .resolved || isPrivate else {
            throw DomainError(.conflict, "conversation_resolved", "conversation '\(conversationId)' is resolved; reopen it to reply")
        }
        guard conversation.messageCount < Limits.conversationMessagesMax else {
            throw DomainError(
                .conflict, "conversation_full",
                "conversation '\(conversationId)' holds \(conversation.messageCount) messages, the bound (conversationMessagesMax); the customer's next message starts a new one")
        }
        try checkWindow(conversation, isPrivate: isPrivate, template: template)
        var message = Message(
            id: messageId, conversationId: conversationId, author: agent == nil ? .system : .agent, agentId: agent?.id, text: text,
            isPrivate: isPrivate, externalId: nil, createdAt: at, logIndex: index, ordinal: nextMessagePosition())
        try queueForDelivery(&message, in: conversation, template: template)
        try store.insert(message)
        conversation.messageCount += 1
        emit(.messageCreated, audience: conversation.assigneeId, .members(["message": Render.message(message)]))
        if !isPrivate, agent != nil, conversation.firstResponseAt == nil {
            conversation.firstResponseAt = at
        }
        // The body (and so the ETag) changed: it holds the new message.
        conversation.version += 1
        conversation.updatedAt = at
        try save(conversation)
        return .message(conversationId: conversationId, messageId: messageId)
    }

    mutating func assign(conversationId: String, agentId: String?, queueId: String?) throws -> Outcome {
        guard var conversation = try store.conversation(id: conversationId) else { throw DomainError.notFound("conversation", conversationId) }
        if let acting = try actingAgent(), !acting.role.supervises {
            // An agent may only take a waiting conversation for itself.
            guard agentId == acting.id, queueId == nil else {
                throw DomainError(.forbidden, "forbidden", "an agent may only take a waiting conversation for itself")
            }
            guard conversation.status == .queued || conversation.status == .bot else {
                throw DomainError(.conflict, "not_waiting", "conversation '\(conversationId)' is \(conversation.status.rawValue), not waiting")
            }
        } else {
            try requireSupervisor()
        }
        return try move(&conversation, toAgent: agentId, queue: queueId)
    }

    /// The assignee hands its conversation to a colleague (`agentId`) or back to a queue
    /// (`queueId`); a supervisor, an admin or the admin token may transfer any open one. Exactly
    /// one of the two is set (the route checks, apply again).
    mutating func transfer(conversationId: String, agentId: String?, queueId: String?) throws -> Outcome {
        guard var conversation = try store.conversation(id: conversationId) else { throw DomainError.notFound("conversation", conversationId) }
        try refuseChannel("transfer conversations")
        guard (agentId == nil) != (queueId == nil) else {
            throw DomainError(.invalid, "invalid_field", "a transfer names either an agent or a queue", field: agentId == nil ? "agent" : "queue")
        }
        if let acting = try actingAgent(), !acting.role.supervises,
           conversation.status != .assigned || conversation.assigneeId != acting.id {
            throw DomainError(.forbidden, "not_assignee", "only the assignee or a supervisor may transfer this conversation")
        }
        return try move(&conversation, toAgent: agentId, queue: queueId)
    }

    /// Gives `conversation` to `agentId`, or puts it in `queueId` (else its current queue).
    private mutating func move(_ conversation: inout Conversation, toAgent agentId: String?, queue queueId: String?) throws -> Outcome {
        let conversationId = conversation.id
        guard conversation.status != .resolved else {
            throw DomainError(.conflict, "conversation_resolved", "conversation '\(conversationId)' is resolved; reopen it first")
        }
        var queue: Queue?
        if let queueId {
            guard let found = try store.queue(id: queueId) else { throw DomainError.notFound("queue", queueId) }
            queue = found
        } else {
            queue = try conversation.queueId.flatMap(store.queue(id:))
        }
        if let agentId {
            guard var agent = try store.agent(id: agentId) else { throw DomainError.notFound("agent", agentId) }
            if conversation.assigneeId == agentId { return .conversation(id: conversationId) }
            guard agent.hasFreeCapacity else {
                throw DomainError(.conflict, "at_capacity", "agent '\(agentId)' has \(agent.openConversations) of \(agent.capacity) conversations open")
            }
            let previous = conversation.assigneeId
            if let previous { try release(agentId: previous) }
            conversation.queueId = queue?.id ?? conversation.queueId
            try give(&conversation, to: &agent)
            if let previous { try fill(agentId: previous) }
        } else {
            let previous = conversation.assigneeId
            if let previous { try release(agentId: previous) }
            conversation.assigneeId = nil
            try enqueue(&conversation, in: queue)
            if let previous { try fill(agentId: previous) }
        }
        return .conversation(id: conversationId)
    }

    /// `byBound`: apply resolves a conversation that reached `Limits.conversationMessagesMax`,
    /// whoever delivered the message that did not fit.
    mutating func resolve(conversationId: String, byBound: Bool = false) throws -> Outcome {
        guard var conversation = try store.conversation(id: conversationId) else { throw DomainError.notFound("conversation", conversationId) }
        if !byBound {
            if let acting = try actingAgent(), !acting.role.supervises, conversation.assigneeId != acting.id {
                throw DomainError(.forbidden, "not_assignee", "only the assignee or a supervisor may resolve this conversation")
            }
            try refuseChannel("resolve conversations")
        }
        guard conversation.status != .resolved else {
            throw DomainError(.conflict, "already_resolved", "conversation '\(conversationId)' is already resolved")
        }
        let wasAssigned = conversation.status == .assigned ? conversation.assigneeId : nil
        conversation.status = .resolved
        conversation.resolvedAt = at
        conversation.updatedAt = at
        conversation.version += 1
        try save(conversation)
        emitConversationUpdated(conversation)
        if let wasAssigned {
            try release(agentId: wasAssigned)
            try fill(agentId: wasAssigned)
        }
        return .conversation(id: conversationId)
    }

    mutating func reopen(conversationId: String) throws -> Outcome {
        guard var conversation = try store.conversation(id: conversationId) else { throw DomainError.notFound("conversation", conversationId) }
        if let acting = try actingAgent(), !acting.role.supervises, conversation.assigneeId != acting.id {
            throw DomainError(.forbidden, "not_assignee", "only the last assignee or a supervisor may reopen this conversation")
        }
        try refuseChannel("reopen conversations")
        guard conversation.status == .resolved else {
            throw DomainError(.conflict, "not_resolved", "conversation '\(conversationId)' is \(conversation.status.rawValue), not resolved")
        }
        if let other = try store.openConversation(contactId: conversation.contactId, channel: conversation.channel) {
            throw DomainError(.conflict, "contact_has_open_conversation", "the contact already has open conversation '\(other.id)' on \(conversation.channel.rawValue)")
        }
        conversation.assigneeId = nil
        conversation.resolvedAt = nil
        try enqueue(&conversation, in: try conversation.queueId.flatMap(store.queue(id:)))
        return .conversation(id: conversationId)
    }
}
