/// The JSON shapes of API.md, shared by HTTP responses and event payloads so the two never drift.
public enum Render {
    // Agents, conversations and messages are rendered for events on every member as commands
    // apply: their keys are listed in ascending order (`JSONValue.members`), not sorted each time.

    public static func agent(_ agent: Agent) -> JSONValue {
        .members([
            "capacity": .int(agent.capacity), "createdAt": .timestamp(agent.createdAt), "disabled": .bool(agent.disabled),
            "email": .string(agent.email),
            "id": .string(agent.id), "name": .string(agent.name), "openConversations": .int(agent.openConversations),
            "role": .string(agent.role.rawValue), "skills": .strings(agent.skills), "status": .string(agent.status.rawValue),
            "version": .int(agent.version),
        ])
    }

    public static func queue(_ queue: Queue, waiting: Int? = nil, oldestWaitingSince: Timestamp? = nil) -> JSONValue {
        var members: [String: JSONValue] = [
            "id": .string(queue.id), "name": .string(queue.name), "skills": .strings(queue.skills),
            "priority": .int(queue.priority), "channels": .strings(queue.channels.map(\.rawValue)),
            "createdAt": .timestamp(queue.createdAt),
        ]
        if let waiting {
            members["waiting"] = .int(waiting)
            members["oldestWaitingSince"] = .timestamp(oldestWaitingSince)
        }
        return .object(members)
    }

    public static func rule(_ rule: Rule) -> JSONValue {
        .object([
            "id": .string(rule.id), "name": .string(rule.name), "keywords": .strings(rule.keywords),
            "action": .string(rule.action.rawValue), "reply": .optional(rule.reply), "queue": .optional(rule.queueId),
            "order": .int(rule.order), "createdAt": .timestamp(rule.createdAt),
        ])
    }

    public static func contact(_ contact: Contact) -> JSONValue {
        .object([
            "id": .string(contact.id), "name": .string(contact.name),
            "identifiers": .object(contact.identifiers.mapValues(JSONValue.string)),
            "attributes": .object(contact.attributes.mapValues(JSONValue.string)),
            "version": .int(contact.version), "createdAt": .timestamp(contact.createdAt),
            "updatedAt": .timestamp(contact.updatedAt),
        ])
    }

    /// A conversation without its messages; `contact` is the contact id unless given rendered.
    /// With `messages` (a page of the newest, oldest first), `olderMessages` is the id to pass
    /// as `before=` to read the page before them, or null when they reach the first message.
    public static func conversation(
        _ conversation: Conversation, contact: JSONValue? = nil, messages: [Message]? = nil, olderMessages: String? = nil
    ) -> JSONValue {
        var members: [JSONValue.Member] = [
            .init("assignee", .optional(conversation.assigneeId)), .init("channel", .string(conversation.channel.rawValue)),
            .init("contact", contact ?? .string(conversation.contactId)), .init("createdAt", .timestamp(conversation.createdAt)),
            .init("firstResponseAt", .timestamp(conversation.firstResponseAt)), .init("id", .string(conversation.id)),
            .init("inbox", .optional(conversation.inboxId)),
        ]
        members.reserveCapacity(12)
        if let messages {
            members.append(.init("messages", .array(messages.map(message))))
            members.append(.init("olderMessages", .optional(olderMessages)))
        }
        members.append(.init("queue", .optional(conversation.queueId)))
        members.append(.init("resolvedAt", .timestamp(conversation.resolvedAt)))
        members.append(.init("status", .string(conversation.status.rawValue)))
        members.append(.init("version", .int(conversation.version)))
        return .members(members)
    }

    public static func message(_ message: Message) -> JSONValue {
        .members([
            "agent": .optional(message.agentId), "attachments": message.attachments.map(JSONValue.raw) ?? .array([]),
            "author": .string(message.author.rawValue),
            "conversationId": .string(message.conversationId), "createdAt": .timestamp(message.createdAt),
            "delivery": message.delivery.map(delivery) ?? .null,
            "externalId": .optional(message.externalId), "id": .string(message.id), "private": .bool(message.isPrivate),
            "text": .string(message.text),
        ])
    }

    public static func delivery(_ delivery: Delivery) -> JSONValue {
        .members([
            "possibleDuplicate": .bool(delivery.possibleDuplicate), "reason": .optional(delivery.reason),
            "status": .string(delivery.status.rawValue),
        ])
    }

    /// An inbox, its secrets left out: `secrets` names those that are set.
    public static func inbox(_ inbox: Inbox) -> JSONValue {
        var members: [String: JSONValue] = [
            "id": .string(inbox.id), "name": .string(inbox.name), "channel": .string(inbox.channel.rawValue),
            "queue": .optional(inbox.queueId), "webhookUrl": .string("/v1/inboxes/\(inbox.id)/webhook"),
            "version": .int(inbox.version), "createdAt": .timestamp(inbox.createdAt), "updatedAt": .timestamp(inbox.updatedAt),
        ]
        let keys = InboxSettings.keys(inbox.channel)
        if let member = InboxSettings.member(inbox.channel) {
            var settings: [String: JSONValue] = [:]
            for key in keys where !key.secret { settings[key.name] = .optional(inbox.settings[key.name]) }
            members[member] = .object(settings)
        }
        members["secrets"] = .strings(keys.filter { $0.secret && inbox.settings[$0.name] != nil }.map(\.name))
        return .object(members)
    }
}
