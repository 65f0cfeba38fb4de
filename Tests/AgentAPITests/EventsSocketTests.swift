import AgentAPI
import ContactCenter
import Foundation
import HummingbirdTesting
import HummingbirdWSTesting
import NodeRuntime
import XCTest

/// The events WebSocket over a live server: streaming, resume with `since` exactly once and in
/// order, ping/pong, and `reset` for a cursor older than the kept window.
final class EventsSocketTests: XCTestCase {
    struct Frame: Decodable {
        var type: String
        var cursor: String?
    }

    /// Reads text frames from `iterator` until `done` says so or the stream ends.
    static func collect(
        _ iterator: inout WebSocketInboundMessageStream.AsyncIterator, until done: ([Frame]) -> Bool
    ) async throws -> [Frame] {
        var frames: [Frame] = []
        while let message = try await iterator.next() {
            guard case .text(let text) = message else { continue }
            frames.append(try JSONDecoder().decode(Frame.self, from: Data(text.utf8)))
            if done(frames) { break }
        }
        return frames
    }

    /// Connects to `path`, reads frames until `done` says so (or the watchdog closes the socket).
    static func frames(
        _ client: some TestClientProtocol, _ path: String, until done: @escaping @Sendable ([Frame]) -> Bool
    ) async throws -> [Frame] {
        let box = FrameBox()
        try await client.ws(path) { inbound, outbound, _ in
            let watchdog = Self.watchdog(outbound)
            defer { watchdog.cancel() }
            var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
            box.set(try await Self.collect(&iterator, until: done))
        }
        return box.get()
    }

    /// Closes the socket after `seconds` so a missing frame fails the test instead of hanging it.
    static func watchdog(_ outbound: WebSocketOutboundWriter, seconds: Int = 15) -> Task<Void, Never> {
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            if !Task.isCancelled { try? await outbound.close(.normalClosure, reason: "test timed out") }
        }
    }

    static func inboundCommand(_ n: Int, from: String) -> Command {
        .inboundMessage(
            channel: .webchat, from: from, text: "hola \(n)", externalId: "wc-\(n)", name: nil, contactId: Secrets.id("ct"),
            conversationId: Secrets.id("cv"), messageId: Secrets.id("ms"))
    }

    /// Agents whose sockets open together get their presence leases in one command, within a
    /// moment: a node's death sends its agents to the others all at once, and one proposal
    /// each was thousands of proposals in a second.
    func testLeasesOfAgentsConnectingTogetherAreRenewedInOneCommand() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        let node = testNode.node
        try await testNode.application().test(.live) { client in
            var created: [(String, String)] = []
            for n in 0..<5 { created.append(try await client.setUpAgent(email: "a\(n)@example.com")) }
            let tokens = created
            let before = node.appliedIndex
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (_, token) in tokens {
                    group.addTask {
                        try await client.ws("/v1/events?token=\(token)") { _, outbound, _ in
                            try await Task.sleep(for: .milliseconds(800))
                            try await outbound.close(.normalClosure, reason: "done")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let leases = try await node.state.read { reader in try tokens.map { try reader.store.lease(agentId: $0.0) } }
            XCTAssertTrue(leases.allSatisfy { $0 != nil }, "every connected agent holds a lease: \(leases)")
            let entries = node.appliedIndex - before
            XCTAssertLessThanOrEqual(entries, 2, "five agents connecting together took \(entries) log entries, not one renewal")
        }
    }

    func testStreamResumeExactlyOnceAndPing() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        let node = testNode.node
        try await testNode.application().test(.live) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"web"}"#)
            let (agentId, token) = try await client.setUpAgent(capacity: 10)

            // 1. Stream from the start: the agent's own events, then a live assignment.
            let firstRun = FrameBox()
            try await client.ws("/v1/events?token=\(token)&since=0-0") { inbound, outbound, _ in
                let watchdog = Self.watchdog(outbound)
                defer { watchdog.cancel() }
                var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                _ = try await node.propose(Self.inboundCommand(1, from: "+1"), actor: .channel)
                let frames = try await Self.collect(&iterator) { $0.contains { $0.type == "conversation.assigned" } }
                try await outbound.write(.text(#"{"type":"ping"}"#))
                let pong = try await Self.collect(&iterator) { $0.contains { $0.type == "pong" } }
                firstRun.set(frames + pong)
            }
            let seen = firstRun.get()
            XCTAssertTrue(seen.contains { $0.type == "pong" }, "no pong for a ping: \(seen.map(\.type))")
            let events = seen.filter { $0.cursor != nil }
            XCTAssertEqual(events.first?.type, "agent.updated")
            let lastCursor = try XCTUnwrap(events.last?.cursor)

            // 2. While disconnected, more happens.
            for n in 2...4 { _ = try await node.propose(Self.inboundCommand(n, from: "+\(n)"), actor: .channel) }

            // 3. Resume: exactly the events after the cursor, in order, none repeated.
            let expected = try await node.state.read { reader in
                try reader.events(after: EventCursor(lastCursor)!, limit: 1000).filter { $0.audienceAgentId == agentId }.map(\.cursor.description)
            }
            XCTAssertGreaterThanOrEqual(expected.count, 3, "three more assignments should have produced events")
            let resumed = try await Self.frames(client, "/v1/events?token=\(token)&since=\(lastCursor)") { $0.count >= expected.count }
            XCTAssertEqual(resumed.compactMap(\.cursor), expected, "resume must deliver every later event once, in order")
        }
    }

    func testCursorOlderThanTheWindowGetsReset() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        let node = testNode.node
        try await testNode.application().test(.live) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"web"}"#)
            let (_, token) = try await client.setUpAgent()
            _ = try await node.propose(Self.inboundCommand(1, from: "+1"), actor: .channel)
            _ = try await node.propose(.trimEvents(beforeIndex: node.appliedIndex), actor: .system)
            let frames = try await Self.frames(client, "/v1/events?token=\(token)&since=1-0") { !$0.isEmpty }
            XCTAssertEqual(frames.first?.type, "reset")
            XCTAssertNotNil(frames.first?.cursor, "reset carries the cursor to resume from")
        }
    }

    func testCursorBeyondTheAppliedLogGetsResetAfterABoundedWait() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.live) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"web"}"#)
            let (_, token) = try await client.setUpAgent()
            let started = ContinuousClock.now
            let frames = try await Self.frames(client, "/v1/events?token=\(token)&since=999999-0") { !$0.isEmpty }
            XCTAssertEqual(frames.first?.type, "reset", "a cursor this node never reached must not silently skip events")
            XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .seconds(1), "the node first waits (readWaitMax) for the index")
        }
    }
}

/// Carries frames out of the WebSocket handler closure.
final class FrameBox: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var frames: [EventsSocketTests.Frame] = []
    func set(_ value: [EventsSocketTests.Frame]) { lock.withLock { frames = value } }
    func get() -> [EventsSocketTests.Frame] { lock.withLock { frames } }
}

import WSClient
