import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// `switchboard balancer` in front of three real nodes, learning them from gossip: a client loop of
/// GETs and keyed POSTs sees no failure while a node is killed with `kill -9`, paused with
/// `SIGSTOP`, and restarted; the node is ejected, then readmitted.
final class BalancerProcessTests: XCTestCase {
    func testRequestsThroughTheBalancerSurviveKillPauseAndRestart() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let ids = ["n1", "n2", "n3"]
        for id in ids { cluster.describe(id) }
        let gossip = Dictionary(uniqueKeysWithValues: ids.map { ($0, "127.0.0.1:\(ProcessCluster.freePort())") })
        func flags(_ id: String) -> [String] { ["--gossip", gossip[id]!, "--seeds", ids.filter { $0 != id }.map { gossip[$0]! }.joined(separator: ",")] }
        try cluster.start("n1", flags: flags("n1"))
        try await cluster.waitUntil("n1 leads") { await cluster.leader(asking: "n1") == "n1" }
        for id in ["n2", "n3"] { try cluster.start(id, flags: flags(id)) }
        try await cluster.waitUntil("3 voters") { await cluster.voters(asking: "n1").count == 3 }

        let binary = try XCTUnwrap(ProcessCluster.binary)
        let port = ProcessCluster.freePort()
        let balancer = Process()
        balancer.executableURL = URL(fileURLWithPath: binary)
        balancer.arguments = [
            "balancer", "--listen", "127.0.0.1:\(port)", "--gossip", "127.0.0.1:\(ProcessCluster.freePort())",
            "--seeds", ids.map { gossip[$0]! }.joined(separator: ","), "--secret", ProcessCluster.secret,
        ]
        let logPath = cluster.root + "/balancer.log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        balancer.standardError = FileHandle(forWritingAtPath: logPath)
        balancer.standardOutput = FileHandle.nullDevice
        try balancer.run()
        defer { balancer.terminate() }
        let log = { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        let base = "http://127.0.0.1:\(port)"
        func send(_ method: String, _ path: String, body: String? = nil, key: String? = nil) async -> Int {
            var request = URLRequest(url: URL(string: base + path)!)
            request.httpMethod = method
            request.timeoutInterval = 10
            request.setValue("Bearer \(ProcessCluster.adminToken)", forHTTPHeaderField: "Authorization")
            if let key { request.setValue(key, forHTTPHeaderField: "Idempotency-Key") }
            if let body {
                request.httpBody = Data(body.utf8)
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            }
            guard let (_, response) = try? await URLSession.shared.data(for: request) else { return 0 }
            return (response as? HTTPURLResponse)?.statusCode ?? 0
        }
        try await cluster.waitUntil("the balancer admits all three nodes", seconds: 15) {
            ids.allSatisfy { id in log().contains("balancer.backend=\(id) balancer.reason=2 good checks") }
        }

        // Four clients: GETs and keyed POSTs (both retried kinds) through the whole fault sequence.
        let writing = ManagedAtomicFlag()
        let failures = Acknowledged()
        let successes = Acknowledged()
        let clients = Task {
            await withTaskGroup(of: Void.self) { group in
                for client in 0..<4 {
                    group.addTask {
                        var n = 0
                        while writing.isSet {
                            n += 1
                            let status: Int
                            if n % 2 == 0 {
                                status = await send("GET", "/v1/cluster")
                            } else {
                                let id = "b\(client)-\(n)"
                                status = await send(
                                    "POST", "/v1/channels/sms/messages", body: #"{"from":"c-\#(id)","text":"hi","externalId":"\#(id)"}"#, key: "key-\(id)")
                            }
                            if (200..<300).contains(status) { successes.insert("\(client)-\(n)") } else { failures.insert("\(client)-\(n): \(status)") }
                        }
                    }
                }
            }
        }
        try await Task.sleep(for: .seconds(1))
        cluster.kill9("n2")
        try await cluster.waitUntil("n2 ejected", seconds: 5) { log().contains("balancer.backend=n2") && log().contains("[Balancer] backend ejected") }
        try await Task.sleep(for: .seconds(2))
        cluster.pause("n3")
        try await Task.sleep(for: .seconds(3))
        cluster.resume("n3")
        try cluster.start("n2", flags: flags("n2"))
        try await Task.sleep(for: .seconds(4))
        writing.clear()
        await clients.value

        XCTAssertGreaterThan(successes.count, 100, "the clients made progress through the faults")
        XCTAssertEqual(failures.all, [], "GETs and keyed POSTs are retried on another node: none may fail")
        let readmitted = log().components(separatedBy: "\n").filter { $0.contains("balancer.backend=n2") && $0.contains("backend warming") }
        XCTAssertGreaterThanOrEqual(readmitted.count, 2, "n2 admitted, ejected, then readmitted after it restarted:\n\(log().suffix(3000))")
    }
}
