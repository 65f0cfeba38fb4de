import RaftCore

/// The safety properties of Raft (§3.2, Figure 3.2) and of the clients, checked as the
/// simulation runs.
final class InvariantChecker {
    /// Election safety: at most one leader per term.
    private var leaders: [Term: NodeID] = [:]
    /// Log matching: an (index, term) pair names one entry, and one predecessor term.
    private var entries: [LogIndex: [Term: (payload: UInt64, previousTerm: Term?)]] = [:]
    /// Terms of committed entries, as first seen committed anywhere.
    private var committed: [LogIndex: Term] = [:]
    /// State machine safety: what was applied at each index, and the chain after it.
    private var applied: [LogIndex: (payload: UInt64, chain: UInt64)] = [:]
    private(set) var acknowledgedIndexes: [UInt64: LogIndex] = [:]
    private(set) var maxAcknowledgedIndex: LogIndex = 0

    func checkElectionSafety(_ nodes: [SimulatedNode]) throws {
        for node in nodes {
            guard let core = node.core, core.role == .leader else { continue }
            if let other = leaders[core.term], other != core.id {
                throw SimulationFailure(description: "election safety: \(other) and \(core.id) both lead term \(core.term)")
            }
            leaders[core.term] = core.id
        }
    }

    func checkAppended(_ new: [Entry], log node: SimulatedLog) throws {
        var previousTerm = node.durableTerm(at: new[0].index - 1)
        for entry in new {
            let payload = StateMachine.hash(entry.payload)
            if let known = entries[entry.index]?[entry.term] {
                guard known.payload == payload else {
                    throw SimulationFailure(description: "log matching: \(node.id) holds a different entry at index \(entry.index) term \(entry.term)")
                }
                if let a = known.previousTerm, let b = previousTerm, a != b {
                    throw SimulationFailure(description: "log matching: entry \(entry.index)/\(entry.term) follows term \(b) on \(node.id) but term \(a) elsewhere")
                }
            } else {
                entries[entry.index, default: [:]][entry.term] = (payload, previousTerm)
            }
            previousTerm = entry.term
        }
    }

    func checkCommit(_ core: Raft, previous: LogIndex) throws {
        guard core.commitIndex >= previous else {
            throw SimulationFailure(description: "commit went back on \(core.id): \(previous) -> \(core.commitIndex)")
        }
        guard core.commitIndex > previous else { return }
        for index in (previous + 1)...core.commitIndex {
            guard let term = core.term(at: index) else { continue }
            if let known = committed[index], known != term {
                throw SimulationFailure(description: "commit safety: \(core.id) committed term \(term) at \(index), term \(known) was committed there before")
            }
            committed[index] = term
        }
    }

    func checkLeaderCompleteness(_ leader: Raft) throws {
        for (index, term) in committed where index > leader.snapshotIndex {
            guard let held = leader.term(at: index) else {
                throw SimulationFailure(description: "leader completeness: \(leader.id) leads term \(leader.term) without committed entry \(index) (its last index is \(leader.lastIndex))")
            }
            guard held == term else {
                throw SimulationFailure(description: "leader completeness: \(leader.id) holds term \(held) at committed index \(index) (committed term \(term))")
            }
        }
    }

    func checkApplied(_ entry: Entry, machine: StateMachine, node: NodeID) throws {
        let payload = StateMachine.hash(entry.payload)
        if let known = applied[entry.index] {
            guard known.payload == payload else {
                throw SimulationFailure(description: "state machine safety: \(node) applied a different command at index \(entry.index)")
            }
            guard known.chain == machine.chain else {
                throw SimulationFailure(description: "state machine safety: \(node) reached index \(entry.index) through a different history")
            }
        } else {
            applied[entry.index] = (payload, machine.chain)
        }
    }

    func checkInstalled(_ machine: StateMachine, at index: LogIndex, node: NodeID) throws {
        guard machine.applied == index else {
            throw SimulationFailure(description: "snapshot at \(index) installed on \(node) holds state through \(machine.applied)")
        }
        if let known = applied[index], known.chain != machine.chain {
            throw SimulationFailure(description: "state machine safety: snapshot at \(index) installed on \(node) differs from what was applied there")
        }
    }

    func acknowledged(_ id: UInt64, index: LogIndex) {
        acknowledgedIndexes[id] = index
        maxAcknowledgedIndex = max(maxAcknowledgedIndex, index)
    }

    func checkAcknowledgedApplied() throws {
        for (id, index) in acknowledgedIndexes {
            guard applied[index]?.payload == StateMachine.hash(.command(StateMachine.command(id))) else {
                throw SimulationFailure(description: "durability: acknowledged command \(id) at index \(index) is not what was applied there")
            }
        }
    }
}
