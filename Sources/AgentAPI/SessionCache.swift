import ContactCenter
import Synchronization

/// Recently authenticated sessions, so a busy agent's requests do not each read the session
/// and the agent from SQLite. A session that ends (logout, password change, disabled) is evicted
/// when this node commits its end; otherwise an entry lives `lifetime` (1 s), so a role change
/// takes effect here within that.
/// Bounded by `entriesMax` (over it, the cache starts empty again).
final class SessionCache: Sendable {
    static let entriesMax = 50_000
    static let lifetime: Duration = .seconds(1)

    private struct Entry {
        var agent: Agent
        var sessionExpiresAt: Timestamp
        var cachedAt: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])

    func agent(tokenHash: String, now: Timestamp) -> Agent? {
        let clock = ContinuousClock.now
        return entries.withLock { entries in
            guard let entry = entries[tokenHash] else { return nil }
            guard clock - entry.cachedAt < Self.lifetime, entry.sessionExpiresAt > now else {
                entries[tokenHash] = nil
                return nil
            }
            return entry.agent
        }
    }

    func store(tokenHash: String, agent: Agent, sessionExpiresAt: Timestamp) {
        let entry = Entry(agent: agent, sessionExpiresAt: sessionExpiresAt, cachedAt: ContinuousClock.now)
        entries.withLock { entries in
            if entries.count >= Self.entriesMax { entries.removeAll(keepingCapacity: true) }
            entries[tokenHash] = entry
        }
    }

    func evict(tokenHash: String) {
        _ = entries.withLock { $0.removeValue(forKey: tokenHash) }
    }

    /// Drops sessions that ended, as apply reports them at each commit on this node.
    func evict(tokenHashes: Set<String>) {
        guard !tokenHashes.isEmpty else { return }
        entries.withLock { entries in
            for hash in tokenHashes { entries[hash] = nil }
        }
    }
}

/// Inboxes as webhooks read them, for up to a second (`lifetime`), so a provider's burst does not
/// read the same row from SQLite for every message. A changed inbox (a rotated secret, a new
/// queue) takes effect on webhooks within that second; a missing one is not cached.
final class InboxCache: Sendable {
    static let lifetime: Duration = .seconds(1)
    static let entriesMax = 1024
    private let entries = Mutex<[String: (inbox: Inbox, until: ContinuousClock.Instant)]>([:])

    func inbox(_ id: String, now: ContinuousClock.Instant = .now) -> Inbox? {
        entries.withLock { entries in
            guard let entry = entries[id], entry.until > now else { return nil }
            return entry.inbox
        }
    }

    func store(_ inbox: Inbox, now: ContinuousClock.Instant = .now) {
        entries.withLock { entries in
            if entries.count >= Self.entriesMax { entries.removeAll(keepingCapacity: true) }
            entries[inbox.id] = (inbox, now + Self.lifetime)
        }
    }
}

/// One typing notice per agent and conversation per `interval` on this node: an agent's console
/// may say it types on every key, and each notice that passes costs a log entry.
final class TypingCoalescer: Sendable {
    static let interval: Duration = .seconds(2)
    static let entriesMax = 4096
    private let last = Mutex<[String: ContinuousClock.Instant]>([:])

    /// True when the notice should go out; false when one went out within `interval`.
    func admit(agent: String, conversation: String, now: ContinuousClock.Instant = .now) -> Bool {
        last.withLock { last in
            let key = agent + "/" + conversation
            if let previous = last[key], now - previous < Self.interval { return false }
            if last.count >= Self.entriesMax { last = last.filter { now - $0.value < Self.interval } }
            if last.count >= Self.entriesMax { return false }
            last[key] = now
            return true
        }
    }
}
