import Foundation
import ContactCenter
import Wire
import XCTest

final class CodecTests: XCTestCase {
    static let samples: [Command] = [
        .createAgent(id: "a", name: "Ana", email: "ana@x.io", passwordHash: "h", role: .supervisor, skills: ["es", "billing"], capacity: 4),
        .updateAgent(id: "a", name: nil, role: .admin, skills: [], capacity: 2, expectedVersion: 7),
        .updateAgent(id: "a", name: "B", role: nil, skills: nil, capacity: nil, expectedVersion: nil),
        .setPresence(agentId: "a", status: .away),
        .createSession(tokenHash: "abc", agentId: "a", expiresAt: Timestamp(milliseconds: 99)),
        .deleteSession(tokenHash: "abc"),
        .createQueue(id: "q", name: "Billing", skills: ["billing"], priority: -3, channels: [.sms, .email]),
        .createRule(id: "r", name: "n", keywords: ["factura"], action: .handoff, reply: "hola", queueId: "q", order: 10),
        .createContact(id: "c", name: "Ana", identifiers: ["whatsapp": "+54"], attributes: ["plan": "gold", "ü": "ñ"]),
        .updateContact(id: "c", name: nil, attributes: ["plan": nil, "tier": "1"], expectedVersion: 3),
        .inboundMessage(channel: .webchat, from: "x", text: "héllo\n", externalId: "e", name: "N", contactId: "c", conversationId: "v", messageId: "m"),
        .postMessage(conversationId: "v", messageId: "m", text: "t", isPrivate: true),
        .assign(conversationId: "v", agentId: nil, queueId: "q"),
        .transfer(conversationId: "v", agentId: "a", queueId: nil),
        .resolve(conversationId: "v"),
        .reopen(conversationId: "v"),
        .trimEvents(beforeIndex: 42),
        .setMember(ClusterMember(id: "n2", peer: "127.0.0.1:7082", api: "127.0.0.1:8082", voter: true)),
        .renewLeases(agentIds: ["ag_1", "ag_2"], until: Timestamp(milliseconds: 1_800_000_030_000)),
        .expireLeases(agentIds: ["ag_1"]),
        .updateAgent(id: "a", name: nil, role: nil, skills: nil, capacity: nil, expectedVersion: 2, passwordHash: "pbkdf2$x", disabled: true),
        .updateAgent(id: "a", name: nil, role: nil, skills: nil, capacity: nil, expectedVersion: nil, passwordHash: nil, disabled: false),
        .expire(warnSessionsThrough: Timestamp(milliseconds: 1_800_000_600_000)),
        .upgradePasswordHash(agentId: "a", from: "pbkdf2-sha256$1000$00$00", to: "pbkdf2-sha512$210000$11$22"),
        .inboundMessage(
            channel: .whatsapp, from: "+5491155550000", text: "", externalId: "wamid.1", name: nil, contactId: "c", conversationId: "v",
            messageId: "m", inboxId: "ib_1", attachments: #"[{"kind":"image"}]"#),
        .postMessage(conversationId: "v", messageId: "m", text: "t", isPrivate: false, template: #"{"name":"hello"}"#),
        .createInbox(id: "ib_1", name: "Ventas", channel: .whatsapp, queueId: "q", settings: ["phoneNumberId": "1", "appSecret": "s"], tokenHash: nil),
        .createInbox(id: "ib_2", name: "API", channel: .api, queueId: nil, settings: [:], tokenHash: "ab"),
        .updateInbox(id: "ib_1", name: "V", queueId: "", settings: ["apiBase": nil, "accessToken": "t"], expectedVersion: 2),
        .deleteInbox(id: "ib_1"),
        .outboxAttempt(messageId: "m", attempt: 3),
        .outboxResult(messageId: "m", attempt: 1, result: .sent(providerId: "wamid.x")),
        .outboxResult(messageId: "m", attempt: 2, result: .retry(reason: "HTTP 503", notBefore: Timestamp(milliseconds: 5))),
        .outboxResult(messageId: "m", attempt: 3, result: .unknown(reason: "no answer: read timeout", notBefore: Timestamp(milliseconds: 6))),
        .typing(conversationId: "cv_1"),
        .webChatReceipt(conversationId: "cv_1", messageId: "ms_1", status: .read),
        .outboxResult(messageId: "m", attempt: 3, result: .failed(reason: "131026: undeliverable")),
        .deliveryStatus(inboxId: "ib_1", providerId: "wamid.x", status: .read, reason: nil),
    ]

    func testEveryCommandRoundTrips() throws {
        for (position, command) in Self.samples.enumerated() {
            let envelope = CommandEnvelope(
                at: Timestamp(milliseconds: 1_700_000_000_000 + Int64(position)), actor: position % 2 == 0 ? .agent(id: "a") : .channel,
                idempotencyKey: position % 3 == 0 ? "key" : nil, command: command)
            XCTAssertEqual(try CommandEnvelope.decode(envelope.encoded()), envelope, "command \(command)")
        }
    }

    func testEqualCommandsEncodeToEqualBytes() {
        let a = CommandEnvelope(at: Timestamp(milliseconds: 1), actor: .admin, command: .createContact(id: "c", name: "n", identifiers: [:], attributes: ["a": "1", "b": "2", "c": "3"]))
        let b = CommandEnvelope(at: Timestamp(milliseconds: 1), actor: .admin, command: .createContact(id: "c", name: "n", identifiers: [:], attributes: ["c": "3", "a": "1", "b": "2"]))
        XCTAssertEqual(a.encoded(), b.encoded(), "maps must encode in key order")
    }

    func testUnknownVersionIsRefused() {
        var bytes = CommandEnvelope(at: Timestamp(milliseconds: 1), actor: .admin, command: .resolve(conversationId: "v")).encoded()
        bytes[0] = 3
        XCTAssertThrowsError(try CommandEnvelope.decode(bytes)) { error in
            XCTAssertEqual(error as? WireError, .invalid("command version 3, this node knows 1...2"))
        }
    }

    /// Entries written before idempotency keys were scoped (version 1: the key alone) still
    /// decode, to a key without route or hash, so logs and snapshots from before replay.
    func testVersionOneEntriesStillDecode() throws {
        var writer = ByteWriter()
        writer.write(UInt8(1)); writer.write(Int64(7)); writer.write(UInt8(1)); writer.write(Optional("k1"))
        writer.write(UInt8(13)); writer.write("cv_1")
        let envelope = try CommandEnvelope.decode(writer.bytes)
        XCTAssertEqual(envelope, CommandEnvelope(at: Timestamp(milliseconds: 7), actor: .admin, idempotency: Idempotency(key: "k1"), command: .resolve(conversationId: "cv_1")))
        let scoped = CommandEnvelope(
            at: Timestamp(milliseconds: 7), actor: .agent(id: "ag_1"),
            idempotency: Idempotency(key: "k1", route: "POST /v1/conversations/cv_1/resolve", requestHash: Array(repeating: 9, count: 32)),
            command: .resolve(conversationId: "cv_1"))
        XCTAssertEqual(try CommandEnvelope.decode(scoped.encoded()), scoped)
    }

    func testEveryTruncationAndRandomBytesFailCleanly() {
        for command in Self.samples {
            let bytes = CommandEnvelope(at: Timestamp(milliseconds: 5), actor: .admin, idempotencyKey: "k", command: command).encoded()
            for length in 0..<bytes.count {
                XCTAssertThrowsError(try CommandEnvelope.decode(Array(bytes.prefix(length))), "prefix \(length) of \(command) decoded")
            }
            XCTAssertThrowsError(try CommandEnvelope.decode(bytes + [0]), "trailing byte accepted for \(command)")
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let bytes = (0..<Int.random(in: 0..<64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? CommandEnvelope.decode(bytes)
            _ = try? Outcome.decode(bytes)
        }
    }

    func testOutcomesRoundTrip() throws {
        let outcomes: [Outcome] = [
            .agent(id: "a"), .session(agentId: "a"), .queue(id: "q"), .rule(id: "r"), .contact(id: "c"),
            .inbound(conversationId: "v", messageId: "m", duplicate: true), .message(conversationId: "v", messageId: "m"),
            .conversation(id: "v"), .inbox(id: "ib_1"), .done, .rejected(DomainError(.conflict, "already_resolved", "msg", field: "f")),
        ]
        for outcome in outcomes { XCTAssertEqual(try Outcome.decode(outcome.encoded()), outcome) }
    }
}

/// Events are stored and sent as `JSONValue.serialized`; its escaping must give JSON that parses
/// back to the same strings.
final class JSONValueTests: XCTestCase {
    func testStringsNeedingEscapesRoundTripThroughAJSONParser() throws {
        let samples = [
            "", "plain", "\"", "\\", "a\"b\\c", "line\nbreak\r\ttab", "\u{0001}\u{001F}x", "ends with \\",
            "Pérez 名前 😀", "\u{007F}\u{0085}", "\"\"\\\\\n\n",
        ]
        for sample in samples {
            let text = JSONValue.object(["k": .string(sample)]).serialized
            let parsed = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String]
            XCTAssertEqual(parsed?["k"], sample, "sample \(sample.debugDescription) serialized as \(text)")
        }
        XCTAssertEqual(JSONValue.string("a\"\\\n\u{0001}é").serialized, #""a\"\\\n\u0001é""#)
    }

    /// `Render` lists its keys in order (`.members`) and writes timestamps in place (`.time`);
    /// the bytes must be those of the same values as a sorted `.object` of `.string` times,
    /// which is what every member stored before and what readers of stored events expect.
    func testPreSortedRendersWriteTheBytesOfSortedObjects() {
        let at = Timestamp(milliseconds: 1_764_700_000_123)
        let agent = Agent(
            id: "ag_1", name: "Ana", email: "ana@example.com", passwordHash: "x", role: .supervisor, skills: ["es", "billing"],
            capacity: 5, status: .available, openConversations: 2, lastRoutedIndex: 9, version: 3, createdAt: at, updatedAt: at)
        let message = Message(
            id: "ms_1", conversationId: "cv_1", author: .agent, agentId: "ag_1", text: "Hola \"tú\"\n", isPrivate: true,
            externalId: nil, createdAt: at, logIndex: 7, ordinal: 0)
        let conversation = Conversation(
            id: "cv_1", contactId: "ct_1", channel: .whatsapp, status: .assigned, queueId: "qu_1", assigneeId: nil, priority: 2,
            enqueuedIndex: 4, createdAt: Timestamp(milliseconds: -62_167_305_600_000), firstResponseAt: at, resolvedAt: nil,
            updatedAt: at, version: 6)
        let rendered: [(String, JSONValue)] = [
            ("agent", Render.agent(agent)), ("message", Render.message(message)), ("conversation", Render.conversation(conversation)),
            ("conversation with messages", Render.conversation(conversation, contact: .string("ct_1"), messages: [message, message])),
            ("event", .members(["agent": .string("ag_1"), "conversation": Render.conversation(conversation)])),
        ]
        for (name, value) in rendered {
            XCTAssertEqual(value.serialized, Self.sortedObjects(value).serialized, name)
            XCTAssertTrue(value.serialized.contains(#""createdAt":""#), "\(name): \(value.serialized)")
        }
        XCTAssertTrue(Render.conversation(conversation).serialized.contains(#""createdAt":"-0001-12-31T00:00:00.000Z""#))
    }

    /// The same value with every pre-sorted object as a dictionary and every time as a string.
    private static func sortedObjects(_ value: JSONValue) -> JSONValue {
        switch value {
        case .sortedObject(let members):
            return .object(Dictionary(uniqueKeysWithValues: members.map { ($0.key, sortedObjects($0.value)) }))
        case .object(let members): return .object(members.mapValues(sortedObjects))
        case .array(let values): return .array(values.map(sortedObjects))
        case .time(let time): return .string(time.rfc3339)
        case .null, .bool, .int, .string, .raw: return value
        }
    }
}
