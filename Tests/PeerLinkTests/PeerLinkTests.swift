import Foundation
import Logging
import NIOCore
import NIOPosix
import PeerLink
import RaftCore
import Wire
import XCTest

/// Real TCP on loopback: Raft messages cross authenticated; a wrong secret and garbage bytes
/// deliver nothing and are counted.
final class PeerLinkTests: XCTestCase {
    final class Inbox: @unchecked Sendable {
        // @unchecked: every access holds `lock`.
        private let lock = NSLock()
        private var messages: [(String, Message)] = []
        func add(_ peer: String, _ bytes: [UInt8]) {
            guard let message = try? RaftCodec.decode(bytes) else { return }
            lock.withLock { messages.append((peer, message)) }
        }
        var all: [(String, Message)] { lock.withLock { messages } }
    }

    var logger: Logger {
        var logger = Logger(label: "peer-link-test")
        logger.logLevel = .warning
        return logger
    }

    func waitUntil(_ seconds: Double = 5, _ condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition(), Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
    }

    func testRaftMessagesCrossInOrderBetweenAuthenticatedMembers() async throws {
        let inbox = Inbox()
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", logger: logger) { inbox.add($0, $1) }
        let sender = PeerLink(localId: "n1", secret: "cluster secret", logger: logger) { _, _ in }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        let messages = (1...200).map { Message(from: "n1", to: "n2", term: 3, kind: .heartbeat(commit: UInt64($0), round: UInt64($0))) }
        for message in messages { sender.send(RaftCodec.encode(message), to: "n2", host: "127.0.0.1", port: port) }
        try await waitUntil { inbox.all.count == messages.count }
        XCTAssertEqual(inbox.all.map(\.1), messages, "every message arrives once, in order")
        XCTAssertTrue(inbox.all.allSatisfy { $0.0 == "n1" }, "the receiver knows the authenticated sender")
        XCTAssertEqual(receiver.counters.failures, 0)
        await sender.close()
        await receiver.close()
    }

    func testAMemberWithoutTheSecretDeliversNothing() async throws {
        let inbox = Inbox()
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", logger: logger) { inbox.add($0, $1) }
        let intruder = PeerLink(localId: "n9", secret: "guessed secret", logger: logger) { _, _ in }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        let vote = Message(from: "n9", to: "n2", term: 99, kind: .vote(lastIndex: 1_000, lastTerm: 99, transfer: true))
        intruder.send(RaftCodec.encode(vote), to: "n2", host: "127.0.0.1", port: port)
        try await waitUntil { receiver.counters.failures >= 1 }
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertEqual(inbox.all.count, 0, "no message from a process without the secret")
        XCTAssertGreaterThanOrEqual(receiver.counters.failures, 1, "the failed authentication is counted")
        XCTAssertEqual(receiver.counters.authenticated, 0)
        await intruder.close()
        await receiver.close()
    }

    func testGarbageBytesCloseTheConnectionAndAreCounted() async throws {
        let inbox = Inbox()
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", logger: logger) { inbox.add($0, $1) }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        for garbage in [[UInt8](repeating: 0xFF, count: 64), [0, 0, 0, 5, 9, 1, 2, 3, 4], Array("GET / HTTP/1.1\r\n\r\n".utf8)] {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            try await channel.writeAndFlush(ByteBuffer(bytes: garbage))
            try await channel.closeFuture.get()  // the receiver hangs up
        }
        try await waitUntil { receiver.counters.failures >= 3 }
        XCTAssertGreaterThanOrEqual(receiver.counters.failures, 3, "each malformed stream is counted")
        XCTAssertEqual(inbox.all.count, 0)
        await receiver.close()
    }
}
