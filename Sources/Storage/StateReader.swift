import ContactCenter
import GRDB

/// A page of a list: `nextCursor` is nil on the last page.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    public var nextCursor: String?
}

/// Read-side queries for the API, inside one read transaction (a consistent snapshot).
public struct StateReader {
    let db: Database
    public var store: SQLiteStore { SQLiteStore(db) }

    public func appliedIndex() throws -> Int64 { try StateDatabase.appliedIndex(db) }

    public func eventsTrimmedBefore() throws -> Int64 {
        try Int64.fetchOne(try db.cachedStatement(sql: "SELECT value FROM meta WHERE key = 'events_trimmed_before'")) ?? 0
    }

    /// Every registered cluster member, by id.
    public func clusterMembers() throws -> [ClusterMember] {
        try Row.fetchAll(try db.cachedStatement(sql: "SELECT * FROM cluster_members ORDER BY id")).map { row in
            ClusterMember(id: row["id"], peer: row["peer"], api: row["api"], voter: row["voter"])
        }
    }

    /// Agents whose presence lease ended before `time`, oldest first.
    public func expiredLeases(before time: Timestamp, limit: Int) throws -> [String] {
        try String.fetchAll(try db.cachedStatement(sql: "SELECT agent_id FROM agent_leases WHERE until < ? ORDER BY until, agent_id LIMIT ?"),
                            arguments: [time.milliseconds, limit])
    }

    public func session(tokenHash: String) throws -> Session? { try store.session(tokenHash: tokenHash) }

    private func page<Item>(_ rows: [Row], limit: Int, key: (Item) -> String, map: (Row) throws -> Item) throws -> Page<Item> {
        let items = try rows.map(map)
        return Page(items: items, nextCursor: items.count == limit ? items.last.map(key) : nil)
    }

    public func agents(limit: Int, after cursor: String?) throws -> Page<Agent> {
        let rows = try Row.fetchAll(try db.cachedStatement(sql: SQL.agentsPage), arguments: [cursor ?? "", limit])
        return try page(rows, limit: limit, key: \.id, map: Rows.agent)
    }

    public func queuesWithWaiting() throws -> [(Queue, Int, Timestamp?)] {
        try Row.fetchAll(try db.cachedStatement(sql: """
                SELECT q.*, (SELECT count(*) FROM conversations c WHERE c.status = 'queued' AND c.queue_id = q.id) AS waiting,
                    (SELECT min(c.updated_at) FROM conversations c WHERE c.status = 'queued' AND c.queue_id = q.id) AS oldest
                FROM queues q ORDER BY q.created_index, q.id
                """)
        ).map { row in (try Rows.queue(row), row["waiting"], Rows.timestamp(row["oldest"])) }
    }

    public func rules() throws -> [Rule] { try store.rules() }

    /// Every inbox, oldest first.
    public func inboxes() throws -> [Inbox] {
        try Row.fetchAll(try db.cachedStatement(sql: "SELECT * FROM inboxes ORDER BY created_at, id")).map(Rows.inbox)
    }

    /// Replies the dispatcher may send at `now`: not done, due, oldest first, at most `limit`.
    public func dueOutbox(now: Timestamp, limit: Int) throws -> [OutboxEntry] {
        try Row.fetchAll(
            try db.cachedStatement(sql: "SELECT * FROM outbox WHERE done = 0 AND not_before <= ? ORDER BY not_before, created_index LIMIT ?"),
            arguments: [now.milliseconds, limit]
        ).map(Rows.outbox)
    }

    /// Replies not sent yet and not given up, counted by whether an attempt is under way.
    public func pendingOutboxCount() throws -> Int {
        try Int.fetchOne(try db.cachedStatement(sql: "SELECT count(*) FROM outbox WHERE done = 0")) ?? 0
    }

    public struct ConversationFilter: Sendable {
        public var status: ConversationStatus?
        /// `.some(nil)` means unassigned.
        public var assignee: String??
        public var queue: String?
        public init(status: ConversationStatus? = nil, assignee: String?? = nil, queue: String? = nil) {
            self.status = status
            self.assignee = assignee
            self.queue = queue
        }
    }

    public func conversations(_ filter: ConversationFilter, limit: Int, after cursor: String?) throws -> Page<Conversation> {
        var clauses = ["id > ?"]
        var arguments: [(any DatabaseValueConvertible)?] = [cursor ?? ""]
        if let status = filter.status {
            clauses.append("status = ?")
            arguments.append(status.rawValue)
        }
        switch filter.assignee {
        case .none: break
        case .some(.none): clauses.append("assignee_id IS NULL")
        case .some(.some(let id)):
            clauses.append("assignee_id = ?")
            arguments.append(id)
        }
        if let queue = filter.queue {
            clauses.append("queue_id = ?")
            arguments.append(queue)
        }
        arguments.append(limit)
        let sql = "SELECT \(Rows.conversationColumns) FROM conversations WHERE \(clauses.joined(separator: " AND ")) ORDER BY id LIMIT ?"
        let rows = try Row.fetchAll(try db.cachedStatement(sql: sql), arguments: StatementArguments(arguments))
        return try page(rows, limit: limit, key: \.id, map: Rows.conversation)
    }

    /// A page of the conversation's messages, newest first from `before` (a message id; nil:
    /// the newest), returned oldest first. `olderCursor` is the id to pass as `before` for the
    /// page before this one, nil when this page reaches the first message. Nil when `before`
    /// names no message of the conversation.
    public func messages(conversationId: String, before: String?, limit: Int) throws -> (messages: [Message], olderCursor: String?)? {
        var rows: [Row]
        if let before {
            guard let anchor = try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT log_index, ordinal FROM messages WHERE id = ? AND conversation_id = ?"),
                arguments: [before, conversationId])
            else { return nil }
            rows = try Row.fetchAll(
                try db.cachedStatement(sql: """
                    SELECT * FROM messages WHERE conversation_id = ? AND (log_index, ordinal) < (?, ?)
                    ORDER BY log_index DESC, ordinal DESC LIMIT ?
                    """),
                arguments: [conversationId, anchor[0] as Int64, anchor[1] as Int64, limit + 1])
        } else {
            rows = try Row.fetchAll(
                try db.cachedStatement(sql: "SELECT * FROM messages WHERE conversation_id = ? ORDER BY log_index DESC, ordinal DESC LIMIT ?"),
                arguments: [conversationId, limit + 1])
        }
        let more = rows.count > limit
        if more { rows.removeLast() }
        let messages = try rows.reversed().map(Rows.message)
        return (messages, more ? messages.first?.id : nil)
    }

    public func message(id: String) throws -> Message? { try store.message(id: id) }

    /// Whether `Command.expire` has work: a session expired by `now`, a session expiring by
    /// `warnThrough` not warned yet, or an idempotency record from `keysThrough` or before.
    public func expiryDue(now: Timestamp, warnThrough: Timestamp, keysThrough: Timestamp) throws -> Bool {
        let warned = max(try store.sessionsWarnedThrough(), now)
        return try Bool.fetchOne(
            try db.cachedStatement(sql: """
                SELECT EXISTS (SELECT 1 FROM sessions WHERE expires_at <= ?)
                    OR EXISTS (SELECT 1 FROM sessions WHERE expires_at > ? AND expires_at <= ?)
                    OR EXISTS (SELECT 1 FROM idempotency WHERE at <= ?)
                """),
            arguments: [now.milliseconds, warned.milliseconds, warnThrough.milliseconds, keysThrough.milliseconds]) ?? false
    }

    /// The events addressed to `agentId` after `cursor`, in cursor order, at most `limit`
    /// (`events_audience` index: the cost follows the agent's own events, not everyone's).
    public func events(after cursor: EventCursor, forAgent agentId: String, limit: Int) throws -> [Event] {
        try Row.fetchAll(
            try db.cachedStatement(sql: SQL.agentEvents), arguments: [agentId, SQL.position(cursor), limit]
        ).map(Rows.event)
    }

    /// Events after `cursor` in cursor order, at most `limit`.
    public func events(after cursor: EventCursor, limit: Int) throws -> [Event] {
        try Row.fetchAll(try db.cachedStatement(sql: SQL.eventsAfter), arguments: [SQL.position(cursor), limit]
        ).map(Rows.event)
    }
}
