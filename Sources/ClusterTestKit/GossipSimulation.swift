import RaftCore
import SWIMCore
import Seeded
import Wire

/// A seeded simulation of SWIM cores on a virtual clock: every packet goes through the codec,
/// then through a network that loses, duplicates, delays (and so reorders) and partitions; members
/// crash, restart and starve. `check()` runs the invariants after every step; a failure names the
/// seed so the run can be replayed exactly.
public struct GossipSimulation {
    public struct Options: Sendable {
        public var members: Int
        public var seed: UInt64
        /// Probability that a packet is lost.
        public var loss = 0.0
        /// Probability that a delivered packet arrives twice.
        public var duplication = 0.0
        public var delayMin: Duration = .microseconds(200)
        public var delayMax: Duration = .milliseconds(2)
        public var tick: Duration = .milliseconds(10)
        public var settings = SWIMSettings()

        public init(members: Int, seed: UInt64) {
            precondition(members >= 1, "a simulation needs a member, got \(members)")
            self.members = members
            self.seed = seed
        }
    }

    /// One member's first sight of another's status.
    public struct Sighting: Sendable, Hashable {
        public var observer: Int
        public var subject: Int
        public var status: MemberStatus
        public var at: Duration
    }

    public struct Traffic: Sendable {
        public var packets = 0
        public var bytes = 0
    }

    public let options: Options
    public private(set) var now: Duration = .zero
    public private(set) var cores: [SWIM?]
    /// Every status change each member saw, in order.
    public private(set) var sightings: [Sighting] = []
    public private(set) var traffic: [Traffic]
    public private(set) var packetsLost = 0
    private var rng: SplitMix64
    private var inFlight: [(at: Duration, order: UInt64, to: Int, from: String, bytes: [UInt8])] = []
    private var order: UInt64 = 0
    private var group: [Int]
    /// A starved member runs only at multiples of its period; packets wait for it.
    private var starvedPeriod: [Int: Duration] = [:]
    private var held: [Int: [(from: String, bytes: [UInt8])]] = [:]
    /// (observer, subject) -> (incarnation, status) last seen, for the monotonicity invariant.
    private var lastSeen: [Int: [String: (Incarnation, MemberStatus)]] = [:]

    public static func id(_ index: Int) -> MemberID { "m\(index + 1)" }
    public static func address(_ index: Int) -> String { "10.0.\(index / 250).\(index % 250 + 1):7946" }

    public init(_ options: Options) throws {
        self.options = options
        rng = SplitMix64(seed: options.seed)
        cores = Array(repeating: nil, count: options.members)
        traffic = Array(repeating: Traffic(), count: options.members)
        group = Array(repeating: 0, count: options.members)
        for index in 0..<options.members { try start(index) }
    }

    public func index(of address: String) -> Int? {
        let parts = address.split(separator: ":")[0].split(separator: ".")
        guard parts.count == 4, let high = Int(parts[2]), let low = Int(parts[3]) else { return nil }
        let index = high * 250 + low - 1
        return index < options.members ? index : nil
    }

    // MARK: Faults

    /// Starts (or restarts, with a fresh core) a member that joins through member 1.
    public mutating func start(_ index: Int) throws {
        var core = try SWIM(
            id: Self.id(index), address: Self.address(index), metadata: Metadata(api: "api-\(index + 1)"), settings: options.settings,
            seed: options.seed &* 1_000_003 &+ UInt64(index) &+ now.components.seconds.magnitude, now: now)
        let seeds = index == 0 ? (options.members > 1 ? [Self.address(1)] : []) : [Self.address(0)]
        let directives = core.join(seeds: seeds, now: now)
        cores[index] = core
        lastSeen[index] = [:]
        carry(directives, from: index)
    }

    /// kill -9: the member stops answering at once and forgets everything.
    public mutating func crash(_ index: Int) {
        cores[index] = nil
        held[index] = nil
        starvedPeriod[index] = nil
    }

    public mutating func leave(_ index: Int) {
        guard var core = cores[index] else { return }
        let directives = core.leave(now: now)
        cores[index] = core
        carry(directives, from: index)
        cores[index] = nil
    }

    /// Splits the network: members in different groups cannot reach each other.
    public mutating func partition(_ groups: [[Int]]) {
        for (number, members) in groups.enumerated() { for member in members { group[member] = number + 1 } }
    }

    public mutating func heal() { group = Array(repeating: 0, count: options.members) }

    /// The member only runs once every `period` (a CPU-starved process); nil ends it.
    public mutating func starve(_ index: Int, period: Duration?) {
        starvedPeriod[index] = period
        if period == nil { deliverHeld(index) }
    }

    // MARK: Running

    public mutating func run(for duration: Duration) throws {
        let end = now + duration
        while now < end { try step() }
    }

    /// Runs until `condition` holds (checked each tick) or `limit` passes; returns whether it held.
    public mutating func run(until limit: Duration, _ condition: (GossipSimulation) -> Bool) throws -> Bool {
        let end = now + limit
        while now < end {
            if condition(self) { return true }
            try step()
        }
        return condition(self)
    }

    public mutating func step() throws {
        now += options.tick
        inFlight.sort { ($0.at, $0.order) < ($1.at, $1.order) }
        var due = 0
        while due < inFlight.count, inFlight[due].at <= now { due += 1 }
        let delivering = inFlight.prefix(due)
        inFlight.removeFirst(due)
        for packet in delivering { try deliver(packet.bytes, from: packet.from, to: packet.to) }
        for index in 0..<options.members where cores[index] != nil && isRunning(index) {
            deliverHeld(index)
            var core = cores[index]!
            let directives = core.onTick(now: now)
            cores[index] = core
            carry(directives, from: index)
        }
        try check()
    }

    private func isRunning(_ index: Int) -> Bool {
        guard let period = starvedPeriod[index] else { return true }
        let ticks = period / options.tick
        return Int(now / options.tick) % max(1, Int(ticks)) == 0
    }

    private mutating func deliver(_ bytes: [UInt8], from: String, to index: Int) throws {
        guard cores[index] != nil else { return }
        guard isRunning(index) else {
            held[index, default: []].append((from, bytes))
            return
        }
        let packet: Packet
        do { packet = try SWIMCodec.decode(bytes) } catch { throw SimulationFailure(description: "seed \(options.seed): a packet the codec wrote does not decode: \(error)") }
        var core = cores[index]!
        let directives = core.onPacket(packet, from: from, now: now)
        cores[index] = core
        carry(directives, from: index)
    }

    private mutating func deliverHeld(_ index: Int) {
        guard let waiting = held.removeValue(forKey: index), var core = cores[index] else { return }
        for (from, bytes) in waiting {
            guard let packet = try? SWIMCodec.decode(bytes) else { continue }
            let directives = core.onPacket(packet, from: from, now: now)
            cores[index] = core
            carry(directives, from: index)
            core = cores[index]!
        }
    }

    private mutating func carry(_ directives: [Directive], from index: Int) {
        for directive in directives {
            switch directive {
            case .send(let packet, let address):
                let bytes = SWIMCodec.encode(packet)
                precondition(
                    bytes.count <= options.settings.gossipPacketBytesMax - SWIMSettings.sealBytesMax,
                    "seed \(options.seed): a packet of \(bytes.count) bytes exceeds the budget")
                traffic[index].packets += 1
                traffic[index].bytes += bytes.count + SWIMSettings.sealBytesMax
                guard let to = self.index(of: address), group[to] == group[index] else { packetsLost += 1; continue }
                if Double(rng.next() % 1_000_000) / 1_000_000 < options.loss { packetsLost += 1; continue }
                let copies = Double(rng.next() % 1_000_000) / 1_000_000 < options.duplication ? 2 : 1
                for _ in 0..<copies {
                    let spread = UInt64((options.delayMax - options.delayMin) / .microseconds(1))
                    let delay = options.delayMin + .microseconds(Int64(spread == 0 ? 0 : rng.next() % spread))
                    order += 1
                    inFlight.append((now + delay, order, to, Self.address(index), bytes))
                }
            case .changed(let change):
                guard let subject = self.index(of: change.member.address) else { continue }
                sightings.append(Sighting(observer: index, subject: subject, status: change.member.status, at: now))
            }
        }
    }

    // MARK: Invariants

    private mutating func check() throws {
        for index in 0..<options.members {
            guard let core = cores[index] else { continue }
            guard core.me.status == .alive else {
                throw SimulationFailure(description: "seed \(options.seed) at \(now): \(Self.id(index)) sees itself \(core.me.status)")
            }
            for member in core.view where member.id != core.me.id {
                if let (incarnation, status) = lastSeen[index]?[member.id] {
                    guard member.incarnation >= incarnation else {
                        throw SimulationFailure(description: "seed \(options.seed) at \(now): \(Self.id(index)) saw \(member.id)'s incarnation go back \(incarnation) -> \(member.incarnation)")
                    }
                    guard member.incarnation > incarnation || member.status.rawValue >= status.rawValue else {
                        throw SimulationFailure(description: "seed \(options.seed) at \(now): \(Self.id(index)) moved \(member.id) \(status) -> \(member.status) at incarnation \(incarnation)")
                    }
                }
                lastSeen[index, default: [:]][member.id] = (member.incarnation, member.status)
            }
        }
    }

    // MARK: Questions

    /// Whether every running member sees every running member alive, and each crashed one not alive.
    public func converged() -> Bool {
        for observer in 0..<options.members {
            guard let core = cores[observer] else { continue }
            for subject in 0..<options.members where subject != observer {
                let status = core.member(Self.id(subject))?.status
                if cores[subject] != nil {
                    guard status == .alive else { return false }
                } else if status == .alive || status == .suspect {
                    return false
                }
            }
        }
        return true
    }

    /// Whether every running member holds `subject` dead (or left).
    public func everyoneSeesDead(_ subject: Int) -> Bool {
        (0..<options.members).allSatisfy { observer in
            guard observer != subject, let core = cores[observer] else { return true }
            let status = core.member(Self.id(subject))?.status
            return status == .dead || status == .left
        }
    }

    /// Sightings of a member declared dead while it was running (false positives).
    public func falseDeaths(since: Duration, running: Set<Int>) -> [Sighting] {
        sightings.filter { $0.at >= since && $0.status == .dead && running.contains($0.subject) }
    }
}
