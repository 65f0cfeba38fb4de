import ArgumentParser
import ContactCenter
import Foundation
import RaftCore
import Storage

/// `switchboard bench-apply`: what one member pays to apply inbound messages to its own
/// `state.sqlite`, without HTTP, Raft or the network. Every member of a cluster pays it for every
/// write, so it bounds the cluster's write throughput on shared cores.
struct BenchApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-apply",
        abstract: "Measure the apply cost of inbound messages on one state database (no network).",
        discussion: """
            Builds a fresh state.sqlite in a temporary directory with the load-test setup (one \
            WhatsApp queue, 20 available agents of capacity 5), then applies new customers' first \
            WhatsApp messages in transactions of --batch entries, as a node's apply thread does, \
            and prints messages/s and microseconds of apply per message.

              switchboard bench-apply                          # 30,000 messages, batches of 25
              switchboard bench-apply --messages 100000 --batch 100
            """)

    @Option(help: "Inbound messages to apply.")
    var messages = 30_000

    @Option(help: "Entries per apply transaction.")
    var batch = 25

    func validate() throws {
        guard messages > 0 else { throw ValidationError("--messages must be positive, got \(messages)") }
        guard batch > 0 else { throw ValidationError("--batch must be positive, got \(batch)") }
    }

    func run() throws {
        let directory = NSTemporaryDirectory() + "switchboard-bench-apply-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = try StateDatabase(path: directory + "/state.sqlite")
        var index: UInt64 = 0
        var clock: Int64 = 1_800_000_000_000
        func entry(_ command: Command, actor: Actor = .admin) -> Entry {
            index += 1
            clock += 1
            let envelope = CommandEnvelope(at: Timestamp(milliseconds: clock), actor: actor, idempotencyKey: nil, command: command)
            return Entry(term: 1, index: index, payload: .command(envelope.encoded()))
        }
        var setup = [entry(.createQueue(id: "q", name: "support", skills: [], priority: 0, channels: [.whatsapp]))]
        for agent in 1...20 {
            setup.append(entry(.createAgent(
                id: "ag\(agent)", name: "Agent \(agent)", email: "agent\(agent)@example.com", passwordHash: "x", role: .agent,
                skills: [], capacity: 5)))
            setup.append(entry(.setPresence(agentId: "ag\(agent)", status: .available), actor: .agent(id: "ag\(agent)")))
        }
        _ = try state.apply(setup)

        let entries = (0..<messages).map { n in
            entry(.inboundMessage(
                channel: .whatsapp, from: "+5491100\(n)", text: "Hola, necesito mi factura", externalId: "wamid.\(n)", name: nil,
                contactId: "ct_\(index)", conversationId: "cv_\(index)", messageId: "ms_\(index)"), actor: .channel)
        }
        let start = DispatchTime.now().uptimeNanoseconds
        var applied = 0
        while applied < entries.count {
            let end = min(applied + batch, entries.count)
            _ = try state.apply(Array(entries[applied..<end]))
            applied = end
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let rate = Double(messages) / seconds
        print(String(format: "applied %d inbound messages in batches of %d: %.0f messages/s, %.1f us per message (%.2f s)",
                     messages, batch, rate, seconds * 1e6 / Double(messages), seconds))
    }
}
