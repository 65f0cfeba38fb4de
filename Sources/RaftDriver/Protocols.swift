import RaftCore

/// The durable Raft log: `raft.log`, the hard state and the snapshot metadata on a node; an
/// in-memory "disk" that survives simulated crashes in the simulator.
public protocol ReplicaLogStore: AnyObject {
    /// Makes `ready`'s snapshot, entries and hard state durable (one fsync) before returning.
    func persist(_ ready: Ready) throws
    /// Saves a snapshot the application took and drops the entries it covers.
    func save(snapshot: Snapshot) throws
}

/// The replicated application. Entries are executed in an open transaction and made durable
/// and visible to readers by `commitExecuted`, so that several batches share one commit.
public protocol ReplicaStateMachine: AnyObject {
    /// What executing one entry did (its events, its answer).
    associatedtype Outcome
    /// Executes committed entries, contiguous and in order, after everything executed before,
    /// in the open transaction. Nothing is durable or visible until `commitExecuted`.
    func execute(_ entries: [Entry]) throws -> [Outcome]
    /// Commits the open transaction: what was executed becomes durable and visible to readers.
    func commitExecuted() throws
    /// Replaces the whole state with a snapshot a leader sent (durable when it returns).
    func installSnapshot(_ snapshot: Snapshot) throws
    /// The part of an outcome worth keeping for a waiter that asks after it was answered
    /// (`ReplicaDriver.recentOutcomesMax` are kept): drop what is big and already delivered.
    func remembered(_ outcome: Outcome) -> Outcome
}

/// Carries messages to other members (best effort: Raft tolerates loss, duplication and
/// reordering). It must not call back into the driver.
public protocol ReplicaTransport: AnyObject {
    func send(_ message: Message)
}

/// A monotonic clock: `now` never goes back, whatever the wall clock does. The origin is the
/// caller's (the node's start; tick zero in the simulator).
public protocol ReplicaClock: AnyObject {
    var now: Duration { get }
}

/// Who waits on the replica: the node's requests, or the simulator's clients. The driver calls
/// these on its own thread, in the order documented on `ReplicaDriver`; they must not call back
/// into the driver.
public protocol ReplicaClients: AnyObject {
    associatedtype Outcome
    /// Stands for one waiting proposal or outcome request (the node: its completion).
    associatedtype WaitToken
    /// Stands for one waiting linearizable read.
    associatedtype ReadToken
    /// Entries through `index` are committed to the state machine and visible to readers;
    /// `outcomes` are theirs, in log order (empty after a snapshot was installed).
    func committed(through index: LogIndex, outcomes: [Outcome])
    func answer(_ token: WaitToken, _ result: Result<Outcome, ReplicationError>)
    func answer(read token: ReadToken, _ result: Result<Void, ReplicationError>)
}
