import Logging
import NIOCore
import NIOPosix
import SWIMCore
import SWIMShell
import Wire
import XCTest

/// Real UDP sockets on loopback (distinct 127.0.0.x addresses are distinct hosts).
final class GossipUDPTests: XCTestCase {
    private func member(_ id: String, host: String, seeds: [String], secret: String = "udp-test-secret", previous: [String] = []) async throws -> Gossip {
        var configuration = GossipConfiguration(
            id: id, listen: HostPort(host: host, port: 0), seeds: seeds, metadata: Metadata(api: "\(host):8080"),
            keyring: try Keyring(primary: secret, previous: previous))
        configuration.tickInterval = .milliseconds(10)
        let gossip = try Gossip(configuration: configuration, logger: Logger(label: "test-\(id)"))
        try await gossip.start()
        return gossip
    }

    private func waitUntil(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    private func statuses(_ gossip: Gossip) -> [String: MemberStatus] {
        Dictionary(uniqueKeysWithValues: gossip.members.map { ($0.id, $0.status) })
    }

    func testMembersFindEachOtherThroughOneSeedAndSeeALeaver() async throws {
        let a = try await member("a", host: "127.0.0.41", seeds: [])
        let seed = a.me!.address
        let b = try await member("b", host: "127.0.0.42", seeds: [seed])
        let c = try await member("c", host: "127.0.0.43", seeds: [seed])
        let all = [a, b, c]
        let joined = await waitUntil(5) { all.allSatisfy { statuses($0) == ["a": .alive, "b": .alive, "c": .alive] } }
        XCTAssertTrue(joined, "views after 5 s: \(all.map { statuses($0) })")
        XCTAssertEqual(b.members.first { $0.id == "a" }?.metadata.api, "127.0.0.41:8080", "metadata travels with membership")
        await c.leave()
        let left = await waitUntil(3) { [a, b].allSatisfy { statuses($0)["c"] == .left } }
        XCTAssertTrue(left, "a graceful leave is seen as left: \(statuses(a)), \(statuses(b))")
        await a.leave()
        await b.leave()
    }

    func testForeignSecretAndGarbageAreDroppedAndCounted() async throws {
        let a = try await member("a", host: "127.0.0.44", seeds: [])
        let intruder = try await member("x", host: "127.0.0.45", seeds: [a.me!.address], secret: "another-cluster")
        try await Task.sleep(for: .seconds(1.5))
        XCTAssertNil(statuses(a)["x"], "a member with another secret must not join: \(statuses(a))")
        XCTAssertGreaterThan(a.counters.droppedUnknownKey, 0, "its packets are dropped as sealed with an unknown key: \(a.counters)")
        // Raw datagrams: garbage, a forged seal (our version and key id, wrong tag), truncated.
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.46", port: 0).get()
        let target = try SocketAddress(ipAddress: "127.0.0.44", port: a.me!.address.split(separator: ":").last.flatMap { Int($0) }!)
        let genuine = try Keyring(primary: "udp-test-secret").seal(Array("not a packet".utf8))
        var forged = genuine
        forged[forged.count - 1] ^= 0xFF
        for bytes in [[UInt8](repeating: 7, count: 100), forged, Array(genuine.prefix(10)), genuine] {
            try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: bytes))).get()
        }
        let counted = await waitUntil(2) {
            let counters = a.counters
            return counters.droppedMalformed >= 2 && counters.droppedForged >= 1 && counters.droppedUndecodable >= 1
        }
        XCTAssertTrue(counted, "garbage and truncation -> malformed, bad tag -> forged, sealed nonsense -> undecodable: \(a.counters)")
        XCTAssertEqual(a.members.count, 1, "nothing changed the view: \(statuses(a))")
        try await channel.close()
        await intruder.leave()
        await a.leave()
    }

    /// A genuine packet (right key, right format) sent twice is taken once; one sent ten minutes
    /// ago by its own clock is dropped as stale. Both are counted, and neither is answered.
    func testAReplayedOrStalePacketIsDroppedAndCounted() async throws {
        let a = try await member("a", host: "127.0.0.47", seeds: [])
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.48", port: 0).get()
        let target = try SocketAddress(ipAddress: "127.0.0.47", port: a.me!.address.split(separator: ":").last.flatMap { Int($0) }!)
        let keyring = try Keyring(primary: "udp-test-secret")
        let ping = SWIMCodec.encode(Packet(from: "z", message: .ping(sequence: 1, target: "a")))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let genuine = keyring.seal(ReplayGuard.header(boot: 42, sequence: 1, sentAtMillis: now) + ping)
        let old = keyring.seal(ReplayGuard.header(boot: 43, sequence: 1, sentAtMillis: now - 600_000) + ping)
        let before = a.counters
        for bytes in [genuine, genuine, genuine, old] {
            try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: bytes))).get()
        }
        let counted = await waitUntil(2) { a.counters.droppedReplayed >= 2 && a.counters.droppedStale >= 1 }
        XCTAssertTrue(counted, "two replays and one stale packet counted: \(a.counters)")
        XCTAssertEqual(a.counters.packetsReceived - before.packetsReceived, 1, "the genuine packet is taken once: \(a.counters)")
        try await channel.close()
        await a.leave()
    }

    func testSecretRotatesWithoutDowntime() async throws {
        // Step 1 of a rotation: b already seals with the new secret and still accepts the old one.
        let a = try await member("a", host: "127.0.0.47", seeds: [], secret: "old-secret", previous: ["new-secret"])
        let b = try await member("b", host: "127.0.0.48", seeds: [a.me!.address], secret: "new-secret", previous: ["old-secret"])
        let joined = await waitUntil(5) { statuses(a)["b"] == .alive && statuses(b)["a"] == .alive }
        XCTAssertTrue(joined, "members on both sides of a rotation talk: \(statuses(a)) \(statuses(b))")
        XCTAssertEqual(a.counters.droppedUnknownKey + b.counters.droppedUnknownKey, 0)
        await a.leave()
        await b.leave()
    }
}
