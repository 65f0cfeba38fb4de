import RaftCore
import RaftDriver
import Seeded

/// What one seed does. Everything else (loss, delays, which faults, when) is drawn from the seed.
public struct SimulationSettings: Sendable {
    /// Members at the end; one of them may start outside the cluster and join as a learner.
    public var nodes: Int
    public var faultTicks: UInt64 = 600
    public var calmTicks: UInt64 = 500
    /// In the calm phase a leader must exist within this many ticks of the calm phase starting.
    public var calmLeaderTicksMax: UInt64 = 200
    /// The end of the calm phase takes no new requests, so that every request can finish.
    public var drainTicks: UInt64 = 150
    public var electionTicks = 10

    public init(nodes: Int) {
        precondition((1...7).contains(nodes), "the simulator runs 1 to 7 members, got \(nodes)")
        self.nodes = nodes
    }
}

/// The outcome of one seed. `failure` names the broken invariant, with the tick.
public struct SimulationResult: Sendable {
    public var seed: UInt64
    public var failure: String?
    public var ticks: UInt64 = 0
    public var messagesSent = 0
    public var messagesDropped = 0
    public var committed: LogIndex = 0
    public var acknowledgedWrites = 0
    public var servedReads = 0
    public var elections = 0
    public var crashes = 0
    public var snapshotsSent = 0
    public var trace: [String] = []
}

struct SimulationFailure: Error, CustomStringConvertible {
    let description: String
}

/// A seeded run of 1 to 7 Raft cores in one process on a virtual clock: a fault phase
/// (crashes and restarts, partitions, clogged links, loss, duplication, reordering, leadership
/// transfers, membership changes, snapshots), then a calm phase in which the cluster must
/// converge. Invariants are checked after every step; the same seed replays the same run.
public struct Simulation {
    public let seed: UInt64
    public let settings: SimulationSettings
    var random: SplitMix64
    var network: SimulatedNetwork
    var nodes: [SimulatedNode] = []
    var indexOf: [NodeID: Int] = [:]
    var now: UInt64 = 0
    var result: SimulationResult
    let checker = InvariantChecker()
    var raftSettings: RaftSettings
    var timings: ReplicaTimings
    let clock = SimulatedClock()
    let traceLines: TraceLines?
    /// Also trace every delivered message (replays only; long).
    public var traceMessages = false

    // Clients.
    var nextCommandId: UInt64 = 1
    /// Calm-phase commands that must all be acknowledged by the end.
    var calmCommands: [UInt64: UInt64] = [:]  // id -> last proposal tick
    var nextReadContext: UInt64 = 1
    /// Reads waiting: context -> (node, index every acknowledged write before the request reached).
    var reads: [UInt64: (node: Int, required: LogIndex)] = [:]
    /// How long a client waits for an answer before giving up (the write may still commit).
    static let waitTicks: UInt64 = 40

    // Faults.
    var restartAt: [Int: UInt64] = [:]
    var healAt: UInt64?
    var unclogAt: [SimulatedNetwork.Pair: UInt64] = [:]
    var joiner: Int?
    /// A voter removed during the fault phase (it keeps running, outside the cluster).
    var removed: Int?
    var snapshotEvery: LogIndex

    public init(seed: UInt64, settings: SimulationSettings, recordTrace: Bool = false) {
        self.seed = seed
        self.settings = settings
        traceLines = recordTrace ? TraceLines() : nil
        var random = SplitMix64(seed: seed)
        let loss = [0, 0, 1, 5, 10, 20][Int(random.next() % 6)]
        network = SimulatedNetwork(
            lossPercent: UInt64(loss), duplicatePercent: random.next() % 3 == 0 ? random.next() % 10 : 0,
            delayTicksMax: 1 + random.next() % 4)
        var raft = RaftSettings()
        raft.electionTicks = settings.electionTicks
        raft.heartbeatTicks = 1 + Int(random.next() % 3)
        raft.inflightAppendsMax = [1, 4, 64][Int(random.next() % 3)]
        raft.appendBytesMax = [256, 4096, 1 << 20][Int(random.next() % 3)]
        // Backpressure like a loaded node's: a leader cut off from its followers stops taking
        // writes instead of growing a backlog no follower could fetch in the calm phase.
        raft.uncommittedEntriesMax = 64
        raft.preVote = random.next() % 5 != 0
        raft.checkQuorum = random.next() % 5 != 0
        raft.leaseReads = raft.checkQuorum && random.next() % 3 == 0
        raftSettings = raft
        snapshotEvery = [10, 30, 100, 1_000_000][Int(random.next() % 4)]
        // The node's holds, in ticks of 10 ms: none, one tick, several.
        timings = ReplicaTimings(
            tick: SimulatedClock.tick, followerApplyDelay: SimulatedClock.tick * [0, 1, 4][Int(random.next() % 3)],
            leaderCommitHold: SimulatedClock.tick * [0, 1, 3][Int(random.next() % 3)])
        result = SimulationResult(seed: seed)
        self.random = random

        let ids = (1...settings.nodes).map { "n\($0)" }
        for (number, id) in ids.enumerated() { indexOf[id] = number }
        // Some seeds start one member short; it joins as a learner and is promoted.
        let startsOutside = settings.nodes > 1 && random.next() % 2 == 0
        if startsOutside { joiner = settings.nodes - 1 }
        let initial = Configuration(voters: Set(startsOutside ? ids.dropLast() : ids[...]))
        for (number, id) in ids.enumerated() {
            let configuration = number == joiner ? Configuration(voters: []) : initial
            nodes.append(SimulatedNode(id: id, bootstrap: Snapshot(index: 0, term: 0, configuration: configuration, data: StateMachine().encoded), checker: checker))
            try! start(number)
        }
        trace("settings loss=\(loss)% dup=\(network.duplicatePercent)% delay<=\(network.delayTicksMax) hb=\(raft.heartbeatTicks) inflight=\(raft.inflightAppendsMax) bytes=\(raft.appendBytesMax) preVote=\(raft.preVote) checkQuorum=\(raft.checkQuorum) lease=\(raft.leaseReads) snapshotEvery=\(snapshotEvery) applyDelay=\(timings.followerApplyDelay) commitHold=\(timings.leaderCommitHold) joiner=\(joiner.map { ids[$0] } ?? "none")")
    }

    /// Runs the fault phase and the calm phase; returns the first broken invariant, if any.
    public mutating func run() -> SimulationResult {
        do {
            while now < settings.faultTicks {
                try step(faults: true)
            }
            calmDown()
            let calmStart = now
            var leaderSeen = false
            while now < settings.faultTicks + settings.calmTicks {
                try step(faults: false)
                if !leaderSeen, currentLeader() != nil { leaderSeen = true }
                if !leaderSeen, now - calmStart > settings.calmLeaderTicksMax {
                    throw SimulationFailure(description: "liveness: no leader \(settings.calmLeaderTicksMax) ticks into the calm phase")
                }
            }
            try checkEnd()
        } catch let failure as SimulationFailure {
            result.failure = "tick \(now): \(failure.description)"
        } catch {
            result.failure = "tick \(now): \(error)"
        }
        result.ticks = now
        result.messagesSent = network.sent
        result.messagesDropped = network.dropped
        result.committed = nodes.compactMap { $0.core?.commitIndex }.max() ?? 0
        result.trace = traceLines?.lines ?? []
        return result
    }

    // MARK: One tick

    mutating func step(faults: Bool) throws {
        now += 1
        clock.ticks = now
        for message in network.arrivals(at: now, random: &random) {
            guard let to = indexOf[message.to], let driver = nodes[to].driver else { continue }
            if traceMessages { trace("\(message.from)->\(message.to) t\(message.term) \(Self.brief(message.kind))") }
            driver.step(message)
            try process(to)
        }
        // As the node's loop does when it wakes: tick if a tick passed (the driver fails the waits
        // whose deadline passed), then carry out what is due (the holds end on the clock too).
        for number in nodes.indices {
            guard let driver = nodes[number].driver else { continue }
            driver.advanceClock()
            try process(number)
        }
        try clients(faults: faults)
        if faults { try injectFaults() } else { try restartDue() }
        unclogDue()
        try checker.checkElectionSafety(nodes)
    }

    mutating func calmDown() {
        network.heal(now: now, random: &random)
        network.lossPercent = 0
        network.duplicatePercent = 0
        healAt = nil
        unclogAt = [:]
        for number in nodes.indices where nodes[number].core == nil { restartAt[number] = now + 1 }
        for node in nodes { node.crashPoints.armed = nil }
        trace("calm phase")
    }

    // MARK: The driver

    /// Lets a member's driver carry out everything due (the node's own cycle), then checks what
    /// came out: messages go to the network, answers to the clients, and a crash armed inside
    /// the cycle takes the member down.
    mutating func process(_ number: Int) throws {
        guard let driver = nodes[number].driver else { return }
        let wasLeader = driver.core.role == .leader
        do {
            try driver.process()
        } catch let crash as SimulatedCrash {
            settle(number)
            try settleAnswers(number)
            crashMember(number, reason: "at \(crash.point) (\(wasLeader ? "leader" : "\(driver.core.role)"))")
            return
        }
        settle(number)
        let core = driver.core
        if core.role == .leader, nodes[number].ledTerm != core.term {
            nodes[number].ledTerm = core.term
            result.elections += 1
            trace("\(core.id) leader of term \(core.term)")
            try checker.checkLeaderCompleteness(core)
        }
        try checker.checkCommit(core, previous: nodes[number].commitSeen)
        nodes[number].commitSeen = core.commitIndex
        try settleAnswers(number)
        try maybeSnapshot(number)
    }

    /// Hands what a member sent to the network.
    mutating func settle(_ number: Int) {
        let transport = nodes[number].transport
        for message in transport.outbox {
            if case .installSnapshot = message.kind { result.snapshotsSent += 1 }
            network.send(message, from: number, to: indexOf[message.to]!, now: now, random: &random)
        }
        transport.outbox.removeAll()
    }

    /// Checks the answers a member's clients got: a write acknowledged is recorded (and, unless
    /// answered early, must be visible on that member: read-your-writes); a read served must
    /// see every write acknowledged before it was requested (linearizability).
    mutating func settleAnswers(_ number: Int) throws {
        guard let clients = nodes[number].clients else { return }
        if let violation = clients.violation { throw SimulationFailure(description: violation) }
        let answers = clients.answers
        let readAnswers = clients.readAnswers
        clients.answers.removeAll()
        clients.readAnswers.removeAll()
        for answer in answers {
            guard case .success(let index) = answer.result, let id = answer.wait.command else { continue }
            if !answer.wait.early, answer.visible < index {
                throw SimulationFailure(description: "read-your-writes: \(nodes[number].id) answered command \(id) at index \(index) while showing readers only \(answer.visible)")
            }
            // Someone else asks the answering member for the outcome of a write answered early
            // (a second reader of the same write, who must see it): the entry is often executed
            // and still inside the leader's commit hold.
            if answer.wait.early, random.next() % 2 == 0, let driver = nodes[number].driver, let term = driver.core.term(at: index) {
                driver.wait(index: index, term: term, deadline: waitDeadline, early: false, token: SimulatedWait(command: id, early: false))
            }
            guard checker.acknowledgedIndexes[id] == nil else { continue }
            checker.acknowledged(id, index: index)
            result.acknowledgedWrites += 1
            calmCommands[id] = nil
        }
        for answer in readAnswers {
            guard let read = reads.removeValue(forKey: answer.context), case .success = answer.result else { continue }
            guard answer.visible >= read.required else {
                throw SimulationFailure(description: "linearizability: read \(answer.context) on \(nodes[number].id) served showing \(answer.visible), but a write at \(read.required) was acknowledged before the read was requested")
            }
            result.servedReads += 1
        }
    }

    mutating func maybeSnapshot(_ number: Int) throws {
        guard let driver = nodes[number].driver else { return }
        let state = nodes[number].machine.committed
        guard state.applied >= driver.core.snapshotIndex + snapshotEvery else { return }
        _ = try driver.compact(through: state.applied, data: state.encoded)
    }

    /// Takes a member down: the driver, its waits and the open transaction are lost; the log and
    /// the committed state survive.
    mutating func crashMember(_ number: Int, reason: String) {
        nodes[number].crash()
        for (context, read) in reads where read.node == number { reads[context] = nil }
        restartAt[number] = now + 5 + random.next() % 60
        result.crashes += 1
        trace("crash \(nodes[number].id) \(reason)")
    }

    // MARK: Clients

    mutating func clients(faults: Bool) throws {
        // The last `drainTicks` of the calm phase take no new requests: what was asked must finish.
        let draining = now + settings.drainTicks > settings.faultTicks + settings.calmTicks
        // Writes: the client tries a random member. The leader proposes; a follower forwards to
        // the leader and waits for the entry on its own copy, as the node does. Some writes ask
        // for an early answer (once executed on the leader).
        if !draining, random.next() % 2 == 0 {
            let number = Int(random.next() % UInt64(nodes.count))
            let id = nextCommandId
            // Recorded before the write: a single member answers within the call.
            if !faults { calmCommands[id] = now }
            if try write(id, at: number, early: random.next() % 2 == 0) {
                nextCommandId += 1
            } else {
                calmCommands[id] = nil
            }
        }
        // Calm phase: retry commands not acknowledged for a while, as a client would.
        if !faults, let leader = currentLeader() {
            for (id, at) in calmCommands.sorted(by: { $0.key < $1.key }) where now - at > UInt64(3 * settings.electionTicks) {
                guard calmCommands[id] != nil else { continue }  // answered by an earlier retry's cycle
                let previous = calmCommands[id]
                calmCommands[id] = now
                if try !write(id, at: leader, early: false), calmCommands[id] != nil { calmCommands[id] = previous }
            }
        }
        // Linearizable reads on any member.
        if !draining, random.next() % 4 == 0 {
            let number = Int(random.next() % UInt64(nodes.count))
            if let driver = nodes[number].driver {
                let context = nextReadContext
                nextReadContext += 1
                if (try? driver.read(deadline: waitDeadline, token: context)) != nil {
                    reads[context] = (number, checker.maxAcknowledgedIndex)
                    try process(number)
                }
            }
        }
        guard faults else { return }
        // Leadership transfer now and then.
        if random.next() % 150 == 0, let leader = currentLeader() {
            let voters = nodes[leader].core!.configuration.voters.sorted()
            let target = voters[Int(random.next() % UInt64(voters.count))]
            if (try? nodes[leader].driver!.transferLeadership(to: target)) != nil {
                trace("transfer \(nodes[leader].id) -> \(target)")
                try process(leader)
            }
        }
        // Membership: the joiner is added as a learner, then promoted once caught up.
        if let joiner, random.next() % 20 == 0, let leader = currentLeader() {
            let configuration = nodes[leader].core!.configuration
            let joinerId = nodes[joiner].id
            let change: ConfigurationChange? =
                configuration.members.contains(joinerId)
                ? (configuration.learners.contains(joinerId) ? .promote(joinerId) : nil) : .addLearner(joinerId)
            if let change, (try? nodes[leader].driver!.proposeConfigurationChange(change, deadline: waitDeadline, token: SimulatedWait(command: nil, early: false))) != nil {
                trace("\(nodes[leader].id) proposes \(change)")
                try process(leader)
            }
        }

        // Membership: with four or more members and check-quorum (which keeps a removed member
        // that never learns of its removal from disrupting the rest), one voter is removed.
        if removed == nil, nodes.count >= 4, raftSettings.checkQuorum, random.next() % 400 == 0, let leader = currentLeader() {
            let voters = nodes[leader].core!.configuration.voters.filter { $0 != nodes[leader].id }.sorted()
            if voters.count >= 3 {
                let victim = voters[Int(random.next() % UInt64(voters.count))]
                if (try? nodes[leader].driver!.proposeConfigurationChange(.remove(victim), deadline: waitDeadline, token: SimulatedWait(command: nil, early: false))) != nil {
                    removed = indexOf[victim]
                    trace("\(nodes[leader].id) proposes remove(\(victim))")
                    try process(leader)
                }
            }
        }
    }

    var waitDeadline: Duration { clock.now + SimulatedClock.tick * Int(Self.waitTicks) }

    /// Client command `id` sent to member `number`: proposed there if it leads, else forwarded
    /// to the leader (when one is known) and waited for on `number`'s own copy. Whether it was
    /// taken (the answer comes later, through the driver).
    mutating func write(_ id: UInt64, at number: Int, early: Bool) throws -> Bool {
        guard let driver = nodes[number].driver else { return false }
        let command = StateMachine.command(id)
        if driver.core.role == .leader {
            guard (try? driver.propose(command, deadline: waitDeadline, early: early, token: SimulatedWait(command: id, early: early))) != nil else { return false }
            try process(number)
            return true
        }
        // One write in four that reaches a follower is forwarded (the others are refused, as
        // before forwarding existed here): the offered load stays within what the slowest seeds
        // (20 % loss, one append in flight of 256 bytes) commit by the end of the calm phase.
        guard random.next() % 4 == 0, let leader = currentLeader(), leader != number, let leaderDriver = nodes[leader].driver,
              let (index, term) = try? leaderDriver.proposeForwarded(command) else { return false }
        try process(leader)
        // The wait registers after the leader's cycle, as the forwarded answer comes back over
        // the link; the entry may already be applied here (then it is answered from memory).
        guard let driver = nodes[number].driver else { return true }
        driver.wait(index: index, term: term, deadline: waitDeadline, early: false, token: SimulatedWait(command: id, early: false))
        try process(number)
        return true
    }

    func currentLeader() -> Int? {
        nodes.indices.filter { nodes[$0].core?.role == .leader }.max { nodes[$0].core!.term < nodes[$1].core!.term }
    }

    // MARK: Faults

    mutating func injectFaults() throws {
        try restartDue()
        if let at = healAt, now >= at {
            network.cut.removeAll()
            healAt = nil
            trace("partition healed")
        }
        let roll = random.next() % 1000
        let count = nodes.count
        switch roll {
        case 0..<8:  // crash a member (all state not persisted is lost)
            let number = Int(random.next() % UInt64(count))
            guard nodes[number].core != nil else { return }
            crashMember(number, reason: "between steps")
        case 8..<12 where healAt == nil && count > 1:  // partition
            let groups = partition(kind: Int(random.next() % 4))
            network.cut = groups
            healAt = now + 20 + random.next() % 100
        case 12..<16 where count > 1:  // clog one direction of one link
            let from = Int(random.next() % UInt64(count)), to = Int(random.next() % UInt64(count))
            guard from != to else { return }
            let pair = SimulatedNetwork.Pair(from: from, to: to)
            network.clogged.insert(pair)
            unclogAt[pair] = now + 5 + random.next() % 50
            trace("clog \(nodes[from].id)->\(nodes[to].id)")
        case 16..<24:  // arm a crash inside a member's cycle (strikes when the driver gets there)
            let number = Int(random.next() % UInt64(count))
            guard nodes[number].core != nil, nodes[number].crashPoints.armed == nil else { return }
            nodes[number].crashPoints.armed = CrashPoint.allCases[Int(random.next() % UInt64(CrashPoint.allCases.count))]
        default:
            break
        }
    }

    /// The cut links of a partition: halves, one isolated member, a majorities ring (each sees
    /// a majority, no two agree), or a bridge (two halves joined through one member).
    mutating func partition(kind: Int) -> Set<SimulatedNetwork.Pair> {
        let count = nodes.count
        var order = Array(0..<count)
        order.shuffle(using: &random)
        var connected: (Int, Int) -> Bool
        let position = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
        switch kind {
        case 0:  // halves
            let half = (count + 1) / 2
            connected = { (position[$0]! < half) == (position[$1]! < half) }
            trace("partition halves \(order.prefix(half).map { nodes[$0].id }) | \(order.dropFirst(half).map { nodes[$0].id })")
        case 1:  // one isolated
            connected = { $0 != order[0] && $1 != order[0] }
            trace("partition isolate \(nodes[order[0]].id)")
        case 2:  // majorities ring: i talks to the count/2 members after and before it in the ring
            let reach = count / 2
            connected = { a, b in
                let distance = (position[a]! - position[b]! + count) % count
                return min(distance, count - distance) <= reach / 2 + (reach % 2)
            }
            trace("partition ring \(order.map { nodes[$0].id })")
        default:  // bridge: halves, except the bridge member talks to both
            let half = (count + 1) / 2
            let bridge = order[0]
            connected = { a, b in a == bridge || b == bridge || (position[a]! < half) == (position[b]! < half) }
            trace("partition bridge \(nodes[bridge].id)")
        }
        var cut = Set<SimulatedNetwork.Pair>()
        for a in 0..<count { for b in 0..<count where a != b && !connected(a, b) { cut.insert(.init(from: a, to: b)) } }
        return cut
    }

    mutating func restartDue() throws {
        for (number, at) in restartAt.sorted(by: { $0.key < $1.key }) where now >= at {
            restartAt[number] = nil
            try start(number)
            trace("restart \(nodes[number].id)")
        }
    }

    mutating func unclogDue() {
        for (pair, at) in unclogAt where now >= at {
            unclogAt[pair] = nil
            network.unclog(pair, now: now, random: &random)
        }
    }

    /// Starts (or restarts) a member the way a node starts: a snapshot whose state was not
    /// installed is installed first, and the core starts from the log with the state machine's
    /// committed index.
    mutating func start(_ number: Int) throws {
        let node = nodes[number]
        node.machine.restore(from: node.log.snapshot)
        let applied = node.machine.committed.applied
        guard applied <= node.log.stableIndex else {
            throw SimulationFailure(description: "durability: \(node.id) restarts with its state machine at \(applied), past its durable log (\(node.log.stableIndex))")
        }
        let loaded = node.log.load(applied: applied)
        let coreSeed = seed &+ UInt64(number) &* 7919 &+ now
        let core = Raft(
            id: node.id, settings: raftSettings, seed: coreSeed,
            hardState: loaded.hardState, snapshot: loaded.snapshot, entries: loaded.entries, applied: applied)
        let clients = SimulatedClients(machine: node.machine)
        nodes[number].clients = clients
        nodes[number].driver = ReplicaDriver(
            core: core, applied: applied, log: node.log, machine: node.machine, transport: node.transport, clock: clock, clients: clients,
            timings: timings, firstReadContext: StateMachine.mix(coreSeed))
        nodes[number].commitSeen = core.commitIndex
    }

    // MARK: The end

    mutating func checkEnd() throws {
        for (id, _) in calmCommands.sorted(by: { $0.key < $1.key }) {
            throw SimulationFailure(description: "liveness: calm-phase command \(id) was never acknowledged; \(describe())")
        }
        let target = checker.maxAcknowledgedIndex
        guard let leader = currentLeader() else { throw SimulationFailure(description: "liveness: no leader at the end") }
        let members = nodes[leader].core!.configuration.members
        for node in nodes where members.contains(node.id) {
            guard let core = node.core else { throw SimulationFailure(description: "\(node.id) is down at the end") }
            guard node.machine.committed.applied >= target else {
                throw SimulationFailure(description: "durability: \(node.id) applied \(node.machine.committed.applied), but index \(target) was acknowledged (commit \(core.commitIndex), last \(core.lastIndex), role \(core.role), term \(core.term))")
            }
        }
        try checker.checkAcknowledgedApplied()
    }

    static func brief(_ kind: Message.Kind) -> String {
        switch kind {
        case .append(let prevIndex, let prevTerm, let entries, let commit):
            "append prev \(prevIndex)/\(prevTerm) entries \(entries.first?.index ?? 0)...\(entries.last?.index ?? 0) commit \(commit)"
        case .installSnapshot(let snapshot): "installSnapshot \(snapshot.index)/\(snapshot.term)"
        default: "\(kind)"
        }
    }

    /// Every member's state, for failure messages.
    func describe() -> String {
        nodes.map { node in
            guard let core = node.core else { return "\(node.id) down" }
            var line = "\(node.id) \(core.role) term \(core.term) leader \(core.leader ?? "-") commit \(core.commitIndex) applied \(node.machine.committed.applied) last \(core.lastIndex) snapshot \(core.snapshotIndex) config \(core.configuration)"
            if core.role == .leader { line += " progress " + core.progressDescription }
            return line
        }.joined(separator: "; ")
    }

    func trace(_ line: @autoclosure () -> String) {
        if let traceLines { traceLines.lines.append("[\(now)] \(line())") }
    }
}

/// Trace lines of a replayed seed (a class, so a non-mutating `trace` can append to it).
final class TraceLines {
    var lines: [String] = []
}
