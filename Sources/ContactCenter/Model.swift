/// The contact-center entities as apply sees them. Plain values; the store persists them.

public enum Role: String, Sendable, CaseIterable {
    case agent, supervisor, admin

    /// Supervisors and admins see and act on every conversation.
    public var supervises: Bool { self != .agent }
}

public enum Presence: String, Sendable, CaseIterable {
    case available, away, offline
}

public enum Channel: String, Sendable, CaseIterable {
    case whatsapp, sms, email, webchat, api
}

public enum ConversationStatus: String, Sendable, CaseIterable {
    case bot, queued, assigned, resolved
}

public enum Author: String, Sendable, CaseIterable {
    case customer, bot, agent, system
}

public enum RuleAction: String, Sendable, CaseIterable {
    /// The bot answers with the rule's text; the conversation stays with automation.
    case reply
    /// The conversation goes straight to the rule's queue, silently.
    case route
    /// The bot answers (if the rule has text) and hands the conversation to a human queue.
    case handoff
}

public struct Agent: Sendable, Equatable {
    public var id: String
    public var name: String
    public var email: String
    public var passwordHash: String
    public var role: Role
    public var skills: [String]
    public var capacity: Int
    public var status: Presence
    public var openConversations: Int
    /// Log index of the agent's last assignment or of going available: smaller is longer idle.
    public var lastRoutedIndex: Int64
    public var version: Int64
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    /// A disabled agent cannot log in, holds no session and is never routed to.
    public var disabled: Bool

    public init(
        id: String, name: String, email: String, passwordHash: String, role: Role, skills: [String], capacity: Int,
        status: Presence, openConversations: Int, lastRoutedIndex: Int64, version: Int64, createdAt: Timestamp,
        updatedAt: Timestamp, disabled: Bool = false
    ) {
        self.id = id
        self.name = name
        self.email = email
        self.passwordHash = passwordHash
        self.role = role
        self.skills = skills
        self.capacity = capacity
        self.status = status
        self.openConversations = openConversations
        self.lastRoutedIndex = lastRoutedIndex
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.disabled = disabled
    }

    public var hasFreeCapacity: Bool { openConversations < capacity }

    /// True when the agent has every skill in `required`.
    public func canServe(skills required: [String]) -> Bool {
        required.allSatisfy(skills.contains)
    }
}

public struct Session: Sendable, Equatable {
    public var tokenHash: String
    public var agentId: String
    public var createdAt: Timestamp
    public var expiresAt: Timestamp

    public init(tokenHash: String, agentId: String, createdAt: Timestamp, expiresAt: Timestamp) {
        self.tokenHash = tokenHash
        self.agentId = agentId
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

public struct Queue: Sendable, Equatable {
    public var id: String
    public var name: String
    public var skills: [String]
    public var priority: Int
    /// Channels whose new conversations land here when no rule routes them.
    public var channels: [Channel]
    public var createdIndex: Int64
    public var createdAt: Timestamp

    public init(id: String, name: String, skills: [String], priority: Int, channels: [Channel], createdIndex: Int64, createdAt: Timestamp) {
        self.id = id
        self.name = name
        self.skills = skills
        self.priority = priority
        self.channels = channels
        self.createdIndex = createdIndex
        self.createdAt = createdAt
    }
}

public struct Rule: Sendable, Equatable {
    public var id: String
    public var name: String
    public var keywords: [String]
    public var action: RuleAction
    public var reply: String?
    public var queueId: String?
    public var order: Int
    public var createdAt: Timestamp

    public init(id: String, name: String, keywords: [String], action: RuleAction, reply: String?, queueId: String?, order: Int, createdAt: Timestamp) {
        self.id = id
        self.name = name
        self.keywords = keywords
        self.action = action
        self.reply = reply
        self.queueId = queueId
        self.order = order
        self.createdAt = createdAt
    }
}

public struct Contact: Sendable, Equatable {
    public var id: String
    public var name: String
    /// Channel name -> the customer's address on that channel.
    public var identifiers: [String: String]
    public var attributes: [String: String]
    public var version: Int64
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(id: String, name: String, identifiers: [String: String], attributes: [String: String], version: Int64, createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id
        self.name = name
        self.identifiers = identifiers
        self.attributes = attributes
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

public struct Conversation: Sendable, Equatable {
    public var id: String
    public var contactId: String
    public var channel: Channel
    public var status: ConversationStatus
    public var queueId: String?
    public var assigneeId: String?
    /// Copied from the queue when the conversation is queued; higher is served first.
    public var priority: Int
    /// Log index at which the conversation entered its queue: FIFO order within a priority.
    public var enqueuedIndex: Int64
    public var createdAt: Timestamp
    public var firstResponseAt: Timestamp?
    public var resolvedAt: Timestamp?
    public var updatedAt: Timestamp
    public var version: Int64
    /// Messages in the conversation, notes and bot replies included (at most
    /// `Limits.conversationMessagesMax`).
    public var messageCount: Int
    /// The inbox the customer wrote in: replies leave through it. Nil for conversations from
    /// before inboxes, which only listen.
    public var inboxId: String?
    /// When the customer last wrote (WhatsApp's 24-hour window counts from it).
    public var customerAt: Timestamp?

    public init(
        id: String, contactId: String, channel: Channel, status: ConversationStatus, queueId: String?, assigneeId: String?,
        priority: Int, enqueuedIndex: Int64, createdAt: Timestamp, firstResponseAt: Timestamp?, resolvedAt: Timestamp?,
        updatedAt: Timestamp, version: Int64, messageCount: Int = 0, inboxId: String? = nil, customerAt: Timestamp? = nil
    ) {
        self.inboxId = inboxId
        self.customerAt = customerAt
        self.id = id
        self.contactId = contactId
        self.channel = channel
        self.status = status
        self.queueId = queueId
        self.assigneeId = assigneeId
        self.priority = priority
        self.enqueuedIndex = enqueuedIndex
        self.createdAt = createdAt
        self.firstResponseAt = firstResponseAt
        self.resolvedAt = resolvedAt
        self.updatedAt = updatedAt
        self.version = version
        self.messageCount = messageCount
    }

    public var isOpen: Bool { status != .resolved }
}

public struct Message: Sendable, Equatable {
    public var id: String
    public var conversationId: String
    public var author: Author
    public var agentId: String?
    public var text: String
    public var isPrivate: Bool
    public var externalId: String?
    public var createdAt: Timestamp
    /// Position in the conversation: the log index and the order within that entry.
    public var logIndex: Int64
    public var ordinal: Int
    /// What came with a customer's message (media, a location, a button reply), as a JSON array
    /// rendered by the node that took the webhook.
    public var attachments: String?
    /// For a reply that leaves through a provider: where its delivery stands.
    public var delivery: Delivery?

    public init(
        id: String, conversationId: String, author: Author, agentId: String?, text: String, isPrivate: Bool,
        externalId: String?, createdAt: Timestamp, logIndex: Int64, ordinal: Int, attachments: String? = nil,
        delivery: Delivery? = nil
    ) {
        self.attachments = attachments
        self.delivery = delivery
        self.id = id
        self.conversationId = conversationId
        self.author = author
        self.agentId = agentId
        self.text = text
        self.isPrivate = isPrivate
        self.externalId = externalId
        self.createdAt = createdAt
        self.logIndex = logIndex
        self.ordinal = ordinal
    }
}

public enum EventType: String, Sendable, CaseIterable {
    case conversationAssigned = "conversation.assigned"
    case conversationUpdated = "conversation.updated"
    case messageCreated = "message.created"
    /// A reply's delivery moved (sent, delivered, read, failed).
    case messageUpdated = "message.updated"
    /// An agent is writing in the conversation (the web chat widget shows it for a few seconds).
    case conversationTyping = "conversation.typing"
    case agentUpdated = "agent.updated"
    case sessionExpiring = "session.expiring"
    /// Sessions of the agent ended (logout, password change, disabled, role change, expiry):
    /// every node closes the event sockets whose session no longer holds.
    case sessionEnded = "session.ended"
}

/// Position of an event in the replicated event log: the log index that produced it and its
/// order within that entry. Cursors compare in log order; their text form is `"<index>-<seq>"`.
public struct EventCursor: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var index: Int64
    public var seq: Int

    public init(index: Int64, seq: Int) {
        self.index = index
        self.seq = seq
    }

    public static let start = EventCursor(index: 0, seq: 0)

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int64(parts[0]), let seq = Int(parts[1]), index >= 0, seq >= 0 else { return nil }
        self.init(index: index, seq: seq)
    }

    public var description: String { "\(index)-\(seq)" }

    public static func < (lhs: EventCursor, rhs: EventCursor) -> Bool {
        (lhs.index, lhs.seq) < (rhs.index, rhs.seq)
    }
}

/// A domain event produced by apply, identical on every node.
public struct Event: Sendable, Equatable {
    public var cursor: EventCursor
    public var type: EventType
    public var at: Timestamp
    /// The agent this event concerns; supervisors receive every event regardless.
    public var audienceAgentId: String?
    /// The event's `data`, serialized deterministically.
    public var data: String

    public init(cursor: EventCursor, type: EventType, at: Timestamp, audienceAgentId: String?, data: String) {
        self.cursor = cursor
        self.type = type
        self.at = at
        self.audienceAgentId = audienceAgentId
        self.data = data
    }

    /// The WebSocket frame text for this event (API.md "Events").
    public var frame: String {
        var out = "{\"at\":\"\(at.rfc3339)\",\"cursor\":\"\(cursor)\",\"data\":"
        out += data
        out += ",\"type\":\"\(type.rawValue)\"}"
        return out
    }
}

/// Where a cluster member listens, replicated so that every node (and a snapshot) knows it.
/// `voter` says whether the member is to be promoted from learner once it has caught up.
public struct ClusterMember: Sendable, Equatable, Hashable {
    public var id: String
    /// The peer link's `host:port`.
    public var peer: String
    /// The API's `host:port`.
    public var api: String
    public var voter: Bool

    public init(id: String, peer: String, api: String, voter: Bool) {
        self.id = id
        self.peer = peer
        self.api = api
        self.voter = voter
    }
}
