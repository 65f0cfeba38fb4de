import BalancerCore
import XCTest

final class BalancerTests: XCTestCase {
    private func at(_ milliseconds: Int) -> Duration { .milliseconds(milliseconds) }

    /// Three backends known from gossip, each with two good checks behind it and warmed up.
    private func balancer(_ ids: [String] = ["n1", "n2", "n3"], settings: BalancerSettings = BalancerSettings()) throws -> Balancer {
        var balancer = try Balancer(settings: settings, seed: 1)
        for id in ids { balancer.onGossip(id: id, address: "\(id):8080", verdict: .alive, now: at(0)) }
        for _ in 0..<settings.readmitChecks { for id in ids { balancer.onCheck(id: id, outcome: .success, now: at(0)) } }
        for id in ids { balancer.onCheck(id: id, outcome: .success, now: at(10_000)) }
        return balancer
    }

    func testANewNodeTakesRequestsOnlyAfterItsChecksPass() throws {
        var balancer = try Balancer(seed: 1)
        balancer.onGossip(id: "n1", address: "n1:8080", verdict: .alive, now: at(0))
        XCTAssertTrue(balancer.eligible.isEmpty, "alive in gossip is not enough: /readyz must pass too")
        balancer.onCheck(id: "n1", outcome: .success, now: at(250))
        XCTAssertTrue(balancer.eligible.isEmpty, "one good check of the default 2")
        balancer.onCheck(id: "n1", outcome: .success, now: at(500))
        XCTAssertEqual(balancer.eligible.map(\.id), ["n1"])
    }

    func testAFailedRequestEjectsAtOnceAndTwoGoodChecksReadmit() throws {
        var balancer = try balancer()
        let choice = try XCTUnwrap(balancer.chooseForRequest(now: at(10_000)))
        balancer.onRequestFinished(id: choice.backend, outcome: .failure("connection refused"), now: at(10_001))
        XCTAssertEqual(balancer.backends[choice.backend]?.state, .ejected(reason: "connection refused"))
        XCTAssertEqual(balancer.backends[choice.backend]?.failures, 1, "the failure is counted for /metrics")
        XCTAssertEqual(balancer.backends[choice.backend]?.ejections, 1)
        for _ in 0..<200 {
            let next = try XCTUnwrap(balancer.chooseForRequest(now: at(10_002)))
            XCTAssertNotEqual(next.backend, choice.backend, "an ejected backend is never chosen while others are eligible")
            balancer.onRequestFinished(id: next.backend, outcome: .success, now: at(10_002))
        }
        balancer.onCheck(id: choice.backend, outcome: .success, now: at(10_250))
        XCTAssertFalse(balancer.eligible.contains { $0.id == choice.backend }, "one good check is not enough")
        balancer.onCheck(id: choice.backend, outcome: .success, now: at(10_500))
        XCTAssertEqual(balancer.backends[choice.backend]?.state, .warming(since: at(10_500)), "readmitted, warming up")
        let states = balancer.backends[choice.backend]!.transitions.map(\.to)
        XCTAssertEqual(Array(states.suffix(2)), ["ejected", "warming"], "transitions are recorded: \(states)")
    }

    func testGossipSuspectOrDeadEjectsAndLeftDrains() throws {
        var balancer = try balancer()
        balancer.onGossip(id: "n1", address: "n1:8080", verdict: .dead, now: at(10_100))
        XCTAssertFalse(balancer.eligible.contains { $0.id == "n1" })
        balancer.onCheck(id: "n1", outcome: .success, now: at(10_200))
        balancer.onCheck(id: "n1", outcome: .success, now: at(10_300))
        XCTAssertFalse(balancer.eligible.contains { $0.id == "n1" }, "good checks do not readmit a node gossip holds dead")
        // n2 leaves with a request in flight: it finishes there, nothing new goes there.
        var onN2: Balancer.Choice?
        while onN2 == nil {
            let choice = try XCTUnwrap(balancer.chooseForRequest(now: at(10_400)))
            if choice.backend == "n2" { onN2 = choice } else { balancer.onRequestFinished(id: choice.backend, outcome: .success, now: at(10_400)) }
        }
        balancer.onGossip(id: "n2", address: "n2:8080", verdict: .left, now: at(10_500))
        XCTAssertEqual(balancer.backends["n2"]?.state, .draining)
        for _ in 0..<50 {
            let choice = try XCTUnwrap(balancer.chooseForRequest(now: at(10_600)))
            XCTAssertEqual(choice.backend, "n3", "only n3 takes requests: n1 dead, n2 draining")
            balancer.onRequestFinished(id: choice.backend, outcome: .success, now: at(10_600))
        }
        balancer.onRequestFinished(id: "n2", outcome: .success, now: at(10_700))
        XCTAssertNil(balancer.backends["n2"], "a drained backend is forgotten once its last request finished")
    }

    func testWithNoEligibleBackendEveryBackendIsUsedInPanicMode() throws {
        var balancer = try balancer()
        for id in ["n1", "n2", "n3"] { balancer.onCheck(id: id, outcome: .failure("503"), now: at(10_100)) }
        XCTAssertTrue(balancer.inPanic)
        var seen: Set<String> = []
        for _ in 0..<100 {
            let choice = try XCTUnwrap(balancer.chooseForRequest(now: at(10_200)), "panic mode still routes")
            XCTAssertTrue(choice.panic)
            seen.insert(choice.backend)
            balancer.onRequestFinished(id: choice.backend, outcome: .success, now: at(10_200))
        }
        XCTAssertEqual(seen, ["n1", "n2", "n3"], "in panic every backend takes requests")
        XCTAssertEqual(balancer.panicRoutes, 100)
    }

    /// During an election every node's /readyz says 503 at once, and the node that died refuses
    /// connections: panic mode must route to the nodes that answer, not to the dead one.
    func testPanicModeAvoidsABackendThatRefusedItsLastConnection() throws {
        var balancer = try balancer()
        // n1 is the one that died: it would win every tie (ids break ties) without the rule.
        balancer.onCheck(id: "n1", outcome: .unreachable("connect: refused"), now: at(10_100))
        balancer.onCheck(id: "n2", outcome: .failure("readyz 503"), now: at(10_100))
        balancer.onCheck(id: "n3", outcome: .failure("readyz 503"), now: at(10_100))
        XCTAssertTrue(balancer.inPanic)
        var seen: [String: Int] = [:]
        for _ in 0..<100 {
            let choice = try XCTUnwrap(balancer.chooseForRequest(now: at(10_200)), "panic mode still routes")
            XCTAssertTrue(choice.panic)
            seen[choice.backend, default: 0] += 1
            balancer.onRequestFinished(id: choice.backend, outcome: .success, now: at(10_200))
        }
        XCTAssertNil(seen["n1"], "the unreachable n1 gets nothing while others may answer: \(seen)")
        XCTAssertEqual(seen.values.reduce(0, +), 100, "every request is routed: \(seen)")

        // With every backend unreachable, panic still routes to all: never refuse outright.
        for id in ["n2", "n3"] { balancer.onCheck(id: id, outcome: .unreachable("connect: refused"), now: at(10_300)) }
        var last: Set<String> = []
        for _ in 0..<100 {
            let choice = try XCTUnwrap(balancer.chooseForRequest(now: at(10_400)), "a last resort is still a route")
            last.insert(choice.backend)
            balancer.onRequestFinished(id: choice.backend, outcome: .unreachable("connect: refused"), now: at(10_400))
        }
        XCTAssertEqual(last, ["n1", "n2", "n3"], "every backend is a last resort")

        // An answer clears it: n1 answers 503 like the others and is a panic route again.
        balancer.onCheck(id: "n1", outcome: .failure("readyz 503"), now: at(10_500))
        XCTAssertFalse(balancer.backends["n1"]!.unreachable, "an answer, even a 503, shows something listens")
    }

    func testPowerOfTwoChoicesAvoidsTheBusiestBackend() throws {
        var balancer = try balancer(["n1", "n2", "n3", "n4"])
        // n1 is stuck with 50 requests in flight.
        for _ in 0..<50 {
            let choice = try XCTUnwrap(balancer.chooseForRequest(excluding: ["n2", "n3", "n4"], now: at(10_000)))
            XCTAssertEqual(choice.backend, "n1")
        }
        var counts: [String: Int] = [:]
        for _ in 0..<1000 {
            let choice = try XCTUnwrap(balancer.chooseForRequest(now: at(10_000)))
            counts[choice.backend, default: 0] += 1
            balancer.onRequestFinished(id: choice.backend, outcome: .success, now: at(10_000))
        }
        XCTAssertEqual(counts["n1"] ?? 0, 0, "the backend with 50 in flight loses every pairing: \(counts)")
        for id in ["n2", "n3", "n4"] { XCTAssertGreaterThan(counts[id] ?? 0, 200, "the idle ones share the load: \(counts)") }
    }

    func testAWarmingBackendTakesAGrowingShare() throws {
        var settings = BalancerSettings()
        settings.warmupDuration = .seconds(10)
        var balancer = try balancer(["n1", "n2"], settings: settings)
        balancer.onCheck(id: "n2", outcome: .failure("timeout"), now: at(20_000))
        balancer.onCheck(id: "n2", outcome: .success, now: at(20_250))
        balancer.onCheck(id: "n2", outcome: .success, now: at(20_500))
        // WebSockets go to the fewest (weighted): right after readmission n2 counts ten times.
        var early: [String: Int] = [:]
        for _ in 0..<110 { early[balancer.chooseForWebSocket(now: at(20_500))!.backend, default: 0] += 1 }
        XCTAssertLessThan(early["n2"] ?? 0, 20, "a backend that just came back gets a small share: \(early)")
        balancer.onCheck(id: "n2", outcome: .success, now: at(30_600))
        XCTAssertEqual(balancer.backends["n2"]?.state, .healthy, "warm after warmupDuration")
    }

    func testRetriesOnlyForSafeRequestsAndWithinTheBudget() throws {
        var settings = BalancerSettings()
        settings.retryBudgetFloorPerSecond = 0
        settings.retryBudgetRatio = 0.2
        var balancer = try Balancer(settings: settings, seed: 1)
        XCTAssertFalse(balancer.mayRetry(method: "POST", hasIdempotencyKey: false, now: at(0)), "a POST without Idempotency-Key is never retried")
        for _ in 0..<100 { balancer.onRequestStarted(now: at(1)) }
        var allowed = 0
        for _ in 0..<100 where balancer.mayRetry(method: "GET", hasIdempotencyKey: false, now: at(2)) { allowed += 1 }
        XCTAssertEqual(allowed, 20, "100 requests buy 20 retries at a 20 % budget")
        XCTAssertEqual(balancer.retries, 20)
        XCTAssertEqual(balancer.retriesRefused, 80)
        for _ in 0..<10 { balancer.onRequestStarted(now: at(3)) }
        XCTAssertTrue(balancer.mayRetry(method: "post", hasIdempotencyKey: true, now: at(3)), "a keyed POST may be retried")
        for _ in 0..<10 { balancer.onRequestStarted(now: at(4)) }
        var neverSent = 0
        for _ in 0..<10 where balancer.mayRetry(method: "POST", hasIdempotencyKey: false, neverSent: true, now: at(4)) { neverSent += 1 }
        // One token left at 3 s, two more from 10 requests at 4 s.
        XCTAssertEqual(neverSent, 3, "a POST no node ever saw (its connection could not be made) may go elsewhere, within the budget")
    }

    /// `count` sockets opened on `id` (the others excluded).
    private func open(_ count: Int, on id: String, in balancer: inout Balancer, now: Duration) {
        let others = balancer.all.map(\.id).filter { $0 != id }
        for _ in 0..<count { XCTAssertEqual(balancer.chooseForWebSocket(excluding: others, now: now)?.backend, id) }
    }

    func testSocketsMoveFromNodesOverTheirShareToAWarmedUpNodeUnderIt() throws {
        var balancer = try balancer()
        // n1 died and came back: n2 and n3 hold every socket.
        open(450, on: "n2", in: &balancer, now: at(10_000))
        open(450, on: "n3", in: &balancer, now: at(10_000))
        balancer.onCheck(id: "n1", outcome: .failure("connection refused"), now: at(10_000))
        XCTAssertEqual(balancer.webSocketsToMove(now: at(10_000)), [:], "nowhere to go while n1 is out")
        balancer.onCheck(id: "n1", outcome: .success, now: at(10_250))
        balancer.onCheck(id: "n1", outcome: .success, now: at(10_500))
        XCTAssertEqual(balancer.webSocketsToMove(now: at(11_500)), [:], "nothing moves toward a node still warming up: it may go again")
        balancer.onCheck(id: "n1", outcome: .success, now: at(15_500))
        XCTAssertEqual(balancer.backends["n1"]?.state, .healthy)
        // 100 a second by default: one second's worth at most at once, then as time passes.
        let first = balancer.webSocketsToMove(now: at(15_500))
        XCTAssertEqual(first.values.reduce(0, +), 100, "a second's worth of tokens: \(first)")
        XCTAssertEqual(Set(first.keys), ["n2"], "the fullest node gives first (n2 before n3 on a tie): \(first)")
        var moved = 0
        var now = 15_500
        var moves = first
        for _ in 0..<100 {
            // The moved sockets close and their clients come back to the node holding the fewest.
            for (id, count) in moves {
                moved += count
                for _ in 0..<count { balancer.onWebSocketClosed(id: id) }
                for _ in 0..<count { XCTAssertEqual(balancer.chooseForWebSocket(now: at(now))?.backend, "n1") }
            }
            now += 250
            moves = balancer.webSocketsToMove(now: at(now))
        }
        let counts = balancer.all.map(\.webSockets)
        XCTAssertEqual(counts.reduce(0, +), 900, "sockets move, none is lost: \(counts)")
        XCTAssertTrue(counts.allSatisfy { abs($0 - 300) <= 300 / 5 + 1 }, "each node within the tolerance of a third: \(counts)")
        XCTAssertLessThanOrEqual(moved, 350, "only what the balance needs moves: \(moved)")
        XCTAssertEqual(balancer.webSocketsToMove(now: at(now + 1000)), [:], "balanced: nothing more moves")
    }

    func testSocketsAreNotMovedWhenTheRateIsZeroOrTheCountsAreClose() throws {
        var settings = BalancerSettings()
        settings.rebalanceSocketsPerSecond = 0
        var off = try balancer(settings: settings)
        open(90, on: "n1", in: &off, now: at(10_000))
        XCTAssertEqual(off.webSocketsToMove(now: at(20_000)), [:], "a rate of 0 turns moving off")
        var balancer = try balancer()
        open(2, on: "n1", in: &balancer, now: at(10_000))
        open(1, on: "n2", in: &balancer, now: at(10_000))
        XCTAssertEqual(balancer.webSocketsToMove(now: at(10_000)), [:])
        XCTAssertEqual(balancer.webSocketsToMove(now: at(20_000)), [:], "2, 1, 0 is as balanced as three sockets get")
    }

    func testSettingsAreValidated() {
        var settings = BalancerSettings()
        settings.readmitChecks = 0
        XCTAssertThrowsError(try Balancer(settings: settings, seed: 1)) { XCTAssertTrue("\($0)".contains("readmitChecks"), "\($0)") }
    }
}
