import RaftCore
import XCTest

/// Cores wired together in memory, stepped by hand: messages are delivered when the test says,
/// links can be cut, and every Ready is carried out (entries persisted into `durable`).
struct TestCluster {
    var cores: [NodeID: Raft] = [:]
    var queue: [Message] = []
    var cut: Set<NodeID> = []
    var applied: [NodeID: [Entry]] = [:]
    var readStates: [NodeID: [ReadState]] = [:]
    var sent: [Message] = []

    init(_ ids: [NodeID], settings: RaftSettings = RaftSettings(), learners: [NodeID] = []) {
        let configuration = Configuration(voters: Set(ids), learners: Set(learners))
        for (number, id) in (ids + learners).enumerated() {
            add(Raft(id: id, settings: settings, seed: UInt64(number + 1), snapshot: Snapshot(index: 0, term: 0, configuration: configuration, data: [])))
        }
    }

    /// Adds a core past its restart hold-off (`electionTicks - 1` ticks, too few to campaign).
    mutating func add(_ core: Raft) {
        var core = core
        for _ in 0..<(core.settings.electionTicks - 1) {
            core.tick()
            core.advance(core.ready())
        }
        cores[core.id] = core
    }

    subscript(id: NodeID) -> Raft {
        get { cores[id]! }
        set { cores[id] = newValue }
    }


    /// Carries out `id`'s Ready: queue its messages, record what it applies and reads.
    mutating func flush(_ id: NodeID) {
        let ready = cores[id]!.ready()
        sent.append(contentsOf: ready.messages)
        queue.append(contentsOf: ready.messages)
        applied[id, default: []].append(contentsOf: ready.committed)
        readStates[id, default: []].append(contentsOf: ready.readStates)
        cores[id]!.advance(ready)
    }

    /// Delivers queued messages (and the messages they cause) until none are left; messages
    /// to or from a cut member are dropped. Returns how many were delivered.
    @discardableResult
    mutating func deliverAll(limit: Int = 100_000) -> Int {
        for id in cores.keys.sorted() { flush(id) }
        var delivered = 0
        while !queue.isEmpty, delivered < limit {
            let message = queue.removeFirst()
            guard !cut.contains(message.from), !cut.contains(message.to), cores[message.to] != nil else { continue }
            cores[message.to]!.step(message)
            flush(message.to)
            delivered += 1
        }
        return delivered
    }

    /// Delivers only queued messages that `accept` lets through (others stay queued).
    mutating func deliver(where accept: (Message) -> Bool) {
        for id in cores.keys.sorted() { flush(id) }
        var progress = true
        while progress {
            progress = false
            if let position = queue.firstIndex(where: accept) {
                let message = queue.remove(at: position)
                cores[message.to]!.step(message)
                flush(message.to)
                progress = true
            }
        }
    }

    mutating func tick(_ id: NodeID, times: Int = 1) {
        for _ in 0..<times {
            cores[id]!.tick()
            flush(id)
        }
    }

    /// Ticks everyone once and delivers, `times` times.
    mutating func run(ticks times: Int) {
        for _ in 0..<times {
            for id in cores.keys.sorted() { tick(id) }
            deliverAll()
        }
    }

    var leaders: [NodeID] { cores.values.filter { $0.role == .leader }.map(\.id).sorted() }

    /// Runs until exactly one leader exists; fails the test otherwise.
    @discardableResult
    mutating func electLeader(within ticks: Int = 200, file: StaticString = #filePath, line: UInt = #line) -> NodeID {
        for _ in 0..<ticks {
            run(ticks: 1)
            let current = leaders.filter { !cut.contains($0) }
            if current.count == 1, cores[current[0]]!.hasCommittedInTerm { return current[0] }
        }
        XCTFail("no single leader after \(ticks) ticks: leaders \(leaders), terms \(cores.mapValues(\.term))", file: file, line: line)
        return ""
    }

    /// Forces `id` to campaign now (its election timer expires).
    mutating func campaign(_ id: NodeID) {
        for _ in 0..<(2 * cores[id]!.settings.electionTicks) where cores[id]!.role == .follower {
            tick(id)
        }
    }
}
