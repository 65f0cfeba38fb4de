import ContactCenter
@testable import NodeRuntime
import XCTest

/// The hub's bounds: a subscriber that falls behind is told to catch up, never buffered without
/// limit; filters apply; the subscription count is bounded.
final class EventHubTests: XCTestCase {
    func events(_ range: ClosedRange<Int>, audience: String? = "a1") -> [Event] {
        range.map { Event(cursor: EventCursor(index: Int64($0), seq: 0), type: .agentUpdated, at: Timestamp(milliseconds: 0), audienceAgentId: audience, data: "{}") }
    }

    func testSlowSubscriberOverflowsInsteadOfGrowing() async {
        let hub = EventHub()
        let subscription = hub.subscribe { _ in true }!
        hub.publish(events(1...EventHub.bufferEventsMax))
        hub.publish(events((EventHub.bufferEventsMax + 1)...(EventHub.bufferEventsMax + 1)))
        guard case .overflowed = await subscription.next() else { return XCTFail("expected overflowed after \(EventHub.bufferEventsMax + 1) events") }
        hub.publish(events(5000...5001))
        guard case .events(let next) = await subscription.next() else { return XCTFail("expected events after catching up") }
        XCTAssertEqual(next.map(\.cursor.index), [5000, 5001])
    }

    func testFilterAndCloseAndCount() async {
        let hub = EventHub()
        let mine = hub.subscribe { $0.audienceAgentId == "a1" }!
        XCTAssertEqual(hub.subscriptionCount, 1)
        hub.publish(events(1...2, audience: "a2") + events(3...3))
        guard case .events(let delivered) = await mine.next() else { return XCTFail("expected events") }
        XCTAssertEqual(delivered.map(\.cursor.index), [3], "only a1's events")
        mine.requestPong()
        guard case .pong = await mine.next() else { return XCTFail("expected pong") }
        mine.close()
        guard case .closed = await mine.next() else { return XCTFail("expected closed") }
        XCTAssertEqual(hub.subscriptionCount, 0)
    }
}
