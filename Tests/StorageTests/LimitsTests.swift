import ContactCenter
import Foundation
import GRDB
import Storage
import XCTest

/// Every bound a client can push on (ContactCenter `Limits`) is held by apply: a command over it
/// is rejected identically on every member, changes nothing, and the log moves on. Rows that do
/// not decode make their read fail, never the node.
final class LimitsTests: XCTestCase {
    /// The crash reported against a release build: a contact grown by PATCHes of 64 new keys
    /// each, every one answered 200, until the next read trapped in the row decoder, on every
    /// node, on every restart. Now the PATCH that would pass `contactAttributesMax` is refused
    /// and every read keeps working.
    func testAContactGrownByPatchesStopsAtItsBoundAndStaysReadable() throws {
        let harness = try Harness()
        try harness.apply(.createContact(id: "ct_1", name: "Ana", identifiers: [:], attributes: [:]))
        var accepted = 0
        var refusal: DomainError?
        for round in 0..<157 {
            let attributes = Dictionary(uniqueKeysWithValues: (0..<64).map { ("k\(round)-\($0)", Optional("v")) })
            let before = try harness.stateWithoutMeta()
            let outcome = try harness.apply(.updateContact(id: "ct_1", name: nil, attributes: attributes, expectedVersion: nil))
            switch outcome {
            case .contact: accepted += 1
            case .rejected(let error):
                refusal = refusal ?? error
                XCTAssertEqual(try harness.stateWithoutMeta(), before, "round \(round): a refused PATCH changed state")
            default: XCTFail("round \(round): \(outcome)")
            }
        }
        XCTAssertEqual(accepted, Limits.contactAttributesMax / 64, "PATCHes of 64 keys accepted before the bound of \(Limits.contactAttributesMax)")
        XCTAssertEqual(refusal?.code, "limit_exceeded")
        XCTAssertTrue(refusal?.message.contains("contactAttributesMax") == true, "the refusal names the bound: \(String(describing: refusal))")
        let contact = try XCTUnwrap(try harness.state.pool.read { try SQLiteStore($0).contact(id: "ct_1") })
        XCTAssertEqual(contact.attributes.count, Limits.contactAttributesMax)
        // Deleting keys (null) is always possible, even at the bound.
        let deletions = Dictionary(uniqueKeysWithValues: contact.attributes.keys.prefix(10).map { ($0, String?.none) })
        XCTAssertEqual(try harness.apply(.updateContact(id: "ct_1", name: nil, attributes: deletions, expectedVersion: nil)), .contact(id: "ct_1"))
    }

    /// A row written before the bounds existed (or damaged) makes its read throw `CorruptRow`.
    func testARowThatDoesNotDecodeFailsItsReadNotTheProcess() throws {
        let harness = try Harness()
        try harness.apply(.createContact(id: "ct_1", name: "Ana", identifiers: [:], attributes: [:]))
        var writer = ByteWriterForTests()
        writer.map(count: 10_001)
        try harness.state.pool.write { db in
            try db.execute(sql: "UPDATE contacts SET attributes = ? WHERE id = 'ct_1'", arguments: [Data(writer.bytes)])
            try db.execute(sql: "UPDATE conversations SET status = 'nonsense'")
        }
        XCTAssertThrowsError(try harness.state.pool.read { try SQLiteStore($0).contact(id: "ct_1") }) { error in
            XCTAssertTrue(error is CorruptRow, "\(error)")
        }
        let conversation = try harness.inbound(from: "+5491155550000")
        try harness.state.pool.write { db in try db.execute(sql: "UPDATE conversations SET status = 'nonsense' WHERE id = ?", arguments: [conversation]) }
        XCTAssertThrowsError(try harness.state.pool.read { try SQLiteStore($0).conversation(id: conversation) }) { error in
            XCTAssertTrue("\(error)".contains("nonsense"), "\(error)")
        }
    }

    func testContactsQueuesRulesAndAgentsOverTheirBoundsAreRefused() throws {
        let harness = try Harness()
        let tooMany = Dictionary(uniqueKeysWithValues: (0...Limits.contactAttributesMax).map { ("k\($0)", "v") })
        let outcome = try harness.apply(.createContact(id: "ct_1", name: "Ana", identifiers: [:], attributes: tooMany))
        XCTAssertEqual(outcome.rejectionCode, "limit_exceeded", "\(outcome)")
        XCTAssertEqual(try harness.apply(.createQueue(id: "q", name: "q", skills: [], priority: 5000, channels: [])).rejectionCode, "limit_exceeded")
        XCTAssertEqual(
            try harness.apply(.createAgent(id: "a", name: "a", email: "a@x.io", passwordHash: "h", role: .agent, skills: [], capacity: 101)).rejectionCode,
            "limit_exceeded")
        XCTAssertEqual(
            try harness.apply(.createRule(id: "r", name: "r", keywords: ["x"], action: .reply, reply: "y", queueId: nil, order: 1_000_000)).rejectionCode,
            "limit_exceeded")
        for number in 0..<Limits.rulesMax {
            XCTAssertEqual(
                try harness.apply(.createRule(id: "r\(number)", name: "r\(number)", keywords: ["x"], action: .reply, reply: "y", queueId: nil, order: 0)),
                .rule(id: "r\(number)"))
        }
        let over = try harness.apply(.createRule(id: "rx", name: "rx", keywords: ["x"], action: .reply, reply: "y", queueId: nil, order: 0))
        XCTAssertEqual(over.rejectionCode, "limit_exceeded", "\(over)")
    }

    /// A full conversation refuses an agent's reply, and a customer's next message resolves it
    /// and starts a new one: nothing a customer writes is refused.
    func testAFullConversationRefusesRepliesAndACustomerStartsANewOne() throws {
        let harness = try Harness()
        try harness.addAgent("ag_1", capacity: 3)
        let first = try harness.inbound(from: "+5491155550000")
        XCTAssertEqual(try harness.conversation(first).assigneeId, "ag_1")
        try harness.state.pool.write { db in
            try db.execute(sql: "UPDATE conversations SET message_count = ? WHERE id = ?", arguments: [Limits.conversationMessagesMax, first])
        }
        let reply = try harness.apply(.postMessage(conversationId: first, messageId: "ms_r", text: "hola", isPrivate: false), actor: .agent(id: "ag_1"))
        XCTAssertEqual(reply.rejectionCode, "conversation_full", "\(reply)")
        let second = try harness.inbound(from: "+5491155550000", text: "sigo aquí")
        XCTAssertNotEqual(second, first, "the customer's message went into the full conversation")
        XCTAssertEqual(try harness.conversation(first).status, .resolved)
        XCTAssertEqual(try harness.conversation(second).messageCount, 1)
        try harness.checkInvariants()
    }

    /// Every message changes the conversation's body, so its version (the ETag) moves too.
    func testEveryMessageMovesTheConversationVersion() throws {
        let harness = try Harness()
        try harness.addAgent("ag_1")
        let conversation = try harness.inbound(from: "+5491155550000")
        let v1 = try harness.conversation(conversation).version
        try harness.inbound(from: "+5491155550000", text: "otra cosa")
        let v2 = try harness.conversation(conversation).version
        XCTAssertGreaterThan(v2, v1, "a customer's follow-up left the version at \(v1)")
        try harness.apply(.postMessage(conversationId: conversation, messageId: "ms_n", text: "nota", isPrivate: true), actor: .agent(id: "ag_1"))
        XCTAssertGreaterThan(try harness.conversation(conversation).version, v2, "a private note left the version at \(v2)")
        XCTAssertEqual(try harness.conversation(conversation).messageCount, 3)
    }
}

extension Harness {
    /// The dump without `meta` (the applied index moves with every entry, refused or not).
    func stateWithoutMeta() throws -> String {
        try state.dump().components(separatedBy: "## ").filter { !$0.hasPrefix("meta") }.joined(separator: "## ")
    }
}

extension Outcome {
    var rejectionCode: String? {
        if case .rejected(let error) = self { return error.code }
        return nil
    }
}

/// Writes the count of a string map as `ByteWriter` does, with no entries after it: what a row
/// over `ByteReader.collectionCountMax` looks like to the decoder.
struct ByteWriterForTests {
    var bytes: [UInt8] = []
    mutating func map(count: UInt32) {
        bytes += [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
    }
}
