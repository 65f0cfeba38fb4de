import ArgumentParser
import ClusterTestKit
import Foundation
import RaftCore
import SWIMCore
import Synchronization

/// `switchboard simulate`: seeded Raft cluster simulations, as CI runs them.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run seeded Raft cluster simulations with faults and check every invariant.",
        discussion: """
            Each seed runs 1 to 7 Raft cores on a virtual clock over a simulated network: a fault \
            phase (crashes and restarts, partitions, clogged links, loss, duplication, reordering, \
            leadership transfers, a member joining, snapshots), then a calm phase in which the \
            cluster must elect a leader and commit every proposal. Election safety, log matching, \
            leader completeness, commit monotonicity, state machine safety, durability of \
            acknowledged writes and linearizable reads are checked after every step.

              switchboard simulate --seeds 2000 --nodes 5   # seeds 1...2000
              switchboard simulate --seed 1234 --nodes 5    # replay one seed, traced
              switchboard simulate --throughput             # the core's entries/s, no I/O
              switchboard simulate --gossip                 # SWIM traffic, 5/20/50 members

            The last line is `seeds=N failures=F`; the exit status is 1 when F > 0.
            """)

    @Option(help: "How many seeds to run, starting at --first-seed.")
    var seeds: Int = 100

    @Option(help: "First seed of the range.")
    var firstSeed: UInt64 = 1

    @Option(help: "Members per simulated cluster (1 to 7).")
    var nodes: Int = 5

    @Option(help: "Replay this one seed and print its trace.")
    var seed: UInt64?

    @Option(help: "Seeds run at once (default: one per core).")
    var parallelism: Int = ProcessInfo.processInfo.activeProcessorCount

    @Flag(help: "With --seed: trace every delivered message too.")
    var traceMessages = false

    @Flag(help: "Measure the core's throughput (3 members, no I/O) instead.")
    var throughput = false

    @Flag(help: "Simulate SWIM instead: packets and bytes per member per second, and crash detection time, per cluster size.")
    var gossip = false

    @Option(help: "With --gossip: cluster sizes, comma-separated.")
    var gossipMembers = "5,20,50"

    @Option(help: "With --gossip: packet loss in percent.")
    var loss: Double = 0

    func validate() throws {
        guard (1...7).contains(nodes) else { throw ValidationError("--nodes must be 1...7, got \(nodes)") }
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
        guard parallelism >= 1 else { throw ValidationError("--parallelism must be at least 1") }
    }

    func run() async throws {
        if throughput { return measureThroughput() }
        if gossip { return try measureGossip() }
        let settings = SimulationSettings(nodes: nodes)
        SeedsInFlight.installCrashReport()
        if let seed {
            SeedsInFlight.started(seed)
            let result = SimulationRunner.replay(seed: seed, settings: settings, messages: traceMessages)
            for line in result.trace { print(line) }
            print("seed \(seed): \(result.failure ?? "ok") (\(result.ticks) ticks, \(result.elections) elections, \(result.acknowledgedWrites) writes acknowledged, \(result.servedReads) reads served, \(result.crashes) crashes, \(result.snapshotsSent) snapshots sent)")
            print("seeds=1 failures=\(result.failure == nil ? 0 : 1)")
            if result.failure != nil { throw ExitCode(1) }
            return
        }
        let started = Date()
        let range = (0..<UInt64(seeds)).map { firstSeed + $0 }
        let done = Mutex(0)
        let total = seeds
        let summary = await SimulationRunner.run(seeds: range, settings: settings, parallelism: parallelism, started: SeedsInFlight.started) { result in
            SeedsInFlight.finished(result.seed)
            if let failure = result.failure {
                print("FAIL seed=\(result.seed) nodes=\(settings.nodes): \(failure)")
                print("  replay: switchboard simulate --seed \(result.seed) --nodes \(settings.nodes)")
            }
            let count = done.withLock { $0 += 1; return $0 }
            if count % 1000 == 0 || count == total {
                let elapsed = Date().timeIntervalSince(started)
                FileHandle.standardError.write(Data("simulate: \(count)/\(total) seeds, \(String(format: "%.0f", Double(count) / elapsed)) seeds/s\n".utf8))
            }
        }
        let elapsed = Date().timeIntervalSince(started)
        print("nodes=\(nodes) seconds=\(String(format: "%.1f", elapsed)) seeds/s=\(String(format: "%.0f", Double(summary.seeds) / elapsed)) acknowledgedWrites=\(summary.acknowledgedWrites) servedReads=\(summary.servedReads) elections=\(summary.elections) crashes=\(summary.crashes) snapshotsSent=\(summary.snapshotsSent) messages=\(summary.messages)")
        print("seeds=\(summary.seeds) failures=\(summary.failures.count)")
        if !summary.failures.isEmpty { throw ExitCode(1) }
    }

    func measureThroughput() {
        _ = ThroughputBenchmark.run(entries: 50_000)  // warm up
        var rates: [Double] = []
        for _ in 0..<3 {
            let started = Date()
            let (entries, messages) = ThroughputBenchmark.run(entries: 1_000_000)
            let seconds = Date().timeIntervalSince(started)
            rates.append(Double(entries) / seconds)
            print("throughput: \(entries) entries committed and applied on 3 members in \(String(format: "%.2f", seconds)) s (\(messages) messages): \(Int(Double(entries) / seconds)) entries/s")
        }
        print("throughput median: \(Int(rates.sorted()[1])) entries/s")
    }
}

/// Seeds being simulated, so a crash (a failed precondition in the core) still names its seed.
enum SeedsInFlight {
    static let slotsMax = 16
    nonisolated(unsafe) static let slots = UnsafeMutablePointer<UInt64>.allocate(capacity: slotsMax)
    nonisolated(unsafe) static let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1024)

    static func started(_ seed: UInt64) {
        for slot in 0..<slotsMax where slots[slot] == 0 {
            slots[slot] = seed + 1
            return
        }
    }

    static func finished(_ seed: UInt64) {
        for slot in 0..<slotsMax where slots[slot] == seed + 1 { slots[slot] = 0 }
    }

    static func installCrashReport() {
        slots.initialize(repeating: 0, count: slotsMax)
        for signalNumber in [SIGILL, SIGTRAP, SIGABRT, SIGSEGV] {
            signal(signalNumber) { received in
                // Async-signal-safe: format into a preallocated buffer and write(2) it.
                var length = 0
                func put(_ byte: UInt8) { if length < 1000 { SeedsInFlight.buffer[length] = byte; length += 1 } }
                for byte in "simulate: crashed while running seed(s):".utf8 { put(byte) }
                for slot in 0..<SeedsInFlight.slotsMax where SeedsInFlight.slots[slot] != 0 {
                    put(32)
                    var value = SeedsInFlight.slots[slot] - 1
                    var digits: [UInt8] = []
                    digits.reserveCapacity(20)
                    repeat { digits.append(UInt8(48 + value % 10)); value /= 10 } while value > 0
                    for digit in digits.reversed() { put(digit) }
                }
                put(10)
                _ = write(2, SeedsInFlight.buffer, length)
                signal(received, SIG_DFL)
                raise(received)
            }
        }
    }
}

extension SimulateCommand {
    /// Steady-state SWIM traffic per member (60 simulated seconds after joining) and the time until
    /// every member holds a crashed one dead, for each cluster size.
    func measureGossip() throws {
        let sizes = gossipMembers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ (2...500).contains($0) }) else { throw ValidationError("--gossip-members must list sizes in 2...500") }
        guard (0..<100).contains(loss) else { throw ValidationError("--loss must be in 0..<100 percent") }
        print("members  packets/member/s  bytes/member/s  crash detected everywhere after (seed \(firstSeed), \(loss) % loss)")
        for members in sizes {
            var options = GossipSimulation.Options(members: members, seed: firstSeed)
            options.loss = loss / 100
            var simulation = try GossipSimulation(options)
            guard try simulation.run(until: .seconds(60), { $0.converged() }) else { throw ValidationError("\(members) members did not converge within 60 s") }
            try simulation.run(for: .seconds(5))
            let before = simulation.traffic
            let seconds = 60.0
            try simulation.run(for: .seconds(seconds))
            let packets = zip(simulation.traffic, before).map { $0.packets - $1.packets }.reduce(0, +)
            let bytes = zip(simulation.traffic, before).map { $0.bytes - $1.bytes }.reduce(0, +)
            simulation.crash(members - 1)
            let crashedAt = simulation.now
            let detected = try simulation.run(until: .seconds(30)) { $0.everyoneSeesDead(members - 1) }
            let detection = detected ? "\(Int((simulation.now - crashedAt) / .milliseconds(1))) ms" : "not within 30 s"
            let rates = String(format: "%7d  %16.1f  %14.0f  ", members, Double(packets) / Double(members) / seconds, Double(bytes) / Double(members) / seconds)
            print(rates + detection)
        }
    }
}
