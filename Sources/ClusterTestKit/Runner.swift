import RaftCore

/// Runs many seeds, on every core, and reports failures by seed.
public enum SimulationRunner {
    public struct Summary: Sendable {
        public var seeds = 0
        public var failures: [SimulationResult] = []
        public var acknowledgedWrites = 0
        public var servedReads = 0
        public var elections = 0
        public var crashes = 0
        public var snapshotsSent = 0
        public var messages = 0
    }

    /// Runs `seeds` (in parallel batches), calling `progress` after each finished seed.
    public static func run(
        seeds: [UInt64], settings: SimulationSettings, parallelism: Int,
        started: @escaping @Sendable (UInt64) -> Void = { _ in },
        progress: @Sendable (SimulationResult) -> Void = { _ in }
    ) async -> Summary {
        var summary = Summary()
        await withTaskGroup(of: SimulationResult.self) { group in
            var iterator = seeds.makeIterator()
            func add() -> Bool {
                guard let seed = iterator.next() else { return false }
                group.addTask {
                    started(seed)
                    var simulation = Simulation(seed: seed, settings: settings)
                    return simulation.run()
                }
                return true
            }
            for _ in 0..<max(1, parallelism) where !add() { break }
            while let result = await group.next() {
                summary.seeds += 1
                summary.acknowledgedWrites += result.acknowledgedWrites
                summary.servedReads += result.servedReads
                summary.elections += result.elections
                summary.crashes += result.crashes
                summary.snapshotsSent += result.snapshotsSent
                summary.messages += result.messagesSent
                if result.failure != nil { summary.failures.append(result) }
                progress(result)
                _ = add()
            }
        }
        summary.failures.sort { $0.seed < $1.seed }
        return summary
    }

    /// Replays one seed with its trace.
    public static func replay(seed: UInt64, settings: SimulationSettings, messages: Bool = false) -> SimulationResult {
        var simulation = Simulation(seed: seed, settings: settings, recordTrace: true)
        simulation.traceMessages = messages
        return simulation.run()
    }
}

/// The core's throughput with no I/O: a 3-member cluster exchanging messages in memory,
/// proposals in batches; returns entries committed on the leader and applied on every member.
public enum ThroughputBenchmark {
    public static func run(entries total: Int, batch: Int = 1024, payloadBytes: Int = 64) -> (entries: Int, messages: Int) {
        let ids = ["n1", "n2", "n3"]
        var settings = RaftSettings()
        settings.inflightAppendsMax = 256
        var cores = ids.enumerated().map { number, id in
            Raft(id: id, settings: settings, seed: UInt64(number + 1), snapshot: Snapshot(index: 0, term: 0, configuration: Configuration(voters: Set(ids)), data: []))
        }
        let position = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        var queue: [Message] = []
        var applied = [0, 0, 0]
        var messages = 0
        func pump(_ number: Int, _ cores: inout [Raft]) {
            let ready = cores[number].ready()
            queue.append(contentsOf: ready.messages)
            applied[number] += ready.committed.count
            cores[number].advance(ready)
        }
        // Elect a leader (n1: ticking alone, its timer expires first once the others' restart
        // hold-off has passed).
        for _ in 0..<settings.electionTicks { for number in 1..<3 { cores[number].tick(); pump(number, &cores) } }
        while cores[0].role != .leader {
            cores[0].tick()
            pump(0, &cores)
            while !queue.isEmpty {
                let message = queue.removeFirst()
                let to = position[message.to]!
                cores[to].step(message)
                pump(to, &cores)
            }
        }
        let payload = [UInt8](repeating: 7, count: payloadBytes)
        var proposed = 0
        let target = applied[0] + total
        var head = 0
        while applied.min()! < target {
            if proposed < total {
                for _ in 0..<min(batch, total - proposed) { _ = try! cores[0].propose(payload) }
                proposed += min(batch, total - proposed)
            }
            pump(0, &cores)
            while head < queue.count {
                let message = queue[head]
                head += 1
                messages += 1
                let to = position[message.to]!
                cores[to].step(message)
                pump(to, &cores)
            }
            queue.removeAll(keepingCapacity: true)
            head = 0
            if proposed >= total, applied.min()! < target {
                for number in 0..<3 { cores[number].tick(); pump(number, &cores) }
            }
        }
        return (total, messages)
    }
}
