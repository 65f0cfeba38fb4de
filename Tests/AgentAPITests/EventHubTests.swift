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
        let subscription = hub.subscribe(audience: nil)!
        hub.publish(events(1...EventHub.bufferEventsMax))
        hub.publish(events((EventHub.bufferEventsMax + 1)...(EventHub.bufferEventsMax + 1)))
        guard case .overflowed = await subscription.next() else { return XCTFail("expected overflowed after \(EventHub.bufferEventsMax + 1) events") }
        hub.publish(events(5000...5001))
        guard case .events(let next) = await subscription.next() else { return XCTFail("expected events after catching up") }
        XCTAssertEqual(next.map(\.cursor.index), [5000, 5001])
    }

    func testFilterAndCloseAndCount() async {
        let hub = EventHub()
        let mine = hub.subscribe(audience: "a1")!
        let again = hub.subscribe(audience: "a1")!
        let supervisor = hub.subscribe(audience: nil)!
        XCTAssertEqual(hub.subscriptionCount, 3)
        hub.publish(events(1...2, audience: "a2") + events(3...3) + events(4...4, audience: nil) + events(5...5))
        guard case .events(let delivered) = await mine.next() else { return XCTFail("expected events") }
        XCTAssertEqual(delivered.map(\.cursor.index), [3, 5], "only a1's events, in order")
        guard case .events(let second) = await again.next() else { return XCTFail("expected events") }
        XCTAssertEqual(second.map(\.cursor.index), [3, 5], "every socket of a1 gets them")
        guard case .events(let all) = await supervisor.next() else { return XCTFail("expected events") }
        XCTAssertEqual(all.map(\.cursor.index), [1, 2, 3, 4, 5], "a supervisor gets every event, in order")
        again.close()
        supervisor.close()
        supervisor.close()
        XCTAssertEqual(hub.subscriptionCount, 1, "closing twice counts once")
        mine.requestPong()
        guard case .pong = await mine.next() else { return XCTFail("expected pong") }
        mine.close()
        guard case .closed = await mine.next() else { return XCTFail("expected closed") }
        XCTAssertEqual(hub.subscriptionCount, 0)
    }

    func testAConversationsSocketGetsItsMessagesAndTypingAndNothingElse() async {
        let hub = EventHub()
        let visitor = hub.subscribe(audience: EventHub.conversationAudience("cv_1"))!
        func event(_ index: Int, _ type: EventType, _ data: String) -> Event {
            Event(cursor: EventCursor(index: Int64(index), seq: 0), type: type, at: Timestamp(milliseconds: 0), audienceAgentId: "ana", data: data)
        }
        hub.publish([
            event(1, .messageCreated, #"{"message":{"conversationId":"cv_1","id":"ms_1"}}"#),
            event(2, .conversationTyping, #"{"agent":"ana","agentName":"Ana","conversationId":"cv_1"}"#),
            event(3, .conversationTyping, #"{"agent":"ana","agentName":"Ana","conversationId":"cv_2"}"#),
            event(4, .conversationUpdated, #"{"conversation":{"conversationId":"cv_1"}}"#),
            event(5, .messageUpdated, #"{"message":{"conversationId":"cv_1","id":"ms_1"}}"#),
        ])
        guard case .events(let delivered) = await visitor.next() else { return XCTFail("expected events") }
        XCTAssertEqual(delivered.map(\.cursor.index), [1, 2, 5], "its messages and typing notices, not another conversation's, not the agent's other events")
    }
}
