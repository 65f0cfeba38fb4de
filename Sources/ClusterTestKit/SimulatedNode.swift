import RaftCore

/// One member in the simulator: its core while it runs, and what survives a crash (the hard
/// state, the latest snapshot and the log after it). The state machine is lost on a crash and
/// rebuilt from the snapshot, like a node whose database is restored from its last snapshot.
struct SimulatedNode {
    let id: NodeID
    var core: Raft?
    var hardState = HardState()
    var snapshot: Snapshot
    var entries: [Entry] = []
    var machine = StateMachine()
    var commitSeen: LogIndex = 0
    /// The last term this member was seen leading (to count elections once).
    var ledTerm: Term?

    init(id: NodeID, bootstrap: Snapshot) {
        self.id = id
        snapshot = bootstrap
    }

    var stableIndex: LogIndex { entries.last?.index ?? snapshot.index }

    func durableTerm(at index: LogIndex) -> Term? {
        if index == snapshot.index { return snapshot.term }
        guard index > snapshot.index, index <= stableIndex else { return nil }
        return entries[Int(index - snapshot.index - 1)].term
    }

    /// Writes entries; each replaces whatever the log holds at its index and after.
    mutating func persist(entries new: [Entry]) {
        guard let first = new.first else { return }
        precondition(first.index > snapshot.index, "\(id) persists entry \(first.index) inside its snapshot (\(snapshot.index))")
        precondition(first.index <= stableIndex + 1, "\(id) persists entry \(first.index) after a gap (last \(stableIndex))")
        entries.removeLast(Int(stableIndex - (first.index - 1)))
        entries.append(contentsOf: new)
    }

    /// Keeps the log after the snapshot only if it holds the snapshot's last entry.
    mutating func persist(snapshot new: Snapshot) {
        guard new.index > snapshot.index else { return }
        if durableTerm(at: new.index) == new.term {
            entries.removeFirst(Int(new.index - snapshot.index))
        } else {
            entries.removeAll()
        }
        snapshot = new
    }

    mutating func crash() {
        core = nil
    }
}

/// The simulated application: a hash chain over every applied entry, so two members that
/// applied different entries anywhere end with different chains.
struct StateMachine: Equatable {
    var applied: LogIndex = 0
    var chain: UInt64 = 0

    init() {}

    init(decoding bytes: [UInt8]) {
        precondition(bytes.count == 16, "state machine snapshot of \(bytes.count) bytes")
        applied = bytes[0..<8].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        chain = bytes[8..<16].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    var encoded: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: applied >> (8 * UInt64($0))) } + (0..<8).map { UInt8(truncatingIfNeeded: chain >> (8 * UInt64($0))) }
    }

    mutating func apply(_ entry: Entry) {
        applied = entry.index
        chain = Self.mix(chain ^ Self.hash(entry.payload) ^ entry.index)
    }

    static func hash(_ payload: EntryPayload) -> UInt64 {
        switch payload {
        case .noop: return 0x6E6F_6F70
        case .command(let bytes): return bytes.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
        case .configuration(let configuration):
            let text = "v:" + configuration.voters.sorted().joined(separator: ",") + " l:" + configuration.learners.sorted().joined(separator: ",")
            return text.utf8.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
        }
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A client command: its id, padded to a size that varies with the id (flow control sees
    /// different sizes).
    static func command(_ id: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: id >> (8 * UInt64($0))) } + Array(repeating: 0xAB, count: Int(id % 40))
    }

    static func commandId(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count >= 8 else { return nil }
        return bytes[0..<8].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}
