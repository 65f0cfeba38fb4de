import ContactCenter
import Foundation
import GRDB

/// `StateStore` over one GRDB connection inside a write transaction (apply), or a read
/// transaction (queries: only the getters are used there).
public struct SQLiteStore: StateStore {
    let db: Database
    let atomicity: Atomicity
    /// Queues and rules as read in this transaction, so apply does not re-read them for every
    /// inbound message of a batch. Dropped on every write to those tables and on every rollback,
    /// so it always equals what the database holds.
    private let cache = DirectoryCache()

    /// How `atomically` undoes a failed command's writes.
    public enum Atomicity: Sendable {
        /// Every command runs in a savepoint, rolled back if it throws.
        case savepoint
        /// No savepoint. A command that throws before writing anything needs no undo; one that
        /// throws after writing makes `atomically` throw `UndoUnavailable`, and the caller must
        /// roll back the whole transaction and run it again with `.savepoint`.
        ///
        /// Commands check before they write, so the second case does not happen today; the
        /// savepoint it spares (SQLite copies every page a savepoint modifies into its
        /// sub-journal) was ~20 % of a new customer's apply.
        case optimistic
    }

    /// A command failed after writing, in `.optimistic` mode: its writes cannot be undone alone.
    public struct UndoUnavailable: Error, CustomStringConvertible {
        public let error: any Error
        public var description: String { "a command failed after writing (\(error)); its transaction must be redone with savepoints" }
    }

    public init(_ db: Database, atomicity: Atomicity = .savepoint) {
        self.db = db
        self.atomicity = atomicity
    }

    /// The conversations and contacts this store has written so far.
    public var changes: StateChanges { cache.changes }

    /// Runs `body` so that a command that throws leaves nothing behind (see `Atomicity`).
    ///
    /// The savepoint statements are prepared once per connection (`cachedStatement`); GRDB's
    /// `inSavepoint` compiles `SAVEPOINT` and `RELEASE` again on every call, which cost ~9 % of
    /// a follower's CPU under inbound writes.
    public func atomically<T>(_ body: () throws -> T) throws -> T {
        switch atomicity {
        case .optimistic:
            // Every INSERT, UPDATE and DELETE that changed a row counts, whichever table.
            let changesBefore = db.totalChangesCount
            do {
                return try body()
            } catch {
                cache.clear()
                if error is UndoUnavailable { throw error }
                if db.totalChangesCount != changesBefore { throw UndoUnavailable(error: error) }
                throw error
            }
        case .savepoint:
            try db.cachedStatement(sql: "SAVEPOINT command").execute()
            let result: T
            do {
                result = try body()
            } catch {
                cache.clear()
                try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT command").execute()
                try db.cachedStatement(sql: "RELEASE SAVEPOINT command").execute()
                throw error
            }
            try db.cachedStatement(sql: "RELEASE SAVEPOINT command").execute()
            return result
        }
    }

    // MARK: Agents

    public func agent(id: String) throws -> Agent? {
        try RawStatement(db, SQL.agentById).fetchOne({ $0.add(id) }, Rows.agent)
    }

    public func agent(email: String) throws -> Agent? {
        try Row.fetchOne(try db.cachedStatement(sql: SQL.agentByEmail), arguments: [email]).map(Rows.agent)
    }

    public func insert(_ agent: Agent) throws {
        try db.cachedStatement(sql: """
                INSERT INTO agents (id, name, email, password_hash, role, skills, capacity, status, open_count,
                    last_routed_index, version, created_at, updated_at, disabled) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                """).execute(arguments: [
                agent.id, agent.name, agent.email, agent.passwordHash, agent.role.rawValue, Rows.list(agent.skills), agent.capacity,
                agent.status.rawValue, agent.openConversations, agent.lastRoutedIndex, agent.version,
                agent.createdAt.milliseconds, agent.updatedAt.milliseconds, agent.disabled,
            ])
    }

    public func agentCount() throws -> Int {
        try Int.fetchOne(try db.cachedStatement(sql: "SELECT COUNT(*) FROM agents")) ?? 0
    }

    public func update(_ agent: Agent) throws {
        try RawStatement(db, """
                UPDATE agents SET name = ?, email = ?, password_hash = ?, role = ?, skills = ?, capacity = ?, status = ?,
                    open_count = ?, last_routed_index = ?, version = ?, updated_at = ?, disabled = ? WHERE id = ?
                """).execute {
            $0.add(agent.name); $0.add(agent.email); $0.add(agent.passwordHash); $0.add(agent.role.rawValue)
            $0.add(Rows.list(agent.skills)); $0.add(agent.capacity); $0.add(agent.status.rawValue)
            $0.add(agent.openConversations); $0.add(agent.lastRoutedIndex); $0.add(agent.version)
            $0.add(agent.updatedAt.milliseconds); $0.add(agent.disabled); $0.add(agent.id)
        }
    }

    public func firstAvailableAgent(where accept: (Agent) -> Bool) throws -> Agent? {
        try RawStatement(db, SQL.availableAgents)
            .first({ _ in }) { columns in
                let agent = try Rows.agent(columns)
                return accept(agent) ? agent : nil
            }
    }

    // MARK: Sessions

    public func insert(_ session: Session) throws {
        try db.cachedStatement(sql: "INSERT INTO sessions (token_hash, agent_id, created_at, expires_at) VALUES (?,?,?,?)").execute(arguments: [session.tokenHash, session.agentId, session.createdAt.milliseconds, session.expiresAt.milliseconds])
    }

    public func deleteSession(tokenHash: String) throws -> Bool {
        cache.changes.endedSessions.insert(tokenHash)
        try db.cachedStatement(sql: "DELETE FROM sessions WHERE token_hash = ?").execute(arguments: [tokenHash])
        return db.changesCount > 0
    }

    public func sessionTokenHashes(agentId: String) throws -> [String] {
        try String.fetchAll(
            try db.cachedStatement(sql: "SELECT token_hash FROM sessions WHERE agent_id = ? ORDER BY created_at, token_hash"), arguments: [agentId])
    }

    public func sessionAgentId(tokenHash: String) throws -> String? {
        try String.fetchOne(try db.cachedStatement(sql: "SELECT agent_id FROM sessions WHERE token_hash = ?"), arguments: [tokenHash])
    }

    public func deleteSessions(expiringAtOrBefore time: Timestamp) throws -> [String] {
        let agents = try String.fetchAll(
            try db.cachedStatement(sql: "SELECT DISTINCT agent_id FROM sessions WHERE expires_at <= ? ORDER BY agent_id"), arguments: [time.milliseconds])
        try db.cachedStatement(sql: "DELETE FROM sessions WHERE expires_at <= ?").execute(arguments: [time.milliseconds])
        return agents
    }

    public func agentsWithSessions(expiringAfter after: Timestamp, through: Timestamp) throws -> [String] {
        try String.fetchAll(
            try db.cachedStatement(sql: "SELECT DISTINCT agent_id FROM sessions WHERE expires_at > ? AND expires_at <= ? ORDER BY agent_id"),
            arguments: [after.milliseconds, through.milliseconds])
    }

    public func sessionsWarnedThrough() throws -> Timestamp {
        Timestamp(milliseconds: try Int64.fetchOne(try db.cachedStatement(sql: "SELECT value FROM meta WHERE key = 'sessions_warned_through'")) ?? 0)
    }

    public func setSessionsWarnedThrough(_ time: Timestamp) throws {
        try db.cachedStatement(sql: "UPDATE meta SET value = ? WHERE key = 'sessions_warned_through'").execute(arguments: [time.milliseconds])
    }

    public func session(tokenHash: String) throws -> Session? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM sessions WHERE token_hash = ?"), arguments: [tokenHash]).map { row in
            Session(
                tokenHash: row["token_hash"], agentId: row["agent_id"], createdAt: Timestamp(milliseconds: row["created_at"]),
                expiresAt: Timestamp(milliseconds: row["expires_at"]))
        }
    }

    // MARK: Queues and rules

    public func queue(id: String) throws -> Queue? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM queues WHERE id = ?"), arguments: [id]).map(Rows.queue)
    }

    public func queue(name: String) throws -> Queue? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM queues WHERE name = ?"), arguments: [name]).map(Rows.queue)
    }

    public func queues() throws -> [Queue] {
        if let queues = cache.queues { return queues }
        let queues = try Row.fetchAll(try db.cachedStatement(sql: "SELECT * FROM queues ORDER BY created_index, id")).map(Rows.queue)
        cache.queues = queues
        return queues
    }

    public func insert(_ queue: Queue) throws {
        cache.clear()
        try db.cachedStatement(sql: "INSERT INTO queues (id, name, skills, priority, channels, created_index, created_at) VALUES (?,?,?,?,?,?,?)").execute(arguments: [
                queue.id, queue.name, Rows.list(queue.skills), queue.priority, Rows.list(queue.channels.map(\.rawValue)),
                queue.createdIndex, queue.createdAt.milliseconds,
            ])
    }

    public func rule(name: String) throws -> Rule? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM rules WHERE name = ?"), arguments: [name]).map(Rows.rule)
    }

    public func rules() throws -> [Rule] {
        if let rules = cache.rules { return rules }
        let rules = try Row.fetchAll(try db.cachedStatement(sql: "SELECT * FROM rules ORDER BY ord, id")).map(Rows.rule)
        cache.rules = rules
        return rules
    }

    public func insert(_ rule: Rule) throws {
        cache.clear()
        try db.cachedStatement(sql: "INSERT INTO rules (id, name, keywords, action, reply, queue_id, ord, created_at) VALUES (?,?,?,?,?,?,?,?)").execute(arguments: [
                rule.id, rule.name, Rows.list(rule.keywords), rule.action.rawValue, rule.reply, rule.queueId, rule.order,
                rule.createdAt.milliseconds,
            ])
    }

    // MARK: Contacts

    public func contact(id: String) throws -> Contact? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM contacts WHERE id = ?"), arguments: [id]).map(Rows.contact)
    }

    public func contactId(channel: String, identifier: String) throws -> String? {
        try RawStatement(db, "SELECT contact_id FROM contact_identifiers WHERE channel = ? AND value = ?")
            .fetchOne({ $0.add(channel); $0.add(identifier) }) { $0.string(0) }
    }

    public func insert(_ contact: Contact) throws {
        try RawStatement(db, "INSERT INTO contacts (id, name, identifiers, attributes, version, created_at, updated_at) VALUES (?,?,?,?,?,?,?)").execute {
            $0.add(contact.id); $0.add(contact.name); $0.add(blob: Rows.map(contact.identifiers)); $0.add(blob: Rows.map(contact.attributes))
            $0.add(contact.version); $0.add(contact.createdAt.milliseconds); $0.add(contact.updatedAt.milliseconds)
        }
        let identifier = try RawStatement(db, "INSERT INTO contact_identifiers (channel, value, contact_id) VALUES (?,?,?)")
        for (channel, value) in contact.identifiers {
            try identifier.execute { $0.add(channel); $0.add(value); $0.add(contact.id) }
        }
    }

    /// Identifiers do not change after creation; name, attributes and version do.
    public func update(_ contact: Contact) throws {
        cache.changes.contactIds.insert(contact.id)
        try db.cachedStatement(sql: "UPDATE contacts SET name = ?, attributes = ?, version = ?, updated_at = ? WHERE id = ?").execute(arguments: [contact.name, Data(Rows.map(contact.attributes)), contact.version, contact.updatedAt.milliseconds, contact.id])
    }

    // MARK: Conversations and messages

    public func conversation(id: String) throws -> Conversation? {
        try RawStatement(db, SQL.conversationById).fetchOne({ $0.add(id) }, Rows.conversation)
    }

    public func openConversation(contactId: String, channel: Channel) throws -> Conversation? {
        try RawStatement(db, SQL.openConversation).fetchOne({ $0.add(contactId); $0.add(channel.rawValue) }, Rows.conversation)
    }

    public func insert(_ conversation: Conversation) throws {
        cache.changes.conversationIds.insert(conversation.id)
        try RawStatement(db, """
                INSERT INTO conversations (id, contact_id, channel, status, queue_id, assignee_id, priority, enqueued_index,
                    created_at, first_response_at, resolved_at, updated_at, version, message_count, inbox_id, customer_at)
                    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                """).execute {
            $0.add(conversation.id); $0.add(conversation.contactId); $0.add(conversation.channel.rawValue)
            $0.add(conversation.status.rawValue); $0.add(conversation.queueId); $0.add(conversation.assigneeId)
            $0.add(conversation.priority); $0.add(conversation.enqueuedIndex); $0.add(conversation.createdAt.milliseconds)
            $0.add(conversation.firstResponseAt?.milliseconds); $0.add(conversation.resolvedAt?.milliseconds)
            $0.add(conversation.updatedAt.milliseconds); $0.add(conversation.version); $0.add(conversation.messageCount)
            $0.add(conversation.inboxId); $0.add(conversation.customerAt?.milliseconds)
        }
    }

    public func update(_ conversation: Conversation) throws {
        cache.changes.conversationIds.insert(conversation.id)
        try RawStatement(db, """
                UPDATE conversations SET status = ?, queue_id = ?, assignee_id = ?, priority = ?, enqueued_index = ?,
                    first_response_at = ?, resolved_at = ?, updated_at = ?, version = ?, message_count = ?, inbox_id = ?,
                    customer_at = ? WHERE id = ?
                """).execute {
            $0.add(conversation.status.rawValue); $0.add(conversation.queueId); $0.add(conversation.assigneeId)
            $0.add(conversation.priority); $0.add(conversation.enqueuedIndex); $0.add(conversation.firstResponseAt?.milliseconds)
            $0.add(conversation.resolvedAt?.milliseconds); $0.add(conversation.updatedAt.milliseconds); $0.add(conversation.version)
            $0.add(conversation.messageCount); $0.add(conversation.inboxId); $0.add(conversation.customerAt?.milliseconds)
            $0.add(conversation.id)
        }
    }

    public func nextQueuedConversation(queueIds: [String?]) throws -> Conversation? {
        let ids = queueIds.compactMap { $0 }
        let includeUnqueued = queueIds.contains(nil)
        var clauses: [String] = []
        if !ids.isEmpty { clauses.append("queue_id IN (\(Array(repeating: "?", count: ids.count).joined(separator: ",")))") }
        if includeUnqueued { clauses.append("queue_id IS NULL") }
        guard !clauses.isEmpty else { return nil }
        let sql = "SELECT \(Rows.conversationColumns) FROM conversations WHERE status = 'queued' AND (\(clauses.joined(separator: " OR "))) ORDER BY priority DESC, enqueued_index, id LIMIT 1"
        return try Row.fetchOne(try db.cachedStatement(sql: sql), arguments: StatementArguments(ids)).map(Rows.conversation)
    }

    public func insert(_ message: Message) throws {
        cache.changes.conversationIds.insert(message.conversationId)
        try RawStatement(db, """
                INSERT INTO messages (id, conversation_id, author, agent_id, text, private, external_id, created_at, log_index, ordinal,
                    attachments, delivery, delivery_reason, possible_duplicate)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                """).execute {
            $0.add(message.id); $0.add(message.conversationId); $0.add(message.author.rawValue); $0.add(message.agentId)
            $0.add(message.text); $0.add(message.isPrivate); $0.add(message.externalId); $0.add(message.createdAt.milliseconds)
            $0.add(message.logIndex); $0.add(message.ordinal); $0.add(message.attachments); $0.add(message.delivery?.status.rawValue)
            $0.add(message.delivery?.reason); $0.add(message.delivery?.possibleDuplicate == true)
        }
    }

    public func updateDelivery(of message: Message) throws {
        cache.changes.conversationIds.insert(message.conversationId)
        try db.cachedStatement(sql: "UPDATE messages SET delivery = ?, delivery_reason = ?, possible_duplicate = ? WHERE id = ?")
            .execute(arguments: [message.delivery?.status.rawValue, message.delivery?.reason, message.delivery?.possibleDuplicate ?? false, message.id])
    }

    // MARK: Inboxes and the outbox

    public func inbox(id: String) throws -> Inbox? {
        if let cached = cache.inboxes[id] { return cached }
        let inbox = try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM inboxes WHERE id = ?"), arguments: [id]).map(Rows.inbox)
        cache.inboxes[id] = .some(inbox)
        return inbox
    }

    public func inbox(name: String) throws -> Inbox? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM inboxes WHERE name = ?"), arguments: [name]).map(Rows.inbox)
    }

    public func inboxCount() throws -> Int {
        try Int.fetchOne(try db.cachedStatement(sql: "SELECT COUNT(*) FROM inboxes")) ?? 0
    }

    public func put(_ inbox: Inbox) throws {
        cache.clear()
        try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO inboxes (id, name, channel, queue_id, settings, token_hash, version, created_at, updated_at)
            VALUES (?,?,?,?,?,?,?,?,?)
            """).execute(arguments: [
                inbox.id, inbox.name, inbox.channel.rawValue, inbox.queueId, Data(Rows.map(inbox.settings)), inbox.tokenHash,
                inbox.version, inbox.createdAt.milliseconds, inbox.updatedAt.milliseconds,
            ])
    }

    public func deleteInbox(id: String) throws {
        cache.clear()
        try db.cachedStatement(sql: "DELETE FROM inboxes WHERE id = ?").execute(arguments: [id])
    }

    public func outboxEntry(messageId: String) throws -> OutboxEntry? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM outbox WHERE message_id = ?"), arguments: [messageId]).map(Rows.outbox)
    }

    public func outboxMessageId(inboxId: String, providerId: String) throws -> String? {
        try String.fetchOne(
            try db.cachedStatement(sql: "SELECT message_id FROM outbox WHERE inbox_id = ? AND provider_id = ? ORDER BY message_id LIMIT 1"),
            arguments: [inboxId, providerId])
    }

    public func put(_ entry: OutboxEntry) throws {
        cache.changes.outbox = true
        try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO outbox (message_id, inbox_id, conversation_id, recipient, text, template, attempts, in_flight,
                not_before, done, provider_id, created_index) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
            """).execute(arguments: [
                entry.messageId, entry.inboxId, entry.conversationId, entry.recipient, entry.text, entry.template, entry.attempts,
                entry.inFlight, entry.notBefore.milliseconds, entry.done, entry.providerId, entry.createdIndex,
            ])
    }

    public func message(id: String) throws -> Message? {
        try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM messages WHERE id = ?"), arguments: [id]).map(Rows.message)
    }

    public func externalMessage(channel: Channel, externalId: String) throws -> (conversationId: String, messageId: String)? {
        try RawStatement(db, "SELECT conversation_id, message_id FROM external_messages WHERE channel = ? AND external_id = ?")
            .fetchOne({ $0.add(channel.rawValue); $0.add(externalId) }) { ($0.string(0), $0.string(1)) }
    }

    public func insertExternalMessage(channel: Channel, externalId: String, conversationId: String, messageId: String) throws {
        try RawStatement(db, "INSERT INTO external_messages (channel, external_id, conversation_id, message_id) VALUES (?,?,?,?)").execute {
            $0.add(channel.rawValue); $0.add(externalId); $0.add(conversationId); $0.add(messageId)
        }
    }

    // MARK: Events and idempotency

    public func insert(_ event: Event) throws {
        guard event.cursor.seq < SQL.eventsPerEntryMax else {
            throw DatabaseError(message: "a command emitted more than \(SQL.eventsPerEntryMax) events (entry \(event.cursor.index))")
        }
        try RawStatement(db, "INSERT INTO events (position, log_index, seq, type, at, agent_id, data) VALUES (?,?,?,?,?,?,?)").execute {
            $0.add(SQL.position(event.cursor))
            $0.add(event.cursor.index); $0.add(event.cursor.seq); $0.add(event.type.rawValue); $0.add(event.at.milliseconds)
            $0.add(event.audienceAgentId); $0.add(event.data)
        }
    }

    public func trimEvents(before index: Int64) throws {
        let current = try Int64.fetchOne(try db.cachedStatement(sql: "SELECT value FROM meta WHERE key = 'events_trimmed_before'")) ?? 0
        guard index > current else { return }
        try db.cachedStatement(sql: "DELETE FROM events WHERE position < ?").execute(arguments: [SQL.position(EventCursor(index: index, seq: 0))])
        try db.cachedStatement(sql: "UPDATE meta SET value = ? WHERE key = 'events_trimmed_before'").execute(arguments: [index])
    }

    public func put(_ member: ClusterMember) throws {
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO cluster_members (id, peer, api, voter) VALUES (?, ?, ?, ?)")
            .execute(arguments: [member.id, member.peer, member.api, member.voter])
    }

    public func renewLease(agentId: String, until: Timestamp) throws {
        try db.cachedStatement(sql: "INSERT INTO agent_leases (agent_id, until) VALUES (?, ?) ON CONFLICT (agent_id) DO UPDATE SET until = max(until, excluded.until)")
            .execute(arguments: [agentId, until.milliseconds])
    }

    public func lease(agentId: String) throws -> Timestamp? {
        try Int64.fetchOne(try db.cachedStatement(sql: "SELECT until FROM agent_leases WHERE agent_id = ?"), arguments: [agentId]).map(Timestamp.init(milliseconds:))
    }

    public func deleteLease(agentId: String) throws {
        try db.cachedStatement(sql: "DELETE FROM agent_leases WHERE agent_id = ?").execute(arguments: [agentId])
    }

    public func assignedConversations(agentId: String) throws -> [Conversation] {
        try Row.fetchAll(try db.cachedStatement(sql: SQL.assignedConversations), arguments: [agentId])
            .map(Rows.conversation)
    }

    public func idempotencyRecord(scope: String, key: String) throws -> IdempotencyRecord? {
        try Row.fetchOne(
            try db.cachedStatement(sql: "SELECT outcome, request_hash, at FROM idempotency WHERE scope = ? AND key = ?"), arguments: [scope, key]
        ).map { row in
            IdempotencyRecord(
                outcome: [UInt8](row[0] as Data), requestHash: (row[1] as Data?).map { [UInt8]($0) } ?? [],
                at: Timestamp(milliseconds: row[2]))
        }
    }

    public func save(_ record: IdempotencyRecord, scope: String, key: String, index: Int64) throws {
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO idempotency (scope, key, log_index, outcome, request_hash, at) VALUES (?,?,?,?,?,?)")
            .execute(arguments: [scope, key, index, Data(record.outcome), Data(record.requestHash), record.at.milliseconds])
    }

    /// Forgets idempotency records whose command time is at or before `time`.
    public func deleteIdempotencyRecords(through time: Timestamp) throws {
        try db.cachedStatement(sql: "DELETE FROM idempotency WHERE at <= ?").execute(arguments: [time.milliseconds])
    }
}

/// Statements whose text is built from column lists (`Rows`): built once, not on every call.
enum SQL {
    static let agentById = "SELECT \(Rows.agentColumns) FROM agents WHERE id = ?"
    static let agentsPage = "SELECT \(Rows.agentColumns) FROM agents WHERE id > ? ORDER BY id LIMIT ?"
    static let agentByEmail = "SELECT \(Rows.agentColumns) FROM agents WHERE email = ?"
    static let availableAgents = """
        SELECT \(Rows.agentColumns) FROM agents WHERE status = 'available' AND open_count < capacity ORDER BY last_routed_index, id
        """
    static let conversationById = "SELECT \(Rows.conversationColumns) FROM conversations WHERE id = ?"
    /// Events are stored under `position`, their cursor as one integer: `log_index *
    /// eventsPerEntryMax + seq`, in cursor order.
    static let eventsPerEntryMax = 1 << 20

    /// A cursor from a client may be past any event (`seq` at or beyond the bound, an index too
    /// large to scale): it maps to the last position it cannot precede, never wraps around.
    static func position(_ cursor: EventCursor) -> Int64 {
        let (scaled, overflow) = max(cursor.index, 0).multipliedReportingOverflow(by: Int64(eventsPerEntryMax))
        if overflow { return .max }
        return scaled + Int64(min(max(cursor.seq, 0), eventsPerEntryMax - 1))
    }

    static let agentEvents = "SELECT * FROM events WHERE agent_id = ? AND position > ? ORDER BY position LIMIT ?"
    static let eventsAfter = "SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?"
    static let assignedConversations = "SELECT \(Rows.conversationColumns) FROM conversations WHERE assignee_id = ? AND status = 'assigned' ORDER BY id"
    static let openConversation = """
        SELECT \(Rows.conversationColumns) FROM conversations
        WHERE contact_id = ? AND channel = ? AND status != 'resolved' ORDER BY created_at, id LIMIT 1
        """
}

/// The per-transaction cache behind `SQLiteStore` (a class: the store is a value passed around).
final class DirectoryCache {
    var queues: [Queue]?
    var rules: [Rule]?
    /// Inboxes read in this transaction (nil: read, not there): apply reads a conversation's
    /// inbox up to three times per customer message.
    var inboxes: [String: Inbox?] = [:]
    /// Not cleared on rollback (see `StateChanges`).
    var changes = StateChanges()

    func clear() {
        queues = nil
        rules = nil
        inboxes = [:]
    }
}
