import GRDB

/// The state database schema. `meta.applied_index` is written in the same transaction as the
/// rows it covers, so after a crash the node replays the log from exactly there.
enum Schema {
    static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                INSERT INTO meta (key, value) VALUES ('applied_index', 0), ('events_trimmed_before', 0);
                CREATE TABLE agents (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
                    role TEXT NOT NULL, skills TEXT NOT NULL, capacity INTEGER NOT NULL, status TEXT NOT NULL,
                    open_count INTEGER NOT NULL, last_routed_index INTEGER NOT NULL, version INTEGER NOT NULL,
                    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID;
                CREATE INDEX agents_routing ON agents (status, last_routed_index, id);
                CREATE TABLE sessions (
                    token_hash TEXT PRIMARY KEY, agent_id TEXT NOT NULL, created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL) WITHOUT ROWID;
                CREATE INDEX sessions_agent ON sessions (agent_id);
                CREATE TABLE queues (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, skills TEXT NOT NULL, priority INTEGER NOT NULL,
                    channels TEXT NOT NULL, created_index INTEGER NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE rules (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, keywords TEXT NOT NULL, action TEXT NOT NULL,
                    reply TEXT, queue_id TEXT, ord INTEGER NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE contacts (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, identifiers BLOB NOT NULL, attributes BLOB NOT NULL,
                    version INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE contact_identifiers (
                    channel TEXT NOT NULL, value TEXT NOT NULL, contact_id TEXT NOT NULL,
                    PRIMARY KEY (channel, value)) WITHOUT ROWID;
                CREATE TABLE conversations (
                    id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL,
                    queue_id TEXT, assignee_id TEXT, priority INTEGER NOT NULL, enqueued_index INTEGER NOT NULL,
                    created_at INTEGER NOT NULL, first_response_at INTEGER, resolved_at INTEGER,
                    updated_at INTEGER NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
                CREATE INDEX conversations_waiting ON conversations (priority DESC, enqueued_index, id) WHERE status = 'queued';
                CREATE INDEX conversations_contact ON conversations (contact_id, channel, status);
                CREATE INDEX conversations_assignee ON conversations (assignee_id, status);
                CREATE INDEX conversations_status ON conversations (status, id);
                CREATE TABLE messages (
                    id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, author TEXT NOT NULL, agent_id TEXT,
                    text TEXT NOT NULL, private INTEGER NOT NULL, external_id TEXT, created_at INTEGER NOT NULL,
                    log_index INTEGER NOT NULL, ordinal INTEGER NOT NULL) WITHOUT ROWID;
                CREATE INDEX messages_conversation ON messages (conversation_id, log_index, ordinal);
                CREATE TABLE external_messages (
                    channel TEXT NOT NULL, external_id TEXT NOT NULL, conversation_id TEXT NOT NULL,
                    message_id TEXT NOT NULL, PRIMARY KEY (channel, external_id)) WITHOUT ROWID;
                CREATE TABLE events (
                    log_index INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, at INTEGER NOT NULL,
                    agent_id TEXT, data TEXT NOT NULL, PRIMARY KEY (log_index, seq)) WITHOUT ROWID;
                CREATE TABLE idempotency (
                    scope TEXT NOT NULL, key TEXT NOT NULL, log_index INTEGER NOT NULL, outcome BLOB NOT NULL,
                    PRIMARY KEY (scope, key)) WITHOUT ROWID;
                CREATE INDEX idempotency_index ON idempotency (log_index);
                """)
        }
        migrator.registerMigration("v2") { db in
            try db.execute(sql: """
                CREATE TABLE cluster_members (
                    id TEXT PRIMARY KEY, peer TEXT NOT NULL, api TEXT NOT NULL, voter INTEGER NOT NULL) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v3") { db in
            try db.execute(sql: """
                CREATE TABLE agent_leases (agent_id TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID;
                CREATE INDEX agent_leases_until ON agent_leases (until);
                """)
        }
        migrator.registerMigration("v4") { db in
            // An agent's events socket catches up on its own events only: without this index a
            // reconnect scanned every event since its cursor (all agents' events), and five
            // thousand agents reconnecting after a kill kept the nodes busy for a minute.
            try db.execute(sql: "CREATE INDEX events_audience ON events (agent_id, log_index, seq);")
        }
        migrator.registerMigration("v5") { db in
            // Routing asks for the longest-idle agent with room. Through `agents_routing` it
            // read every available agent's row to test `open_count < capacity`, on every
            // inbound message, also when all of them were full; this index holds only agents
            // with room, so a full floor costs one empty index probe.
            try db.execute(sql: """
                CREATE INDEX agents_free ON agents (last_routed_index, id) WHERE status = 'available' AND open_count < capacity;
                DROP INDEX agents_routing;
                """)
        }
        migrator.registerMigration("v6") { db in
            // Apply appends every event at the end of the table. As a WITHOUT ROWID table keyed by
            // (log_index, seq) each split rebalanced three leaves, three extra pages in every
            // commit's WAL; a rowid table keyed by `position` (the cursor as one integer) only adds
            // a page at the right edge.
            //
            // `events_audience` and `conversations_assignee` serve only `agent_id = ?` and
            // `assignee_id = ?` lookups, so they need no rows without an agent: most events (a new
            // customer's message and its queued conversation) and every waiting conversation.
            try db.execute(sql: """
                CREATE TABLE events_v6 (
                    position INTEGER PRIMARY KEY, log_index INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
                    at INTEGER NOT NULL, agent_id TEXT, data TEXT NOT NULL);
                INSERT INTO events_v6 (position, log_index, seq, type, at, agent_id, data)
                    SELECT log_index * \(SQL.eventsPerEntryMax) + seq, log_index, seq, type, at, agent_id, data FROM events ORDER BY log_index, seq;
                DROP TABLE events;
                ALTER TABLE events_v6 RENAME TO events;
                CREATE INDEX events_audience ON events (agent_id) WHERE agent_id IS NOT NULL;
                DROP INDEX conversations_assignee;
                CREATE INDEX conversations_assignee ON conversations (assignee_id, status) WHERE assignee_id IS NOT NULL;
                """)
        }
        migrator.registerMigration("v7") { db in
            // Bounds that apply checks on every write (ContactCenter `Limits`): a conversation's
            // message count, kept with it instead of counted on every message; an agent's
            // `disabled` flag; how far `session.expiring` has been sent; and, for idempotency
            // keys scoped to the request, the hash of the request and the first answer.
            try db.execute(sql: """
                ALTER TABLE conversations ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
                UPDATE conversations SET message_count = (SELECT COUNT(*) FROM messages WHERE conversation_id = conversations.id);
                ALTER TABLE agents ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
                INSERT INTO meta (key, value) VALUES ('sessions_warned_through', 0);
                CREATE INDEX sessions_expiry ON sessions (expires_at);
                ALTER TABLE idempotency ADD COLUMN request_hash BLOB;
                ALTER TABLE idempotency ADD COLUMN at INTEGER NOT NULL DEFAULT 0;
                CREATE INDEX idempotency_at ON idempotency (at);
                """)
        }
        migrator.registerMigration("v8") { db in
            // Inboxes, the replies that leave through their providers (the outbox, which the
            // leader's dispatcher works through), and each reply's delivery.
            try db.execute(sql: """
                CREATE TABLE inboxes (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, channel TEXT NOT NULL, queue_id TEXT, settings BLOB NOT NULL,
                    token_hash TEXT, version INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE outbox (
                    message_id TEXT PRIMARY KEY, inbox_id TEXT NOT NULL, conversation_id TEXT NOT NULL, recipient TEXT NOT NULL,
                    text TEXT NOT NULL, template TEXT, attempts INTEGER NOT NULL, in_flight INTEGER NOT NULL,
                    not_before INTEGER NOT NULL, done INTEGER NOT NULL, provider_id TEXT, created_index INTEGER NOT NULL) WITHOUT ROWID;
                CREATE INDEX outbox_due ON outbox (not_before, created_index) WHERE done = 0;
                CREATE INDEX outbox_provider ON outbox (inbox_id, provider_id) WHERE provider_id IS NOT NULL;
                ALTER TABLE conversations ADD COLUMN inbox_id TEXT;
                ALTER TABLE conversations ADD COLUMN customer_at INTEGER;
                ALTER TABLE messages ADD COLUMN attachments TEXT;
                ALTER TABLE messages ADD COLUMN delivery TEXT;
                ALTER TABLE messages ADD COLUMN delivery_reason TEXT;
                ALTER TABLE messages ADD COLUMN possible_duplicate INTEGER NOT NULL DEFAULT 0;
                """)
        }
        return migrator
    }

    /// Every table, in dump order, with the columns that order its rows.
    static let tables: [(name: String, orderBy: String)] = [
        ("meta", "key"), ("agents", "id"), ("sessions", "token_hash"), ("queues", "id"), ("rules", "id"),
        ("contacts", "id"), ("contact_identifiers", "channel, value"), ("conversations", "id"), ("messages", "id"),
        ("external_messages", "channel, external_id"), ("events", "position"), ("idempotency", "scope, key"),
        ("cluster_members", "id"), ("agent_leases", "agent_id"), ("inboxes", "id"), ("outbox", "message_id"),
    ]
}
