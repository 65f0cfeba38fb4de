import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HummingbirdWSClient
import Logging
import XCTest

/// `switchboard balancer` in front of three real nodes, learning them from gossip: a client loop of
/// GETs and keyed POSTs sees no failure while a node is killed with `kill -9` and restarted, then
/// another is paused with `SIGSTOP`; the killed node is ejected, then readmitted.
final class BalancerProcessTests: XCTestCase {
    /// Three gossiping nodes (n1 bootstraps, n2 and n3 join) and a balancer that learned them
    /// from gossip and admitted all three; `flags` restarts a node with its gossip flags.
    static func gossipingClusterBehindABalancer(
        _ cluster: ProcessCluster
    ) async throws -> (front: BalancerProcess, flags: @Sendable (String) -> [String]) {
        let ids = ["n1", "n2", "n3"]
        for id in ids { cluster.describe(id) }
        let gossip = Dictionary(uniqueKeysWithValues: ids.map { ($0, "127.0.0.1:\(ProcessCluster.freePort())") })
        let flags: @Sendable (String) -> [String] = { id in
            ["--gossip", gossip[id]!, "--seeds", ids.filter { $0 != id }.map { gossip[$0]! }.joined(separator: ",")]
        }
        try cluster.start("n1", flags: flags("n1"))
        try await cluster.waitUntil("n1 leads") { await cluster.leader(asking: "n1") == "n1" }
        for id in ["n2", "n3"] { try cluster.start(id, flags: flags(id)) }
        try await cluster.waitUntil("3 voters") { await cluster.voters(asking: "n1").count == 3 }
        let front = try BalancerProcess(
            cluster: cluster,
            arguments: ["--gossip", "127.0.0.1:\(ProcessCluster.freePort())", "--seeds", ids.map { gossip[$0]! }.joined(separator: ",")])
        let log = front.log
        do {
            try await cluster.waitUntil("the balancer admits all three nodes", seconds: 15) {
                ids.allSatisfy { id in log().contains("balancer.backend=\(id) balancer.reason=2 good checks") }
            }
        } catch {
            front.stop()
            throw error
        }
        return (front, flags)
    }

    /// Three nodes started together behind a balancer given them by hand (`--backend`), once it
    /// admitted all three.
    static func threeNodesBehindABalancer(_ cluster: ProcessCluster) async throws -> BalancerProcess {
        for id in ["n1", "n2", "n3"] { cluster.describe(id) }
        try await cluster.startAll()
        let front = try BalancerProcess(cluster: cluster, arguments: cluster.members.flatMap { ["--backend", "\($0.id)=\($0.api)"] })
        do {
            try await cluster.waitUntil("the balancer admits all three nodes", seconds: 15) { ["n1", "n2", "n3"].allSatisfy(front.admitted) }
        } catch {
            front.stop()
            throw error
        }
        return front
    }

    /// One request with the admin token through `base`; its status, 0 without an answer.
    static func send(_ base: String, _ method: String, _ path: String, body: String? = nil, key: String? = nil) async -> Int {
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

    func testRequestsThroughTheBalancerSurviveKillPauseAndRestart() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let started = try await Self.gossipingClusterBehindABalancer(cluster)
        let front = started.front
        let flags = started.flags
        defer { front.stop() }
        let log = front.log
        let base = front.base
        let adminPort = front.adminPort
        func send(_ method: String, _ path: String, body: String? = nil, key: String? = nil) async -> Int {
            await BalancerProcessTests.send(base, method, path, body: body, key: key)
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

    /// Keyed writes through the balancer across a `kill -9` of the leader: none fails. A write
    /// whose fate the dead leader took with it is proposed again by the follower that forwarded
    /// it (the key answers the first outcome if it was applied), and the followers' 503s while
    /// they elect (`X-Switchboard-Scope: cluster`) never eject them.
    func testKeyedWritesNeverFailAcrossALeaderKill() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let front = try await Self.gossipingClusterBehindABalancer(cluster).front
        defer { front.stop() }
        let log = front.log
        let base = front.base
        let writing = ManagedAtomicFlag()
        let failures = Acknowledged()
        let successes = Acknowledged()
        let clients = Task {
            await withTaskGroup(of: Void.self) { group in
                for client in 0..<8 {
                    group.addTask {
                        var n = 0
                        while writing.isSet {
                            n += 1
                            let id = "k\(client)-\(n)"
                            let status = await BalancerProcessTests.send(
                                base, "POST", "/v1/channels/webchat/messages", body: #"{"from":"c-\#(id)","text":"hola","externalId":"\#(id)"}"#,
                                key: "key-\(id)")
                            if (200..<300).contains(status) { successes.insert(id) } else { failures.insert("\(id): \(status)") }
                        }
                    }
                }
            }
        }
        try await Task.sleep(for: .seconds(1))
        let before = successes.count
        cluster.kill9("n1")
        try await cluster.waitUntil("a new leader", seconds: 10) { await cluster.leader(asking: "n2").map { $0 != "n1" } ?? false }
        try await Task.sleep(for: .seconds(2))
        writing.clear()
        await clients.value

        XCTAssertGreaterThan(before, 20, "the clients wrote before the kill")
        XCTAssertGreaterThan(successes.count, before + 20, "and after it")
        XCTAssertEqual(failures.all, [], "a keyed write must not fail across a leader kill")
        let survivorsEjectedFor503 = log().split(separator: "\n").filter { ($0.contains("backend=n2") || $0.contains("backend=n3")) && $0.contains("reason=status 503") }
        XCTAssertEqual(survivorsEjectedFor503, [], "a live node's 503 about the election must not eject it")
    }

    /// An events WebSocket through the balancer: its node is killed with `kill -9`, the client
    /// sees the socket close, reconnects through the balancer (to another node) with its last
    /// cursor, and ends up with every message event exactly once, in cursor order.
    func testEventsWebSocketReconnectsThroughTheBalancerWithoutAGap() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let front = try await Self.threeNodesBehindABalancer(cluster)
        defer { front.stop() }

        let stream = EventLog()
        let socketURL = "ws://127.0.0.1:\(front.port)/v1/events?token=\(ProcessCluster.adminToken)"
        let reader = Task {
            // Bounded: at most 20 connections, each ending when the balancer closes it.
            for _ in 0..<20 where !Task.isCancelled {
                let since = stream.lastCursor.map { "&since=\($0)" } ?? ""
                do {
                    let closed = try await WebSocketClient.connect(url: socketURL + since, logger: Logger(label: "test-ws")) { inbound, outbound, _ in
                        stream.connected()
                        let pinger = Task {
                            while !Task.isCancelled {
                                try? await outbound.write(.text(#"{"type":"ping"}"#))
                                try? await Task.sleep(for: .seconds(5))
                            }
                        }
                        defer { pinger.cancel() }
                        for try await message in inbound.messages(maxSize: 1 << 20) {
                            if case .text(let text) = message { stream.add(text) }
                            if Task.isCancelled { break }
                        }
                    }
                    stream.note("closed: \(closed.map { "\($0.closeCode) \($0.reason ?? "")" } ?? "no close frame")")
                } catch {
                    stream.note("connect failed: \(error)")
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { reader.cancel() }
        try await cluster.waitUntil("the events socket is open", seconds: 10) { stream.connections >= 1 }

        // The node holding the socket, from the balancer's /metrics.
        var holder: String?
        try await cluster.waitUntil("the balancer counts the socket", seconds: 5) {
            for id in ["n1", "n2", "n3"] where await front.metric("switchboard_balancer_backend_websockets", backend: id) == 1 { holder = id }
            return holder != nil
        }
        let victim = try XCTUnwrap(holder)

        var posted: [String] = []
        func post(_ n: Int) async {
            var request = URLRequest(url: URL(string: front.base + "/v1/channels/webchat/messages")!)
            request.httpMethod = "POST"
            request.timeoutInterval = 10
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.setValue("ws-gap-\(n)", forHTTPHeaderField: "Idempotency-Key")
            request.setValue("Bearer \(ProcessCluster.adminToken)", forHTTPHeaderField: "Authorization")
            request.httpBody = Data(#"{"from":"ws-\#(n)","text":"gap-check-\#(n)","externalId":"ws-gap-\#(n)"}"#.utf8)
            if let (_, response) = try? await URLSession.shared.data(for: request), let status = (response as? HTTPURLResponse)?.statusCode,
                (200..<300).contains(status)
            {
                posted.append("gap-check-\(n)")
            }
        }
        for n in 0..<20 { await post(n) }
        XCTAssertEqual(posted.count, 20, "posts through the balancer succeed")
        try await cluster.waitUntil("the first 20 messages arrive on the socket", seconds: 10) { stream.texts(containing: "gap-check-").count >= 20 }
        cluster.kill9(victim)
        for n in 20..<40 {
            await post(n)
            try await Task.sleep(for: .milliseconds(50))
        }
        do {
            try await cluster.waitUntil("the client reconnects", seconds: 20) { stream.connections >= 2 }
        } catch {
            XCTFail("what the client saw: \(stream.notes)\nbalancer log:\n\(front.log().suffix(3000))")
            throw error
        }
        try await cluster.waitUntil("every acknowledged message arrives on the socket", seconds: 15) {
            Set(stream.texts(containing: "gap-check-")).isSuperset(of: posted)
        }

        XCTAssertGreaterThanOrEqual(posted.count, 38, "posts through the balancer succeed while a node dies: \(posted.count) of 40")
        let seen = stream.texts(containing: "gap-check-")
        let repeated = Dictionary(grouping: seen, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        XCTAssertEqual(repeated, [], "no message event is delivered twice across the reconnect")
        XCTAssertEqual(Set(seen), Set(posted), "every acknowledged message's event arrives, none other")
        XCTAssertTrue(stream.cursorsIncrease, "events arrive in cursor order across the reconnect: \(stream.cursors.suffix(10))")
        XCTAssertFalse(stream.sawReset, "the resumed cursor is within the kept window: no reset")
        XCTAssertTrue(
            stream.notes.contains { $0.contains("1012") && $0.contains("node gone") },
            "the balancer closes the socket with close code 1012 when its node dies (so half-closing clients reconnect too): \(stream.notes)")
    }

    /// A node back from a death holds none of the event sockets its death sent elsewhere; left
    /// so, the next death sends half of every socket through the balancer at once. The balancer
    /// moves sockets from the nodes over their share to it, each closed between two frames with
    /// 1012 "rebalancing; reconnect", until each node holds about a third; every client is back
    /// and nothing moves once the shares are even.
    func testEventSocketsMoveToANodeThatCameBack() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let front = try await Self.threeNodesBehindABalancer(cluster)
        defer { front.stop() }
        cluster.kill9("n3")
        try await cluster.waitUntil("the balancer ejects n3", seconds: 10) {
            front.log().split(separator: "\n").contains { $0.contains("backend ejected") && $0.contains("balancer.backend=n3") }
        }

        // Thirty agents' sockets (the admin's token), each reconnecting 100 ms after a close.
        let sockets = 30
        let log = EventLog()
        let clients = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<sockets {
                    group.addTask {
                        for _ in 0..<10 where !Task.isCancelled {
                            do {
                                let url = "ws://127.0.0.1:\(front.port)/v1/events?token=\(ProcessCluster.adminToken)"
                                let closed = try await WebSocketClient.connect(url: url, logger: Logger(label: "test-ws")) { inbound, _, _ in
                                    log.connected()
                                    for try await _ in inbound.messages(maxSize: 1 << 20) where Task.isCancelled { break }
                                }
                                log.note("closed: \(closed.map { "\($0.closeCode) \($0.reason ?? "")" } ?? "no close frame")")
                            } catch {
                                log.note("connect failed: \(error)")
                            }
                            try? await Task.sleep(for: .milliseconds(100))
                        }
                    }
                }
            }
        }
        defer { clients.cancel() }
        func held() async -> [Int] {
            var counts: [Int] = []
            for id in ["n1", "n2", "n3"] { counts.append(await front.metric("switchboard_balancer_backend_websockets", backend: id) ?? -1) }
            return counts
        }
        // The balancer counts a socket when it chooses its node, the client once the 101 is in.
        try await cluster.waitUntil("every socket is open on n1 and n2", seconds: 15) {
            let placed = await held().prefix(2).reduce(0, +)
            return log.connections >= sockets && placed == sockets
        }
        XCTAssertEqual(log.connections, sockets, "one connection each so far: \(log.notes)")

        try cluster.start("n3")
        do {
            // Readmitted after two good checks, then warmed up (5 s) before anything moves to it.
            try await cluster.waitUntil("n3 holds a share of the sockets", seconds: 30) { (await held())[2] >= 7 }
        } catch {
            let counts = await held()
            XCTFail("held \(counts); clients saw \(log.notes.suffix(10)); balancer log:\n\(front.log().suffix(3000))")
            throw error
        }
        try await cluster.waitUntil("every client is back", seconds: 10) {
            let placed = await held().reduce(0, +)
            let closes = log.notes.count
            return placed == sockets && log.connections - sockets == closes
        }
        let counts = await held()
        XCTAssertTrue(counts.allSatisfy { (7...13).contains($0) }, "each node holds about a third of 30: \(counts)")
        let moved = log.notes.filter { $0.contains("1012") && $0.contains("rebalancing") }
        XCTAssertEqual(moved.count, log.connections - sockets, "every reconnection was a move, told as one: \(log.notes)")
        XCTAssertLessThanOrEqual(moved.count, 12, "only what the balance needs moves: \(moved.count)")
        let metrics = await front.metrics()
        XCTAssertTrue(metrics.contains("switchboard_balancer_websockets_moved_total \(moved.count)"), "the moves are counted on /metrics")
        try await Task.sleep(for: .seconds(2))
        XCTAssertEqual(log.connections - sockets, moved.count, "nothing moves once the shares are even")
    }

    /// Bad input at the front door gets its own answer and never disturbs another client: a
    /// request that stalls mid-headers gets 408, oversize headers 431, an oversize body 413, and
    /// a body larger than the retry copy is streamed to the node.
    /// A node killed between two active checks still looks healthy to the balancer: the
    /// WebSocket upgrades it is given must be answered (here with a `101` from another node, after
    /// one retry), never closed without a word. A client that keeps half-closed sockets, as
    /// swift-websocket does, would otherwise wait on a silent close until its own timeout (the
    /// load tester saw a dozen such 10 s stalls at every leader kill).
    func testWebSocketUpgradesToANodeKilledBetweenChecksAreAnswered() async throws {
        try await assertUpgradesAreAnsweredAfter("killed") { $0.kill9("n3") }
    }

    /// The same with n3 paused (SIGSTOP) between two checks: its kernel still accepts the
    /// connection, but no answer comes. After `WebSocketPassThrough.handshakeTimeout` the
    /// balancer ejects it and the upgrade is answered by another node, instead of waiting for as
    /// long as the node stays paused.
    func testWebSocketUpgradesToANodePausedBetweenChecksAreAnswered() async throws {
        try await assertUpgradesAreAnsweredAfter("paused") { $0.pause("n3") }
    }

    private func assertUpgradesAreAnsweredAfter(_ fault: String, _ inflict: (ProcessCluster) -> Void) async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        for id in ["n1", "n2", "n3"] { cluster.describe(id) }
        try await cluster.startAll()
        // Checks every 3 s: the kill below lands between two of them.
        let front = try BalancerProcess(cluster: cluster, arguments: cluster.members.flatMap { ["--backend", "\($0.id)=\($0.api)"] } + ["--check-ms", "3000"])
        defer { front.stop() }
        try await cluster.waitUntil("the balancer admits and warms up all three nodes", seconds: 40) {
            ["n1", "n2", "n3"].allSatisfy { id in front.log().contains("balancer.backend=\(id) balancer.reason=warmed up") }
        }
        try await Task.sleep(for: .milliseconds(500))  // just after a round of checks
        inflict(cluster)
        try await Task.sleep(for: .milliseconds(100))

        let upgrade =
            "GET /v1/events?token=\(ProcessCluster.adminToken) HTTP/1.1\r\nHost: front\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        var held: [RawClient] = []
        var answers: [String] = []
        for _ in 0..<6 {
            guard let client = try? RawClient(port: front.port) else {
                let log = front.log()
                let crash = log.range(of: "Fatal error").map { log[$0.lowerBound...] } ?? log.range(of: "crashed").map { log[$0.lowerBound...] } ?? log.suffix(3000)
                XCTFail("the balancer refuses connections; its log says: \(crash.prefix(3000))")
                return
            }
            try client.send(upgrade)
            answers.append(String(client.readUntilClosed(seconds: 4, orUntil: "\r\n\r\n").prefix(34)))
            held.append(client)  // open sockets count: the next upgrade goes to the node with the fewest
        }
        XCTAssertEqual(
            answers.filter { $0.hasPrefix("HTTP/1.1 101") }.count, 6,
            "every upgrade is answered with 101 by a live node, including the one first given to the \(fault) n3; answers: \(answers)")
        let placed = [await front.metric("switchboard_balancer_backend_websockets", backend: "n1"), await front.metric("switchboard_balancer_backend_websockets", backend: "n2")]
        XCTAssertEqual(placed.compactMap { $0 }.reduce(0, +), 6, "the six sockets are on the live nodes (n1, n2): \(placed)")
        // The balancer logs state changes after each round of checks.
        try await cluster.waitUntil("the balancer says n3 was ejected by the failed upgrade", seconds: 8) {
            front.log().contains("balancer.backend=n3 balancer.reason=websocket upgrade")
        }
        held.removeAll()
    }

    func testBadInputAtTheBalancer() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        cluster.describe("n1")
        try await cluster.startAll()
        let front = try BalancerProcess(cluster: cluster, arguments: ["--backend", "n1=\(cluster.member("n1").api)", "--request-timeout-ms", "1000"])
        defer { front.stop() }
        try await cluster.waitUntil("the balancer admits n1", seconds: 15) { front.admitted("n1") }

        // A slow client: half a request, then silence.
        let slow = try RawClient(port: front.port)
        try slow.send("GET /healthz HTTP/1.1\r\nHost: front\r\n")
        let started = Date()
        let (status, _) = try await send(front, "GET", "/healthz")
        XCTAssertEqual(status, 200, "another client is served while one stalls")
        let answer = slow.readUntilClosed(seconds: 5)
        let waited = Date().timeIntervalSince(started)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 408"), "a request not finished within 1 s gets 408, got: \(answer.prefix(80))")
        XCTAssertTrue((0.9...3.5).contains(waited), "the 408 comes after the request timeout (1 s), took \(waited) s")

        // The same, behind a whole request in the same write: the half request's time starts
        // when the first answer ends, not at the connection's next read.
        let pipelinedSlow = try RawClient(port: front.port)
        try pipelinedSlow.send("GET /healthz HTTP/1.1\r\nHost: front\r\n\r\nGET /healthz HTTP/1.1\r\nHost: front\r\n")
        let pipelinedStarted = Date()
        let both = pipelinedSlow.readUntilClosed(seconds: 5)
        let pipelinedWaited = Date().timeIntervalSince(pipelinedStarted)
        XCTAssertTrue(both.hasPrefix("HTTP/1.1 200") && both.contains("HTTP/1.1 408"), "the whole request is answered, the half one gets 408: \(both.prefix(400))")
        XCTAssertLessThan(pipelinedWaited, 3.5, "the 408 comes after the request timeout (1 s), not the idle timeout (60 s)")

        let (headerStatus, _) = try await send(front, "GET", "/healthz", headers: ["X-Padding": String(repeating: "a", count: 200_000)])
        XCTAssertEqual(headerStatus, 431, "headers over the decoder's limit get 431")

        let oversize = try RawClient(port: front.port)
        try oversize.send("POST /v1/channels/sms/messages HTTP/1.1\r\nHost: front\r\nContent-Length: \(ProxyLimits.requestBodyBytesMax + 1)\r\n\r\n")
        let refused = oversize.readUntilClosed(seconds: 5)
        XCTAssertTrue(refused.hasPrefix("HTTP/1.1 413"), "a declared body over the limit gets 413 before it is read: \(refused.prefix(80))")

        // A client that asks before sending its body hears `100 Continue` from the balancer at once.
        let asking = try RawClient(port: front.port)
        let body = #"{"from":"c-expect","text":"hi","externalId":"expect-1"}"#
        try asking.send(
            "POST /v1/channels/sms/messages HTTP/1.1\r\nHost: front\r\nAuthorization: Bearer \(ProcessCluster.adminToken)\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        let interim = asking.readUntilClosed(seconds: 0.5, orUntil: "\r\n\r\n")
        XCTAssertTrue(interim.hasPrefix("HTTP/1.1 100 Continue"), "Expect: 100-continue is answered before the body: \(interim.prefix(80))")
        try asking.send(body)
        let final = asking.readUntilClosed(seconds: 5)
        XCTAssertTrue(final.hasPrefix("HTTP/1.1 202"), "then the node's answer: \(final.prefix(120))")

        // 3 MiB, three times the retry copy: it streams to the node, whose own limit answers.
        let (bigStatus, bigBody) = try await send(front, "POST", "/v1/channels/sms/messages", body: Data(count: 3 << 20), token: ProcessCluster.adminToken)
        let direct = try await cluster.request("n1", "POST", "/v1/channels/sms/messages", body: String(repeating: " ", count: 3 << 20))
        XCTAssertEqual(bigStatus, direct.status, "a large body streamed through the balancer gets the node's own answer: \(bigBody.prefix(200))")
        XCTAssertTrue(bigBody.contains("body_too_large"), "the answer is the node's (the body was streamed to it), not the balancer's: \(bigBody.prefix(200))")

        // A WebSocket upgrade the node refuses (no token): the client gets the node's own status
        // line, as a direct request would, and the node stays in (a bad client must not eject it).
        let refusedUpgrade =
            "GET /v1/events HTTP/1.1\r\nHost: front\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        let nodeClient = try RawClient(port: Int(cluster.member("n1").api.split(separator: ":")[1])!)
        try nodeClient.send(refusedUpgrade)
        let nodeStatus = nodeClient.readUntilClosed(seconds: 3, orUntil: "\r\n").prefix(12)
        let upgrade = try RawClient(port: front.port)
        try upgrade.send(refusedUpgrade)
        let refusal = upgrade.readUntilClosed(seconds: 5, orUntil: "}")
        XCTAssertTrue(nodeStatus.hasPrefix("HTTP/1.1 4"), "the node refuses an upgrade without a token: \(nodeStatus)")
        XCTAssertTrue(
            refusal.hasPrefix(String(nodeStatus)), "a refused upgrade is answered with the node's status (\(nodeStatus)), never a silent close: \(refusal.prefix(120))")

        try await assertStillServesWithoutEjecting(front, "n1", "the balancer still serves after all of it", "bad clients never eject a node")
    }

    /// The balancer frames HTTP/1.1 itself (BalancerCore.HTTP1) and forwards bytes: pipelined
    /// requests are answered in order, an answer to HEAD has no body, a chunked upload reaches
    /// the node whole, HTTP/1.0 closes after its answer, and a request whose length is
    /// ambiguous is refused without reaching a node.
    func testHTTPFramingThroughTheBalancer() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        cluster.describe("n1")
        try await cluster.startAll()
        let front = try BalancerProcess(cluster: cluster, arguments: ["--backend", "n1=\(cluster.member("n1").api)"])
        defer { front.stop() }
        try await cluster.waitUntil("the balancer admits n1", seconds: 15) { front.admitted("n1") }
        let (status, healthBody) = try await send(front, "GET", "/healthz")
        XCTAssertEqual(status, 200)
        XCTAssertFalse(healthBody.isEmpty)

        let pipelined = try RawClient(port: front.port)
        try pipelined.send(
            "GET /healthz HTTP/1.1\r\nHost: front\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: front\r\n\r\n"
                + "GET /healthz HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n")
        let answers = pipelined.readUntilClosed(seconds: 5)
        // (The node has no HEAD route: its 404 says Content-Length 65 and, being for HEAD, has no body.)
        XCTAssertEqual(answers.components(separatedBy: "HTTP/1.1 ").count - 1, 3, "three pipelined requests, three answers: \(answers)")
        XCTAssertEqual(
            answers.components(separatedBy: healthBody).count - 1, 2, "the two GETs carry the node's body, the HEAD none: \(answers)")
        XCTAssertFalse(answers.contains(#""error""#), "the answer to HEAD brought no body: \(answers)")
        XCTAssertTrue(answers.hasSuffix(healthBody), "the connection closed after the third answer, as asked: \(answers.suffix(80))")

        let body = #"{"from":"c-chunked","text":"hi there","externalId":"chunked-1"}"#
        let (first, second) = (body.prefix(20), body.dropFirst(20))
        let chunked = try RawClient(port: front.port)
        try chunked.send(
            "POST /v1/channels/sms/messages HTTP/1.1\r\nHost: front\r\nAuthorization: Bearer \(ProcessCluster.adminToken)\r\n"
                + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                + "\(String(first.utf8.count, radix: 16))\r\n\(first)\r\n")
        try await Task.sleep(for: .milliseconds(50))
        try chunked.send("\(String(second.utf8.count, radix: 16));note=split\r\n\(second)\r\n0\r\n\r\n")
        let accepted = chunked.readUntilClosed(seconds: 5)
        XCTAssertTrue(accepted.hasPrefix("HTTP/1.1 202"), "a chunked upload in two writes reaches the node whole: \(accepted.prefix(300))")

        let old = try RawClient(port: front.port)
        try old.send("GET /healthz HTTP/1.0\r\n\r\n")
        let oldAnswer = old.readUntilClosed(seconds: 5)
        XCTAssertTrue(oldAnswer.hasPrefix("HTTP/1.1 200"), "an HTTP/1.0 request is answered: \(oldAnswer.prefix(120))")
        XCTAssertTrue(oldAnswer.lowercased().contains("connection: close"), "and told the connection closes: \(oldAnswer)")

        let requestsBefore = await front.metric("switchboard_balancer_backend_requests_total", backend: "n1")
        let smuggled = try RawClient(port: front.port)
        try smuggled.send("POST /v1/channels/sms/messages HTTP/1.1\r\nHost: front\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        let refusal = smuggled.readUntilClosed(seconds: 5)
        XCTAssertTrue(refusal.hasPrefix("HTTP/1.1 400"), "a request with two lengths is refused: \(refusal.prefix(200))")
        let requestsAfter = await front.metric("switchboard_balancer_backend_requests_total", backend: "n1")
        XCTAssertEqual(requestsAfter, requestsBefore, "the refused request never reached the node")
        try await assertStillServesWithoutEjecting(front, "n1", "the balancer still serves", "no client's framing counted against the node")
    }

    /// With no node known, every request is answered 503 by the balancer itself, at once. A
    /// client that pipelines thousands of them in one write gets every answer, in order, and the
    /// balancer keeps serving (answering them must not nest one call per request).
    func testPipelinedRequestsWithNoNodeAreEachAnswered() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        // Gossip with a seed where no member answers: the balancer runs and knows no node.
        let front = try BalancerProcess(cluster: cluster, arguments: [
            "--gossip", "127.0.0.1:\(ProcessCluster.freePort())", "--seeds", "127.0.0.1:\(ProcessCluster.freePort())",
        ], secret: "no-node-secret")
        defer { front.stop() }
        try await cluster.waitUntil("the balancer listens", seconds: 15) { (try? RawClient(port: front.port)) != nil }
        let count = 3000
        let client = try RawClient(port: front.port)
        try client.send(String(repeating: "GET / HTTP/1.1\r\n\r\n", count: count))
        var answers = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, answers.components(separatedBy: "HTTP/1.1 503").count - 1 < count {
            answers += client.readUntilClosed(seconds: 0.5)
        }
        XCTAssertEqual(answers.components(separatedBy: "HTTP/1.1 503").count - 1, count, "each of \(count) pipelined requests is answered 503 (no node)")
        let (status, _) = try await send(front, "GET", "/healthz")
        XCTAssertEqual(status, 503, "the balancer still answers")
    }

    /// A node that answers every request with 503 (its checks pass): the balancer reads each
    /// such answer to its end, ejects the node, and retries the GET on the other node, so the
    /// client sees only 200s.
    func testA503IsReadToItsEndAndRetriedOnAnotherNode() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        cluster.describe("n1")
        try await cluster.startAll()
        let busy = try BusyBackend()
        defer { busy.stop() }
        let front = try BalancerProcess(cluster: cluster, arguments: [
            // Checks every 2 s: once ejected, the busy backend stays out for the 20 requests.
            "--backend", "n1=\(cluster.member("n1").api)", "--backend", "busy=127.0.0.1:\(busy.port)", "--check-ms", "2000",
        ])
        defer { front.stop() }
        try await cluster.waitUntil("the balancer admits both backends", seconds: 30) {
            front.admitted("n1") && front.admitted("busy")
        }
        try await Task.sleep(for: .seconds(1))  // past the first moments of warm-up
        var statuses: [Int] = []
        for _ in 0..<20 { statuses.append(try await send(front, "GET", "/healthz").0) }
        XCTAssertEqual(statuses.filter { $0 == 200 }.count, 20, "every GET ends with the live node's 200: \(statuses)")
        XCTAssertGreaterThan(busy.answered, 0, "the busy backend was chosen at least once (its 503 was retried)")
        let ejections = await front.metric("switchboard_balancer_backend_ejections_total", backend: "busy")
        XCTAssertEqual(ejections, 1, "its 503 ejected it")
    }

    /// An answer with no length runs until its connection closes: the client gets all of it,
    /// told that its connection closes too, and a kept-alive client connection is not reused.
    func testAnAnswerWithoutALengthEndsWithItsConnection() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let body = String(repeating: "streamed until the close. ", count: 400)
        let backend = try BusyBackend { _ in ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n\(body)", true) }
        defer { backend.stop() }
        let front = try BalancerProcess(cluster: cluster, arguments: ["--backend", "old=127.0.0.1:\(backend.port)"])
        defer { front.stop() }
        try await cluster.waitUntil("the balancer admits the backend", seconds: 15) { front.admitted("old") }
        let client = try RawClient(port: front.port)
        try client.send("GET /report HTTP/1.1\r\nHost: front\r\n\r\n")
        let answer = client.readUntilClosed(seconds: 5)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), "the node's answer: \(answer.prefix(120))")
        XCTAssertTrue(answer.lowercased().contains("connection: close"), "the client is told the connection ends with the answer: \(answer.prefix(200))")
        XCTAssertTrue(answer.hasSuffix(body), "every byte up to the node's close reached the client (\(answer.utf8.count) bytes)")
        let ejections = await front.metric("switchboard_balancer_backend_ejections_total", backend: "old")
        XCTAssertEqual(ejections, 0, "a close that ends an answer is not a failure")
    }

    /// Bodiless GETs from many clients at once share connections to a node (HTTP/1.1
    /// pipelining): every client gets the answer to its own request, also when a client leaves
    /// before its slow answer came (that answer is read and dropped, and those pipelined behind
    /// it stay matched).
    func testPipelinedGetsEachGetTheirOwnAnswer() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let echo = try BusyBackend { head in
            let path = head.split(separator: " ").dropFirst().first.map(String.init) ?? "?"
            if path.hasPrefix("/slow") { usleep(100_000) }
            return ("HTTP/1.1 200 OK\r\nContent-Length: \(path.utf8.count)\r\n\r\n\(path)", false)
        }
        defer { echo.stop() }
        let front = try BalancerProcess(cluster: cluster, arguments: ["--backend", "echo=127.0.0.1:\(echo.port)"])
        defer { front.stop() }
        try await cluster.waitUntil("the balancer admits the backend", seconds: 15) { front.admitted("echo") }
        try await Task.sleep(for: .seconds(1))  // past the first moments of warm-up
        let clients = try (0..<24).map { _ in try RawClient(port: front.port) }
        var wrong: [String] = []
        for round in 0..<100 {
            // Every tenth round, a client asks for a slow answer ahead of the others and leaves.
            var leaver: RawClient? = nil
            if round % 10 == 0 {
                leaver = try RawClient(port: front.port)
                try leaver?.send("GET /slow-\(round) HTTP/1.1\r\nHost: front\r\n\r\n")
            }
            for (index, client) in clients.enumerated() { try client.send("GET /r\(round)-c\(index) HTTP/1.1\r\nHost: front\r\n\r\n") }
            leaver = nil
            for (index, client) in clients.enumerated() {
                let path = "/r\(round)-c\(index)"
                let answer = client.readUntilClosed(seconds: 5, orUntil: "\r\n\r\n" + path)
                if !answer.hasPrefix("HTTP/1.1 200") || !answer.hasSuffix("\r\n\r\n" + path) { wrong.append("\(path) got \(answer.suffix(60))") }
            }
        }
        XCTAssertEqual(wrong, [], "each of 2,400 GETs got the answer to its own path")
        XCTAssertGreaterThan(echo.mostRequestsInOneRead, 1, "GETs of the same round reached the node together, pipelined")
        try await assertStillServesWithoutEjecting(front, "echo", "the balancer still serves", "the clients that left counted nothing against the node")
    }

    /// After bad input: a plain GET through `front` still gets 200, and `backend` was never ejected.
    private func assertStillServesWithoutEjecting(
        _ front: BalancerProcess, _ backend: String, _ serves: String, _ notEjected: String, file: StaticString = #filePath, line: UInt = #line
    ) async throws {
        let (after, _) = try await send(front, "GET", "/healthz")
        XCTAssertEqual(after, 200, serves, file: file, line: line)
        let ejections = await front.metric("switchboard_balancer_backend_ejections_total", backend: backend)
        XCTAssertEqual(ejections, 0, notEjected, file: file, line: line)
    }

    private func send(_ front: BalancerProcess, _ method: String, _ path: String, body: Data? = nil, token: String? = nil, headers: [String: String] = [:])
        async throws -> (Int, String)
    {
        var request = URLRequest(url: URL(string: front.base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        request.httpBody = body
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }
}

/// The balancer's request body limit, as the tests know it (`ProxyExchange.requestBodyBytesMax`).
enum ProxyLimits {
    static let requestBodyBytesMax = 16 << 20
}

/// What an events socket client saw across its connections.
final class EventLog: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private struct Frame: Decodable {
        var type: String
        var cursor: String?
    }
    private let lock = NSLock()
    private var frames: [(type: String, cursor: String?, text: String)] = []
    private var recorded: [String] = []
    private var opened = 0

    func connected() { lock.withLock { opened += 1 } }
    var connections: Int { lock.withLock { opened } }
    func note(_ text: String) { lock.withLock { recorded.append(text) } }
    var notes: [String] { lock.withLock { recorded } }

    func add(_ text: String) {
        guard let frame = try? JSONDecoder().decode(Frame.self, from: Data(text.utf8)) else { return }
        lock.withLock { frames.append((frame.type, frame.cursor, text)) }
    }

    var lastCursor: String? { lock.withLock { frames.last { $0.cursor != nil }?.cursor } }
    var cursors: [String] { lock.withLock { frames.compactMap(\.cursor) } }
    var sawReset: Bool { lock.withLock { frames.contains { $0.type == "reset" } } }

    /// Cursors are `index-seq`; each must sort after the one before.
    var cursorsIncrease: Bool {
        let keys = cursors.map { $0.split(separator: "-").compactMap { Int($0) } }
        return zip(keys, keys.dropFirst()).allSatisfy { $0.lexicographicallyPrecedes($1) }
    }

    /// For each `message.created` frame whose text contains `marker`, the marked word.
    func texts(containing marker: String) -> [String] {
        lock.withLock {
            frames.filter { $0.type == "message.created" }.compactMap { frame in
                guard let range = frame.text.range(of: marker) else { return nil }
                let rest = frame.text[range.upperBound...].prefix { $0.isNumber }
                return marker + rest
            }
        }
    }
}

/// A plain TCP client for requests URLSession will not send (half a request, a lying length).
final class RawClient {
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard write(descriptor, bytes, bytes.count) == bytes.count else { throw POSIXError(.EPIPE) }
    }

    /// Everything read until the peer closes, `seconds` pass, or what was read ends with `marker`.
    func readUntilClosed(seconds: Double, orUntil marker: String? = nil) -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let count = read(descriptor, &buffer, buffer.count)
            if count == 0 { break }
            if count > 0 { received += buffer[0..<count] }
            if let marker, received.count > 0, String(decoding: received, as: UTF8.self).hasSuffix(marker) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }
}

/// A backend whose checks pass but that answers every other request its own way (by default
/// `503` with a body, on a keep-alive connection; plain sockets, one thread per connection,
/// pipelined requests answered in order).
final class BusyBackend: @unchecked Sendable {
    // @unchecked: `count` and `mostInOneRead` are guarded by `lock`; the rest is immutable after init.
    /// What to send for a request (given its head) that is not a check, and whether to close after it.
    typealias Answer = @Sendable (_ head: String) -> (bytes: String, close: Bool)
    static let busy: Answer = { _ in
        let body = #"{"error":{"code":"busy","message":"try another node"}}"#
        return ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", false)
    }
    let port: Int
    private let answerOther: Answer
    private let listener: Int32
    private let lock = NSLock()
    private var count = 0
    private var mostInOneRead = 0

    var answered: Int { lock.withLock { count } }
    /// The most requests one `read` brought (more than one: they came pipelined in one write).
    var mostRequestsInOneRead: Int { lock.withLock { mostInOneRead } }

    init(answer: @escaping Answer = BusyBackend.busy) throws {
        answerOther = answer
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 64) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in
            while true {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                Thread.detachNewThread { [self] in serve(connection) }
            }
        }
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func serve(_ connection: Int32) {
        defer { close(connection) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(connection, &buffer, buffer.count)
            guard count > 0 else { return }
            received += buffer[0..<count]
            var heads = 0
            while let end = received.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: received[..<end.lowerBound], as: UTF8.self)
                received.removeSubrange(..<end.upperBound)
                heads += 1
                lock.withLock { mostInOneRead = max(mostInOneRead, heads) }
                var answer = (bytes: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close: false)
                if !head.hasPrefix("GET /readyz ") {
                    lock.withLock { self.count += 1 }
                    answer = answerOther(head)
                }
                let bytes = Array(answer.bytes.utf8)
                guard write(connection, bytes, bytes.count) == bytes.count, !answer.close else { return }
            }
        }
    }
}
