/// The state apply reads and writes. The SQLite implementation lives in `Storage`; apply sees
/// only this protocol, so the rules stay pure and every node runs the same code on the same data.
///
/// Every method is deterministic given the stored state. Orderings are part of the contract
/// (they decide routing), so they are spelled out on each method.
public protocol StateStore {
    /// Runs `body`; if it throws, every write it made is undone and the error rethrown. (A store
    /// may instead throw an error of its own that makes its caller discard the whole
    /// transaction and run it again: `SQLiteStore`'s apply without savepoints does.)
    func atomically<T>(_ body: () throws -> T) throws -> T

    func agent(id: String) throws -> Agent?
    func agent(email: String) throws -> Agent?
    func insert(_ agent: Agent) throws
    func agentCount() throws -> Int
    func update(_ agent: Agent) throws
    /// The first agent, in routing order, that is `available`, has free capacity and satisfies
    /// `accept`. Routing order: `lastRoutedIndex` ascending (longest idle first), then `id`.
    func firstAvailableAgent(where accept: (Agent) -> Bool) throws -> Agent?

    func insert(_ session: Session) throws
    /// The agent's sessions' token hashes, oldest first (`createdAt`, then hash).
    func sessionTokenHashes(agentId: String) throws -> [String]
    func sessionAgentId(tokenHash: String) throws -> String?
    /// How far `session.expiring` has been sent (0 before any).
    func sessionsWarnedThrough() throws -> Timestamp
    func setSessionsWarnedThrough(_ time: Timestamp) throws
    /// Deletes sessions that expire at or before `time`; returns their agents, sorted, once each.
    func deleteSessions(expiringAtOrBefore time: Timestamp) throws -> [String]
    /// Agents of sessions expiring in `(after, through]`, sorted, once each.
    func agentsWithSessions(expiringAfter after: Timestamp, through: Timestamp) throws -> [String]
    /// Returns false when no such session existed.
    func deleteSession(tokenHash: String) throws -> Bool

    func queue(id: String) throws -> Queue?
    func queue(name: String) throws -> Queue?
    /// All queues ordered by `createdIndex`, then `id`.
    func queues() throws -> [Queue]
    func insert(_ queue: Queue) throws

    func rule(name: String) throws -> Rule?
    /// All rules ordered by `order`, then `id`.
    func rules() throws -> [Rule]
    func insert(_ rule: Rule) throws

    func contact(id: String) throws -> Contact?
    func contactId(channel: String, identifier: String) throws -> String?
    func insert(_ contact: Contact) throws
    func update(_ contact: Contact) throws

    func conversation(id: String) throws -> Conversation?
    /// The contact's conversation on `channel` that is not resolved, if any.
    func openConversation(contactId: String, channel: Channel) throws -> Conversation?
    func insert(_ conversation: Conversation) throws
    func update(_ conversation: Conversation) throws
    /// The queued conversation to serve next among `queueIds` (nil stands for "no queue"):
    /// `priority` descending, then `enqueuedIndex` ascending (FIFO), then `id`.
    func nextQueuedConversation(queueIds: [String?]) throws -> Conversation?

    func insert(_ message: Message) throws
    func message(id: String) throws -> Message?
    func externalMessage(channel: Channel, externalId: String) throws -> (conversationId: String, messageId: String)?
    func insertExternalMessage(channel: Channel, externalId: String, conversationId: String, messageId: String) throws

    /// Writes `message.delivery` (the message exists).
    func updateDelivery(of message: Message) throws

    func inbox(id: String) throws -> Inbox?
    func inbox(name: String) throws -> Inbox?
    func inboxCount() throws -> Int
    /// Inserts or replaces an inbox.
    func put(_ inbox: Inbox) throws
    func deleteInbox(id: String) throws
    func outboxEntry(messageId: String) throws -> OutboxEntry?
    /// The reply a provider took under `providerId` through this inbox.
    func outboxMessageId(inboxId: String, providerId: String) throws -> String?
    /// Inserts or replaces an outbox entry.
    func put(_ entry: OutboxEntry) throws

    func insert(_ event: Event) throws
    /// Deletes events from before `index`; records the new window start.
    func trimEvents(before index: Int64) throws
    /// Inserts or replaces a cluster member's addresses.
    func put(_ member: ClusterMember) throws
    /// Presence leases: renewed while an agent's event WebSocket is open somewhere.
    func renewLease(agentId: String, until: Timestamp) throws
    func lease(agentId: String) throws -> Timestamp?
    func deleteLease(agentId: String) throws
    /// The agent's assigned (open) conversations, by id.
    func assignedConversations(agentId: String) throws -> [Conversation]

    func idempotencyRecord(scope: String, key: String) throws -> IdempotencyRecord?
    /// Inserts or replaces the record under (`scope`, `key`).
    func save(_ record: IdempotencyRecord, scope: String, key: String, index: Int64) throws
    /// Forgets the records whose command time is at or before `time`.
    func deleteIdempotencyRecords(through time: Timestamp) throws
}
