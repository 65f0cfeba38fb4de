/// Every bound on what a client can make the replicated state grow by. The API checks each one
/// before proposing (422 naming the bound and the value); apply checks them again against the
/// state, so a command over a bound (from an older node, a forged peer, or a race between two
/// requests) is rejected identically on every member, changes nothing, and the log moves on.
public enum Limits {
    /// Attributes one contact holds, in all (a PATCH adds to what is there).
    public static let contactAttributesMax = 128
    /// Attribute keys one request may set or delete.
    public static let contactAttributesPerRequestMax = 64
    /// Bytes of one attribute value (UTF-8).
    public static let attributeValueBytesMax = 1000
    /// Bytes of a name, an identifier, an attribute key or an external id (UTF-8).
    public static let nameBytesMax = 200
    /// Bytes of one message's text (UTF-8): a long e-mail fits.
    public static let textBytesMax = 256 << 10
    /// Identifiers one contact holds: one per channel.
    public static let contactIdentifiersMax = Channel.allCases.count
    /// Messages one conversation holds (customer, bot, agent and notes). An agent's reply past it
    /// is refused (`conversation_full`); a customer's message past it resolves the full
    /// conversation and starts a new one, so nothing a customer writes is refused.
    public static let conversationMessagesMax = 10_000
    /// Queues in the cluster.
    public static let queuesMax = 1_000
    /// Keyword rules in the cluster (every inbound message is matched against all of them).
    public static let rulesMax = 500
    /// Agents in the cluster.
    public static let agentsMax = 100_000
    /// Live sessions one agent holds; a login past it ends the agent's oldest session.
    public static let sessionsPerAgentMax = 16
    /// Conversations one agent may hold open at once.
    public static let capacityRange = 0...100
    /// A queue's priority.
    public static let priorityRange = -1000...1000
    /// A rule's place in the order rules are tried.
    public static let ruleOrderRange = -100_000...100_000
    /// Bytes of an `Idempotency-Key`.
    public static let idempotencyKeyBytesMax = 200
    /// A stored password hash (an Argon2id PHC string is about 100 bytes; a PBKDF2 one from
    /// before, up to about 180).
    public static let passwordHashBytesMax = 512
    /// Message ids an inbound message may name as the ones it answers.
    public static let referencesMax = 20
    /// Inboxes in the cluster.
    public static let inboxesMax = 1_000
    /// WhatsApp's customer-service window: free text only this long after the customer's last
    /// message (milliseconds of command time); templates after it.
    public static let whatsAppWindowMilliseconds: Int64 = 24 * 3600 * 1000
    /// How long an idempotency key is remembered (milliseconds of command time).
    public static let idempotencyKeyLifetimeMilliseconds: Int64 = 24 * 3600 * 1000

    /// Rejects `value` outside `range` (`name`), naming both.
    static func check(_ value: Int, in range: ClosedRange<Int>, _ what: String, name: String, field: String) throws {
        guard range.contains(value) else {
            throw DomainError(
                .invalid, "limit_exceeded", "\(what) \(value) is outside \(range.lowerBound)...\(range.upperBound) (\(name))", field: field)
        }
    }

    /// The rejection for a command that would take `what` to `value`, past `bound` (`name`).
    static func exceeded(_ what: String, value: Int, bound: Int, name: String, field: String? = nil) -> DomainError {
        DomainError(.invalid, "limit_exceeded", "\(what) would be \(value), over the bound of \(bound) (\(name))", field: field)
    }
}
