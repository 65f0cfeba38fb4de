/// What one apply transaction wrote that readers may hold rendered copies of.
///
/// `SQLiteStore` records every conversation it inserts or updates, every conversation a message
/// is added to, every contact it updates and every session it deletes. Rolled-back savepoints stay recorded: telling a
/// reader to drop a copy it could have kept is harmless; the opposite is a stale read.
public struct StateChanges: Sendable, Equatable {
    public var conversationIds: Set<String> = []
    public var contactIds: Set<String> = []
    /// Token hashes of sessions that ended (logout, eviction, password change, disabled).
    public var endedSessions: Set<String> = []
    /// A reply was written to the outbox or its attempt changed (the leader's dispatcher wakes).
    public var outbox = false
    /// Everything may have changed (a restored snapshot, for example).
    public var everything = false

    public init() {}

    public static let all: StateChanges = {
        var changes = StateChanges()
        changes.everything = true
        return changes
    }()

    public mutating func formUnion(_ other: StateChanges) {
        conversationIds.formUnion(other.conversationIds)
        contactIds.formUnion(other.contactIds)
        endedSessions.formUnion(other.endedSessions)
        outbox = outbox || other.outbox
        everything = everything || other.everything
    }

    public var isEmpty: Bool { !everything && !outbox && conversationIds.isEmpty && contactIds.isEmpty && endedSessions.isEmpty }
}
