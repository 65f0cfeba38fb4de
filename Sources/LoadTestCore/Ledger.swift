/// What the run checks about the contact center's promises, fed by what the agents and
/// customers saw. Pure: the runner feeds it, the tests drive it directly.
public struct Ledger: Sendable {
    /// Conversation id -> the agent that holds it (as its events said).
    private var holder: [String: String] = [:]
    /// Agent id -> conversations it holds.
    private var held: [String: Set<String>] = [:]
    private var capacity: [String: Int] = [:]
    public private(set) var doubleAssignments = 0
    public private(set) var capacityViolations = 0

    public init() {}

    public mutating func agent(_ id: String, capacity: Int) {
        self.capacity[id] = capacity
    }

    /// `conversation.assigned` reached `agent`. Another agent still holding it is a double
    /// assignment; holding more than the capacity is a capacity violation.
    public mutating func assigned(_ conversation: String, to agent: String) {
        if let other = holder[conversation], other != agent, held[other]?.contains(conversation) == true { doubleAssignments += 1 }
        holder[conversation] = agent
        held[agent, default: []].insert(conversation)
        if let limit = capacity[agent], held[agent]!.count > limit { capacityViolations += 1 }
    }

    /// The agent resolved the conversation, or its events said it moved away.
    public mutating func released(_ conversation: String, by agent: String) {
        held[agent]?.remove(conversation)
        if holder[conversation] == agent { holder[conversation] = nil }
    }

    public func holds(_ agent: String) -> Int { held[agent]?.count ?? 0 }

    /// Every acknowledged message must be on a node exactly once: `copies` maps a message id to
    /// how many times one node's copy of its conversation holds it.
    public static func check(acknowledged: some Sequence<String>, copies: [String: Int]) -> (lost: Int, duplicated: Int) {
        let (lost, duplicated) = misses(acknowledged: acknowledged, copies: copies)
        return (lost.count, duplicated.count)
    }

    /// The acknowledged message ids missing from one node's copies, and those it holds twice.
    public static func misses(acknowledged: some Sequence<String>, copies: [String: Int]) -> (lost: [String], duplicated: [String]) {
        var lost: [String] = []
        var duplicated: [String] = []
        for id in acknowledged {
            switch copies[id] ?? 0 {
            case 0: lost.append(id)
            case 1: break
            default: duplicated.append(id)
            }
        }
        return (lost, duplicated)
    }
}

/// One agent's event stream across its reconnects: every cursor must sort after the one before
/// (the stream resumes with `since`), and a `reset` means events were skipped.
public struct EventContinuity: Sendable {
    private var last: [Int]?
    public private(set) var gaps = 0

    public init() {}

    public var lastCursor: String? { last.map { $0.map(String.init).joined(separator: "-") } }

    /// A frame's cursor (`index-seq`); a repeated or earlier one counts.
    public mutating func see(cursor: String) {
        let key = cursor.split(separator: "-").compactMap { Int($0) }
        guard key.count == 2 else {
            gaps += 1
            return
        }
        if let last, !last.lexicographicallyPrecedes(key) { gaps += 1 }
        last = key
    }

    public mutating func reset() { gaps += 1 }
}
