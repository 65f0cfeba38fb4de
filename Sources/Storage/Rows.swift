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

    static func map(_ bytes: [UInt8]) -> [String: String] {
        var reader = ByteReader(bytes)
        // Written by `map(_:)` in this same database: a decoding failure is corruption.
        guard let map = try? reader.readStringMap() else { preconditionFailure("corrupt string map in state database") }
        return map
    }

    static func enumValue<T: RawRepresentable>(_ raw: String, _ type: T.Type) -> T where T.RawValue == String {
        guard let value = T(rawValue: raw) else { preconditionFailure("corrupt \(T.self) '\(raw)' in state database") }
        return value
    }

    static func timestamp(_ value: Int64?) -> Timestamp? { value.map(Timestamp.init(milliseconds:)) }

    static func agent(_ row: Row) -> Agent {
        Agent(
            id: row["id"], name: row["name"], email: row["email"], passwordHash: row["password_hash"],
            role: enumValue(row["role"], Role.self), skills: list(row["skills"] as String), capacity: row["capacity"],
            status: enumValue(row["status"], Presence.self), openConversations: row["open_count"],
            lastRoutedIndex: row["last_routed_index"], version: row["version"],
            createdAt: Timestamp(milliseconds: row["created_at"]), updatedAt: Timestamp(milliseconds: row["updated_at"]))
    }

    static func queue(_ row: Row) -> Queue {
        Queue(
            id: row["id"], name: row["name"], skills: list(row["skills"] as String), priority: row["priority"],
            channels: list(row["channels"] as String).map { enumValue($0, Channel.self) }, createdIndex: row["created_index"],
            createdAt: Timestamp(milliseconds: row["created_at"]))
    }

    static func rule(_ row: Row) -> Rule {
        Rule(
            id: row["id"], name: row["name"], keywords: list(row["keywords"] as String), action: enumValue(row["action"], RuleAction.self),
            reply: row["reply"], queueId: row["queue_id"], order: row["ord"], createdAt: Timestamp(milliseconds: row["created_at"]))
    }

    static func contact(_ row: Row) -> Contact {
        Contact(
            id: row["id"], name: row["name"], identifiers: map([UInt8](row["identifiers"] as Data)),
            attributes: map([UInt8](row["attributes"] as Data)), version: row["version"],
            createdAt: Timestamp(milliseconds: row["created_at"]), updatedAt: Timestamp(milliseconds: row["updated_at"]))
    }

    static func conversation(_ row: Row) -> Conversation {
        Conversation(
            id: row["id"], contactId: row["contact_id"], channel: enumValue(row["channel"], Channel.self),
            status: enumValue(row["status"], ConversationStatus.self), queueId: row["queue_id"], assigneeId: row["assignee_id"],
            priority: row["priority"], enqueuedIndex: row["enqueued_index"], createdAt: Timestamp(milliseconds: row["created_at"]),
            firstResponseAt: timestamp(row["first_response_at"]), resolvedAt: timestamp(row["resolved_at"]),
            updatedAt: Timestamp(milliseconds: row["updated_at"]), version: row["version"])
    }

    static func message(_ row: Row) -> Message {
        Message(
            id: row["id"], conversationId: row["conversation_id"], author: enumValue(row["author"], Author.self),
            agentId: row["agent_id"], text: row["text"], isPrivate: row["private"], externalId: row["external_id"],
            createdAt: Timestamp(milliseconds: row["created_at"]), logIndex: row["log_index"], ordinal: row["ordinal"])
    }

    static func event(_ row: Row) -> Event {
        Event(
            cursor: EventCursor(index: row["log_index"], seq: row["seq"]), type: enumValue(row["type"], EventType.self),
            at: Timestamp(milliseconds: row["at"]), audienceAgentId: row["agent_id"], data: row["data"])
    }
}
