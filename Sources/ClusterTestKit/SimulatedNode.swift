import RaftCore
import RaftWire
import Seeded
import Wire

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
