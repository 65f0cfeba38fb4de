import RaftCore
import SWIMCore
import Seeded
import Wire
import XCTest

final class SWIMCodecTests: XCTestCase {
    private let samples: [Packet] = [
        Packet(from: "n1", message: .ping(sequence: 7, target: "n2"), updates: [.suspect(id: "n3", incarnation: 4, from: "n1")]),
        Packet(from: "n1", message: .pingRequest(sequence: 8, target: "n2", targetAddress: "127.0.0.2:7946")),
        Packet(from: "n2", message: .ack(sequence: 8), updates: [.alive(id: "n2", incarnation: 9, address: "127.0.0.2:7946", metadata: Metadata(role: .node, api: "127.0.0.2:8080", peer: "127.0.0.2:7080", tags: ["raft": "leader"]))]),
        Packet(from: "n2", message: .nack(sequence: 8), updates: [.dead(id: "n4", incarnation: 1, from: "n4")]),
        Packet(from: "lb", message: .pushPull(replyWanted: true, members: [Member(id: "lb", address: "127.0.0.9:7946", status: .alive, incarnation: 2, metadata: Metadata(role: .balancer))])),
        Packet(from: "n1", message: .gossip),
    ]

    func testEveryMessageRoundTrips() throws {
        for packet in samples {
            XCTAssertEqual(try SWIMCodec.decode(SWIMCodec.encode(packet)), packet)
        }
    }

    /// An incarnation of UInt64.max about a member would make it trap refuting it (`+ 1`), then
    /// again after every restart as push-pull brings it back: it is malformed.
    func testAnIncarnationPastTwoToTheSixtySecondIsMalformed() {
        let hostile: [Packet] = [
            Packet(from: "n9", message: .gossip, updates: [.alive(id: "n1", incarnation: .max, address: "127.0.0.1:7946", metadata: Metadata(role: .node))]),
            Packet(from: "n9", message: .gossip, updates: [.suspect(id: "n1", incarnation: .max, from: "n9")]),
            Packet(from: "n9", message: .gossip, updates: [.dead(id: "n1", incarnation: ByteReader.counterMax + 1, from: "n9")]),
            Packet(from: "n9", message: .pushPull(replyWanted: false, members: [
                Member(id: "n1", address: "127.0.0.1:7946", status: .alive, incarnation: .max, metadata: Metadata(role: .node)),
            ])),
        ]
        for packet in hostile {
            XCTAssertThrowsError(try SWIMCodec.decode(SWIMCodec.encode(packet)), "\(packet.updates) \(packet.message)")
        }
    }

    func testRandomAndTruncatedBytesAreRejectedNeverCrash() {
        var rng = SplitMix64(seed: 99)
        var rejected = 0
        for packet in samples {
            let bytes = SWIMCodec.encode(packet)
            for length in 0..<bytes.count {
                XCTAssertThrowsError(try SWIMCodec.decode(Array(bytes.prefix(length))), "a \(length)-byte prefix of \(packet.message) decoded")
                rejected += 1
            }
            for _ in 0..<2000 {  // flip bytes: either a clean error or a valid packet
                var mutated = bytes
                mutated[Int(rng.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: rng.next())
                if (try? SWIMCodec.decode(mutated)) == nil { rejected += 1 }
            }
        }
        for _ in 0..<20_000 {
            let bytes = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if (try? SWIMCodec.decode(bytes)) == nil { rejected += 1 }
        }
        XCTAssertGreaterThan(rejected, 20_000, "random bytes must almost always be rejected")
        XCTAssertThrowsError(try SWIMCodec.decode(SWIMCodec.encode(samples[0]) + [0])) { XCTAssertTrue("\($0)".contains("trailing"), "\($0)") }
    }
}
