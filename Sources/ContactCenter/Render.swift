/// The JSON shapes of API.md, shared by HTTP responses and event payloads so the two never drift.
public enum Render {
    public static func agent(_ agent: Agent) -> JSONValue {
        .object([
            "id": .string(agent.id), "name": .string(agent.name), "email": .string(agent.email),
            "role": .string(agent.role.rawValue), "skills": .strings(agent.skills), "capacity": .int(agent.capacity),
            "status": .string(agent.status.rawValue), "openConversations": .int(agent.openConversations),
            "version": .int(agent.version), "createdAt": .timestamp(agent.createdAt),
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
    public static func conversation(_ conversation: Conversation, contact: JSONValue? = nil, messages: [Message]? = nil) -> JSONValue {
        var members: [String: JSONValue] = [
            "id": .string(conversation.id), "contact": contact ?? .string(conversation.contactId),
            "channel": .string(conversation.channel.rawValue), "status": .string(conversation.status.rawValue),
            "queue": .optional(conversation.queueId), "assignee": .optional(conversation.assigneeId),
            "createdAt": .timestamp(conversation.createdAt), "firstResponseAt": .timestamp(conversation.firstResponseAt),
            "resolvedAt": .timestamp(conversation.resolvedAt), "version": .int(conversation.version),
        ]
        if let messages { members["messages"] = .array(messages.map(message)) }
        return .object(members)
    }

    public static func message(_ message: Message) -> JSONValue {
        .object([
            "id": .string(message.id), "conversationId": .string(message.conversationId),
            "author": .string(message.author.rawValue), "agent": .optional(message.agentId), "text": .string(message.text),
            "private": .bool(message.isPrivate), "externalId": .optional(message.externalId),
            "createdAt": .timestamp(message.createdAt),
        ])
    }
}
