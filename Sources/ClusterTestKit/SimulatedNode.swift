import RaftCore
import RaftDriver
import RaftWire
import Seeded
import Wire

/// One member in the simulator: its driver while it runs, and what survives a crash: the
/// durable log (hard state, snapshot, entries) and the state machine's committed state, as a
/// node keeps `raft.log` and `state.sqlite`.
struct SimulatedNode {
    let id: NodeID
    var driver: SimulatedDriver?
    /// The clients of the current (or last) run: answers given before a crash still count.
    var clients: SimulatedClients?
    let log: SimulatedLog
    let machine: SimulatedMachine
    let crashPoints = CrashPoints()
    let transport = SimulatedTransport()
    var commitSeen: LogIndex = 0
    /// The last term this member was seen leading (to count elections once).
    var ledTerm: Term?

    init(id: NodeID, bootstrap: Snapshot, checker: InvariantChecker) {
        self.id = id
        log = SimulatedLog(id: id, snapshot: bootstrap, checker: checker, crashPoints: crashPoints)
        machine = SimulatedMachine(id: id, initial: StateMachine(decoding: bootstrap.data), log: log, checker: checker, crashPoints: crashPoints)
    }

    var core: Raft? { driver?.core }

    /// Everything not durable is lost: the core, the waits, the executed and uncommitted state.
    mutating func crash() {
        driver = nil
        machine.crash()
        crashPoints.armed = nil
    }
}

typealias SimulatedDriver = ReplicaDriver<SimulatedMachine, SimulatedClients>

/// Where an armed crash strikes, inside the driver's cycle.
enum CrashPoint: CaseIterable, CustomStringConvertible {
    /// Before a Ready is made durable: on a leader, after it sent and applied (Raft thesis
    /// §10.2.1); on anyone else, before it sent.
    case persist
    /// Before committed entries are executed.
    case execute
    /// Inside the leader's commit hold or a follower's batch: executed entries (some answered
    /// early) are lost before they are committed to the state machine.
    case commit

    var description: String {
        switch self {
        case .persist: "persist"
        case .execute: "execute"
        case .commit: "commit"
        }
    }
}

/// Thrown by the simulated disk where an armed crash strikes; the simulator then drops the
/// member's volatile state.
struct SimulatedCrash: Error {
    let point: CrashPoint
}

final class CrashPoints {
    var armed: CrashPoint?

    func reach(_ point: CrashPoint) throws {
        guard armed == point else { return }
        armed = nil
        throw SimulatedCrash(point: point)
    }
}

/// The member's durable log: what `raft.log`, the hard-state file and the snapshot metadata hold.
final class SimulatedLog: ReplicaLogStore {
    let id: NodeID
    private(set) var hardState = HardState()
    private(set) var snapshot: Snapshot
    private(set) var entries: [Entry] = []
    private let checker: InvariantChecker
    private let crashPoints: CrashPoints

    init(id: NodeID, snapshot: Snapshot, checker: InvariantChecker, crashPoints: CrashPoints) {
        self.id = id
        self.snapshot = snapshot
        self.checker = checker
        self.crashPoints = crashPoints
    }

    var stableIndex: LogIndex { entries.last?.index ?? snapshot.index }

    func durableTerm(at index: LogIndex) -> Term? {
        if index == snapshot.index { return snapshot.term }
        guard index > snapshot.index, index <= stableIndex else { return nil }
        return entries[Int(index - snapshot.index - 1)].term
    }

    func persist(_ ready: Ready) throws {
        guard ready.snapshot != nil || !ready.entries.isEmpty || ready.hardState != nil else { return }
        try crashPoints.reach(.persist)
        if let snapshot = ready.snapshot { save(snapshot: snapshot) }
        if !ready.entries.isEmpty {
            try checker.checkAppended(ready.entries, log: self)
            persist(entries: ready.entries)
        }
        // Like `RaftStorage`, only the term and the vote: the commit index is volatile.
        if let hardState = ready.hardState { self.hardState = HardState(term: hardState.term, vote: hardState.vote, commit: 0) }
    }

    /// Writes entries; each replaces whatever the log holds at its index and after.
    private func persist(entries new: [Entry]) {
        let first = new[0]
        precondition(first.index > snapshot.index, "\(id) persists entry \(first.index) inside its snapshot (\(snapshot.index))")
        precondition(first.index <= stableIndex + 1, "\(id) persists entry \(first.index) after a gap (last \(stableIndex))")
        entries.removeLast(Int(stableIndex - (first.index - 1)))
        entries.append(contentsOf: new)
    }

    /// Keeps the log after the snapshot only if it holds the snapshot's last entry.
    func save(snapshot new: Snapshot) {
        guard new.index > snapshot.index else { return }
        if durableTerm(at: new.index) == new.term {
            entries.removeFirst(Int(new.index - snapshot.index))
        } else {
            entries.removeAll()
        }
        snapshot = new
    }

    /// What a restarted core starts from, as `RaftStorage.load` gives it: the commit index is
    /// what the state machine committed (clamped to the log).
    func load(applied: LogIndex) -> (hardState: HardState, snapshot: Snapshot, entries: [Entry]) {
        let commit = min(max(applied, snapshot.index), stableIndex)
        return (HardState(term: hardState.term, vote: hardState.vote, commit: commit), snapshot, entries)
    }
}

/// The member's state machine, with the node's two steps: entries are executed into an open
/// transaction (`executed`) and become durable and visible at `commitExecuted` (`committed`).
final class SimulatedMachine: ReplicaStateMachine {
    let id: NodeID
    /// Durable and visible to readers (`state.sqlite` after a commit).
    private(set) var committed: StateMachine
    /// What was executed, committed or not.
    private(set) var executed: StateMachine
    private let log: SimulatedLog
    private let checker: InvariantChecker
    private let crashPoints: CrashPoints

    init(id: NodeID, initial: StateMachine, log: SimulatedLog, checker: InvariantChecker, crashPoints: CrashPoints) {
        self.id = id
        committed = initial
        executed = initial
        self.log = log
        self.checker = checker
        self.crashPoints = crashPoints
    }

    /// Each entry's outcome is its index.
    func execute(_ entries: [Entry]) throws -> [LogIndex] {
        try crashPoints.reach(.execute)
        for entry in entries {
            precondition(entry.index == executed.applied + 1, "\(id) executes \(entry.index) after \(executed.applied)")
            guard entry.index <= log.stableIndex else {
                throw SimulationFailure(description: "durability: \(id) executes entry \(entry.index) before persisting it (its log ends at \(log.stableIndex))")
            }
            executed.apply(entry)
            try checker.checkApplied(entry, machine: executed, node: id)
        }
        return entries.map(\.index)
    }

    func commitExecuted() throws {
        try crashPoints.reach(.commit)
        committed = executed
    }

    func installSnapshot(_ snapshot: Snapshot) throws {
        precondition(executed == committed, "\(id) installs a snapshot over executed, uncommitted entries")
        let machine = StateMachine(decoding: snapshot.data)
        try checker.checkInstalled(machine, at: snapshot.index, node: id)
        committed = machine
        executed = machine
    }

    func remembered(_ outcome: LogIndex) -> LogIndex { outcome }

    /// A crash loses the open transaction.
    func crash() { executed = committed }

    /// The node's crash restore: a snapshot whose metadata was saved but whose state was not
    /// installed yet is installed before the member starts.
    func restore(from snapshot: Snapshot) {
        guard committed.applied < snapshot.index else { return }
        committed = StateMachine(decoding: snapshot.data)
        executed = committed
    }
}

/// A client's wait, as the simulator's clients see it.
struct SimulatedWait {
    /// The command, or nil for a membership change.
    var command: UInt64?
    var early: Bool
}

/// Collects the driver's answers, with what the member showed readers at that moment; the
/// simulator checks them once the driver call returns.
final class SimulatedClients: ReplicaClients {
    struct Answer {
        var wait: SimulatedWait
        var result: Result<LogIndex, ReplicationError>
        var visible: LogIndex
    }

    struct ReadAnswer {
        var context: UInt64
        var result: Result<Void, ReplicationError>
        var visible: LogIndex
    }

    private let machine: SimulatedMachine
    var answers: [Answer] = []
    var readAnswers: [ReadAnswer] = []

    init(machine: SimulatedMachine) {
        self.machine = machine
    }

    /// A fan-out that came before the state it announces was committed (checked by the
    /// simulator after the call).
    var violation: String?

    func committed(through index: LogIndex, outcomes: [LogIndex]) {
        if index != machine.committed.applied || (!outcomes.isEmpty && outcomes.last != index) {
            violation = violation ?? "commit fan-out: \(machine.id) announces entries through \(index) (outcomes through \(outcomes.last.map(String.init) ?? "-")) while its state machine has committed \(machine.committed.applied)"
        }
    }

    func answer(_ token: SimulatedWait, _ result: Result<LogIndex, ReplicationError>) {
        answers.append(Answer(wait: token, result: result, visible: machine.committed.applied))
    }

    func answer(read token: UInt64, _ result: Result<Void, ReplicationError>) {
        readAnswers.append(ReadAnswer(context: token, result: result, visible: machine.committed.applied))
    }
}

/// Virtual time: every member reads the same clock, advanced by the simulator one tick at a time.
final class SimulatedClock: ReplicaClock {
    static let tick = Duration.milliseconds(10)
    var ticks: UInt64 = 0
    var now: Duration { Self.tick * Int(ticks) }
}

/// The simulated network as a member's transport.
final class SimulatedTransport: ReplicaTransport {
    var outbox: [Message] = []
    func send(_ message: Message) { outbox.append(message) }
}

/// The simulated application: a hash chain over every applied entry, so two members that
/// applied different entries anywhere end with different chains.
struct StateMachine: Equatable {
    var applied: LogIndex = 0
    var chain: UInt64 = 0

    init() {}

    init(decoding bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        do {
            applied = try reader.readUInt64()
            chain = try reader.readUInt64()
            try reader.expectEnd()
        } catch {
            preconditionFailure("state machine snapshot of \(bytes.count) bytes: \(error)")
        }
    }

    var encoded: [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writer.write(applied)
        writer.write(chain)
        return writer.bytes
    }

    mutating func apply(_ entry: Entry) {
        applied = entry.index
        chain = Self.mix(chain ^ Self.hash(entry.payload) ^ entry.index)
    }

    /// FNV-1a over the payload's wire encoding (configurations encode their members sorted).
    static func hash(_ payload: EntryPayload) -> UInt64 {
        RaftCodec.encode(payload).reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }

    /// SplitMix64's output function: one well-mixed step of the chain.
    static func mix(_ value: UInt64) -> UInt64 {
        var generator = SplitMix64(seed: value)
        return generator.next()
    }

    /// A client command: its id, padded to a size that varies with the id (flow control sees
    /// different sizes).
    static func command(_ id: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 48)
        writer.write(id)
        writer.writeRaw(Array(repeating: 0xAB, count: Int(id % 40)))
        return writer.bytes
    }

    static func commandId(_ bytes: [UInt8]) -> UInt64? {
        var reader = ByteReader(bytes)
        return try? reader.readUInt64()
    }
}
