import ContactCenter
import Seeded
import Storage
import XCTest

/// Seeded random command sequences: the same log applied to two fresh databases ends
/// row-identical, and the routing invariants hold after every command.
final class DeterminismTests: XCTestCase {
    /// SplitMix64: a small seeded generator, so a failing seed replays exactly.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func randomLog(seed: UInt64, count: Int) -> [CommandEnvelope] {
        var random = SeededGenerator(state: seed)
        let agents = (0..<6).map { "a\($0)" }
        let skills = ["billing", "sales", "es"]
        var log: [CommandEnvelope] = []
        var clock: Int64 = 1_800_000_000_000
        func add(_ command: Command, _ actor: Actor = .admin, key: String? = nil) {
            clock += 1000
            // Keys scoped to a route with a request hash, as the API sends them; the hash varies
            // so some retries are refused as a reused key.
            let idempotency = key.map { Idempotency(key: $0, route: "POST /x", requestHash: [UInt8(clock / 1000 % 2)]) }
            log.append(CommandEnvelope(at: Timestamp(milliseconds: clock), actor: actor, idempotency: idempotency, command: command))
        }
        for (position, skill) in skills.enumerated() {
            add(.createQueue(id: "q\(position)", name: skill, skills: [skill], priority: position, channels: [Channel.allCases[position]]))
        }
        add(.createQueue(id: "qany", name: "any", skills: [], priority: 0, channels: [.api]))
        add(.createRule(id: "r1", name: "bill", keywords: ["factura"], action: .route, reply: nil, queueId: "q0", order: 1))
        add(.createRule(id: "r2", name: "hours", keywords: ["ayuda"], action: .handoff, reply: "9 a 18", queueId: nil, order: 2))
        // Inboxes that send replies: their conversations' public replies go to the outbox.
        add(.createInbox(id: "ib_whatsapp", name: "wa", channel: .whatsapp, queueId: "q1", settings: ["phoneNumberId": "1", "accessToken": "t", "appSecret": "s", "verifyToken": "v"], tokenHash: nil))
        add(.createInbox(id: "ib_sms", name: "sms", channel: .sms, queueId: nil, settings: ["accountSid": "AC", "authToken": "t", "from": "+1"], tokenHash: nil))
        var replies: [String] = []
        for agent in agents {
            add(.createAgent(
                id: agent, name: agent, email: "\(agent)@x.io", passwordHash: "h", role: .agent,
                skills: skills.filter { _ in Bool.random(using: &random) }, capacity: Int.random(in: 1...3, using: &random)))
        }
        var conversations: [String] = []
        for step in 0..<count {
            let agent = agents.randomElement(using: &random)!
            let key: String? = Int.random(in: 0..<5, using: &random) == 0 ? "k\(Int.random(in: 0..<20, using: &random))" : nil
            switch Int.random(in: 0..<10, using: &random) {
            case 0, 1, 2:
                let channel = Channel.allCases.randomElement(using: &random)!
                let text = ["hola", "mi factura", "FACTURA!", "ayuda"].randomElement(using: &random)!
                conversations.append("cv\(step)")
                add(.inboundMessage(
                    channel: channel, from: "+\(Int.random(in: 0..<15, using: &random))", text: text,
                    externalId: "e\(Int.random(in: 0..<(count / 2), using: &random))", name: nil, contactId: "ct\(step)",
                    conversationId: "cv\(step)", messageId: "ms\(step)",
                    inboxId: channel == .whatsapp || channel == .sms ? "ib_\(channel.rawValue)" : nil), .channel)
            case 3:
                add(.setPresence(agentId: agent, status: Presence.allCases.randomElement(using: &random)!), .agent(id: agent))
            case 4:
                if let conversation = conversations.randomElement(using: &random) { add(.resolve(conversationId: conversation), .agent(id: agent)) }
            case 5:
                if let conversation = conversations.randomElement(using: &random) {
                    add(.assign(conversationId: conversation, agentId: Bool.random(using: &random) ? agent : nil, queueId: nil))
                }
            case 6:
                if let conversation = conversations.randomElement(using: &random) { add(.reopen(conversationId: conversation)) }
            case 7:
                if let conversation = conversations.randomElement(using: &random) {
                    add(.postMessage(conversationId: conversation, messageId: "pm\(step)", text: "ok", isPrivate: false), .agent(id: agent), key: key)
                    replies.append("pm\(step)")
                }
            case 8:
                switch Int.random(in: 0..<8, using: &random) {
                case 0:
                    // Disabled and enabled again: sessions end, conversations go back to queues.
                    add(.updateAgent(
                        id: agent, name: nil, role: nil, skills: nil, capacity: nil, expectedVersion: nil, passwordHash: nil,
                        disabled: Bool.random(using: &random)))
                case 1:
                    add(.createSession(tokenHash: "t\(step)", agentId: agent, expiresAt: Timestamp(milliseconds: clock + 30_000)), .agent(id: agent))
                case 2:
                    add(.deleteSession(tokenHash: "t\(Int.random(in: 0..<max(1, step), using: &random))"), .agent(id: agent))
                case 3:
                    add(.expire(warnSessionsThrough: Timestamp(milliseconds: clock + 60_000)), .system)
                case 6, 7:
                    // The leader's dispatcher and the providers' statuses, stale ones included.
                    guard let reply = replies.randomElement(using: &random) else { break }
                    let attempt = Int.random(in: 1...3, using: &random)
                    switch Int.random(in: 0..<4, using: &random) {
                    case 0: add(.outboxAttempt(messageId: reply, attempt: attempt), .system)
                    case 1: add(.outboxResult(messageId: reply, attempt: attempt, result: .sent(providerId: "p-\(reply)")), .system)
                    case 2:
                        add(.outboxResult(
                            messageId: reply, attempt: attempt, result: .retry(reason: "503", notBefore: Timestamp(milliseconds: clock + 1000))), .system)
                    default:
                        add(.deliveryStatus(
                            inboxId: ["ib_whatsapp", "ib_sms"].randomElement(using: &random)!, providerId: "p-\(reply)",
                            status: DeliveryStatus.allCases.randomElement(using: &random)!, reason: nil), .channel)
                    }
                case 4 where Bool.random(using: &random):
                    add(.upgradePasswordHash(agentId: agent, from: "x", to: "pbkdf2-sha512$\(step)$00$00"), .agent(id: agent))
                default:
                    add(.updateAgent(id: agent, name: nil, role: nil, skills: nil, capacity: Int.random(in: 0...3, using: &random), expectedVersion: nil))
                }
            default:
                if let conversation = conversations.randomElement(using: &random) {
                    add(.assign(conversationId: conversation, agentId: agent, queueId: nil), .agent(id: agent))
                }
            }
        }
        return log
    }

    func testSameLogGivesIdenticalDatabasesAndInvariantsHold() throws {
        continueAfterFailure = false
        for seed in UInt64(1)...20 {
            let log = Self.randomLog(seed: seed, count: 300)
            let left = try Harness(), right = try Harness()
            for (position, envelope) in log.enumerated() {
                try left.apply(envelope)
                try left.checkInvariants("seed \(seed), command \(position) \(envelope.command):")
            }
            // The other node applies the same entries in batches, as the pipeline does.
            var index: Int64 = 0
            for chunk in stride(from: 0, to: log.count, by: 37).map({ Array(log[$0..<min($0 + 37, log.count)]) }) {
                let entries = chunk.map { envelope -> LogEntry in
                    index += 1
                    return LogEntry(index: index, term: 0, payload: envelope.encoded())
                }
                _ = try right.state.apply(entries)
            }
            let (a, b) = (try left.state.dump(), try right.state.dump())
            if a != b {
                let diff = zip(a.split(separator: "\n"), b.split(separator: "\n")).first { $0 != $1 }
                XCTFail("seed \(seed): databases differ; first difference: \(String(describing: diff))")
            }
        }
    }
}
