import Foundation
import Logging
import NIOCore
import NIOPosix
import PeerLink
import RaftCore
import RaftWire
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

    /// A raw TCP connection to the peer port, as an attacker without the secret opens one.
    /// It closes itself after 5 s, so a test waiting for the link to hang up ends, and fails on
    /// its timing, when the link never does.
    func rawConnection(to port: Int) async throws -> Channel {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
        channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        return channel
    }

    func testAnUnauthenticatedPeerAnnouncingABigFrameIsCutOffBeforeItsBodyIsRead() async throws {
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", logger: logger) { _, _ in }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        let channel = try await rawConnection(to: port)
        // A hello-typed frame announcing 31 MiB, and its first 64 KiB: before the handshake the
        // link takes frames of at most handshakeFrameBytesMax.
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(31 << 20))
        buffer.writeInteger(UInt8(1))
        buffer.writeBytes([UInt8](repeating: 0x41, count: 64 << 10))
        let started = ContinuousClock.now
        try? await channel.writeAndFlush(buffer)
        try await channel.closeFuture.get()
        let waited = ContinuousClock.now - started
        XCTAssertLessThan(waited, .seconds(1), "closed at the announced length (\(PeerLink.handshakeFrameBytesMax) bytes allowed), not after \(waited)")
        try await waitUntil { receiver.counters.failures >= 1 }
        XCTAssertEqual(receiver.counters.failures, 1, "the oversize frame is counted")
        await receiver.close()
    }

    func testASilentConnectionIsClosedAtTheHandshakeDeadline() async throws {
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", logger: logger) { _, _ in }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        let started = ContinuousClock.now
        let channel = try await rawConnection(to: port)
        try await channel.closeFuture.get()
        let waited = ContinuousClock.now - started
        XCTAssertGreaterThanOrEqual(waited, .milliseconds(1900), "the handshake has \(PeerLink.handshakeTimeout); closed after \(waited)")
        XCTAssertLessThan(waited, .seconds(3), "a silent connection is closed at the handshake deadline, not after \(waited)")
        try await waitUntil { receiver.counters.failures >= 1 }
        XCTAssertEqual(receiver.counters.failures, 1, "the timeout is counted")
        await receiver.close()
    }

    func testUnauthenticatedConnectionsPastTheBoundAreRefusedAndMembersGetInOnceTheyGo() async throws {
        let inbox = Inbox()
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", logger: logger) { inbox.add($0, $1) }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        var silent: [Channel] = []
        for _ in 0..<PeerLink.unauthenticatedPerAddressMax { silent.append(try await rawConnection(to: port)) }
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertTrue(silent.allSatisfy(\.isActive), "the first \(PeerLink.unauthenticatedPerAddressMax) connections from one address wait for their handshake")
        let extra = try await rawConnection(to: port)
        let started = ContinuousClock.now
        try await extra.closeFuture.get()
        XCTAssertLessThan(ContinuousClock.now - started, .milliseconds(500), "one more from the same address is closed at accept")
        XCTAssertEqual(receiver.counters.refused, 1, "and counted")
        // Once the silent ones reach their deadline, a member with the secret gets in.
        for channel in silent { try await channel.closeFuture.get() }
        let sender = PeerLink(localId: "n1", secret: "cluster secret", logger: logger) { _, _ in }
        let heartbeat = Message(from: "n1", to: "n2", term: 1, kind: .heartbeat(commit: 1, round: 1))
        sender.send(RaftCodec.encode(heartbeat), to: "n2", host: "127.0.0.1", port: port)
        try await waitUntil { inbox.all.count == 1 }
        XCTAssertEqual(inbox.all.map(\.1), [heartbeat], "a member connects once the slots are free")
        await sender.close()
        await receiver.close()
    }

    /// A peer that goes silent without closing (a partition drops packets, a paused process
    /// reads nothing) is given up within about a second, and the link reopens once it is back.
    func testASilentPeerIsGivenUpWithinASecondAndReachedAgainOnceBack() async throws {
        let receiverLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let inbox = Inbox()
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", group: receiverLoop, logger: logger) { inbox.add($0, $1) }
        let sender = PeerLink(localId: "n1", secret: "cluster secret", logger: logger) { _, _ in }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        func heartbeat(_ round: UInt64) -> Message { Message(from: "n1", to: "n2", term: 1, kind: .heartbeat(commit: 1, round: round)) }
        sender.send(RaftCodec.encode(heartbeat(1)), to: "n2", host: "127.0.0.1", port: port)
        try await waitUntil { inbox.all.count == 1 }
        XCTAssertEqual(sender.counters.failures, 0)

        // The receiver's only event loop stops for 2.5 s: it sends and reads nothing, and its
        // connections stay open, as a partitioned member's do.
        let silentFrom = ContinuousClock.now
        receiverLoop.next().execute { Thread.sleep(forTimeInterval: 2.5) }
        try await waitUntil(3) { sender.counters.failures >= 1 }
        let noticed = ContinuousClock.now - silentFrom
        XCTAssertGreaterThanOrEqual(sender.counters.failures, 1, "the sender gives up the silent connection")
        XCTAssertLessThan(noticed, .milliseconds(1800), "within silenceMax (\(PeerLink.silenceMax)) and a keepalive tick, not after \(noticed)")

        // Back: a message sent after the receiver resumes arrives over a new connection.
        try await Task.sleep(for: .milliseconds(2600))
        var round: UInt64 = 2
        let deadline = ContinuousClock.now + .seconds(3)
        while !inbox.all.contains(where: { $0.1.kind == heartbeat(round).kind }), ContinuousClock.now < deadline {
            round += 1
            sender.send(RaftCodec.encode(heartbeat(round)), to: "n2", host: "127.0.0.1", port: port)
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertTrue(inbox.all.contains(where: { $0.1.kind == heartbeat(round).kind }), "messages flow again once the peer is back")
        await sender.close()
        await receiver.close()
        try await receiverLoop.shutdownGracefully()
    }

    /// Frames the peer port sent back within `seconds` to a raw client that wrote `bytes`: their
    /// types, in order (a blocking socket with a receive timeout).
    func framesAnswering(_ bytes: [UInt8], port: Int, seconds: Int = 1) -> [UInt8] {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { return [] }
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        var types: [UInt8] = []
        var offset = 0
        while received.count - offset >= 5 {
            let length = Int(received[offset]) << 24 | Int(received[offset + 1]) << 16 | Int(received[offset + 2]) << 8 | Int(received[offset + 3])
            types.append(received[offset + 4])
            offset += 4 + length
        }
        return types
    }

    func hello(id: String, version: UInt8?, extra: [UInt8] = []) -> [UInt8] {
        var body: [UInt8] = [UInt8(id.utf8.count >> 8), UInt8(id.utf8.count & 0xFF)] + Array(id.utf8) + [UInt8](repeating: 7, count: PeerHandshake.nonceBytes)
        if let version { body.append(version) }
        body += extra
        let length = UInt32(body.count + 1)
        return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), 1] + body
    }

    /// The hello says which peer link a member speaks: an older member is told so (not "wrong
    /// secret"), and a newer one's extra hello fields do not stop the handshake.
    func testTheHelloCarriesTheLinkVersionAndLaterFieldsAreIgnored() async throws {
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", logger: logger) { _, _ in }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        // A newer member: version 3 and fields this version does not know. It gets our hello
        // and our proof of the secret.
        XCTAssertEqual(framesAnswering(hello(id: "n7", version: 3, extra: [1, 2, 3, 4, 5]), port: port), [1, 2], "hello, then proof")
        XCTAssertEqual(receiver.counters.failures, 0)
        // A member of the first link (no version): hello, then closed, counted.
        XCTAssertEqual(framesAnswering(hello(id: "n8", version: nil), port: port), [1], "our hello, then the connection closes")
        try await waitUntil { receiver.counters.failures >= 1 }
        XCTAssertEqual(receiver.counters.failures, 1)
        XCTAssertEqual(framesAnswering(hello(id: "n9", version: 1), port: port), [1])
        await receiver.close()
    }
}
