/// The log as one core sees it: a snapshot base, then entries in memory. Entries past
/// `stableIndex` are not on disk yet; they go out in the next `Ready` and become stable on
/// `advance`.
struct RaftLog: Sendable {
    /// Everything through `snapshot.index` is compacted into the snapshot.
    private(set) var snapshot: Snapshot
    private(set) var entries: [Entry] = []
    /// Highest index known to be on disk.
    private(set) var stableIndex: LogIndex
    /// Highest index known committed (Raft §3.5). Never goes back.
    private(set) var commitIndex: LogIndex
    /// Highest index handed to the application to apply.
    private(set) var appliedIndex: LogIndex
    /// Configuration entries still in `entries`, in order (the latest one is in force).
    private(set) var configurationIndexes: [LogIndex] = []

    init(snapshot: Snapshot, entries: [Entry], commitIndex: LogIndex, appliedIndex: LogIndex) {
        self.snapshot = snapshot
        self.entries = entries
        stableIndex = entries.last?.index ?? snapshot.index
        self.commitIndex = max(commitIndex, snapshot.index)
        self.appliedIndex = max(appliedIndex, snapshot.index)
        for (offset, entry) in entries.enumerated() {
            precondition(entry.index == snapshot.index + 1 + UInt64(offset), "restored log is not contiguous at \(entry.index)")
            if case .configuration = entry.payload { configurationIndexes.append(entry.index) }
        }
        precondition(self.commitIndex <= lastIndex, "restored commit \(commitIndex) is past the last index \(lastIndex)")
        precondition(self.appliedIndex <= self.commitIndex, "restored applied \(appliedIndex) is past commit \(self.commitIndex)")
    }

    var firstIndex: LogIndex { snapshot.index + 1 }
    var lastIndex: LogIndex { entries.last?.index ?? snapshot.index }
    var lastTerm: Term { entries.last?.term ?? snapshot.term }

    /// The term of the entry at `index`, or nil when it is compacted (below the snapshot) or absent.
    func term(at index: LogIndex) -> Term? {
        if index == snapshot.index { return snapshot.term }
        guard index > snapshot.index, index <= lastIndex else { return nil }
        return entries[Int(index - snapshot.index - 1)].term
    }

    func entry(at index: LogIndex) -> Entry {
        precondition(index > snapshot.index && index <= lastIndex, "entry \(index) is outside \(firstIndex)...\(lastIndex)")
        return entries[Int(index - snapshot.index - 1)]
    }

    func matches(index: LogIndex, term: Term) -> Bool { self.term(at: index) == term }

    /// Raft §3.6.1: a candidate's log is at least as up to date as ours.
    func isUpToDate(lastIndex otherIndex: LogIndex, lastTerm otherTerm: Term) -> Bool {
        otherTerm > lastTerm || (otherTerm == lastTerm && otherIndex >= lastIndex)
    }

    /// The configuration in force: the latest in the log, committed or not (Raft §4.1).
    var configuration: Configuration {
        if let index = configurationIndexes.last, case .configuration(let configuration) = entry(at: index).payload {
            return configuration
        }
        return snapshot.configuration
    }

    /// The configuration in force at `index` (for a snapshot through it).
    func configuration(at index: LogIndex) -> Configuration {
        if let last = configurationIndexes.last(where: { $0 <= index }), case .configuration(let configuration) = entry(at: last).payload {
            return configuration
        }
        return snapshot.configuration
    }

    /// The index of the latest configuration entry (the snapshot's index when none is in memory).
    var configurationIndex: LogIndex { configurationIndexes.last ?? snapshot.index }

    /// Largest index <= `index` whose term is <= `term` (etcd's findConflictByTerm): where a
    /// leader and a follower can next agree, skipping whole terms.
    func lastIndex(atOrBefore index: LogIndex, termAtMost term: Term) -> LogIndex {
        var candidate = min(index, lastIndex)
        while candidate > snapshot.index {
            if let found = self.term(at: candidate), found <= term { return candidate }
            candidate -= 1
        }
        return candidate
    }

    /// Leader append: `entry` must follow the last index.
    mutating func append(_ entry: Entry) {
        precondition(entry.index == lastIndex + 1, "append at \(entry.index) after last index \(lastIndex)")
        precondition(entry.term >= lastTerm, "append term \(entry.term) below last term \(lastTerm)")
        entries.append(entry)
        if case .configuration = entry.payload { configurationIndexes.append(entry.index) }
    }

    /// Follower append after the consistency check passed at `prevIndex`: skips entries it
    /// already has, truncates at the first conflict (never below commit) and appends the rest.
    /// Returns the index of the last entry it now shares with the leader.
    mutating func merge(after prevIndex: LogIndex, _ incoming: [Entry]) -> LogIndex {
        var position = 0
        while position < incoming.count {
            let entry = incoming[position]
            if entry.index <= snapshot.index { position += 1; continue }
            guard let existing = term(at: entry.index) else { break }
            if existing != entry.term {
                precondition(entry.index > commitIndex, "conflict at \(entry.index) at or below commit \(commitIndex)")
                truncate(after: entry.index - 1)
                break
            }
            position += 1
        }
        for entry in incoming[position...] { append(entry) }
        return prevIndex + UInt64(incoming.count)
    }

    /// Drops entries after `index` (uncommitted conflicts only).
    private mutating func truncate(after index: LogIndex) {
        precondition(index >= commitIndex, "truncating committed entries: after \(index), commit \(commitIndex)")
        entries.removeLast(Int(lastIndex - index))
        while let last = configurationIndexes.last, last > index { configurationIndexes.removeLast() }
        stableIndex = min(stableIndex, index)
    }

    mutating func commit(to index: LogIndex) {
        guard index > commitIndex else { return }
        precondition(index <= lastIndex, "commit \(index) past last index \(lastIndex)")
        commitIndex = index
    }

    /// Entries the application may apply now, marked as handed out.
    mutating func takeCommitted(limit: Int) -> [Entry] {
        guard appliedIndex < commitIndex else { return [] }
        let from = appliedIndex + 1
        let through = min(commitIndex, from + UInt64(limit) - 1)
        let slice = Array(entries[Int(from - snapshot.index - 1)...Int(through - snapshot.index - 1)])
        appliedIndex = through
        return slice
    }

    /// Entries not yet on disk.
    var unstableEntries: [Entry] {
        guard stableIndex < lastIndex else { return [] }
        return Array(entries[Int(stableIndex - snapshot.index)...])
    }

    mutating func markStable(through index: LogIndex) {
        // A conflict may have truncated (and rewritten) entries since they were handed out.
        stableIndex = max(stableIndex, min(index, lastIndex))
    }

    /// Slice of entries starting at `from`, within `bytesMax` (always at least one entry).
    func entries(from: LogIndex, bytesMax: Int) -> [Entry] {
        guard from <= lastIndex else { return [] }
        precondition(from > snapshot.index, "entries from \(from) are compacted (snapshot at \(snapshot.index))")
        var bytes = 0
        var end = Int(from - snapshot.index - 1)
        while end < entries.count {
            bytes += entries[end].payload.byteCount + 24
            if bytes > bytesMax, end > Int(from - snapshot.index - 1) { break }
            end += 1
        }
        return Array(entries[Int(from - snapshot.index - 1)..<end])
    }

    /// The application took a snapshot through `snapshot.index` (<= applied): drop entries
    /// through it.
    mutating func compact(to newSnapshot: Snapshot) {
        precondition(newSnapshot.index <= appliedIndex, "snapshot at \(newSnapshot.index) beyond applied \(appliedIndex)")
        precondition(newSnapshot.index <= stableIndex, "snapshot at \(newSnapshot.index) beyond stable \(stableIndex)")
        guard newSnapshot.index > snapshot.index else { return }
        precondition(term(at: newSnapshot.index) == newSnapshot.term, "snapshot term \(newSnapshot.term) differs from the log's at \(newSnapshot.index)")
        entries.removeFirst(Int(newSnapshot.index - snapshot.index))
        configurationIndexes.removeAll { $0 <= newSnapshot.index }
        snapshot = newSnapshot
    }

    /// A follower installs a leader's snapshot: the log restarts after it unless it already
    /// holds the snapshot's last entry, in which case the entries after it are kept.
    mutating func restore(_ newSnapshot: Snapshot) {
        precondition(newSnapshot.index > commitIndex, "restore of \(newSnapshot.index) at or below commit \(commitIndex)")
        if matches(index: newSnapshot.index, term: newSnapshot.term) {
            entries.removeFirst(Int(newSnapshot.index - snapshot.index))
        } else {
            entries.removeAll()
        }
        configurationIndexes = entries.compactMap { if case .configuration = $0.payload { $0.index } else { nil } }
        snapshot = newSnapshot
        commitIndex = newSnapshot.index
        appliedIndex = newSnapshot.index
        // The snapshot goes to disk in the same Ready; kept entries are handed out again
        // (rewriting an entry with itself is harmless).
        stableIndex = newSnapshot.index
    }
}
