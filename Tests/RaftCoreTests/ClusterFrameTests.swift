import RaftCore
import RaftWire
import Seeded
import Wire
import XCTest

/// The peer link's payloads: every frame round-trips; truncated, altered and random bytes are
/// errors, never crashes; a snapshot chunk cannot claim bytes beyond its total.
final class ClusterFrameTests: XCTestCase {
    static let samples: [ClusterFrame] = [
        .raft(RaftCodecTests.samples[4]),
        .request(id: 1, from: "127.0.0.1:7082", .propose([1, 2, 3])),
        .request(id: 2, from: "127.0.0.1:7084", .addMember(id: "n4", peer: "127.0.0.1:7084", api: "127.0.0.1:8084", voter: true)),
        .request(id: 3, from: "127.0.0.1:7081", .removeMember(id: "n3")),
        .request(id: 4, from: "127.0.0.1:7081", .transferLeadership(to: "n2")),
        .request(id: 5, from: "127.0.0.1:7081", .transferLeadership(to: nil)),
        .request(id: 0, from: "127.0.0.1:7081", .removed),
        .request(id: 6, from: "127.0.0.1:7081", .status),
        .response(id: 6, .status(MemberStatus(role: "follower", term: 7, commitIndex: 420, appliedIndex: 418, leader: "n1"))),
        .response(id: 7, .status(MemberStatus(role: "candidate", term: 8, commitIndex: 420, appliedIndex: 420, leader: nil))),
        .response(id: 1, .proposed(index: 42, term: 7)),
        .response(id: 2, .done),
        .response(id: 3, .failed(.rejected, message: "n3 is not a member", leader: "n1")),
        .response(id: 4, .failed(.unavailable, message: "no leader", leader: nil)),
        .snapshotChunk(index: 5000, term: 3, offset: 1 << 20, total: 3 << 20, bytes: Array(repeating: 7, count: 100)),
    ]

    func testEveryFrameRoundTrips() throws {
        for frame in Self.samples { XCTAssertEqual(try ClusterFrame.decode(ClusterFrame.encode(frame)), frame, "\(frame)") }
    }

    func testAMemberStatusWithAnUnknownRoleIsRefused() {
        var bytes = ClusterFrame.encode(.response(id: 6, .status(MemberStatus(role: "leader", term: 1, commitIndex: 1, appliedIndex: 1, leader: nil))))
        let at = bytes.indices.first { Array(bytes[$0..<min(bytes.count, $0 + 6)]) == Array("leader".utf8) }!
        bytes[at] = UInt8(ascii: "x")
        XCTAssertThrowsError(try ClusterFrame.decode(bytes), "a role outside \(MemberStatus.roles.sorted()) is malformed")
    }

    func testTruncatedAndTrailingBytesAreErrors() {
        for frame in Self.samples {
            let bytes = ClusterFrame.encode(frame)
            for length in 0..<bytes.count {
                XCTAssertThrowsError(try ClusterFrame.decode(Array(bytes.prefix(length))), "\(frame) cut to \(length) of \(bytes.count) bytes")
            }
            XCTAssertThrowsError(try ClusterFrame.decode(bytes + [0]), "trailing byte after \(frame)")
        }
    }

    func testAChunkBeyondItsTotalIsRefused() {
        let bytes = ClusterFrame.encode(.snapshotChunk(index: 1, term: 1, offset: 90, total: 100, bytes: Array(repeating: 0, count: 20)))
        XCTAssertThrowsError(try ClusterFrame.decode(bytes)) { error in
            XCTAssertEqual(error as? WireError, .invalid("snapshot chunk 90+20 of 100 is out of bounds"))
        }
    }

    func testAChunkAtTheTopOfUInt64IsRefusedNotATrap() {
        for (offset, total) in [(UInt64.max, UInt64.max), (UInt64.max - 1, UInt64(10)), (0, ClusterFrame.snapshotBytesMax + 1)] {
            let frame = ClusterFrame.snapshotChunk(index: 5, term: 1, offset: offset, total: total, bytes: [1, 2])
            XCTAssertThrowsError(try ClusterFrame.decode(ClusterFrame.encode(frame)), "offset \(offset) of \(total)")
        }
        let hostileIndex = ClusterFrame.snapshotChunk(index: .max, term: 1, offset: 0, total: 2, bytes: [1, 2])
        XCTAssertThrowsError(try ClusterFrame.decode(ClusterFrame.encode(hostileIndex)), "a snapshot index past 2^62")
    }

    func testRandomAndFlippedBytesNeverCrash() {
        var random = SplitMix64(seed: 2027)
        var decoded = 0
        for _ in 0..<20_000 {
            var bytes = ClusterFrame.encode(Self.samples[Int(random.next() % UInt64(Self.samples.count))])
            for _ in 0..<(1 + Int(random.next() % 4)) { bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next()) }
            if (try? ClusterFrame.decode(bytes)) != nil { decoded += 1 }
            _ = try? ClusterFrame.decode((0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        }
        XCTAssertLessThan(decoded, 20_000, "some altered frames must be refused")
    }
}
