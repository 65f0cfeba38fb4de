import Foundation
import LoadTestCore
import XCTest

final class ThresholdTests: XCTestCase {
    func testThresholdsParseUnitsAndJudge() throws {
        let availability = try Threshold("availability >= 99.9%")
        XCTAssertEqual(availability.bound, 0.999, accuracy: 1e-12, "99.9% is the fraction 0.999")
        XCTAssertTrue(availability.holds(for: 0.9995))
        XCTAssertFalse(availability.holds(for: 0.998), "0.998 is below 99.9 %")

        let p99 = try Threshold("p99<250ms")
        XCTAssertEqual(p99.bound, 250)
        XCTAssertTrue(p99.holds(for: 249.9))
        XCTAssertFalse(p99.holds(for: 250), "< is strict")
        XCTAssertEqual(try Threshold("assignment_p99<=2s").bound, 2000, "seconds are turned into milliseconds")
        XCTAssertTrue(try Threshold("lost==0").holds(for: 0))
    }

    func testBadThresholdsSayWhatIsWrong() {
        for (text, hint) in [("p99<250", "unit"), ("latency<3ms", "unknown metric"), ("availability", "no comparison"), ("p99<fastms", "not a number")] {
            XCTAssertThrowsError(try Threshold(text), text) { error in
                XCTAssertTrue("\(error)".contains(hint), "'\(text)' is refused with a message naming the problem (\(hint)): \(error)")
            }
        }
    }

    func testTheVerdictRanksIntegrityAboveThresholds() throws {
        var summary = Summary()
        summary.availability = 0.9999
        summary.latencyMs.p99 = 120
        summary.evaluate([try Threshold("availability>=0.999"), try Threshold("p99<250ms")])
        XCTAssertEqual(summary.exitCode, 0)
        XCTAssertTrue(summary.passed)
        XCTAssertEqual(summary.thresholds.map(\.value), [0.9999, 120])

        summary.latencyMs.p99 = 300
        summary.evaluate([try Threshold("p99<250ms")])
        XCTAssertEqual(summary.exitCode, 99, "a failed threshold exits 99")
        XCTAssertFalse(summary.passed)

        summary.integrity.lostMessages = 1
        summary.evaluate([try Threshold("p99<250ms")])
        XCTAssertEqual(summary.exitCode, 1, "a lost message exits 1 even when a threshold also failed")
    }

    func testTheJSONSummaryHasExactlyTheContractedFields() throws {
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(Summary())) as! [String: Any]
        XCTAssertEqual(
            Set(object.keys),
            [
                "agents", "durationSeconds", "requests", "availability", "latencyMs", "assignmentLatencyMs", "sessions", "integrity", "faults",
                "terms", "thresholds", "passed",
            ])
        XCTAssertEqual(Set((object["latencyMs"] as! [String: Any]).keys), ["p50", "p90", "p99", "p999", "max"])
        XCTAssertEqual(Set((object["requests"] as! [String: Any]).keys), ["total", "ok", "failed", "shed"])
        XCTAssertEqual(Set((object["sessions"] as! [String: Any]).keys), ["peak", "drops", "reconnectMsP99", "reconnectMsP50", "moves", "movedReconnectMsP99"], "allConnectedAtSeconds only once it happened")
        XCTAssertEqual(
            Set((object["integrity"] as! [String: Any]).keys),
            [
                "lostMessages", "duplicateMessages", "doubleAssignments", "capacityViolations", "eventGaps", "repliesChecked", "lostReplies",
                "duplicateReplies", "misdirectedReplies",
            ])
        XCTAssertEqual(Set(((object["integrity"] as! [String: Any])["duplicateReplies"] as! [String: Any]).keys), ["explained", "unexplained"])
    }

    func testDurationsAndRates() throws {
        XCTAssertEqual(try parseDuration("250ms", option: "--x"), .milliseconds(250))
        XCTAssertEqual(try parseDuration("30s", option: "--x"), .seconds(30))
        XCTAssertEqual(try parseDuration("10m", option: "--x"), .seconds(600))
        XCTAssertThrowsError(try parseDuration("soon", option: "--ramp"))
        XCTAssertEqual(try Arrivals.parseRate("20/s"), 20)
        XCTAssertEqual(try Arrivals.parseRate("600/m"), 10)
        XCTAssertThrowsError(try Arrivals.parseRate("20/day"))
    }
}

final class ArrivalsTests: XCTestCase {
    func testConstantArrivalsAreEvenlySpaced() throws {
        var arrivals = try Arrivals(rate: 4, kind: .constant, seed: 1)
        XCTAssertEqual((0..<5).map { _ in arrivals.nextArrival() }, [0, 250, 500, 750, 1000].map { .milliseconds($0) })
    }

    func testPoissonArrivalsKeepTheRateAndRepeatWithTheSeed() throws {
        var first = try Arrivals(rate: 50, kind: .poisson, seed: 7)
        var again = try Arrivals(rate: 50, kind: .poisson, seed: 7)
        let times = (0..<20_000).map { _ in first.nextArrival() }
        XCTAssertEqual(times.prefix(100).map { $0 }, (0..<100).map { _ in again.nextArrival() }, "the same seed gives the same schedule")
        let seconds = Double(times.last!.components.seconds) + Double(times.last!.components.attoseconds) / 1e18
        let rate = Double(times.count - 1) / seconds
        XCTAssertEqual(rate, 50, accuracy: 2, "20,000 Poisson arrivals at 50/s average \(rate)/s")
        let gaps = zip(times, times.dropFirst()).map { ($1 - $0) / .milliseconds(1) }
        let longGaps = Double(gaps.filter { $0 > 60 }.count) / Double(gaps.count)
        XCTAssertEqual(longGaps, exp(-3), accuracy: 0.008, "exponential gaps: e^-3 of them are over 3x the mean of 20 ms, got \(longGaps)")
    }
}

final class LedgerTests: XCTestCase {
    func testDoubleAssignmentAndCapacityAreCaught() {
        var ledger = Ledger()
        ledger.agent("a1", capacity: 2)
        ledger.agent("a2", capacity: 2)
        ledger.assigned("c1", to: "a1")
        ledger.assigned("c2", to: "a1")
        XCTAssertEqual(ledger.doubleAssignments, 0)
        XCTAssertEqual(ledger.capacityViolations, 0, "two conversations fit a capacity of two")
        ledger.assigned("c3", to: "a1")
        XCTAssertEqual(ledger.capacityViolations, 1, "a third one overruns")
        ledger.assigned("c1", to: "a2")
        XCTAssertEqual(ledger.doubleAssignments, 1, "c1 given to a2 while a1 still holds it")
        ledger.released("c2", by: "a1")
        ledger.assigned("c2", to: "a2")
        XCTAssertEqual(ledger.doubleAssignments, 1, "after a1 resolved c2, a2 may take it")
    }

    func testLostAndDuplicatedMessages() {
        let (lost, duplicated) = Ledger.check(acknowledged: ["m1", "m2", "m3"], copies: ["m1": 1, "m3": 2])
        XCTAssertEqual(lost, 1, "m2 is missing")
        XCTAssertEqual(duplicated, 1, "m3 is there twice")
    }

    func testEventContinuityAcrossAReconnect() {
        var stream = EventContinuity()
        for cursor in ["5-0", "5-1", "7-0"] { stream.see(cursor: cursor) }
        XCTAssertEqual(stream.lastCursor, "7-0")
        XCTAssertEqual(stream.gaps, 0)
        stream.see(cursor: "7-0")
        XCTAssertEqual(stream.gaps, 1, "a repeated event counts")
        stream.see(cursor: "6-3")
        XCTAssertEqual(stream.gaps, 2, "an earlier event counts")
        stream.reset()
        XCTAssertEqual(stream.gaps, 3, "a reset (skipped events) counts")
    }
}

final class RecorderTests: XCTestCase {
    func testAvailabilityAndPercentilesFromRecordedRequests() {
        let recorder = Recorder()
        for i in 1...1000 { recorder.request(second: i / 100, micros: UInt64(i) * 1000, ok: i % 100 != 0, failure: "GET /x: 503") }
        var summary = Summary()
        recorder.fill(&summary)
        XCTAssertEqual(summary.requests.total, 1000)
        XCTAssertEqual(summary.requests.failed, 10)
        XCTAssertEqual(summary.availability, 0.99, accuracy: 1e-12)
        XCTAssertEqual(summary.latencyMs.p50, 500, accuracy: 1, "latencies of 1..1000 ms: p50 \(summary.latencyMs.p50)")
        XCTAssertEqual(summary.latencyMs.p99, 990, accuracy: 1, "p99 \(summary.latencyMs.p99)")
        XCTAssertEqual(summary.latencyMs.max, 1000, accuracy: 1)
        XCTAssertEqual(recorder.failures, ["GET /x: 503": 10])
        XCTAssertEqual(recorder.timeline[3].ok + recorder.timeline[3].failed, 100, "one bucket per second")
    }

    /// A shed (429 with Retry-After) is the cluster saying "later", not failing: it is counted
    /// apart and moves neither the availability nor the latencies.
    func testShedRequestsAreCountedApart() {
        let recorder = Recorder()
        recorder.expect(agents: 2)
        for _ in 0..<99 { recorder.request(second: 0, micros: 1000, ok: true) }
        recorder.request(second: 0, micros: 1000, ok: false, failure: "POST /v1/sessions: 503")
        for _ in 0..<500 { recorder.shed() }
        recorder.sessionOpened(second: 3)
        recorder.sessionOpened(second: 7)
        var summary = Summary()
        recorder.fill(&summary)
        XCTAssertEqual(summary.requests.total, 100)
        XCTAssertEqual(summary.requests.shed, 500)
        XCTAssertEqual(summary.availability, 0.99, accuracy: 1e-12, "sheds must not count as failures")
        XCTAssertEqual(summary.sessions.allConnectedAtSeconds, 7, "both agents held a session from second 7")
    }

    func testSocketsTheBalancerMovesAreNotDropsAndTheirReconnectionsAreMeasuredApart() {
        let recorder = Recorder()
        for _ in 0..<10 { recorder.sessionOpened(second: 0) }
        for _ in 0..<3 { recorder.sessionClosed(second: 1, dropped: true) }
        for _ in 0..<3 { recorder.reconnected(micros: 900_000) }
        for _ in 0..<5 { recorder.sessionClosed(second: 2, dropped: true, moved: true) }
        for _ in 0..<5 { recorder.reconnected(micros: 50_000, afterMove: true) }
        var summary = Summary()
        recorder.fill(&summary)
        XCTAssertEqual(summary.sessions.drops, 3, "a move is not a drop")
        XCTAssertEqual(summary.sessions.moves, 5)
        XCTAssertEqual(summary.sessions.reconnectMsP99, 900, accuracy: 1, "the moves' quick reconnections do not dilute the drops'")
        XCTAssertEqual(summary.sessions.movedReconnectMsP99, 50, accuracy: 0.1)
    }
}

final class ChaosTests: XCTestCase {
    func testTheIssuesExamplesParse() throws {
        let kill = try ChaosRule("kill leader every 60s restart after 5s")
        XCTAssertEqual(kill.action, .kill(restartAfter: .seconds(5)))
        XCTAssertEqual(kill.target, .leader)
        XCTAssertEqual(kill.times(within: .seconds(200)), [.seconds(60), .seconds(120), .seconds(180)], "one period in, then every period")
        let pause = try ChaosRule("pause random for 3s every 45s")
        XCTAssertEqual(pause.action, .pause(.seconds(3)))
        XCTAssertEqual(pause.target, .random)
        let rolling = try ChaosRule("restart all rolling every 120s")
        XCTAssertEqual(rolling.action, .restart)
        XCTAssertEqual(rolling.target, .all)
        XCTAssertEqual(try ChaosRule("kill n2 every 30s").target, .node("n2"))
        XCTAssertEqual(try ChaosRule("kill n2 every 30s").action, .kill(restartAfter: nil), "without 'restart after' it stays down")
    }

    func testUnsafeOrIncompleteRulesAreRefused() {
        for (text, hint) in [
            ("kill leader", "every"), ("restart all every 60s", "rolling"), ("pause random every 10s", "for"),
            ("pause random for 20s every 10s", "shorter"), ("kill leader every 10s restart after 20s", "before the next"),
            ("explode leader every 10s", "not an action"), ("kill all every 10s", "one node"),
        ] {
            XCTAssertThrowsError(try ChaosRule(text), text) { error in
                XCTAssertTrue("\(error)".contains(hint), "'\(text)' is refused naming the problem (\(hint)): \(error)")
            }
        }
    }
}

final class ScenarioAndReportTests: XCTestCase {
    func testAScenarioExpandsInPlaceAndLaterFlagsWin() throws {
        let file = """
            # a drill
            --agents 100
            --chaos kill leader every 30s restart after 5s

            --threshold availability>=0.99
            """
        let expanded = try Scenario.expand(["--scenario", "drill", "--agents", "7"]) { $0 == "drill" ? file : nil }
        XCTAssertEqual(
            expanded,
            ["--agents", "100", "--chaos", "kill leader every 30s restart after 5s", "--threshold", "availability>=0.99", "--agents", "7"],
            "the file's flags come first, a rule keeps its spaces, and the command line's --agents 7 comes last (it wins)")
        XCTAssertThrowsError(try Scenario.expand(["--scenario", "missing"]) { _ in nil })
        XCTAssertThrowsError(try Scenario.expand(["--scenario", "bad"]) { _ in "agents 3" }) { error in
            XCTAssertTrue("\(error)".contains("bad:1"), "the error names the file and line: \(error)")
        }
    }

    func testTheReportIsSelfContainedAndShadesFaultWindows() {
        var summary = Summary()
        summary.agents = 10
        summary.faults = [
            Summary.Fault(atSeconds: 2, kind: "kill", node: "n1"), Summary.Fault(atSeconds: 4, kind: "restart", node: "n1"),
            Summary.Fault(atSeconds: 6, kind: "pause", node: "n<2>"),
        ]
        let timeline = (0..<10).map { Recorder.Second(ok: 10 + $0, failed: $0 == 3 ? 2 : 0, sessions: 10, p50Ms: 5, p99Ms: 20) }
        let html = Report.html(summary, timeline: timeline, title: "drill")
        XCTAssertEqual(Report.faultWindows(summary.faults, end: 10).map { [$0.0, $0.1] }, [[2, 4], [6, 10]], "kill..restart, and a pause never resumed runs to the end")
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4, "four charts: requests/s, latency, availability, sessions")
        XCTAssertFalse(html.contains("http://") || html.contains("https://") || html.contains("<script src"), "no external assets")
        XCTAssertTrue(html.contains("n&lt;2&gt;"), "names are escaped")
    }
}

final class ReplyLedgerTests: XCTestCase {
    func testEveryAcknowledgedReplyMustReachItsCustomerOnce() {
        var ledger = ReplyLedger()
        ledger.acknowledged(text: "r-once", messageId: "ms_1", conversation: "cv_a")
        ledger.acknowledged(text: "r-lost", messageId: "ms_2", conversation: "cv_a")
        ledger.acknowledged(text: "r-twice-marked", messageId: "ms_3", conversation: "cv_b")
        ledger.acknowledged(text: "r-twice", messageId: "ms_4", conversation: "cv_b")
        ledger.acknowledged(text: "r-elsewhere", messageId: "ms_5", conversation: "cv_c")
        ledger.delivered(text: "r-once", to: "5491155550001")
        ledger.delivered(text: "r-twice-marked", to: "+14155550002")
        ledger.delivered(text: "r-twice-marked", to: "+14155550002")
        ledger.delivered(text: "r-twice", to: "+14155550002")
        ledger.delivered(text: "r-twice", to: "+14155550002")
        ledger.delivered(text: "r-elsewhere", to: "+14155559999")
        ledger.delivered(text: "r-never-acknowledged", to: "5491155550001")
        XCTAssertEqual(ledger.undelivered, 1, "r-lost is still waiting")
        let verdict = ledger.check(
            possibleDuplicates: ["ms_3"], recipients: ["cv_a": "+5491155550001", "cv_b": "14155550002", "cv_c": "+14155550003"])
        var expected = ReplyLedger.Verdict()
        expected.lost = 1
        expected.explainedDuplicates = 1
        expected.unexplainedDuplicates = 1
        expected.misdirected = 1
        expected.unacknowledged = 1
        XCTAssertEqual(verdict, expected, "a wa_id and its E.164 form are one customer; a marked duplicate is explained, an unmarked one is not")
    }

    func testUnexplainedDuplicatesAndLostRepliesAreViolationsAndThresholds() throws {
        var summary = Summary()
        summary.integrity.duplicateReplies.explained = 3
        XCTAssertEqual(summary.integrity.violations, 0, "explained duplicates are what the outbox promises, not a violation")
        summary.evaluate([try Threshold("unexplained_duplicates==0"), try Threshold("duplicate_replies<=3"), try Threshold("lost_replies==0")])
        XCTAssertEqual(summary.thresholds.map(\.passed), [true, true, true], "\(summary.thresholds)")
        summary.integrity.duplicateReplies.unexplained = 1
        summary.integrity.lostReplies = 2
        summary.evaluate([try Threshold("unexplained_duplicates==0"), try Threshold("lost_replies==0")])
        XCTAssertEqual(summary.thresholds.map(\.value), [1, 2])
        XCTAssertEqual(summary.integrity.violations, 3)
        XCTAssertEqual(summary.exitCode, 1, "a lost or unexplained duplicate reply is an integrity violation")
    }
}
