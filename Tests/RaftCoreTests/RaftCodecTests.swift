import RaftCore
import RaftWire
import Seeded
import Wire
import XCTest

/// The peer link's Raft frames: every kind round-trips; truncated, altered and random bytes are
/// errors, never crashes.
final class RaftCodecTests: XCTestCase {
    static let configuration = Configuration(voters: ["n1", "n2", "n3"], learners: ["n4"])
    static let samples: [Message] = [
        .init(from: "n1", to: "n2", term: 7, kind: .preVote(lastIndex: 10, lastTerm: 6)),
        .init(from: "n2", to: "n1", term: 7, kind: .preVoteResponse(granted: true)),
        .init(from: "n1", to: "n3", term: 7, kind: .vote(lastIndex: 10, lastTerm: 6, transfer: true)),
        .init(from: "n3", to: "n1", term: 7, kind: .voteResponse(granted: false)),
        .init(from: "n1", to: "n2", term: 7, kind: .append(prevIndex: 10, prevTerm: 6, entries: [
            Entry(term: 7, index: 11, payload: .noop),
            Entry(term: 7, index: 12, payload: .command([1, 2, 3])),
            Entry(term: 7, index: 13, payload: .configuration(configuration)),
        ], commit: 9)),
        .init(from: "n2", to: "n1", term: 7, kind: .appendResponse(reject: true, index: 10, hintIndex: 8, hintTerm: 5)),
        .init(from: "n1", to: "n2", term: 7, kind: .heartbeat(commit: 12, round: 99)),
        .init(from: "n2", to: "n1", term: 7, kind: .heartbeatResponse(round: 99)),
        .init(from: "n1", to: "n4", term: 7, kind: .installSnapshot(Snapshot(index: 12, term: 7, configuration: configuration, data: [9, 9]))),
        .init(from: "n1", to: "n2", term: 7, kind: .timeoutNow),
        .init(from: "n2", to: "n1", term: 7, kind: .readIndex(contexts: [1, 2, 3])),
        .init(from: "n1", to: "n2", term: 7, kind: .readIndexResponse(contexts: [1, 2, 3], index: 12)),
    ]

    func testEveryKindRoundTrips() throws {
        for message in Self.samples {
            XCTAssertEqual(try RaftCodec.decode(RaftCodec.encode(message)), message)
        }
    }

    func testTruncatedFramesAreErrors() {
        for message in Self.samples {
            let bytes = RaftCodec.encode(message)
            for length in 0..<bytes.count {
                XCTAssertThrowsError(try RaftCodec.decode(Array(bytes.prefix(length))), "\(message.kind) cut to \(length) of \(bytes.count) bytes")
            }
            XCTAssertThrowsError(try RaftCodec.decode(bytes + [0]), "trailing byte after \(message.kind)")
        }
    }

    func testUnknownVersionAndTagAreErrors() {
        var bytes = RaftCodec.encode(Self.samples[0])
        bytes[0] = 2
        XCTAssertThrowsError(try RaftCodec.decode(bytes)) { error in
            XCTAssertEqual(error as? WireError, .invalid("raft message version 2, this node speaks 1"))
        }
    }

    func testNonContiguousAppendIsAnError() {
        let message = Message(from: "n1", to: "n2", term: 1, kind: .append(prevIndex: 0, prevTerm: 0, entries: [
            Entry(term: 1, index: 1, payload: .noop), Entry(term: 1, index: 3, payload: .noop),
        ], commit: 0))
        XCTAssertThrowsError(try RaftCodec.decode(RaftCodec.encode(message)))
    }

    /// Terms, indexes, rounds and hints above 2^62 are malformed: a peer's UInt64.max must never
    /// reach the `+ 1`s and `Int64` conversions done on them.
    func testCountersNearTheTopOfUInt64AreMalformed() {
        let huge: UInt64 = .max
        let hostile: [Message] = [
            .init(from: "n1", to: "n2", term: huge, kind: .heartbeatResponse(round: 1)),
            .init(from: "n1", to: "n2", term: 1, kind: .preVote(lastIndex: huge, lastTerm: 1)),
            .init(from: "n1", to: "n2", term: 1, kind: .vote(lastIndex: 1, lastTerm: huge, transfer: false)),
            .init(from: "n1", to: "n2", term: 1, kind: .append(prevIndex: huge, prevTerm: 1, entries: [Entry(term: 1, index: 0, payload: .noop)], commit: 0)),
            .init(from: "n1", to: "n2", term: 1, kind: .append(prevIndex: 1, prevTerm: 1, entries: [], commit: huge)),
            .init(from: "n2", to: "n1", term: 1, kind: .appendResponse(reject: false, index: huge, hintIndex: 0, hintTerm: 0)),
            .init(from: "n2", to: "n1", term: 1, kind: .appendResponse(reject: true, index: 1, hintIndex: huge, hintTerm: 0)),
            .init(from: "n1", to: "n2", term: 1, kind: .heartbeat(commit: 1, round: huge)),
            .init(from: "n2", to: "n1", term: 1, kind: .heartbeatResponse(round: ByteReader.counterMax + 1)),
            .init(from: "n1", to: "n4", term: 1, kind: .installSnapshot(Snapshot(index: 1 << 63, term: 1, configuration: Self.configuration, data: []))),
            .init(from: "n1", to: "n2", term: 1, kind: .readIndexResponse(contexts: [1], index: huge)),
        ]
        for message in hostile {
            XCTAssertThrowsError(try RaftCodec.decode(RaftCodec.encode(message)), "\(message.term) \(message.kind) decoded")
        }
        let highest = Message(from: "n1", to: "n2", term: ByteReader.counterMax, kind: .heartbeat(commit: ByteReader.counterMax, round: 0))
        XCTAssertEqual(try RaftCodec.decode(RaftCodec.encode(highest)), highest, "2^62 itself is a value")
    }

    /// An append whose entry terms go down, or pass the leader's own term, could only come from a
    /// broken or hostile peer: it is malformed, not appended.
    func testAnAppendWithImpossibleEntryTermsIsMalformed() {
        func append(term: UInt64, prevTerm: UInt64, entryTerms: [UInt64]) -> Message {
            let entries = entryTerms.enumerated().map { Entry(term: $1, index: 11 + UInt64($0), payload: .noop) }
            return Message(from: "n1", to: "n2", term: term, kind: .append(prevIndex: 10, prevTerm: prevTerm, entries: entries, commit: 9))
        }
        XCTAssertThrowsError(try RaftCodec.decode(RaftCodec.encode(append(term: 5, prevTerm: 3, entryTerms: [5, 0]))), "terms going down")
        XCTAssertThrowsError(try RaftCodec.decode(RaftCodec.encode(append(term: 5, prevTerm: 4, entryTerms: [3]))), "below the previous entry's term")
        XCTAssertThrowsError(try RaftCodec.decode(RaftCodec.encode(append(term: 5, prevTerm: 4, entryTerms: [5, 9]))), "past the leader's term")
        let valid = append(term: 5, prevTerm: 3, entryTerms: [3, 4, 5, 5])
        XCTAssertEqual(try RaftCodec.decode(RaftCodec.encode(valid)), valid)
    }

    func testRandomAndFlippedBytesNeverCrash() {
        var random = SplitMix64(seed: 2026)
        var decoded = 0
        for _ in 0..<20_000 {
            var bytes = RaftCodec.encode(Self.samples[Int(random.next() % UInt64(Self.samples.count))])
            let flips = 1 + Int(random.next() % 4)
            for _ in 0..<flips { bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next()) }
            if (try? RaftCodec.decode(bytes)) != nil { decoded += 1 }
            let noise = (0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            _ = try? RaftCodec.decode(noise)
        }
        XCTAssertLessThan(decoded, 20_000, "some altered frames must be refused")
    }
}
