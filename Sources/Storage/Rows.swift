import ContactCenter
import Foundation
import GRDB
import Wire

/// Row <-> entity mapping. Lists are stored newline-joined (validated input never holds a
/// newline); string maps as sorted, length-prefixed binary (`Wire`).
enum Rows {
    static func list(_ values: [String]) -> String { values.joined(separator: "\n") }

    static func list(_ text: String) -> [String] { text.isEmpty ? [] : text.components(separatedBy: "\n") }

    static func map(_ map: [String: String]) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(map)
        return writer.bytes
    }

    /// Written by `map(_:)` in this same database: a decoding failure is corruption, or a row
    /// written before a bound existed. It throws: a read of that row fails, the node does not.
    static func map(_ bytes: [UInt8]) throws -> [String: String] {
        var reader = ByteReader(bytes)
        do {
            let map = try reader.readStringMap()
            try reader.expectEnd()
            return map
        } catch {
            throw CorruptRow(reason: "string map: \(error)")
        }
    }

    static func enumValue<T: RawRepresentable>(_ raw: String, _ type: T.Type) throws -> T where T.RawValue == String {
        guard let value = T(rawValue: raw) else { throw CorruptRow(reason: "\(T.self) '\(raw)'") }
        return value
    }

    static func timestamp(_ value: Int64?) -> Timestamp? { value.map(Timestamp.init(milliseconds:)) }

    /// `agents` columns in the order `agent(_ columns:)` reads them.
    static let agentColumns =
        "id, name, email, password_hash, role, skills, capacity, status, open_count, last_routed_index, version, created_at, updated_at, disabled"

    static func agent(_ c: some ColumnReader) throws -> Agent {
        Agent(
            id: c.string(0), name: c.string(1), email: c.string(2), passwordHash: c.string(3), role: try enumValue(c.string(4), Role.self),
            skills: list(c.string(5)), capacity: c.int(6), status: try enumValue(c.string(7), Presence.self), openConversations: c.int(8),
            lastRoutedIndex: c.int64(9), version: c.int64(10), createdAt: Timestamp(milliseconds: c.int64(11)),
            updatedAt: Timestamp(milliseconds: c.int64(12)), disabled: c.int(13) != 0)
    }

    /// `conversations` columns in the order `conversation(_ columns:)` reads them.
    static let conversationColumns = """
        id, contact_id, channel, status, queue_id, assignee_id, priority, enqueued_index, created_at, first_response_at, \
        resolved_at, updated_at, version, message_count, inbox_id, customer_at
        """

    static func conversation(_ c: some ColumnReader) throws -> Conversation {
        Conversation(
            id: c.string(0), contactId: c.string(1), channel: try enumValue(c.string(2), Channel.self),
            status: try enumValue(c.string(3), ConversationStatus.self), queueId: c.optionalString(4), assigneeId: c.optionalString(5),
            priority: c.int(6), enqueuedIndex: c.int64(7), createdAt: Timestamp(milliseconds: c.int64(8)),
            firstResponseAt: timestamp(c.optionalInt64(9)), resolvedAt: timestamp(c.optionalInt64(10)),
            updatedAt: Timestamp(milliseconds: c.int64(11)), version: c.int64(12), messageCount: c.int(13),
            inboxId: c.optionalString(14), customerAt: timestamp(c.optionalInt64(15)))
    }

    static func queue(_ row: Row) throws -> Queue {
        Queue(
            id: row["id"], name: row["name"], skills: list(row["skills"] as String), priority: row["priority"],
            channels: try list(row["channels"] as String).map { try enumValue($0, Channel.self) }, createdIndex: row["created_index"],
            createdAt: Timestamp(milliseconds: row["created_at"]))
    }

    static func rule(_ row: Row) throws -> Rule {
        Rule(
            id: row["id"], name: row["name"], keywords: list(row["keywords"] as String), action: try enumValue(row["action"], RuleAction.self),
            reply: row["reply"], queueId: row["queue_id"], order: row["ord"], createdAt: Timestamp(milliseconds: row["created_at"]))
    }

    static func contact(_ row: Row) throws -> Contact {
        Contact(
            id: row["id"], name: row["name"], identifiers: try map([UInt8](row["identifiers"] as Data)),
            attributes: try map([UInt8](row["attributes"] as Data)), version: row["version"],
            createdAt: Timestamp(milliseconds: row["created_at"]), updatedAt: Timestamp(milliseconds: row["updated_at"]))
    }

    static func message(_ row: Row) throws -> Message {
        Message(
            id: row["id"], conversationId: row["conversation_id"], author: try enumValue(row["author"], Author.self),
            agentId: row["agent_id"], text: row["text"], isPrivate: row["private"], externalId: row["external_id"],
            createdAt: Timestamp(milliseconds: row["created_at"]), logIndex: row["log_index"], ordinal: row["ordinal"],
            attachments: row["attachments"], delivery: try delivery(row))
    }

    static func delivery(_ row: Row) throws -> Delivery? {
        guard let raw: String = row["delivery"] else { return nil }
        return Delivery(
            status: try enumValue(raw, DeliveryStatus.self), reason: row["delivery_reason"],
            possibleDuplicate: (row["possible_duplicate"] as Int64? ?? 0) != 0)
    }

    static func inbox(_ row: Row) throws -> Inbox {
        Inbox(
            id: row["id"], name: row["name"], channel: try enumValue(row["channel"], Channel.self), queueId: row["queue_id"],
            settings: try map([UInt8](row["settings"] as Data)), tokenHash: row["token_hash"], version: row["version"],
            createdAt: Timestamp(milliseconds: row["created_at"]), updatedAt: Timestamp(milliseconds: row["updated_at"]))
    }

    static func outbox(_ row: Row) -> OutboxEntry {
        OutboxEntry(
            messageId: row["message_id"], inboxId: row["inbox_id"], conversationId: row["conversation_id"], recipient: row["recipient"],
            text: row["text"], template: row["template"], attempts: row["attempts"], inFlight: row["in_flight"],
            notBefore: Timestamp(milliseconds: row["not_before"]), done: row["done"], providerId: row["provider_id"],
            createdIndex: row["created_index"])
    }

    static func event(_ row: Row) throws -> Event {
        Event(
            cursor: EventCursor(index: row["log_index"], seq: row["seq"]), type: try enumValue(row["type"], EventType.self),
            at: Timestamp(milliseconds: row["at"]), audienceAgentId: row["agent_id"], data: row["data"])
    }
}

/// A stored row that does not decode: corruption, or a row written before a bound existed.
/// Reading it fails with this error; nothing traps.
public struct CorruptRow: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { "corrupt row in the state database: \(reason)" }
}

/// A row read by column position, as `Rows.agent` and `Rows.conversation` decode it: SQLite's
/// current row on apply's path (`Columns`), a GRDB `Row` on the API's reads. The statement
/// selects the entity's column list (`Rows.agentColumns`, `Rows.conversationColumns`).
protocol ColumnReader {
    func string(_ column: CInt) -> String
    func optionalString(_ column: CInt) -> String?
    func int64(_ column: CInt) -> Int64
    func optionalInt64(_ column: CInt) -> Int64?
    func int(_ column: CInt) -> Int
}

extension Columns: ColumnReader {}

extension Row: ColumnReader {
    func string(_ column: CInt) -> String { self[Int(column)] }
    func optionalString(_ column: CInt) -> String? { self[Int(column)] }
    func int64(_ column: CInt) -> Int64 { self[Int(column)] }
    func optionalInt64(_ column: CInt) -> Int64? { self[Int(column)] }
    func int(_ column: CInt) -> Int { self[Int(column)] }
}
