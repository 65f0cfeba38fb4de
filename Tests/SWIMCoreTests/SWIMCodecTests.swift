import RaftCore
import SWIMCore
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
