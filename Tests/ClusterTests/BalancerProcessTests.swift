import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// `switchboard balancer` in front of three real nodes, learning them from gossip: a client loop of
/// GETs and keyed POSTs sees no failure while a node is killed with `kill -9` and restarted, then
/// another is paused with `SIGSTOP`; the killed node is ejected, then readmitted.
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
        let adminPort = ProcessCluster.freePort()
        let balancer = Process()
        balancer.executableURL = URL(fileURLWithPath: binary)
        balancer.arguments = [
            "balancer", "--listen", "127.0.0.1:\(port)", "--gossip", "127.0.0.1:\(ProcessCluster.freePort())",
            "--seeds", ids.map { gossip[$0]! }.joined(separator: ","), "--secret", ProcessCluster.secret, "--admin", "127.0.0.1:\(adminPort)",
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
        try await Task.sleep(for: .seconds(1))
        // Restarted, it is readmitted (a second "warming" for n2) before the next fault, so that
        // the cluster keeps a quorum: these faults are the balancer's to hide, not an outage.
        try cluster.start("n2", flags: flags("n2"))
        try await cluster.waitUntil("n2 readmitted", seconds: 15) {
            log().components(separatedBy: "\n").filter { $0.contains("balancer.backend=n2") && $0.contains("backend warming") }.count >= 2
        }
        cluster.pause("n3")
        try await Task.sleep(for: .seconds(3))
        cluster.resume("n3")
        try await Task.sleep(for: .seconds(3))
        writing.clear()
        await clients.value

        XCTAssertGreaterThan(successes.count, 100, "the clients made progress through the faults")
        XCTAssertEqual(failures.all, [], "GETs and keyed POSTs are retried on another node: none may fail")
        let readmitted = log().components(separatedBy: "\n").filter { $0.contains("balancer.backend=n2") && $0.contains("backend warming") }
        let (metricsData, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(adminPort)/metrics")!)
        let metrics = String(decoding: metricsData, as: UTF8.self)
        let ejections = metrics.split(separator: "\n").first { $0.hasPrefix("switchboard_balancer_backend_ejections_total{backend=\"n2\"}") }
        XCTAssertNotNil(ejections, "/metrics lists n2's ejections:\n\(metrics)")
        XCTAssertGreaterThanOrEqual(Int(ejections?.split(separator: " ").last ?? "0") ?? 0, 1, "n2 was ejected at least once: \(ejections ?? "")")
        let (pageData, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(adminPort)/")!)
        let page = String(decoding: pageData, as: UTF8.self)
        XCTAssertTrue(page.contains("<td>n2</td>") && page.contains("Recent transitions"), "the status page shows the backends and their transitions")
        XCTAssertGreaterThanOrEqual(readmitted.count, 2, "n2 admitted, ejected, then readmitted after it restarted:\n\(log().suffix(3000))")
    }
}
