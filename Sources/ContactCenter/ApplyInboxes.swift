/// Inboxes, the outbox of replies that leave through a provider, and their delivery.
extension ApplyContext {
    mutating func createInbox(
        id: String, name: String, channel: Channel, queueId: String?, settings: [String: String], tokenHash: String?
    ) throws -> Outcome {
        try requireAdmin()
        let count = try store.inboxCount()
        guard count < Limits.inboxesMax else {
            throw Limits.exceeded("the number of inboxes", value: count + 1, bound: Limits.inboxesMax, name: "inboxesMax")
        }
        guard try store.inbox(name: name) == nil else {
            throw DomainError(.conflict, "inbox_name_taken", "an inbox named '\(name)' exists", field: "name")
        }
        if let queueId, try store.queue(id: queueId) == nil { throw DomainError.notFound("queue", queueId) }
        try Self.checkSettings(settings, channel: channel)
        try store.put(Inbox(
            id: id, name: name, channel: channel, queueId: queueId, settings: settings, tokenHash: tokenHash, version: 1, createdAt: at,
            updatedAt: at))
        return .inbox(id: id)
    }

    mutating func updateInbox(id: String, name: String?, queueId: String?, settings: [String: String?], expectedVersion: Int64?) throws -> Outcome {
        try requireAdmin()
        guard var inbox = try store.inbox(id: id) else { throw DomainError.notFound("inbox", id) }
        if let expectedVersion, expectedVersion != inbox.version {
            throw DomainError(.preconditionFailed, "version_mismatch", "inbox is at version \(inbox.version), not \(expectedVersion)")
        }
        if let name, name != inbox.name {
            guard try store.inbox(name: name) == nil else {
                throw DomainError(.conflict, "inbox_name_taken", "an inbox named '\(name)' exists", field: "name")
            }
            inbox.name = name
        }
        if let queueId {
            if queueId.isEmpty {
                inbox.queueId = nil
            } else {
                guard try store.queue(id: queueId) != nil else { throw DomainError.notFound("queue", queueId) }
                inbox.queueId = queueId
            }
        }
        for (key, value) in settings.sorted(by: { $0.key < $1.key }) { inbox.settings[key] = value }
        try Self.checkSettings(inbox.settings, channel: inbox.channel)
        inbox.version += 1
        inbox.updatedAt = at
        try store.put(inbox)
        return .inbox(id: id)
    }

    mutating func deleteInbox(id: String) throws -> Outcome {
        try requireAdmin()
        guard try store.inbox(id: id) != nil else { throw DomainError.notFound("inbox", id) }
        // Its conversations keep their history; replies still waiting to leave fail at the
        // dispatcher (`inbox_deleted`).
        try store.deleteInbox(id: id)
        return .done
    }

    /// Only the channel's keys, each required one present, each value within the bound.
    static func checkSettings(_ settings: [String: String], channel: Channel) throws {
        let keys = InboxSettings.keys(channel)
        let field = InboxSettings.member(channel) ?? "settings"
        for (key, value) in settings.sorted(by: { $0.key < $1.key }) {
            guard keys.contains(where: { $0.name == key }) else {
                throw DomainError(.invalid, "invalid_setting", "a \(channel.rawValue) inbox has no setting '\(key)'", field: "\(field).\(key)")
            }
            guard value.utf8.count <= Limits.attributeValueBytesMax else {
                throw Limits.exceeded("the bytes of setting '\(key)'", value: value.utf8.count, bound: Limits.attributeValueBytesMax, name: "attributeValueBytesMax", field: "\(field).\(key)")
            }
        }
        for key in keys where key.required && (settings[key.name] ?? "").isEmpty {
            throw DomainError(.invalid, "missing_setting", "a \(channel.rawValue) inbox needs '\(key.name)'", field: "\(field).\(key.name)")
        }
    }

    // MARK: The outbox

    /// A public reply in a conversation whose inbox sends replies leaves through it: the
    /// message is `queued` and an outbox entry is written in this same apply.
    mutating func queueForDelivery(_ message: inout Message, in conversation: Conversation, template: String?) throws {
        guard !message.isPrivate, message.author != .customer, let inboxId = conversation.inboxId, let inbox = try store.inbox(id: inboxId) else { return }
        if inbox.channel == .webchat {
            // The visitor's socket carries it as it applies; the widget's receipts move it on.
            message.delivery = Delivery(status: .sent)
            return
        }
        guard inbox.sendsReplies,
            let recipient = try store.contact(id: conversation.contactId)?.identifiers[inbox.channel.rawValue]
        else { return }
        message.delivery = Delivery(status: .queued)
        if let emailId = inbox.emailMessageId(of: message.id) {
            try store.insertExternalMessage(channel: .email, externalId: emailId, conversationId: conversation.id, messageId: message.id)
        }
        try store.put(OutboxEntry(
            messageId: message.id, inboxId: inboxId, conversationId: conversation.id, recipient: recipient, text: message.text,
            template: template, attempts: 0, inFlight: false, notBefore: at, done: false, providerId: nil, createdIndex: index))
    }

    /// WhatsApp lets a business write free text only within 24 hours of the customer's last
    /// message; after that only a template opens the conversation again.
    func checkWindow(_ conversation: Conversation, isPrivate: Bool, template: String?) throws {
        guard !isPrivate, template == nil, let inboxId = conversation.inboxId, let inbox = try store.inbox(id: inboxId),
            inbox.channel == .whatsapp, let customerAt = conversation.customerAt
        else { return }
        let elapsed = at.milliseconds - customerAt.milliseconds
        guard elapsed <= Limits.whatsAppWindowMilliseconds else {
            throw DomainError(
                .conflict, "window_closed",
                "the customer last wrote \(elapsed / 3_600_000) h ago, past WhatsApp's 24-hour window: send a template message instead",
                field: "text")
        }
    }

    mutating func outboxAttempt(messageId: String, attempt: Int) throws -> Outcome {
        guard actor == .system else { throw DomainError(.forbidden, "forbidden", "only the leader's dispatcher sends replies") }
        guard var entry = try store.outboxEntry(messageId: messageId), !entry.done else {
            throw DomainError(.conflict, "not_pending", "reply '\(messageId)' is not waiting to be sent")
        }
        guard attempt == entry.attempts + 1 else {
            throw DomainError(.conflict, "stale_attempt", "reply '\(messageId)' has had \(entry.attempts) attempts, not \(attempt - 1)")
        }
        if entry.inFlight, var message = try store.message(id: messageId) {
            // The attempt before this one started and its result never committed (its leader
            // died): the provider may have taken it, and this attempt may deliver it again.
            var delivery = message.delivery ?? Delivery(status: .queued)
            if !delivery.possibleDuplicate {
                delivery.possibleDuplicate = true
                try save(delivery, of: &message)
            }
        }
        entry.attempts = attempt
        entry.inFlight = true
        try store.put(entry)
        return .done
    }

    mutating func outboxResult(messageId: String, attempt: Int, result: OutboxResult) throws -> Outcome {
        guard actor == .system else { throw DomainError(.forbidden, "forbidden", "only the leader's dispatcher sends replies") }
        guard var entry = try store.outboxEntry(messageId: messageId), !entry.done, entry.attempts == attempt, entry.inFlight else {
            throw DomainError(.conflict, "stale_attempt", "attempt \(attempt) of reply '\(messageId)' is not the one under way")
        }
        guard var message = try store.message(id: messageId) else { throw DomainError.notFound("message", messageId) }
        var delivery = message.delivery ?? Delivery(status: .queued)
        entry.inFlight = false
        switch result {
        case .sent(let providerId):
            entry.done = true
            entry.providerId = providerId
            // Delivery never moves backwards.
            if delivery.status.rank < DeliveryStatus.sent.rank { delivery.status = .sent }
            delivery.reason = nil
        case .retry(let reason, let notBefore):
            entry.notBefore = notBefore
            delivery.reason = reason
        case .unknown(let reason, let notBefore):
            // The provider may have taken this attempt: the next one may deliver it again.
            entry.notBefore = notBefore
            delivery.reason = reason
            delivery.possibleDuplicate = true
        case .failed(let reason):
            entry.done = true
            delivery.status = .failed
            delivery.reason = reason
        }
        try store.put(entry)
        if delivery != message.delivery { try save(delivery, of: &message) }
        return .done
    }

    mutating func deliveryStatus(inboxId: String, providerId: String, status: DeliveryStatus, reason: String?) throws -> Outcome {
        switch actor {
        case .channel, .admin, .system: break
        case .agent: try requireAdmin()
        }
        // A status about a message Switchboard did not send (written on the business's phone)
        // or whose result has not committed yet is dropped; the provider sends the next one.
        guard let messageId = try store.outboxMessageId(inboxId: inboxId, providerId: providerId),
            var message = try store.message(id: messageId)
        else { return .done }
        var delivery = message.delivery ?? Delivery(status: .sent)
        guard delivery.advance(to: status, failure: reason ?? "the provider reported a failure") else { return .done }
        try save(delivery, of: &message)
        return .done
    }

    mutating func typing(conversationId: String) throws -> Outcome {
        guard let conversation = try store.conversation(id: conversationId) else { throw DomainError.notFound("conversation", conversationId) }
        guard let agent = try actingAgent() else { throw DomainError(.forbidden, "forbidden", "only an agent types in a conversation") }
        if !agent.role.supervises, conversation.assigneeId != agent.id {
            throw DomainError(.forbidden, "not_assignee", "only the assignee or a supervisor may write in this conversation")
        }
        guard conversation.status != .resolved else {
            throw DomainError(.conflict, "conversation_resolved", "conversation '\(conversationId)' is resolved; reopen it to reply")
        }
        emit(
            .conversationTyping, audience: conversation.assigneeId,
            .members(["agent": .string(agent.id), "agentName": .string(agent.name), "conversationId": .string(conversationId)]))
        return .done
    }

    /// A visitor's widget received or showed a reply: its delivery moves forward (a failed one
    /// stays failed), and the assignee hears of it.
    mutating func webChatReceipt(conversationId: String, messageId: String, status: DeliveryStatus) throws -> Outcome {
        switch actor {
        case .channel, .admin, .system: break
        case .agent: throw DomainError(.forbidden, "forbidden", "receipts come from the visitor's widget")
        }
        guard status == .delivered || status == .read else {
            throw DomainError(.invalid, "invalid_status", "a receipt says delivered or read, not \(status.rawValue)", field: "status")
        }
        guard var message = try store.message(id: messageId), message.conversationId == conversationId else {
            throw DomainError.notFound("message", messageId)
        }
        guard message.author != .customer, !message.isPrivate else {
            throw DomainError(.conflict, "not_a_reply", "message '\(messageId)' is not a reply to the visitor", field: "messageId")
        }
        var delivery = message.delivery ?? Delivery(status: .sent)
        guard delivery.advance(to: status) else { return .done }
        try save(delivery, of: &message)
        return .done
    }

    /// Writes the message's new delivery and tells the assignee (`message.updated`).
    mutating func save(_ delivery: Delivery, of message: inout Message) throws {
        message.delivery = delivery
        try store.updateDelivery(of: message)
        try emitMessageUpdated(message)
    }

    mutating func emitMessageUpdated(_ message: Message) throws {
        let audience = try store.conversation(id: message.conversationId)?.assigneeId
        emit(.messageUpdated, audience: audience, .members(["message": Render.message(message)]))
    }
}
