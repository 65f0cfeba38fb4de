import Foundation
import XCTest

/// SWIM between real `switchboard node` processes over real UDP: `kill -9`, restart, `SIGSTOP`.
final class GossipProcessTests: XCTestCase {
    /// What `asking` says of each member's gossip status and incarnation.
    static func gossip(_ cluster: ProcessCluster, asking: String) async -> [String: (status: String, incarnation: Int)] {
        guard let reply = try? await cluster.request(asking, "GET", "/v1/cluster", timeout: 1), let nodes = reply.json["nodes"] as? [[String: Any]] else {
            return [:]
        }
        var view: [String: (String, Int)] = [:]
        for node in nodes {
            guard let id = node["id"] as? String, let gossip = node["gossip"] as? [String: Any] else { continue }
            view[id] = (gossip["status"] as? String ?? "?", gossip["incarnation"] as? Int ?? -1)
        }
        return view
    }

    /// n1, n2 and n3 with gossip, each seeded with the others; n1 bootstraps and leads. Returns
    /// the ids and each one's gossip flags (for a restart).
    static func startGossiping(_ cluster: ProcessCluster) async throws -> ([String], (String) -> [String]) {
        let ids = ["n1", "n2", "n3"]
        for id in ids { cluster.describe(id) }
        let gossipAddress = Dictionary(uniqueKeysWithValues: ids.map { ($0, "127.0.0.1:\(ProcessCluster.freePort())") })
        let flags = { (id: String) -> [String] in
            ["--gossip", gossipAddress[id]!, "--seeds", ids.filter { $0 != id }.map { gossipAddress[$0]! }.joined(separator: ",")]
        }
        try cluster.start("n1", flags: flags("n1"))
        try await cluster.waitUntil("n1 leads") { await cluster.leader(asking: "n1") == "n1" }
        for id in ["n2", "n3"] { try cluster.start(id, flags: flags(id)) }
        return (ids, flags)
    }

    func testKilledNodeIsSeenDeadAndAPausedOneRefutesWhenItResumes() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let (ids, flags) = try await Self.startGossiping(cluster)
        func everyone(_ status: String, of subject: String, asking: [String], _ incarnationAbove: Int = -1) async -> Bool {
            for observer in asking {
                guard let seen = await Self.gossip(cluster, asking: observer)[subject], seen.status == status, seen.incarnation > incarnationAbove else { return false }
            }
            return true
        }
        try await cluster.waitUntil("every node sees every node alive in gossip", seconds: 30) {
            for subject in ids { guard await everyone("alive", of: subject, asking: ids) else { return false } }
            return true
        }

        // kill -9: the survivors declare it dead.
        cluster.kill9("n3")
        let killedAt = Date()
        try await cluster.waitUntil("n1 and n2 see n3 dead", seconds: 10) { await everyone("dead", of: "n3", asking: ["n1", "n2"]) }
        let detection = Date().timeIntervalSince(killedAt)
        XCTAssertLessThan(detection, 5, "kill -9 detected everywhere after \(detection) s")

        // Restarted, it rejoins and is alive everywhere again.
        try cluster.start("n3", flags: flags("n3"))
        try await cluster.waitUntil("n3 alive again everywhere", seconds: 15) { await everyone("alive", of: "n3", asking: ids) }

        // SIGSTOP for 5 s: suspected, then dead (5 s outlasts the suspicion timeout); on SIGCONT it
        // refutes with a higher incarnation and is alive everywhere again.
        let before = try unwrap(await Self.gossip(cluster, asking: "n1")["n2"]).incarnation
        cluster.pause("n2")
        let pausedAt = Date()
        try await cluster.waitUntil("n1 and n3 suspect n2", seconds: 5) {
            let one = await Self.gossip(cluster, asking: "n1")["n2"]?.status
            let three = await Self.gossip(cluster, asking: "n3")["n2"]?.status
            return [one, three].allSatisfy { (status: String?) in status == "suspect" || status == "dead" }
        }
        try await cluster.waitUntil("n1 and n3 declare the paused n2 dead", seconds: 5) { await everyone("dead", of: "n2", asking: ["n1", "n3"]) }
        try await Task.sleep(for: .milliseconds(max(0, Int64((5 - Date().timeIntervalSince(pausedAt)) * 1000))))
        cluster.resume("n2")
        let resumedAt = Date()
        try await cluster.waitUntil("n2 alive again everywhere with a higher incarnation", seconds: 10) {
            await everyone("alive", of: "n2", asking: ["n1", "n3"], before)
        }
        XCTAssertLessThan(Date().timeIntervalSince(resumedAt), 5, "the refutation took more than 5 s to spread")
        let own = await Self.gossip(cluster, asking: "n2")
        XCTAssertEqual(own["n1"]?.status, "alive", "the resumed node did not blame others for its own pause: \(own)")
        XCTAssertEqual(own["n3"]?.status, "alive", "the resumed node did not blame others for its own pause: \(own)")
    }

    /// SIGTERM on a gossiping leader: it hands leadership over, gossip says it leaves, and the
    /// process exits cleanly within 2 s. (Gossip once finished its subscribers' streams under its
    /// own lock: the release build deadlocked until `cluster down`'s SIGKILL 10 s later, the
    /// debug build trapped.)
    func testSIGTERMStopsAGossipingLeaderWithinTwoSeconds() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let (ids, flags) = try await Self.startGossiping(cluster)
        try await cluster.waitUntil("every node sees every node alive in gossip", seconds: 30) {
            for observer in ids {
                let view = await Self.gossip(cluster, asking: observer)
                guard ids.allSatisfy({ view[$0]?.status == "alive" }) else { return false }
            }
            return true
        }
        try await cluster.waitUntil("3 voters") { await cluster.voters(asking: "n1").count == 3 }
        let took = try await cluster.terminateAndTime("n1", limit: .seconds(10))
        XCTAssertLessThan(took, .seconds(2), "n1 exits within 2 s of SIGTERM, took \(took)")
        let log = cluster.log("n1")
        XCTAssertTrue(log.contains("handed over leadership before stopping") && log.contains("result=done"), "it handed over first: \(log.suffix(2000))")
        XCTAssertTrue(log.contains("gossip left"), "gossip said it leaves")
        XCTAssertFalse(log.contains("ServiceGroupError") || log.contains("Fatal error"), "it stopped cleanly: \(log.suffix(2000))")
        try await cluster.waitUntil("n2 or n3 leads") { ["n2", "n3"].contains(await cluster.leader(asking: "n2") ?? "") }
    }
}
