import Synchronization

/// The upkeep of every open events socket, from one task: a ping every `pingEvery` (the node
/// answers it, so a live socket is never silent), a socket silent for `silentAfterMillis` closed
/// (a half-closed connection stays open otherwise; closing it makes its agent reconnect), and
/// every socket closed when the run ends.
///
/// One timer for all sockets: a task per socket waking each second was 9,000 wake-ups a second
/// at 9,000 agents, timers the dispatch heap re-sorted each time, CPU taken from the cluster
/// measured on the same machine.
final class SocketKeeper: Sendable {
    struct Entry: Sendable {
        var socket: EventsSocket
        var state: SocketState
        /// Milliseconds into the run when this socket's next ping is due.
        var pingDueMillis: Int
    }

    static let pingEvery = 15_000
    static let tick = Duration.seconds(1)

    private let entries = Mutex<[Int: Entry]>([:])
    /// Set once the run is over: a socket opened after that is not taken (its caller closes it).
    private let over = Mutex(false)
    private let nextId = Atomic<Int>(0)
    let silentAfterMillis: Int

    init(silentAfterMillis: Int) {
        self.silentAfterMillis = silentAfterMillis
    }

    /// Takes `socket` into care until `remove`; its first ping is due between half an interval
    /// and one and a half after `nowMillis`, spread by the socket's id so pings do not come in
    /// waves. Nil once the run is over: the caller closes the socket itself.
    func add(_ socket: EventsSocket, state: SocketState, nowMillis: Int) -> Int? {
        let id = nextId.add(1, ordering: .relaxed).newValue
        let entry = Entry(socket: socket, state: state, pingDueMillis: nowMillis + Self.pingEvery / 2 + (id * 7919) % Self.pingEvery)
        return over.withLock { over -> Int? in
            guard !over else { return nil }
            entries.withLock { $0[id] = entry }
            return id
        }
    }

    func remove(_ id: Int) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }

    /// What one round owes: the sockets to ping and the silent ones to close (no longer held).
    /// The pings due are moved on by an interval.
    func due(nowMillis: Int) -> (ping: [EventsSocket], silent: [EventsSocket]) {
        entries.withLock { entries in
            var ping: [EventsSocket] = []
            var silent: [EventsSocket] = []
            for (id, entry) in entries {
                if nowMillis - entry.state.lastFrame.load(ordering: .relaxed) > silentAfterMillis {
                    silent.append(entry.socket)
                    entries[id] = nil
                } else if entry.pingDueMillis <= nowMillis {
                    ping.append(entry.socket)
                    entries[id]!.pingDueMillis = nowMillis + Self.pingEvery
                }
            }
            return (ping, silent)
        }
    }

    /// Rounds every `tick` until `stopped` says so; then closes every socket still held.
    func run(nowMillis: @Sendable () -> Int, stopped: @Sendable () -> Bool, log: @Sendable (String) -> Void) async {
        while !stopped() {
            try? await Task.sleep(for: Self.tick)
            let (ping, silent) = due(nowMillis: nowMillis())
            if !silent.isEmpty { log("events sockets silent for \(silentAfterMillis / 1000) s: \(silent.count), reconnecting them") }
            for socket in silent { socket.close(code: 1001, reason: "silent") }
            for socket in ping { socket.send(#"{"type":"ping"}"#) }
        }
        let open = over.withLock { over in
            over = true
            return entries.withLock { entries in
                defer { entries.removeAll() }
                return entries.values.map(\.socket)
            }
        }
        for socket in open { socket.close(code: 1000, reason: "run over") }
    }
}
