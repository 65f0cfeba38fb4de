import RaftCore
import RaftDriver
import XCTest

/// The driver's order, read off a journal that its log store, state machine, transport and
/// clients write to: what the node does and what every simulated seed does.
final class ReplicaDriverTests: XCTestCase {
    final class Journal { var lines: [String] = [] }

    final class Log: ReplicaLogStore {
        let id: String, journal: Journal
        init(_ id: String, _ journal: Journal) { (self.id, self.journal) = (id, journal) }
        func persist(_ ready: Ready) throws {
            if let first = ready.entries.first, let last = ready.entries.last { journal.lines.append("\(id) persist \(first.index)-\(last.index)") }
        }
        func save(snapshot: Snapshot) throws {}
    }

    final class Machine: ReplicaStateMachine {
        let id: String, journal: Journal
        init(_ id: String, _ journal: Journal) { (self.id, self.journal) = (id, journal) }
        func execute(_ entries: [Entry]) throws -> [LogIndex] {
            journal.lines.append("\(id) execute \(entries[0].index)-\(entries.last!.index)")
            return entries.map(\.index)
        }
        func commitExecuted() throws { journal.lines.append("\(id) commit") }
        func installSnapshot(_ snapshot: Snapshot) throws {}
        func remembered(_ outcome: LogIndex) -> LogIndex { outcome }
    }

    final class Transport: ReplicaTransport {
        let id: String, journal: Journal
        var outbox: [Message] = []
        init(_ id: String, _ journal: Journal) { (self.id, self.journal) = (id, journal) }
        func send(_ message: Message) {
            if case .append(_, _, let entries, _) = message.kind, !entries.isEmpty { journal.lines.append("\(id) send append") }
            if case .appendResponse = message.kind { journal.lines.append("\(id) send ack") }
            outbox.append(message)
        }
    }

    final class Clock: ReplicaClock { var now: Duration = .zero }

    final class Clients: ReplicaClients {
        let id: String, journal: Journal
        init(_ id: String, _ journal: Journal) { (self.id, self.journal) = (id, journal) }
        func committed(through index: LogIndex, outcomes: [LogIndex]) { journal.lines.append("\(id) committed through \(index)") }
        func answer(_ token: String, _ result: Result<LogIndex, ReplicationError>) {
            switch result {
            case .success(let index): journal.lines.append("\(id) answer \(token) success(\(index))")
            case .failure(let error): journal.lines.append("\(id) answer \(token) failure(\(error.description))")
            }
        }
        func answer(read token: String, _ result: Result<Void, ReplicationError>) {
            switch result {
            case .success: journal.lines.append("\(id) answer \(token)")
            case .failure(let error): journal.lines.append("\(id) answer \(token) failure(\(error.description))")
            }
        }
    }

    typealias Driver = ReplicaDriver<Machine, Clients>

    let journal = Journal()
    let clock = Clock()
    let tick = Duration.milliseconds(10)
    let hold = Duration.milliseconds(30)
    var drivers: [String: Driver] = [:]
    var transports: [String: Transport] = [:]

    override func setUp() {
        let ids = ["n1", "n2", "n3"]
        for (number, id) in ids.enumerated() {
            let core = Raft(id: id, settings: RaftSettings(), seed: UInt64(number + 1), snapshot: Snapshot(index: 0, term: 0, configuration: Configuration(voters: Set(ids)), data: []))
            let transport = Transport(id, journal)
            transports[id] = transport
            drivers[id] = Driver(
                core: core, applied: 0, log: Log(id, journal), machine: Machine(id, journal), transport: transport, clock: clock,
                clients: Clients(id, journal), timings: ReplicaTimings(tick: tick, followerApplyDelay: .zero, leaderCommitHold: hold),
                firstReadContext: UInt64(number) << 32)
        }
    }

    /// Delivers what `from` sent, to whom it was sent, letting each receiver run its cycle.
    func deliver(from: String) throws {
        let messages = transports[from]!.outbox
        transports[from]!.outbox = []
        for message in messages {
            drivers[message.to]!.step(message)
            try drivers[message.to]!.process()
        }
    }

    func settle() throws {
        while transports.values.contains(where: { !$0.outbox.isEmpty }) {
            for id in transports.keys.sorted() { try deliver(from: id) }
        }
    }

    /// n1 is elected: the others' restart hold-off passes first, then n1's timer fires alone.
    func electN1() throws {
        for _ in 0..<RaftSettings().electionTicks {
            clock.now += tick
            for id in ["n2", "n3"] { drivers[id]!.advanceClock(); try drivers[id]!.process() }
        }
        while drivers["n1"]!.core.role != .leader {
            clock.now += tick
            drivers["n1"]!.advanceClock()
            try drivers["n1"]!.process()
            try settle()
        }
        try settle()
        clock.now += hold
        for driver in drivers.values { try driver.process() }
        try settle()
        journal.lines.removeAll()
    }

    /// n1 is elected, and one command proposed on it is replicated everywhere; returns n1 and
    /// the command's index.
    func electN1AndWrite(early: Bool, token: String) throws -> (Driver, LogIndex) {
        try electN1()
        let n1 = drivers["n1"]!
        let index = n1.core.lastIndex + 1
        try n1.propose([1], deadline: clock.now + .seconds(5), early: early, token: token)
        try n1.process()
        try settle()
        return (n1, index)
    }

    func position(_ line: String, file: StaticString = #filePath, lineNumber: UInt = #line) -> Int {
        guard let index = journal.lines.firstIndex(of: line) else {
            XCTFail("'\(line)' is not in the journal: \(journal.lines)", file: file, line: lineNumber)
            return -1
        }
        return index
    }

    func testALeaderSendsAndAppliesBeforeItPersistsAndAFollowerPersistsBeforeItAcknowledges() throws {
        try electN1()
        let n1 = drivers["n1"]!
        let first = n1.core.lastIndex + 1
        try n1.propose([1], deadline: clock.now + .seconds(5), early: true, token: "A")
        try n1.process()
        // The followers persist A, then acknowledge; the acknowledgements wait while B is proposed.
        try deliver(from: "n1")
        XCTAssertLessThan(position("n2 persist \(first)-\(first)"), position("n2 send ack"), "a follower acknowledges only what it persisted: \(journal.lines)")
        try n1.propose([2], deadline: clock.now + .seconds(5), early: true, token: "B")
        journal.lines.removeAll()
        for id in ["n2", "n3"] { try deliver(from: id) }
        // One cycle of n1 carries B's append out and commits A.
        let send = position("n1 send append")
        let execute = position("n1 execute \(first)-\(first)")
        let answer = position("n1 answer A success(\(first))")
        let persist = position("n1 persist \(first + 1)-\(first + 1)")
        XCTAssertTrue(send < execute && execute < answer && answer < persist,
                      "the leader sends, applies A and answers its early waiter, then persists B (Raft thesis 10.2.1): \(journal.lines)")
        XCTAssertFalse(journal.lines.contains("n1 commit"), "A stays in the open transaction during the hold: \(journal.lines)")
    }

    func testAWaiterThatMustSeeItsEntryIsAnsweredAfterTheCommitAndItsFanOut() throws {
        let (n1, index) = try electN1AndWrite(early: false, token: "reader")
        let commit = position("n1 commit")
        let fanOut = position("n1 committed through \(index)")
        let answer = position("n1 answer reader success(\(index))")
        XCTAssertTrue(commit < fanOut && fanOut < answer, "commit, then the fan-out, then the waiter: \(journal.lines)")
        XCTAssertEqual(n1.appliedThrough, index)
    }

    func testTheLeadersHoldEndsOnTheClockAndAnEarlyWriteIsAnsweredBeforeIt() throws {
        let (n1, index) = try electN1AndWrite(early: true, token: "early")
        XCTAssertNotNil(journal.lines.firstIndex(of: "n1 answer early success(\(index))"), "\(journal.lines)")
        XCTAssertEqual(n1.executedThrough, index)
        XCTAssertEqual(n1.appliedThrough, index - 1, "readers do not see the entry inside the hold")
        XCTAssertEqual(n1.nextWake, min(clock.now + tick, n1.nextWake), "the loop wakes by the next tick at the latest")
        clock.now += hold
        try n1.process()
        XCTAssertEqual(n1.appliedThrough, index, "the hold ran out: the entry is committed to the state machine")
        XCTAssertLessThan(position("n1 answer early success(\(index))"), position("n1 commit"))
    }

    /// A wait for an index (a `?minIndex=` read) lives with every other wait in the driver:
    /// answered after the commit and its fan-out, at once when already applied, or failed at
    /// its deadline.
    func testAWaitForAnIndexIsAnsweredAfterItsCommitOrAtItsDeadline() throws {
        try electN1()
        let n2 = drivers["n2"]!
        let applied = n2.appliedThrough
        n2.waitApplied(through: applied, deadline: clock.now + .seconds(5), token: "now")
        XCTAssertEqual(journal.lines, ["n2 answer now"], "an applied index is answered at once")
        let index = drivers["n1"]!.core.lastIndex + 1
        n2.waitApplied(through: index, deadline: clock.now + .seconds(5), token: "next")
        n2.waitApplied(through: index + 50, deadline: clock.now + tick, token: "never")
        try n2.process()
        XCTAssertNil(journal.lines.firstIndex(of: "n2 answer next"), "nothing applied yet: \(journal.lines)")
        try drivers["n1"]!.propose([1], deadline: clock.now + .seconds(5), early: false, token: "write")
        try drivers["n1"]!.process()
        try settle()
        clock.now += hold
        for id in ["n1", "n2", "n3"] { try drivers[id]!.process() }
        try settle()
        XCTAssertLessThan(position("n2 committed through \(index)"), position("n2 answer next"), "the fan-out, then the wait: \(journal.lines)")
        clock.now += tick * 2
        n2.advanceClock()
        _ = position("n2 answer never failure(no outcome before the deadline)")
    }

    func testAWaitForAnotherLeadersEntryIsLostAndADeadlineTimesOut() throws {
        try electN1()
        let n1 = drivers["n1"]!
        let index = n1.core.lastIndex + 1
        try n1.propose([1], deadline: clock.now + .seconds(5), early: false, token: "mine")
        n1.wait(index: index, term: n1.core.term + 7, deadline: clock.now + .seconds(5), early: false, token: "theirs")
        n1.wait(index: index + 50, term: n1.core.term, deadline: clock.now + tick, early: false, token: "late")
        try n1.process()
        try settle()
        _ = position("n1 answer mine success(\(index))")
        _ = position("n1 answer theirs failure(the proposal at index \(index) was replaced by another leader's entry)")
        clock.now += tick * 2
        n1.advanceClock()
        _ = position("n1 answer late failure(no outcome before the deadline)")
    }

    /// A leader's answer to a read sent before a restart must serve no read after it: the
    /// restarted member has not seen a write the leader acknowledged since (simulator seed
    /// 27557 found the node counting its read contexts from 1 again after every start).
    func testAnAnswerToAReadSentBeforeARestartServesNoReadAfterIt() throws {
        try electN1()
        let n1 = drivers["n1"]!
        let voters = Configuration(voters: ["n1", "n2", "n3"])
        // n2 asks for a read, then crashes before the leader's answer arrives.
        try drivers["n2"]!.read(deadline: clock.now + .seconds(5), token: "before")
        try drivers["n2"]!.process()
        let asked = transports["n2"]!.outbox.flatMap { message -> [UInt64] in
            if case .readIndex(let contexts) = message.kind { return contexts }
            return []
        }
        XCTAssertEqual(asked.count, 1, "n2 forwards its read to the leader")
        transports["n2"]!.outbox = []
        let staleIndex = n1.core.commitIndex
        let staleAnswer = Message(from: "n1", to: "n2", term: n1.core.term, kind: .readIndexResponse(contexts: asked, index: staleIndex))
        // n2 restarts with everything through that index applied, under a new start's contexts.
        let core = Raft(
            id: "n2", settings: RaftSettings(), seed: 99, hardState: HardState(term: n1.core.term, vote: nil, commit: staleIndex),
            snapshot: Snapshot(index: staleIndex, term: n1.core.term, configuration: voters, data: []), entries: [], applied: staleIndex)
        let restarted = Driver(
            core: core, applied: staleIndex, log: Log("n2", journal), machine: Machine("n2", journal), transport: transports["n2"]!, clock: clock,
            clients: Clients("n2", journal), timings: ReplicaTimings(tick: tick, followerApplyDelay: .zero, leaderCommitHold: hold),
            firstReadContext: 7 << 32)
        drivers["n2"] = restarted
        // A write commits through n1 and n3 and is acknowledged; n2 holds it uncommitted.
        try n1.propose([9], deadline: clock.now + .seconds(5), early: false, token: "write")
        try n1.process()
        try deliver(from: "n1")
        transports["n2"]!.outbox = []
        try deliver(from: "n3")
        _ = position("n1 answer write success(\(staleIndex + 1))")
        transports["n1"]!.outbox = []
        // The restarted n2 reads; the answer to its read from before the crash arrives first.
        try restarted.read(deadline: clock.now + .seconds(5), token: "after")
        try restarted.process()
        restarted.step(staleAnswer)
        try restarted.process()
        XCTAssertFalse(
            journal.lines.contains("n2 answer after"),
            "a read after the restart was served by an answer to a read from before it, at \(staleIndex), after a write at \(staleIndex + 1) was acknowledged: \(journal.lines)")
    }
}
