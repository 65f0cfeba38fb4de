import ContactCenter
import NIOCore
import Storage
import Synchronization

/// Rendered `GET /v1/conversations/{id}` bodies, kept until apply writes the conversation, one
/// of its messages or its contact. Agents re-read their conversations on every event; serving
/// those reads from memory skips a read transaction, three queries and the JSON rendering.
///
/// Staleness is impossible by construction, not by timing:
/// - `StateDatabase.apply` calls `invalidate` after its transaction commits and before the new
///   applied index is published, so a read whose barrier passed an index never finds a copy
///   older than that index (every copy the commit made stale is gone by then);
/// - a miss samples `epoch` before its read transaction begins and `store` keeps the copy only
///   if no invalidation ran since: a copy rendered from a snapshot older than some commit is
///   either refused here or was already inserted and is dropped by that commit's `invalidate`.
/// Bounded by `entriesMax` and `bytesMax`; when full it starts over (counted as an eviction).
final class ConversationViews: Sendable {
    struct View: Sendable {
        let body: ByteBuffer
        let version: Int64
        let status: ConversationStatus
        let assigneeId: String?
        let contactId: String
    }

    struct Stats: Sendable { var hits = 0, misses = 0, refused = 0, evictions = 0, entries = 0, bytes = 0 }

    static let entriesMax = 20_000
    static let bytesMax = 64 << 20
    /// Bigger bodies (long conversations) are rendered every time rather than crowd the cache.
    static let viewBytesMax = 256 << 10

    private struct State {
        var views: [String: View] = [:]
        /// contact id -> conversation ids cached with that contact embedded.
        var byContact: [String: Set<String>] = [:]
        var bytes = 0
        var epoch: UInt64 = 0
        var stats = Stats()
    }

    private let state = Mutex(State())

    /// The cached view and the epoch a miss must hand back to `store`.
    func lookup(_ id: String) -> (view: View?, epoch: UInt64) {
        state.withLock { state in
            let view = state.views[id]
            if view == nil { state.stats.misses += 1 } else { state.stats.hits += 1 }
            return (view, state.epoch)
        }
    }

    func store(_ id: String, _ view: View, epoch: UInt64) {
        let size = view.body.readableBytes + id.utf8.count
        guard size <= Self.viewBytesMax else { return }
        state.withLock { state in
            guard state.epoch == epoch else {
                state.stats.refused += 1
                return
            }
            if state.views.count >= Self.entriesMax || state.bytes + size > Self.bytesMax {
                state.views.removeAll(keepingCapacity: true)
                state.byContact.removeAll(keepingCapacity: true)
                state.bytes = 0
                state.stats.evictions += 1
            }
            if let old = state.views.updateValue(view, forKey: id) { state.bytes -= old.body.readableBytes + id.utf8.count }
            state.bytes += size
            state.byContact[view.contactId, default: []].insert(id)
        }
    }

    func invalidate(_ changes: StateChanges) {
        state.withLock { state in
            state.epoch &+= 1
            if changes.everything {
                state.views.removeAll()
                state.byContact.removeAll()
                state.bytes = 0
                return
            }
            for id in changes.conversationIds { Self.remove(id, from: &state) }
            for contactId in changes.contactIds {
                for id in state.byContact[contactId] ?? [] { Self.remove(id, from: &state) }
            }
        }
    }

    var stats: Stats {
        state.withLock { state in
            var stats = state.stats
            stats.entries = state.views.count
            stats.bytes = state.bytes
            return stats
        }
    }

    private static func remove(_ id: String, from state: inout State) {
        guard let view = state.views.removeValue(forKey: id) else { return }
        state.bytes -= view.body.readableBytes + id.utf8.count
        if var ids = state.byContact[view.contactId] {
            ids.remove(id)
            state.byContact[view.contactId] = ids.isEmpty ? nil : ids
        }
    }
}
