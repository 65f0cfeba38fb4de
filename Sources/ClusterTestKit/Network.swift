import RaftCore
import Seeded

/// The simulated network between members: per-seed loss, duplication and delay (delays
/// reorder), partitions that drop, and clogged links that hold messages until released.
struct SimulatedNetwork {
    var lossPercent: UInt64
    var duplicatePercent: UInt64
    var delayTicksMax: UInt64
    /// Messages by the tick they arrive at.
    private(set) var inFlight: [UInt64: [Message]] = [:]
    /// Links that drop everything, as (from, to) member numbers.
    var cut: Set<Pair> = []
    /// Links that hold everything until released.
    var clogged: Set<Pair> = []
    private var held: [Pair: [Message]] = [:]
    private(set) var sent = 0
    private(set) var dropped = 0

    struct Pair: Hashable { var from: Int; var to: Int }

    init(lossPercent: UInt64, duplicatePercent: UInt64, delayTicksMax: UInt64) {
        self.lossPercent = lossPercent
        self.duplicatePercent = duplicatePercent
        self.delayTicksMax = max(1, delayTicksMax)
    }

    mutating func send(_ message: Message, from: Int, to: Int, now: UInt64, random: inout SplitMix64) {
        sent += 1
        let pair = Pair(from: from, to: to)
        if cut.contains(pair) || random.next() % 100 < lossPercent {
            dropped += 1
            return
        }
        if clogged.contains(pair) {
            held[pair, default: []].append(message)
            return
        }
        schedule(message, now: now, random: &random)
        if random.next() % 100 < duplicatePercent { schedule(message, now: now, random: &random) }
    }

    private mutating func schedule(_ message: Message, now: UInt64, random: inout SplitMix64) {
        let at = now + 1 + random.next() % delayTicksMax
        inFlight[at, default: []].append(message)
    }

    /// Messages arriving at `now`, in a seeded random order.
    mutating func arrivals(at now: UInt64, random: inout SplitMix64) -> [Message] {
        guard var due = inFlight.removeValue(forKey: now) else { return [] }
        due.shuffle(using: &random)
        return due
    }

    mutating func unclog(_ pair: Pair, now: UInt64, random: inout SplitMix64) {
        clogged.remove(pair)
        for message in held.removeValue(forKey: pair) ?? [] { schedule(message, now: now, random: &random) }
    }

    mutating func heal(now: UInt64, random: inout SplitMix64) {
        cut.removeAll()
        for pair in clogged { unclog(pair, now: now, random: &random) }
    }
}
