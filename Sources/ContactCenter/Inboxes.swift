/// Inboxes (where customers write in, and where replies leave from), the outbox of replies that
/// leave through a provider, and the delivery state of each such reply.

/// One place customers write in: a WhatsApp business number, a Twilio number, a mailbox, a web
/// chat, or the generic API. Its provider settings are a flat map whose keys each channel
/// names (`InboxSettings`); the secret ones are stored, replicated and never rendered.
public struct Inbox: Sendable, Equatable {
    public var id: String
    public var name: String
    public var channel: Channel
    /// The queue its new conversations go to when no rule says otherwise.
    public var queueId: String?
    public var settings: [String: String]
    /// SHA-256 (hex) of the token an `api` inbox's webhook is called with.
    public var tokenHash: String?
    public var version: Int64
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        id: String, name: String, channel: Channel, queueId: String?, settings: [String: String], tokenHash: String?,
        version: Int64, createdAt: Timestamp, updatedAt: Timestamp
    ) {
        self.id = id
        self.name = name
        self.channel = channel
        self.queueId = queueId
        self.settings = settings
        self.tokenHash = tokenHash
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Replies written in this inbox's conversations leave through a provider (an e-mail inbox
    /// once it names its SMTP relay).
    public var sendsReplies: Bool { InboxSettings.sendsReplies(channel) || (channel == .email && settings["smtpHost"] != nil) }

    /// The `Message-ID` of a reply sent from this e-mail inbox: fixed by the message id, so
    /// every attempt sends the same one, and the customer's answer threads back by it.
    public func emailMessageId(of messageId: String) -> String? {
        guard channel == .email, let address = settings["address"], let at = address.lastIndex(of: "@") else { return nil }
        return "<\(messageId)@\(address[address.index(after: at)...])>"
    }
}

/// The settings each channel's inbox takes: every key, which are required, which are secret,
/// and their defaults.
public enum InboxSettings {
    public struct Key: Sendable, Equatable {
        public var name: String
        public var required: Bool
        public var secret: Bool
        public var defaultValue: String?
    }

    /// The JSON member that holds the settings in a request and an answer.
    public static func member(_ channel: Channel) -> String? {
        switch channel {
        case .whatsapp: "whatsapp"
        case .sms: "twilio"
        case .email: "email"
        case .webchat: "webchat"
        case .api: nil
        }
    }

    public static func keys(_ channel: Channel) -> [Key] {
        switch channel {
        case .whatsapp:
            [
                Key(name: "phoneNumberId", required: true, secret: false),
                Key(name: "accessToken", required: true, secret: true),
                Key(name: "appSecret", required: true, secret: true),
                Key(name: "verifyToken", required: true, secret: true),
                Key(name: "apiBase", required: false, secret: false, defaultValue: "https://graph.facebook.com/v21.0"),
            ]
        case .sms:
            [
                Key(name: "accountSid", required: true, secret: false),
                Key(name: "authToken", required: true, secret: true),
                Key(name: "from", required: true, secret: false),
                Key(name: "apiBase", required: false, secret: false, defaultValue: "https://api.twilio.com"),
                // The public URL Twilio calls the webhook at (the signature covers it), when the
                // balancer's address is not what Twilio sees.
                Key(name: "webhookBase", required: false, secret: false),
            ]
        case .email:
            [
                Key(name: "address", required: true, secret: false),
                Key(name: "smtpHost", required: false, secret: false),
                Key(name: "smtpPort", required: false, secret: false, defaultValue: "587"),
                Key(name: "smtpUsername", required: false, secret: false),
                Key(name: "smtpPassword", required: false, secret: true),
                // A PEM file of CA certificates on each node, to trust a private relay.
                Key(name: "smtpCaFile", required: false, secret: false),
            ]
        case .webchat:
            [Key(name: "title", required: false, secret: false, defaultValue: "Chat")]
        case .api:
            []
        }
    }

    public static func sendsReplies(_ channel: Channel) -> Bool { channel == .whatsapp || channel == .sms }

    public static func isSecret(_ channel: Channel, _ key: String) -> Bool {
        keys(channel).contains { $0.name == key && $0.secret }
    }
}

/// Where a reply sent through a provider stands. Statuses only move forward (`rank`), except
/// `failed`, which a provider may report after `sent`.
public enum DeliveryStatus: String, Sendable, CaseIterable {
    case queued, sent, delivered, read, failed

    public var rank: Int {
        switch self {
        case .queued: 0
        case .sent: 1
        case .delivered: 2
        case .read: 3
        case .failed: 4
        }
    }
}

/// A reply's delivery, as its message shows it.
public struct Delivery: Sendable, Equatable {
    public var status: DeliveryStatus
    public var reason: String?
    /// The send was attempted again after a leader died between an attempt and its result: the
    /// customer may have received it twice.
    public var possibleDuplicate: Bool

    public init(status: DeliveryStatus, reason: String? = nil, possibleDuplicate: Bool = false) {
        self.status = status
        self.reason = reason
        self.possibleDuplicate = possibleDuplicate
    }

    /// Moves to `status` when that is forward (`rank`), or to `failed` (with `failure` as the
    /// reason) from anything but failed; a failed delivery stays failed. False when nothing moved.
    public mutating func advance(to status: DeliveryStatus, failure: String? = nil) -> Bool {
        guard self.status != .failed, status == .failed || status.rank > self.status.rank else { return false }
        self.status = status
        reason = status == .failed ? failure : nil
        return true
    }
}

/// A reply waiting to leave, or that left, through an inbox's provider. Written by the apply
/// that writes the message; the leader's dispatcher sends it.
public struct OutboxEntry: Sendable, Equatable {
    public var messageId: String
    public var inboxId: String
    public var conversationId: String
    /// The customer's address on the inbox's channel (E.164 for WhatsApp and SMS).
    public var recipient: String
    public var text: String
    /// A WhatsApp template (`{"name", "language", "components"}`, JSON), sent instead of text.
    public var template: String?
    /// Attempts started so far.
    public var attempts: Int
    /// An attempt started and its result is not committed.
    public var inFlight: Bool
    /// The earliest time of the next attempt.
    public var notBefore: Timestamp
    /// Sent or given up: the dispatcher is done with it.
    public var done: Bool
    /// The provider's id of the sent message (WhatsApp `wamid`, Twilio `SM...`).
    public var providerId: String?
    public var createdIndex: Int64

    public init(
        messageId: String, inboxId: String, conversationId: String, recipient: String, text: String, template: String?,
        attempts: Int, inFlight: Bool, notBefore: Timestamp, done: Bool, providerId: String?, createdIndex: Int64
    ) {
        self.messageId = messageId
        self.inboxId = inboxId
        self.conversationId = conversationId
        self.recipient = recipient
        self.text = text
        self.template = template
        self.attempts = attempts
        self.inFlight = inFlight
        self.notBefore = notBefore
        self.done = done
        self.providerId = providerId
        self.createdIndex = createdIndex
    }
}

/// What one send attempt came to, as the dispatcher commits it.
public enum OutboxResult: Sendable, Equatable {
    /// The provider took it, under this id.
    case sent(providerId: String)
    /// A failure worth retrying (5xx, 429, a refused connection) not before the given time.
    case retry(reason: String, notBefore: Timestamp)
    /// No answer after the request was written (a timeout, a reset): retried not before the
    /// given time, and the reply marked a possible duplicate, since the provider may have taken
    /// this attempt.
    case unknown(reason: String, notBefore: Timestamp)
    /// A permanent failure, or the last attempt failed: the reply is dead-lettered.
    case failed(reason: String)
}
