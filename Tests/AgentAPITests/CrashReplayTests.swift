import ContactCenter
import Foundation
import NodeRuntime
import RaftCore
import RaftWire
import Wire
import Storage
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Crash between log append and apply, and a real `kill -9` under write load: after restart,
/// every acknowledged write is there exactly once and nothing is applied twice.
final class CrashReplayTests: XCTestCase {
    func envelope(_ command: Command, actor: Actor = .admin, at: Int64) -> CommandEnvelope {
        CommandEnvelope(at: Timestamp(milliseconds: 1_800_000_000_000 + at), actor: actor, command: command)
    }

    func testEntriesDurableButNotAppliedAreReplayedOnceOnRestart() throws {
        let directory = NSTemporaryDirectory() + "switchboard-replay-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // The state of a single-member node that crashed right after fsync: three entries of
        // term 1 in its Raft log, none applied (commit is volatile: the restarted leader
        // commits them again in its new term).
        do {
            _ = try RaftStorage(directory: directory, initial: Snapshot(index: 0, term: 0, configuration: Configuration(voters: ["n1"]), data: []))
            try HardStateFile(path: directory + "/raft-hardstate").save(.init(term: 1, vote: "n1"))
            let log = try CommandLog(path: directory + "/raft.log")
            let commands: [CommandEnvelope] = [
                envelope(.createQueue(id: "q", name: "q", skills: [], priority: 0, channels: []), at: 1),
                envelope(.inboundMessage(channel: .sms, from: "+1", text: "a", externalId: "e1", name: nil, contactId: "c1", conversationId: "v1", messageId: "m1"), actor: .channel, at: 2),
                envelope(.inboundMessage(channel: .sms, from: "+2", text: "b", externalId: "e2", name: nil, contactId: "c2", conversationId: "v2", messageId: "m2"), actor: .channel, at: 3),
            ]
            try log.append(commands.enumerated().map {
                LogEntry(index: Int64($0.offset + 1), term: 1, payload: RaftCodec.encode(EntryPayload.command($0.element.encoded())))
            })
        }
        let first = try TestNode(directory: directory)
        try first.waitApplied(atLeast: 4)  // the three entries and the new term's no-op
        let dump = try first.node.state.dump()
        let counts = try first.node.state.pool.read { db in try StateReaderProbe.counts(db) }
        XCTAssertEqual(counts.messages, 2)
        first.close(removing: false)

        let second = try TestNode(directory: directory)
        defer { second.close() }
        try second.waitApplied(atLeast: 5)
        // Only `meta.applied_index` moves (the new term's no-op); every data table is unchanged.
        func data(_ dump: String) -> Substring { dump[dump.range(of: "## agents")!.lowerBound...] }
        XCTAssertEqual(data(try second.node.state.dump()), data(dump), "a second restart applies nothing again")
    }

    func testKillNineUnderLoadLosesNoAcknowledgedWrite() async throws {
        // On Linux the test bundle's URL is the build products directory, which holds the executable.
        let products = Bundle(for: Self.self).bundleURL
        let binary = [products, products.deletingLastPathComponent()].map { $0.appendingPathComponent("switchboard").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) } ?? products.appendingPathComponent("switchboard").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            return XCTFail("the switchboard executable is not at \(binary); `swift test` builds it")
        }
        let directory = NSTemporaryDirectory() + "switchboard-kill-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = Int.random(in: 20_000..<40_000)
        let base = "http://127.0.0.1:\(port)"
        let token = "kill-test-admin"

        func start() throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["node", "--id", "n1", "--data", directory, "--api", "127.0.0.1:\(port)", "--log-level", "warning", "--bootstrap"]
            process.environment = ProcessInfo.processInfo.environment.merging(["SWITCHBOARD_ADMIN_TOKEN": token]) { $1 }
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            return process
        }

        var process = try start()
        try await waitReady(base)
        let acknowledged = AcknowledgedSet()
        // Eight writers post inbound messages until the node dies under them.
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for n in 0..<100_000 {
                        let externalId = "w\(writer)-\(n)"
                        let body = #"{"from":"+\#(writer)\#(n)","text":"hello","externalId":"\#(externalId)"}"#
                        guard let status = try? await Self.post(base + "/v1/channels/sms/messages", body: body, token: token) else { return }
                        if status == 202 { acknowledged.insert(externalId) }
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(1500))
            kill(process.processIdentifier, SIGKILL)
            await group.waitForAll()
        }
        process.waitUntilExit()
        XCTAssertGreaterThan(acknowledged.count, 0, "no write was acknowledged before the kill")

        process = try start()
        try await waitReady(base)
        process.terminate()  // SIGTERM: drain and close the log
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit, "SIGTERM should end the node by a clean exit")
        XCTAssertEqual(process.terminationStatus, 0, "graceful shutdown exit status")

        let state = try StateDatabase(path: directory + "/state.sqlite")
        let ids = acknowledged.all
        let missing = try await state.read { reader in
            try ids.filter { try reader.store.externalMessage(channel: .sms, externalId: $0) == nil }
        }
        XCTAssertEqual(missing, [], "\(missing.count) of \(ids.count) acknowledged messages were lost")
        let counts = try await state.pool.read { db in try StateReaderProbe.counts(db) }
        XCTAssertEqual(counts.messages, counts.external, "a message was applied twice or lost its dedup record")
    }

    func waitReady(_ base: String) async throws {
        for _ in 0..<100 {
            if let (status, _) = try? await Self.get(base + "/readyz"), status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTFail("node at \(base) never became ready")
    }

    static func post(_ url: String, body: String, token: String) async throws -> Int {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.httpBody = Data(body.utf8)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.timeoutInterval = 5
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    static func get(_ url: String) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 2
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }
}

final class AcknowledgedSet: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var ids: Set<String> = []
    func insert(_ id: String) { _ = lock.withLock { ids.insert(id) } }
    var count: Int { lock.withLock { ids.count } }
    var all: [String] { lock.withLock { Array(ids) } }
}

import GRDB

enum StateReaderProbe {
    static func counts(_ db: Database) throws -> (messages: Int, external: Int) {
        (try Int.fetchOne(db, sql: "SELECT count(*) FROM messages") ?? 0,
         try Int.fetchOne(db, sql: "SELECT count(*) FROM external_messages") ?? 0)
    }
}
