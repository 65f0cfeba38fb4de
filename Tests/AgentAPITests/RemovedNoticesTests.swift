@testable import NodeRuntime
import XCTest

/// A node stopped itself for good at a cluster's start: the leader, whose published view did not
/// yet include the voter it had just added, told it "you are not a member" once. One notice is
/// no longer enough; a node really removed hears it again a second later, and that stops it.
final class RemovedNoticesTests: XCTestCase {
    func testOneNoticeIsNotEnoughASecondOneLaterIs() {
        let start = ContinuousClock.now
        var notices = PeerService.RemovedNotices()
        XCTAssertFalse(notices.record(at: start), "a single notice may come from a leader's stale view")
        XCTAssertFalse(notices.record(at: start + .milliseconds(300)), "a burst of notices is still one view")
        XCTAssertFalse(notices.confirmed)
        XCTAssertTrue(notices.record(at: start + .milliseconds(1200)), "the leader said it again over a second later")
        XCTAssertTrue(notices.confirmed)
    }

    func testNoticesFarApartDoNotConfirmEachOther() {
        let start = ContinuousClock.now
        var notices = PeerService.RemovedNotices()
        XCTAssertFalse(notices.record(at: start))
        XCTAssertFalse(notices.record(at: start + .seconds(30)), "30 s later it is a new first notice")
        XCTAssertTrue(notices.record(at: start + .seconds(32)), "confirmed by the next one within the window")
    }
}
