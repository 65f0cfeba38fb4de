import SWIMShell
import XCTest

final class ReplayGuardTests: XCTestCase {
    let now: Int64 = 1_800_000_000_000

    func testEachSequenceIsTakenOnceWithinTheWindowAndNotBehindIt() {
        var guardian = ReplayGuard()
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 10, sentAtMillis: now, nowMillis: now), .fresh)
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 10, sentAtMillis: now, nowMillis: now), .replayed, "the same packet twice")
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 8, sentAtMillis: now, nowMillis: now), .fresh, "reordered, inside the window")
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 8, sentAtMillis: now, nowMillis: now), .replayed)
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 100, sentAtMillis: now, nowMillis: now), .fresh, "a jump ahead")
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 37, sentAtMillis: now, nowMillis: now), .fresh, "63 behind: still in the window")
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 36, sentAtMillis: now, nowMillis: now), .replayed, "64 behind: past the window")
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 9, sentAtMillis: now, nowMillis: now), .replayed, "far behind")
        XCTAssertEqual(guardian.admit(boot: 2, sequence: 10, sentAtMillis: now, nowMillis: now), .fresh, "another boot has its own window")
    }

    func testAPacketSentTooFarFromOurClockIsStaleAndChangesNothing() {
        var guardian = ReplayGuard()
        let max = ReplayGuard.ageMaxMillis
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 1, sentAtMillis: now - max - 1, nowMillis: now), .stale)
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 1, sentAtMillis: now + max + 1, nowMillis: now), .stale, "from the future")
        XCTAssertEqual(guardian.sendersKnown, 0, "a refused packet leaves no state")
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 1, sentAtMillis: now - max, nowMillis: now), .fresh, "at the bound")
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 2, sentAtMillis: .min, nowMillis: now), .stale, "no overflow on hostile times")
        XCTAssertEqual(guardian.admit(boot: 1, sequence: 2, sentAtMillis: .max, nowMillis: -1), .stale)
    }

    func testRememberedBootsAreBounded() {
        var guardian = ReplayGuard()
        for boot in 0..<UInt64(ReplayGuard.sendersMax + 10) {
            _ = guardian.admit(boot: boot, sequence: 1, sentAtMillis: now, nowMillis: now + Int64(boot))
        }
        XCTAssertLessThanOrEqual(guardian.sendersKnown, ReplayGuard.sendersMax)
    }

    func testTheHeaderRoundTrips() throws {
        let header = ReplayGuard.header(boot: .max, sequence: 7, sentAtMillis: -5)
        XCTAssertEqual(header.count, ReplayGuard.headerBytes)
        let parsed = try XCTUnwrap(ReplayGuard.parse(header + [1, 2]))
        XCTAssertEqual(parsed.boot, .max)
        XCTAssertEqual(parsed.sequence, 7)
        XCTAssertEqual(parsed.sentAtMillis, -5)
        XCTAssertNil(ReplayGuard.parse(Array(header.prefix(23))))
    }
}
