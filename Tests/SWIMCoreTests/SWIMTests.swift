import SWIMCore
import Wire
import XCTest

/// Step-by-step tests of the core, named after the papers' sections.
final class SWIMTests: XCTestCase {
    private var settings: SWIMSettings {
        var settings = SWIMSettings()
        settings.pushPullInterval = .seconds(1000)
        settings.reconnectInterval = .seconds(1000)
        return settings
    }

    private func core(_ id: String, now: Duration = .zero, settings: SWIMSettings? = nil) throws -> SWIM {
        try SWIM(id: id, address: "\(id):7946", metadata: Metadata(api: "\(id):8080"), settings: settings ?? self.settings, seed: 7, now: now)
    }

    private func sends(_ directives: [Directive]) -> [(Packet, String)] {
        directives.compactMap { if case .send(let packet, let to) = $0 { (packet, to) } else { nil } }
    }

    /// A core that knows `others` as alive members.
    private func core(_ id: String, knowing others: [String]) throws -> SWIM {
        var swim = try core(id)
        let members = others.map { Member(id: $0, address: "\($0):7946", metadata: Metadata()) }
        _ = swim.onPacket(Packet(from: others[0], message: .pushPull(replyWanted: false, members: members)), from: "\(others[0]):7946", now: .zero)
        return swim
    }

    private func at(_ milliseconds: Int) -> Duration { .milliseconds(milliseconds) }

    func testPingIsAnsweredWithAckCarryingTheSequence() throws {
        var b = try core("b")
        let out = sends(b.onPacket(Packet(from: "a", message: .ping(sequence: 42, target: "b")), from: "a:7946", now: at(5)))
        XCTAssertEqual(out.map(\.0.message), [.ack(sequence: 42)], "SWIM §3.1: a ping gets an ack with its sequence")
        XCTAssertEqual(out.map(\.1), ["a:7946"], "the ack goes back to the sender's address")
    }

    func testPingForAnotherMemberIsIgnored() throws {
        var b = try core("b")
        let out = sends(b.onPacket(Packet(from: "a", message: .ping(sequence: 1, target: "c")), from: "a:7946", now: at(5)))
        XCTAssertTrue(out.isEmpty, "a ping meant for c must not be acked by b: \(out)")
        XCTAssertEqual(b.stats.packetsIgnored, 1)
    }

    func testUnansweredProbeGoesIndirectThenSuspectsThenDeclaresDead() throws {
        var a = try core("a", knowing: ["b", "c", "d", "e"])
        // First probe at 200 ms.
        var ping: (Packet, String)?
        var now = 0
        while ping == nil, now < 1000 {
            now += 10
            ping = sends(a.onTick(now: at(now))).first { if case .ping = $0.0.message { true } else { false } }
        }
        let (probe, target) = try XCTUnwrap(ping, "no probe within a second")
        guard case .ping(let sequence, let targetID) = probe.message else { return XCTFail() }
        XCTAssertEqual(target, "\(targetID):7946")
        // No ack: after probeTimeout (80 ms) the ping-req goes to the 3 other members.
        var requests: [(Packet, String)] = []
        for _ in 0..<9 {
            now += 10
            requests += sends(a.onTick(now: at(now))).filter { if case .pingRequest = $0.0.message { true } else { false } }
        }
        XCTAssertEqual(requests.count, 3, "SWIM §3.1: k = 3 indirect probes, got \(requests.map(\.1))")
        XCTAssertFalse(requests.contains { $0.1 == target }, "the target is not asked to probe itself")
        for (packet, _) in requests { XCTAssertEqual(packet.message, .pingRequest(sequence: sequence, target: targetID, targetAddress: target)) }
        // The helpers answer nack (they could not reach it either): the target is suspected at the end of the interval.
        for (_, helper) in requests {
            _ = a.onPacket(Packet(from: String(helper.prefix(1)), message: .nack(sequence: sequence)), from: helper, now: at(now))
        }
        var suspectedAt: Int?
        var healthWhenSuspected: Int?
        var deadAt: Int?
        while deadAt == nil, now < 5000 {
            now += 10
            for directive in a.onTick(now: at(now)) {
                guard case .changed(let change) = directive, change.member.id == targetID else { continue }
                if change.member.status == .suspect {
                    suspectedAt = now
                    healthWhenSuspected = a.localHealth
                }
                if change.member.status == .dead { deadAt = now }
            }
        }
        let suspected = try XCTUnwrap(suspectedAt, "the target was never suspected")
        let dead = try XCTUnwrap(deadAt, "the suspect was never declared dead")
        XCTAssertLessThanOrEqual(suspected - 200, 210, "suspected about one probe interval after the probe")
        XCTAssertEqual(healthWhenSuspected, 0, "helpers answered nack: the failure is not ours (Lifeguard §IV.A)")
        // 5 members: shortest suspicion 4 * max(1, log10(5)) * 200 ms = 800 ms; two expected
        // confirmations, none came: the longest, 3 * 800 = 2400 ms.
        XCTAssertEqual(Double(dead - suspected), 2400, accuracy: 20, "unconfirmed suspicion lasts the longest timeout")
    }

    func testConfirmationShortensTheSuspicion() throws {
        var a = try core("a", knowing: ["b", "c", "d", "e"])
        var changes: [MemberChange] = []
        changes += a.onPacket(Packet(from: "c", message: .gossip, updates: [.suspect(id: "b", incarnation: 0, from: "c")]), from: "c:7946", now: at(0)).changes
        XCTAssertEqual(a.member("b")?.status, .suspect)
        changes += a.onPacket(Packet(from: "d", message: .gossip, updates: [.suspect(id: "b", incarnation: 0, from: "d")]), from: "d:7946", now: at(10)).changes
        changes += a.onPacket(Packet(from: "c", message: .gossip, updates: [.suspect(id: "b", incarnation: 0, from: "c")]), from: "c:7946", now: at(10)).changes
        changes += a.onPacket(Packet(from: "e", message: .gossip, updates: [.suspect(id: "b", incarnation: 0, from: "e")]), from: "e:7946", now: at(10)).changes
        var now = 10
        while a.member("b")?.status == .suspect, now < 5000 {
            now += 10
            _ = a.onTick(now: at(now))
        }
        XCTAssertEqual(a.member("b")?.status, .dead)
        XCTAssertEqual(Double(now), 800, accuracy: 20, "Lifeguard §IV.B: two independent confirmations (c's repeat is none) bring the suspicion down to its shortest (800 ms)")
    }

    func testSuspectedMemberRefutesWithAHigherIncarnation() throws {
        var b = try core("b", knowing: ["a", "c"])
        let out = sends(b.onPacket(
            Packet(from: "a", message: .ping(sequence: 9, target: "b"), updates: [.suspect(id: "b", incarnation: 0, from: "a")]), from: "a:7946", now: at(5)))
        XCTAssertEqual(b.me.incarnation, 1, "SWIM §4.2: refuting raises the incarnation above the suspected one")
        XCTAssertEqual(b.me.status, .alive)
        let ack = try XCTUnwrap(out.first { $0.0.message == .ack(sequence: 9) })
        XCTAssertTrue(
            ack.0.updates.contains { if case .alive("b", 1, _, _) = $0 { true } else { false } },
            "Lifeguard §IV.C buddy system: the ack to the suspecting prober carries the refutation: \(ack.0.updates)")
        XCTAssertEqual(b.localHealth, 1, "being suspected raises our own local health multiplier")
    }

    func testAliveAtAHigherIncarnationClearsTheSuspicion() throws {
        var a = try core("a", knowing: ["b", "c", "d"])
        _ = a.onPacket(Packet(from: "c", message: .gossip, updates: [.suspect(id: "b", incarnation: 0, from: "c")]), from: "c:7946", now: at(0))
        _ = a.onPacket(Packet(from: "b", message: .gossip, updates: [.alive(id: "b", incarnation: 0, address: "b:7946", metadata: Metadata())]), from: "b:7946", now: at(1))
        XCTAssertEqual(a.member("b")?.status, .suspect, "alive at the same incarnation does not refute")
        _ = a.onPacket(Packet(from: "b", message: .gossip, updates: [.alive(id: "b", incarnation: 1, address: "b:7946", metadata: Metadata())]), from: "b:7946", now: at(2))
        XCTAssertEqual(a.member("b")?.status, .alive)
        // The old suspicion would have fired at 1,800 ms (a's own unanswered probes may start a new one later).
        for now in stride(from: 10, through: 1900, by: 10) { _ = a.onTick(now: at(now)) }
        XCTAssertNotEqual(a.member("b")?.status, .dead, "a refuted suspicion never fires")
    }

    func testStaleUpdatesAreIgnored() throws {
        var a = try core("a", knowing: ["b", "c"])
        _ = a.onPacket(Packet(from: "b", message: .gossip, updates: [.alive(id: "b", incarnation: 5, address: "b:7946", metadata: Metadata())]), from: "b:7946", now: at(0))
        _ = a.onPacket(Packet(from: "c", message: .gossip, updates: [.dead(id: "b", incarnation: 4, from: "c")]), from: "c:7946", now: at(1))
        XCTAssertEqual(a.member("b")?.status, .alive, "a dead about incarnation 4 says nothing about incarnation 5")
        XCTAssertEqual(a.member("b")?.incarnation, 5)
    }

    func testLeavingAnnouncesLeftToEveryone() throws {
        var a = try core("a", knowing: ["b", "c"])
        let out = sends(a.leave(now: at(5)))
        XCTAssertEqual(Set(out.map(\.1)), ["b:7946", "c:7946"])
        for (packet, _) in out {
            XCTAssertEqual(packet.updates.first, .dead(id: "a", incarnation: 1, from: "a"), "left is a dead said by the member itself")
        }
        var b = try core("b", knowing: ["a", "c"])
        _ = b.onPacket(out[0].0, from: "a:7946", now: at(6))
        XCTAssertEqual(b.member("a")?.status, .left)
    }

    func testPausedNodeDoesNotBlameTheTargetOfItsProbe() throws {
        var a = try core("a", knowing: ["b", "c", "d"])
        var now = 0
        while now < 200 { now += 10; _ = a.onTick(now: at(now)) }  // a probe is in flight
        now += 3000  // SIGSTOP for 3 s
        let changes = a.onTick(now: at(now)).changes
        XCTAssertFalse(changes.contains { $0.member.status == .suspect }, "a paused node suspected \(changes.map(\.member.id)) after its own pause")
        XCTAssertEqual(a.localHealth, 1, "the pause raises the local health multiplier")
    }

    func testPacketsStayWithinTheBudgetWhateverIsQueued() throws {
        var small = settings
        small.gossipPacketBytesMax = 600
        var a = try core("a", settings: small)
        let members = (0..<200).map { Member(id: "member-\($0)", address: "10.0.\($0 / 250).\($0 % 250):7946", metadata: Metadata(api: "10.1.0.1:8080", tags: ["raft": "follower"])) }
        var out: [(Packet, String)] = []
        out += sends(a.onPacket(Packet(from: "member-0", message: .pushPull(replyWanted: true, members: Array(members.prefix(100)))), from: "10.0.0.0:7946", now: at(1)))
        out += sends(a.onPacket(Packet(from: "member-0", message: .pushPull(replyWanted: true, members: Array(members.suffix(100)))), from: "10.0.0.0:7946", now: at(2)))
        for now in stride(from: 10, through: 2000, by: 10) { out += sends(a.onTick(now: at(now))) }
        XCTAssertGreaterThan(out.count, 10)
        XCTAssertGreaterThan(out.filter { !$0.0.updates.isEmpty }.count, 5, "updates ride along")
        for (packet, _) in out {
            let size = SWIMCodec.encode(packet).count
            XCTAssertLessThanOrEqual(size, 600 - SWIMSettings.sealBytesMax, "packet of \(size) bytes over the budget: \(packet.message)")
        }
        let states = out.filter { if case .pushPull = $0.0.message { true } else { false } }
        let carried = Set(states.flatMap { packet -> [String] in if case .pushPull(_, let m) = packet.0.message { m.map(\.id) } else { [] } })
        XCTAssertEqual(carried.count, 201, "the push-pull answer, split in chunks, carries every member and itself")
    }

    func testSettingsAreValidated() {
        var bad = SWIMSettings()
        bad.probeTimeout = .milliseconds(300)
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("probeTimeout"), "\($0)") }
        XCTAssertThrowsError(try SWIM(id: "a", address: "a:1", metadata: Metadata(tags: Dictionary(uniqueKeysWithValues: (0..<9).map { ("k\($0)", "v") })), seed: 1, now: .zero)) {
            XCTAssertTrue("\($0)".contains("tagsMax"), "\($0)")
        }
    }

    func testTagUpdatesRaiseTheIncarnation() throws {
        var a = try core("a", knowing: ["b"])
        let out = try a.updateTags(["raft": "leader"], now: at(1))
        XCTAssertEqual(a.me.incarnation, 1)
        XCTAssertEqual(out.changes.first?.member.metadata.tags, ["raft": "leader"])
        var b = try core("b", knowing: ["a"])
        let ping = sends(a.onTick(now: at(400))).first { if case .ping = $0.0.message { true } else { false } }
        _ = b.onPacket(try XCTUnwrap(ping).0, from: "a:7946", now: at(400))
        XCTAssertEqual(b.member("a")?.metadata.tags, ["raft": "leader"], "metadata travels with the alive update")
    }
}

extension Array where Element == Directive {
    var changes: [MemberChange] { compactMap { if case .changed(let change) = $0 { change } else { nil } } }
}
