/// Every agent reply the cluster acknowledged must reach the customer's provider exactly once,
/// addressed to that customer. Fed by the agents (each acknowledged reply, under the unique text
/// it carries) and by the provider simulator (each send it took); pure, so the tests drive it.
public struct ReplyLedger: Sendable {
    struct Acknowledged: Sendable {
        var messageId: String
        var conversation: String
    }

    /// Reply text -> the message the cluster acknowledged with it.
    private var acknowledged: [String: Acknowledged] = [:]
    /// Reply text -> the recipient of each send the provider took, in order.
    private var deliveries: [String: [String]] = [:]
    public private(set) var deliveredTotal = 0

    public init() {}

    public mutating func acknowledged(text: String, messageId: String, conversation: String) {
        acknowledged[text] = Acknowledged(messageId: messageId, conversation: conversation)
    }

    /// The provider took a send of `text` to `recipient` (a wa_id or an E.164 number).
    public mutating func delivered(text: String, to recipient: String) {
        deliveries[text, default: []].append(recipient)
        deliveredTotal += 1
    }

    public var acknowledgedCount: Int { acknowledged.count }

    /// Sends of `text` the provider took.
    public func sends(of text: String) -> Int { deliveries[text]?.count ?? 0 }

    /// Acknowledged replies the provider has not taken yet.
    public var undelivered: Int { acknowledged.keys.reduce(0) { $0 + (deliveries[$1] == nil ? 1 : 0) } }

    public struct Verdict: Sendable, Equatable {
        /// Acknowledged and never taken by the provider.
        public var lost = 0
        /// Taken more than once while the cluster marked the message `possibleDuplicate` (the
        /// provider may have taken an attempt whose answer never committed).
        public var explainedDuplicates = 0
        /// Taken more than once with no such mark: a bug.
        public var unexplainedDuplicates = 0
        /// Taken for someone other than the conversation's customer.
        public var misdirected = 0
        /// Taken, but never acknowledged to the agent (its request failed after the commit):
        /// not a violation, the reply was stored.
        public var unacknowledged = 0
        public init() {}
    }

    /// `possibleDuplicates`: message ids the cluster marked; `recipients`: conversation id -> its
    /// customer's number (a conversation missing here is not checked for misdirection).
    public func check(possibleDuplicates: Set<String>, recipients: [String: String]) -> Verdict {
        var verdict = Verdict()
        for (text, reply) in acknowledged {
            let sends = deliveries[text] ?? []
            if sends.isEmpty {
                verdict.lost += 1
                continue
            }
            if sends.count > 1 {
                if possibleDuplicates.contains(reply.messageId) { verdict.explainedDuplicates += 1 } else { verdict.unexplainedDuplicates += 1 }
            }
            if let expected = recipients[reply.conversation].map(Self.digits), sends.contains(where: { Self.digits($0) != expected }) {
                verdict.misdirected += 1
            }
        }
        verdict.unacknowledged = deliveries.keys.reduce(0) { $0 + (acknowledged[$1] == nil ? 1 : 0) }
        return verdict
    }

    /// A number's digits: WhatsApp names a customer `5491155550000`, Twilio `+5491155550000`.
    static func digits(_ number: String) -> String { String(number.filter(\.isNumber)) }
}
