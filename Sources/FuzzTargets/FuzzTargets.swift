#if canImport(Channels)
import Channels
#endif
import ContactCenter
import RaftCore
import RaftWire
import SWIMCore
import Seeded
import Wire

/// One decoder of bytes from the network or the disk, as a fuzz target: any input must either
/// decode or throw (a trap is the finding), and what decodes must encode back to something
/// that decodes to the same value (a decoder and an encoder that disagree would let two
/// members read one entry two ways).
public struct FuzzTarget: Sendable {
    public let name: String
    /// Runs one input; traps (with the target's name) only on a broken property.
    public let run: @Sendable ([UInt8]) -> Void
    /// Valid encodings to start from.
    public let seeds: @Sendable () -> [[UInt8]]
}

public enum FuzzTargets {
    public static let all: [FuzzTarget] = [raftMessage, raftPayload, raftSnapshot, clusterFrame, swimPacket, command, outcome] + providerTargets

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    static func roundTrip<Value: Equatable>(_ name: String, _ bytes: [UInt8], decode: ([UInt8]) throws -> Value, encode: (Value) -> [UInt8]) {
        guard let value = try? decode(bytes) else { return }
        let again: Value
        do {
            again = try decode(encode(value))
        } catch {
            preconditionFailure("\(name): \(value) decoded from \(bytes.count) bytes, but its own encoding does not decode: \(error)")
        }
        precondition(again == value, "\(name): \(value) re-encodes to \(again)")
    }

    static let configuration = Configuration(voters: ["n1", "n2", "n3"], learners: ["n4"])
    static let entries = [
        Entry(term: 3, index: 7, payload: .noop),
        Entry(term: 3, index: 8, payload: .command(Array("hola".utf8))),
        Entry(term: 4, index: 9, payload: .configuration(configuration)),
    ]
    static let snapshot = Snapshot(index: 9, term: 4, configuration: configuration, data: Array("state-9.sqlite sha256=00".utf8))
    static let messages: [RaftCore.Message] = [
        RaftCore.Message(from: "n1", to: "n2", term: 4, kind: .preVote(lastIndex: 9, lastTerm: 4)),
        RaftCore.Message(from: "n2", to: "n1", term: 4, kind: .preVoteResponse(granted: true)),
        RaftCore.Message(from: "n1", to: "n2", term: 5, kind: .vote(lastIndex: 9, lastTerm: 4, transfer: true)),
        RaftCore.Message(from: "n2", to: "n1", term: 5, kind: .voteResponse(granted: false)),
        RaftCore.Message(from: "n1", to: "n2", term: 4, kind: .append(prevIndex: 6, prevTerm: 3, entries: entries, commit: 8)),
        RaftCore.Message(from: "n2", to: "n1", term: 4, kind: .appendResponse(reject: true, index: 6, hintIndex: 5, hintTerm: 2)),
        RaftCore.Message(from: "n1", to: "n2", term: 4, kind: .heartbeat(commit: 9, round: 12)),
        RaftCore.Message(from: "n2", to: "n1", term: 4, kind: .heartbeatResponse(round: 12)),
        RaftCore.Message(from: "n1", to: "n2", term: 4, kind: .installSnapshot(snapshot)),
        RaftCore.Message(from: "n1", to: "n2", term: 4, kind: .timeoutNow),
        RaftCore.Message(from: "n2", to: "n1", term: 4, kind: .readIndex(contexts: [1, 2])),
        RaftCore.Message(from: "n1", to: "n2", term: 4, kind: .readIndexResponse(contexts: [1, 2], index: 9)),
    ]

    public static let raftMessage = FuzzTarget(
        name: "raft-message", run: { roundTrip("raft-message", $0, decode: RaftCodec.decode, encode: RaftCodec.encode) },
        seeds: { messages.map(RaftCodec.encode) })

    public static let raftPayload = FuzzTarget(
        name: "raft-payload", run: { roundTrip("raft-payload", $0, decode: RaftCodec.decodePayload, encode: RaftCodec.encode) },
        seeds: { entries.map { RaftCodec.encode($0.payload) } })

    public static let raftSnapshot = FuzzTarget(
        name: "raft-snapshot", run: { roundTrip("raft-snapshot", $0, decode: RaftCodec.decodeSnapshot, encode: RaftCodec.encode) },
        seeds: { [RaftCodec.encode(snapshot)] })

    public static let clusterFrame = FuzzTarget(
        name: "cluster-frame", run: { roundTrip("cluster-frame", $0, decode: ClusterFrame.decode, encode: ClusterFrame.encode) },
        seeds: {
            let frames: [ClusterFrame] = [
                .raft(messages[4]),
                .request(id: 1, from: "127.0.0.1:7081", .propose([1, 2, 3])),
                .request(id: 2, from: "127.0.0.1:7084", .addMember(id: "n4", peer: "127.0.0.1:7084", api: "127.0.0.1:8084", voter: true)),
                .request(id: 3, from: "127.0.0.1:7081", .removeMember(id: "n4")),
                .request(id: 4, from: "127.0.0.1:7081", .transferLeadership(to: nil)),
                .request(id: 5, from: "127.0.0.1:7081", .removed),
                .response(id: 1, .proposed(index: 10, term: 4)),
                .response(id: 2, .done),
                .response(id: 3, .failed(.unavailable, message: "no leader", leader: "n2")),
                .snapshotChunk(index: 9, term: 4, offset: 0, total: 8, bytes: [1, 2, 3, 4]),
            ]
            return frames.map(ClusterFrame.encode)
        })

    public static let swimPacket = FuzzTarget(
        name: "swim-packet", run: { roundTrip("swim-packet", $0, decode: SWIMCodec.decode, encode: SWIMCodec.encode) },
        seeds: {
            let member = Member(id: "n2", address: "127.0.0.1:7092", status: .suspect, incarnation: 3, metadata: Metadata(role: .node, api: "127.0.0.1:8082", peer: "127.0.0.1:7082", tags: ["raft": "follower"]))
            let packets = [
                Packet(from: "n1", message: .ping(sequence: 1, target: "n2")),
                Packet(from: "n1", message: .pingRequest(sequence: 2, target: "n3", targetAddress: "127.0.0.1:7093")),
                Packet(from: "n2", message: .ack(sequence: 1)),
                Packet(from: "n3", message: .nack(sequence: 2)),
                Packet(from: "n1", message: .pushPull(replyWanted: true, members: [member])),
                Packet(
                    from: "n1", message: .gossip,
                    updates: [
                        .alive(id: "n2", incarnation: 4, address: "127.0.0.1:7092", metadata: member.metadata),
                        .suspect(id: "n3", incarnation: 1, from: "n1"), .dead(id: "n4", incarnation: 9, from: "n4"),
                    ]),
            ]
            return packets.map(SWIMCodec.encode)
        })

    public static let command = FuzzTarget(
        name: "command", run: { roundTrip("command", $0, decode: CommandEnvelope.decode, encode: { $0.encoded() }) },
        seeds: {
            let commands: [CommandEnvelope] = [
                CommandEnvelope(at: Timestamp(milliseconds: 1), actor: .admin, command: .createContact(id: "c", name: "Ana", identifiers: ["whatsapp": "+5491155550000"], attributes: ["plan": "oro"])),
                CommandEnvelope(at: Timestamp(milliseconds: 2), actor: .agent(id: "a1"), idempotencyKey: "k", command: .setPresence(agentId: "a1", status: .available)),
                CommandEnvelope(at: Timestamp(milliseconds: 3), actor: .system, command: .deleteSession(tokenHash: "x")),
                CommandEnvelope(at: Timestamp(milliseconds: 4), actor: .admin, command: .createQueue(id: "q", name: "Ventas", skills: ["es"], priority: 2, channels: [.whatsapp, .sms])),
                CommandEnvelope(at: Timestamp(milliseconds: 5), actor: .admin, command: .createInbox(id: "ib", name: "WA", channel: .whatsapp, queueId: "q", settings: ["phoneNumberId": "1", "appSecret": "s"], tokenHash: nil)),
                CommandEnvelope(at: Timestamp(milliseconds: 6), actor: .channel, command: .inboundMessage(channel: .whatsapp, from: "+5491155550000", text: "hola", externalId: "wamid.1", name: "Lucía", contactId: "c", conversationId: "v", messageId: "m", inboxId: "ib", attachments: #"[{"kind":"image"}]"#)),
                CommandEnvelope(at: Timestamp(milliseconds: 7), actor: .system, command: .outboxResult(messageId: "m", attempt: 2, result: .retry(reason: "HTTP 503", notBefore: Timestamp(milliseconds: 9)))),
                CommandEnvelope(at: Timestamp(milliseconds: 8), actor: .channel, command: .deliveryStatus(inboxId: "ib", providerId: "wamid.2", status: .read, reason: nil)),
            ]
            return commands.map { $0.encoded() }
        })

    public static let outcome = FuzzTarget(
        name: "outcome", run: { roundTrip("outcome", $0, decode: Outcome.decode, encode: { $0.encoded() }) },
        seeds: {
            let outcomes: [Outcome] = [
                .agent(id: "a1"), .inbound(conversationId: "c1", messageId: "m1", duplicate: true), .done,
                .rejected(DomainError(.notFound, "agent_not_found", "no agent with id 'x'")),
            ]
            return outcomes.map { $0.encoded() }
        })
}

#if !canImport(Channels)
extension FuzzTargets {
    /// `scripts/fuzz.sh` compiles the pure modules alone; Channels needs swift-crypto, which it
    /// does not build. The SwiftPM build (the test command) has them.
    static let providerTargets: [FuzzTarget] = []
}
#else
extension FuzzTargets {
    static let providerTargets = [whatsAppWebhook, twilioWebhook, providerAnswer]

    /// A WhatsApp Cloud API webhook body: decodes to events or throws (no encoder to round-trip).
    public static let whatsAppWebhook = FuzzTarget(
        name: "whatsapp-webhook", run: { _ = try? WhatsAppWebhook.decode($0) },
        seeds: {
            let message = #"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Lucía"},"wa_id":"5491155550000"}],"messages":[{"from":"5491155550000","id":"wamid.A","timestamp":"1749416383","type":"image","image":{"id":"m1","mime_type":"image/jpeg","caption":"foto"}}]},"field":"messages"}]}]}"#
            let status = #"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"1"},"statuses":[{"id":"wamid.B","status":"failed","timestamp":"1","recipient_id":"5491155550000","errors":[{"code":131026,"title":"Message undeliverable"}]}]},"field":"messages"}]}]}"#
            return [Array(message.utf8), Array(status.utf8)]
        })

    /// A Twilio form body: read, then turned into an inbound message or a status, or refused.
    public static let twilioWebhook = FuzzTarget(
        name: "twilio-webhook",
        run: { bytes in
            guard let fields = try? TwilioWebhook.form(bytes) else { return }
            _ = try? TwilioWebhook.event(fields)
        },
        seeds: {
            [
                Array("From=%2B15551234567&To=%2B15557654321&Body=Hola+%C2%BFc%C3%B3mo%3F&MessageSid=SM1&NumMedia=1&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2Fm&MediaContentType0=image%2Fjpeg".utf8),
                Array("MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30003&AccountSid=AC1".utf8),
            ]
        })

    /// A provider's answer to a send: sent, retry or failed, never a trap.
    public static let providerAnswer = FuzzTarget(
        name: "provider-answer",
        run: { bytes in
            let status = bytes.first.map { 200 + Int($0) * 2 } ?? 200
            _ = WhatsAppSend.answer(status: status, body: Array(bytes.dropFirst()))
            _ = TwilioSend.answer(status: status, body: Array(bytes.dropFirst()))
        },
        seeds: {
            [
                [0] + Array(#"{"messages":[{"id":"wamid.X"}]}"#.utf8), [0] + Array(#"{"sid":"SM1"}"#.utf8),
                [100] + Array(#"{"error":{"message":"Invalid","code":190}}"#.utf8), [150] + Array(#"{"code":20500,"message":"x"}"#.utf8),
            ]
        })
}
#endif

/// Deterministic mutation of seeds (SplitMix64): what the test command runs on every decoder,
/// and a corpus generator for libFuzzer.
public struct Mutator {
    var random: SplitMix64

    public init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { random.next() }

    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }

    /// One to four edits: flip a bit, set an interesting byte, insert, delete, duplicate a run,
    /// or write a boundary number (0, 2^62, UInt64.max...) as eight bytes.
    public mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        for _ in 0...below(4) {
            switch below(7) {
            case 0 where !bytes.isEmpty: bytes[below(bytes.count)] ^= UInt8(1 << below(8))
            case 1 where !bytes.isEmpty: bytes[below(bytes.count)] = [0, 1, 0x7F, 0x80, 0xFF][below(5)]
            case 2: bytes.insert(UInt8(truncatingIfNeeded: next()), at: below(bytes.count + 1))
            case 3 where !bytes.isEmpty: bytes.remove(at: below(bytes.count))
            case 4 where !bytes.isEmpty:
                let start = below(bytes.count)
                let run = bytes[start..<min(bytes.count, start + 1 + below(16))]
                bytes.insert(contentsOf: run, at: below(bytes.count + 1))
            case 5 where bytes.count >= 8:
                let value: UInt64 = [0, 1, 1 << 62, (1 << 62) + 1, .max, .max - 1, 1 << 32][below(7)]
                let at = below(bytes.count - 7)
                for index in 0..<8 { bytes[at + index] = UInt8(truncatingIfNeeded: value >> UInt64(56 - 8 * index)) }
            case 6 where !bytes.isEmpty: bytes.removeLast(below(bytes.count) + 1)
            default: bytes.append(UInt8(truncatingIfNeeded: next()))
            }
        }
        return bytes
    }
}
