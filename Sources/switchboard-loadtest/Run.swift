import AsyncHTTPClient
import Foundation
import LoadTestCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServerTLS
import Synchronization

/// One load run against a live cluster: agents (closed population) and customers (open
/// arrivals) for the ramp and the duration, then the integrity check on every node.
final class Run: Sendable {
    struct Settings: Sendable {
        var target: String
        /// The CA an https target's certificate comes from.
        var caFile: String?
        var adminToken: String
        var agents: Int
        var ramp: Duration
        var duration: Duration
        var arrivals: Arrivals
        var think: Duration
        var exchanges: Int
        var capacity: Int
        var seed: UInt64
        /// Customers write on these providers' channels, through the provider simulator's signed
        /// webhooks, and the agents' replies must reach it; empty: the generic webchat channel.
        var channels: [ProviderSimulator.Provider] = []
        var providerFaults = ProviderSimulator.Faults()
    }

    /// Requests of customers in flight at most; past it an arrival counts as failed at once
    /// (the load generator must not grow without bound while the cluster stalls).
    static let customersInFlightMax = 20_000
    /// Conversations read at once during the integrity check.
    static let integrityReadsInFlight = 32
    static let requestTimeout = TimeAmount.seconds(10)
    static let responseBytesMax = 4 << 20
    /// Events an agent has not handled yet, at most (the newest are kept).
    static let agentEventsBuffered = 1024
    /// An events socket with no frame for this long (pings go every 15 s) is closed and reopened.
    static let silentSocketMillis = 35_000
    /// An events socket's handshake with no answer for this long is abandoned and retried.
    static let handshakeTimeout = Duration.seconds(10)
    /// The reason of the close frame the balancer sends when it moves a socket to another node.
    static let movedCloseReason = "rebalancing"

    let settings: Settings
    let recorder = Recorder()
    let runId: String
    let http: HTTPClient
    let start = ContinuousClock.now
    private let stopping = Atomic<Bool>(false)
    private let ledger = Mutex(Ledger())
    /// Message id -> conversation id of every acknowledged inbound message and agent reply.
    let acknowledged = Mutex<[String: String]>([:])
    /// Conversation id -> when its first inbound message was acknowledged.
    let opened = Mutex<[String: ContinuousClock.Instant]>([:])
    /// With provider channels: the provider's id of every acknowledged customer message -> the
    /// customer's number, and of each customer's first message -> when it was acknowledged.
    let acknowledgedExternal = Mutex<[String: String]>([:])
    let openedExternal = Mutex<[String: ContinuousClock.Instant]>([:])
    /// With provider channels: the agents' acknowledged replies and what the provider took.
    let replies = Mutex(ReplyLedger())
    /// With provider channels: the simulator and the inboxes the run created on it.
    let simulator: ProviderSimulator?
    let inboxes = Mutex<ChannelInboxes?>(nil)
    let statusCallbacks = Atomic<Int>(0)
    let statusCallbacksFailed = Atomic<Int>(0)
    let highestIndex = Atomic<Int>(0)
    private let eventGaps = Atomic<Int>(0)
    /// Events-socket handshakes given up on after `handshakeTimeout` (their tasks are left behind).
    let abandonedHandshakes = Atomic<Int>(0)
    private let customersInFlight = Atomic<Int>(0)
    /// Pings, silence and the end of the run for every open events socket.
    private let keeper = SocketKeeper(silentAfterMillis: Run.silentSocketMillis)
    private let logger = Logger(label: "switchboard-loadtest")

    let spawned: Spawned?
    let chaos: [ChaosRule]
    /// Where the events sockets connect (the target's address, resolved once) and its Host field.
    let socketTarget: (address: SocketAddress, host: String)?
    /// TLS of the events sockets, for an https target.
    let socketTLS: (context: NIOSSLContext, serverName: String?)?

    init(settings: Settings, spawned: Spawned? = nil, chaos: [ChaosRule] = []) throws {
        self.settings = settings
        self.spawned = spawned
        self.chaos = chaos
        runId = String(UInt64.random(in: 0...UInt64(1 << 40)), radix: 36)
        simulator = settings.channels.isEmpty ? nil : ProviderSimulator(credentials: .random(), faults: settings.providerFaults)
        let url = URL(string: settings.target)
        let secure = url?.scheme == "https"
        socketTarget = url.flatMap { url -> (SocketAddress, String)? in
            guard let host = url.host, let address = try? SocketAddress.makeAddressResolvingHost(host, port: url.port ?? (secure ? 443 : 80)) else { return nil }
            return (address, url.port.map { "\(host):\($0)" } ?? host)
        }
        var configuration = HTTPClient.Configuration()
        if secure, let caFile = settings.caFile {
            let trust = try ClientTrust.configuration(trustingCA: caFile)
            configuration.tlsConfiguration = trust
            socketTLS = (try NIOSSLContext(configuration: trust), ClientTrust.serverName(for: url?.host ?? ""))
        } else {
            socketTLS = nil
        }
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 512)
        configuration.timeout = .init(connect: .seconds(2), read: Self.requestTimeout)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    var elapsed: Duration { ContinuousClock.now - start }
    var elapsedMillis: Int { Int(elapsed / .milliseconds(1)) }
    var second: Int { Int(elapsed.components.seconds) }
    var stopped: Bool { stopping.load(ordering: .relaxed) }

    /// The run, with the provider simulator serving beside it when customers write on provider
    /// channels.
    func execute() async throws -> Summary {
        guard let simulator else { return await measure() }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            let (ports, bound) = AsyncStream.makeStream(of: Int.self)
            group.addTask {
                try await simulator.serve { port in
                    bound.yield(port)
                    bound.finish()
                }
            }
            var next = ports.makeAsyncIterator()
            guard let port = await next.next(), port > 0 else { throw ChannelSetupError("the provider simulator did not bind a port on 127.0.0.1") }
            log("provider simulator: WhatsApp Cloud API and Twilio on http://127.0.0.1:\(port)")
            group.addTask { await self.recordSends(simulator) }
            try await setUpInboxes(simulator: "http://127.0.0.1:\(port)")
            let summary = await measure()
            group.cancelAll()
            return summary
        }
    }

    private func measure() async -> Summary {
        let total = settings.ramp + settings.duration
        recorder.expect(agents: settings.agents)
        let termAtStart = await clusterTerm()
        log("run \(runId): \(settings.agents) agents over \(settings.ramp), then \(settings.duration); customers \(settings.arrivals.rate)/s (\(settings.arrivals.kind)) against \(settings.target)")
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.progress(until: total) }
            for index in 0..<settings.agents {
                group.addTask {
                    let offset = self.settings.agents > 1 ? self.settings.ramp * (Double(index) / Double(self.settings.agents)) : .zero
                    try? await Task.sleep(until: self.start + offset)
                    await self.agent(index)
                }
            }
            group.addTask { await self.customers(from: self.settings.ramp, until: total) }
            group.addTask { await self.keeper.run(nowMillis: { self.elapsedMillis }, stopped: { self.stopped }, log: { self.log($0) }) }
            if let spawned, !chaos.isEmpty {
                group.addTask { await spawned.chaos(self.chaos, start: self.start, length: total, seed: self.settings.seed) }
            }
            group.addTask {
                try? await Task.sleep(until: self.start + total)
                self.stopping.store(true, ordering: .relaxed)
            }
            await group.waitForAll()
        }
        var summary = Summary()
        summary.agents = settings.agents
        summary.durationSeconds = (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18).rounded()
        recorder.fill(&summary)
        for (reason, count) in recorder.failures.sorted(by: { $0.value > $1.value }) { log("failed: \(count) x \(reason)") }
        let abandoned = abandonedHandshakes.load(ordering: .relaxed)
        if abandoned > 0 { log("events socket handshakes abandoned after \(Self.handshakeTimeout) without an answer: \(abandoned)") }
        if let spawned {
            summary.faults = spawned.recorded
            log("settling: every node running again")
            await spawned.heal()
        }
        summary.terms.atStart = termAtStart
        summary.terms.atEnd = await clusterTerm()
        if let elections = summary.terms.elections {
            let kills = summary.faults.filter { $0.kind == "kill" }.count
            log("terms: \(termAtStart ?? 0) -> \(summary.terms.atEnd ?? 0): \(elections) elections over \(kills) kills")
        }
        if simulator != nil { await settleReplies() }
        log("settling: checking every acknowledged message on every node")
        summary.integrity = await integrity()
        try? await http.shutdown()
        return summary
    }

    // MARK: HTTP

    struct Reply {
        var status: Int
        var json: [String: Any]
        /// Seconds from `Retry-After`, when the answer had one.
        var retryAfter: Double?
        /// The client's error, when no answer came.
        var failure: String?
        var ok: Bool { (200..<300).contains(status) }
        /// No answer, 429 or 5xx: worth another try later.
        var retryable: Bool { status == 0 || status == 429 || status >= 500 }
    }

    /// Attempts at an agent's start (creation, login, first status) before it gives up.
    static let startAttemptsMax = 30

    /// Calls `attempt` until an answer not worth retrying, as an agent application would during
    /// a shift start: exponential backoff from 250 ms (capped at 8 s) with full jitter, so agents
    /// refused together do not come back together, and never sooner than the answer's
    /// `Retry-After`. Every attempt is measured. `afterTheRun`: also once the run has stopped
    /// (the settling reads), else an answer after the stop is the last.
    func retrying(afterTheRun: Bool = false, _ attempt: () async -> Reply) async -> Reply {
        var reply = await attempt()
        var ceiling = 0.25
        for _ in 1..<Self.startAttemptsMax where reply.retryable && (afterTheRun || !stopped) {
            let wait = max(Double.random(in: 0...ceiling), reply.retryAfter.map { $0 + Double.random(in: 0...1) } ?? 0)
            try? await Task.sleep(for: .seconds(wait))
            ceiling = min(ceiling * 2, 8)
            reply = await attempt()
        }
        return reply
    }

    /// One request, measured from `intended` (not from when it could be sent).
    @discardableResult
    func call(
        _ method: HTTPMethod, _ path: String, token: String?, body: [String: Any]? = nil, key: String? = nil,
        intended: ContinuousClock.Instant? = nil, base: String? = nil, measured: Bool = true, raw: SignedRequest? = nil
    ) async -> Reply {
        let due = intended ?? .now
        var request = HTTPClientRequest(url: (base ?? settings.target) + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let key { request.headers.add(name: "Idempotency-Key", value: key) }
        if let body, let data = try? JSONSerialization.data(withJSONObject: body) {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        if let raw {
            for (name, value) in raw.headers { request.headers.add(name: name, value: value) }
            request.body = .bytes(ByteBuffer(bytes: raw.body))
        }
        var reply = Reply(status: 0, json: [:])
        var failure: String?
        do {
            let response = try await http.execute(request, timeout: Self.requestTimeout)
            let bytes = try await response.body.collect(upTo: Self.responseBytesMax)
            reply.status = Int(response.status.code)
            reply.retryAfter = response.headers.first(name: "retry-after").flatMap(Double.init)
            reply.json = ((try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any]) ?? [:]
            if let index = response.headers.first(name: "x-switchboard-index").flatMap(Int.init) {
                highestIndex.max(index)
            }
            if !reply.ok { failure = "\(method.rawValue) \(Self.route(path)): \(reply.status)" }
        } catch {
            failure = "\(method.rawValue) \(Self.route(path)): \(type(of: error))"
            reply.failure = "\(error)"
        }
        if measured, reply.status == 429, reply.retryAfter != nil {
            recorder.shed()
        } else if measured {
            let micros = UInt64(max(0, (ContinuousClock.now - due) / .microseconds(1)))
            let dueSecond = Int((due - start).components.seconds)
            recorder.request(second: dueSecond, micros: micros, ok: reply.ok, failure: failure)
        }
        return reply
    }

    /// The cluster's Raft term as `/v1/cluster` tells it (nil when it does not answer).
    func clusterTerm() async -> Int? {
        (await call(.GET, "/v1/cluster", token: settings.adminToken, measured: false)).json["term"] as? Int
    }

    /// A path with its ids replaced, for grouping failures.
    static func route(_ path: String) -> String {
        path.split(separator: "?")[0].split(separator: "/").map { $0.contains("_") ? ":id" : String($0) }.joined(separator: "/")
    }

    // MARK: Agents

    private func agent(_ index: Int) async {
        guard !stopped else { return }
        let email = "lt-\(runId)-\(index)@load.test"
        let password = "loadtest-\(runId)"
        // The key makes a retried creation answer the first one instead of a second agent.
        let created = await retrying {
            await call(
                .POST, "/v1/agents", token: settings.adminToken,
                body: ["name": "Load agent \(index)", "email": email, "password": password, "role": "agent", "capacity": settings.capacity],
                key: "lt-\(runId)-agent-\(index)")
        }
        guard created.ok, let agentId = created.json["id"] as? String else { return }
        ledger.withLock { $0.agent(agentId, capacity: settings.capacity) }
        let session = await retrying { await call(.POST, "/v1/sessions", token: nil, body: ["email": email, "password": password]) }
        guard session.ok, let token = session.json["token"] as? String else { return }

        let (events, continuation) = AsyncStream.makeStream(of: EventFrame.self, bufferingPolicy: .bufferingNewest(Self.agentEventsBuffered))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await self.stream(token: token, into: continuation)
                continuation.finish()
            }
            // Available once the socket is up (or after a second without it).
            for _ in 0..<100 where recorder.sessions == 0 && !stopped { try? await Task.sleep(for: .milliseconds(10)) }
            _ = await retrying { await call(.PUT, "/v1/agents/me/status", token: token, body: ["status": "available"]) }
            for await event in events {
                guard !stopped else { break }
                guard event.type == "conversation.assigned", event.data?.agent == agentId, let conversation = event.data?.conversation else { continue }
                ledger.withLock { $0.assigned(conversation, to: agentId) }
                if let since = opened.withLock({ $0[conversation] }) {
                    recorder.assignment(micros: UInt64(max(0, (ContinuousClock.now - since) / .microseconds(1))))
                }
                let assignedAt = ContinuousClock.now
                group.addTask { await self.work(conversation, agentId: agentId, token: token, assignedAt: assignedAt) }
            }
        }
    }

    /// Reads the conversation, replies `exchanges` times after a think time each, resolves.
    /// The reply's text is unique (its idempotency key), so the provider simulator's copy names it.
    private func work(_ conversation: String, agentId: String, token: String, assignedAt: ContinuousClock.Instant) async {
        let read = await call(.GET, "/v1/conversations/\(conversation)", token: token)
        // A conversation a run before this one left waiting (its inbox points at that run's
        // simulator) is worked like any other, but its replies cannot reach this run's.
        let ours = inboxes.withLock { inboxes in (read.json["inbox"] as? String).map { inboxes?.ids.contains($0) == true } ?? false }
        if simulator != nil, let first = (read.json["messages"] as? [[String: Any]])?.first?["externalId"] as? String,
            let since = openedExternal.withLock({ $0.removeValue(forKey: first) })
        {
            recorder.assignment(micros: UInt64(max(0, (assignedAt - since) / .microseconds(1))))
        }
        for exchange in 0..<settings.exchanges {
            try? await Task.sleep(for: settings.think)
            guard !stopped else { return }
            let key = "lt-\(runId)-\(conversation)-r\(exchange)"
            let text = "reply \(exchange) \(key)"
            let reply = await call(
                .POST, "/v1/conversations/\(conversation)/messages", token: token, body: ["text": text, "private": false], key: key)
            if reply.ok, let id = reply.json["id"] as? String {
                acknowledged.withLock { $0[id] = conversation }
                if simulator != nil, ours { replies.withLock { $0.acknowledged(text: text, messageId: id, conversation: conversation) } }
            }
        }
        let resolved = await call(.POST, "/v1/conversations/\(conversation)/resolve", token: token, key: "lt-\(runId)-\(conversation)-resolve")
        if resolved.ok { ledger.withLock { $0.released(conversation, by: agentId) } }
    }

    /// The agent's events socket through the target, reconnected with its last cursor until the
    /// run stops. Frames go to `continuation` as JSON objects.
    private func stream(token: String, into continuation: AsyncStream<EventFrame>.Continuation) async {
        let state = SocketState()
        var droppedAt: ContinuousClock.Instant?
        var moved = false
        var attempts = 0
        while !stopped {
            attempts += 1
            let since = state.continuity.withLock { $0.lastCursor }.map { "&since=\($0)" } ?? ""
            let dropped = droppedAt
            let afterMove = moved
            var outcome: Error?
            var wasOpen = false
            do {
                guard let target = socketTarget else { throw EventsSocket.Failure.unreachable("the target's address does not resolve") }
                let socket = try await EventsSocket.open(
                    address: target.address, host: target.host, tls: socketTLS, uri: "/v1/events?token=\(token)\(since)", maxMessageBytes: 1 << 20,
                    connectTimeout: .seconds(2), handshakeTimeout: TimeAmount(Self.handshakeTimeout)
                ) { text in
                    state.lastFrame.store(self.elapsedMillis, ordering: .relaxed)
                    guard let frame = try? JSONDecoder().decode(EventFrame.self, from: Data(text.utf8)) else { return }
                    state.continuity.withLock { continuity in
                        if frame.type == "reset" { continuity.reset() }
                        if let cursor = frame.cursor { continuity.see(cursor: cursor) }
                    }
                    continuation.yield(frame)
                }
                .map { socket in
                    // Timed on the event loop as the 101 arrives, not when this task next runs.
                    if let dropped {
                        self.recorder.reconnected(micros: UInt64(max(0, (ContinuousClock.now - dropped) / .microseconds(1))), afterMove: afterMove)
                    }
                    return socket
                }
                .get()
                wasOpen = true
                recorder.sessionOpened(second: second)
                state.lastFrame.store(elapsedMillis, ordering: .relaxed)
                if let kept = keeper.add(socket, state: state, nowMillis: elapsedMillis) {
                    let reason = try? await socket.closed.get()
                    keeper.remove(kept)
                    if reason?.hasPrefix(Self.movedCloseReason) == true { outcome = MovedByTheBalancer() }
                } else {
                    socket.close(code: 1000, reason: "run over")
                    _ = try? await socket.closed.get()
                }
            } catch {
                outcome = error
            }
            if let outcome {
                if case .unanswered? = outcome as? EventsSocket.Failure { abandonedHandshakes.add(1, ordering: .relaxed) }
                if !(outcome is MovedByTheBalancer), attempts == 1 || attempts % 10 == 0 { log("events socket: \(outcome)") }
            }
            moved = outcome is MovedByTheBalancer
            if wasOpen {
                recorder.sessionClosed(second: second, dropped: !stopped, moved: moved)
                droppedAt = .now
                attempts = 0
            }
            // A refused upgrade (503 with Retry-After: 1 while a node is full) waits at least a
            // second.
            var refused = false
            if case .refused? = outcome as? EventsSocket.Failure { refused = true }
            let backoff = min(2000, 100 * (1 << min(attempts, 5)))
            if !stopped { try? await Task.sleep(for: .milliseconds(refused ? max(1000, backoff) : backoff)) }
        }
        eventGaps.add(state.continuity.withLock { $0.gaps }, ordering: .relaxed)
    }

    // MARK: Customers

    private func customers(from begin: Duration, until end: Duration) async {
        var arrivals = settings.arrivals
        await withTaskGroup(of: Void.self) { group in
            var n = 0
            while true {
                let due = begin + arrivals.nextArrival()
                guard due < end else { break }
                try? await Task.sleep(until: start + due)
                n += 1
                let customer = n
                guard customersInFlight.add(1, ordering: .relaxed).newValue <= Self.customersInFlightMax else {
                    customersInFlight.subtract(1, ordering: .relaxed)
                    recorder.request(second: second, micros: 1, ok: false, failure: "load generator: over \(Self.customersInFlightMax) customers in flight")
                    continue
                }
                group.addTask {
                    if self.simulator != nil {
                        await self.channelCustomer(customer, intended: self.start + due)
                    } else {
                        await self.customer(customer, intended: self.start + due)
                    }
                    self.customersInFlight.subtract(1, ordering: .relaxed)
                }
            }
        }
    }

    /// A new conversation, then one follow-up in it after a think time.
    private func customer(_ n: Int, intended: ContinuousClock.Instant) async {
        let from = "lt-\(runId)-c\(n)"
        for message in 0..<2 {
            let due = message == 0 ? intended : ContinuousClock.now
            let externalId = "lt-\(runId)-\(n)-\(message)"
            let reply = await call(
                .POST, "/v1/channels/webchat/messages", token: settings.adminToken,
                body: ["from": from, "text": "customer \(n) message \(message)", "externalId": externalId], key: externalId, intended: due)
            guard reply.ok, let id = reply.json["messageId"] as? String, let conversation = reply.json["conversationId"] as? String else { return }
            if reply.json["duplicate"] as? Bool != true {
                acknowledged.withLock { $0[id] = conversation }
                if message == 0 { opened.withLock { $0[conversation] = $0[conversation] ?? .now } }
            }
            try? await Task.sleep(for: settings.think)
            if stopped { return }
        }
    }

    // MARK: Integrity and progress

    /// Every acknowledged message, looked up on every node (its API address from /v1/cluster),
    /// read locally once the node has applied the highest index any answer showed.
    private func integrity() async -> Summary.Integrity {
        var result = Summary.Integrity()
        let (doubles, overruns) = ledger.withLock { ($0.doubleAssignments, $0.capacityViolations) }
        result.doubleAssignments = doubles
        result.capacityViolations = overruns
        result.eventGaps = eventGaps.load(ordering: .relaxed)
        let messages = acknowledged.withLock { $0 }
        let cluster = await call(.GET, "/v1/cluster", token: settings.adminToken, measured: false)
        let nodes = ((cluster.json["nodes"] as? [[String: Any]]) ?? []).compactMap { $0["api"] as? String }
        guard !nodes.isEmpty else {
            log("integrity: /v1/cluster named no nodes (status \(cluster.status)); every message counts as lost")
            result.lostMessages = messages.count
            return result
        }
        let external = acknowledgedExternal.withLock { $0 }
        // Customers on provider channels are acknowledged by the provider's message id, not ours:
        // their conversations are the run's inboxes' (listed), and a copy counts by that id.
        var listed = Set(messages.values)
        if simulator != nil { listed.formUnion(await runConversations()) }
        let conversations = Array(listed).sorted()
        let expected = Array(messages.keys) + Array(external.keys)
        let index = highestIndex.load(ordering: .relaxed)
        var lost = Set<String>()
        var duplicated = Set<String>()
        var possibleDuplicates = Set<String>()
        var recipients: [String: String] = [:]
        for node in nodes {
            var copies: [String: Int] = [:]
            var unread = 0
            for start in stride(from: 0, to: conversations.count, by: Self.integrityReadsInFlight) {
                let batch = conversations[start..<min(conversations.count, start + Self.integrityReadsInFlight)]
                await withTaskGroup(of: (String, [StoredMessage])?.self) { group in
                    for conversation in batch {
                        group.addTask {
                            let reply = await self.call(
                                .GET, "/v1/conversations/\(conversation)?consistency=local&minIndex=\(index)", token: self.settings.adminToken,
                                base: "\(URL(string: self.settings.target)?.scheme ?? "http")://\(node)", measured: false)
                            guard reply.ok else { return nil }
                            return (conversation, ((reply.json["messages"] as? [[String: Any]]) ?? []).map(StoredMessage.init))
                        }
                    }
                    for await read in group {
                        guard let (conversation, list) = read else {
                            unread += 1
                            continue
                        }
                        for message in list {
                            if let id = message.id {
                                copies[id, default: 0] += 1
                                if message.possibleDuplicate { possibleDuplicates.insert(id) }
                            }
                            if let id = message.externalId {
                                copies[id, default: 0] += 1
                                if let number = external[id] { recipients[conversation] = number }
                            }
                        }
                    }
                }
            }
            if unread > 0 { log("integrity: \(unread) conversations could not be read on \(node); their messages count as lost") }
            let misses = Ledger.misses(acknowledged: expected, copies: copies)
            lost.formUnion(misses.lost)
            duplicated.formUnion(misses.duplicated)
            log("integrity: \(node) checked \(expected.count) messages in \(conversations.count) conversations")
        }
        result.lostMessages = lost.count
        result.duplicateMessages = duplicated.count
        if simulator != nil {
            let (verdict, checked, taken) = replies.withLock { ($0.check(possibleDuplicates: possibleDuplicates, recipients: recipients), $0.acknowledgedCount, $0.deliveredTotal) }
            result.repliesChecked = checked
            result.lostReplies = verdict.lost
            result.duplicateReplies.explained = verdict.explainedDuplicates
            result.duplicateReplies.unexplained = verdict.unexplainedDuplicates
            result.misdirectedReplies = verdict.misdirected
            log(
                "integrity: \(checked) acknowledged replies, \(taken) sends taken by the provider: lost \(verdict.lost), duplicated \(verdict.explainedDuplicates) explained (marked possibleDuplicate) and \(verdict.unexplainedDuplicates) unexplained, misdirected \(verdict.misdirected); \(verdict.unacknowledged) sent whose request failed at the agent after it was stored"
            )
        }
        return result
    }

    /// One line a second: elapsed, sessions, requests/s, failures, p99, the fault in force.
    /// Every 10 s with a spawned cluster, the CPU and memory of its processes and of this one.
    private func progress(until end: Duration) async {
        var last = 0
        var sampler = UsageSampler()
        let processes = { (self.spawned?.processes ?? []) + [("load tester", getpid())] }
        let expected = (spawned.map { $0.cluster.nodes.count + 1 } ?? 0) + 1
        _ = sampler.sample(processes())  // before any session
        while !stopped {
            try? await Task.sleep(for: .seconds(1))
            let now = second
            guard now != last else { continue }
            let previous = recorder.requests(inSecond: now - 1)
            let failed = recorder.failedTotal
            last = now
            let phase = elapsed < settings.ramp ? "ramp" : "run"
            let fault = spawned?.currentFault.map { "  fault: \($0)" } ?? ""
            log(
                "[\(now)s/\(end.components.seconds)s \(phase)] sessions \(recorder.sessions)/\(settings.agents)  req/s \(previous)  failed \(failed)  shed \(recorder.shedTotal)  p99 \(String(format: "%.1f", recorder.p99Ms)) ms\(fault)"
            )
            if now % 10 == 0 {
                log("resources: \(UsageSampler.describe(sampler.sample(processes(), sessions: recorder.sessions, expected: expected)))")
            }
        }
        guard let nodes = spawned?.cluster.nodes.map(\.id) else { return }
        for line in sampler.memoryPerSession([("nodes (all \(nodes.count))", nodes), ("balancer", ["balancer"]), ("load tester", ["load tester"])]) {
            log(line)
        }
    }

    func log(_ line: String) { logLine(line) }
}

/// Progress and findings go to standard error; standard output carries the summary.
@Sendable func logLine(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// The parts of an event frame the agents act on; other fields and shapes are ignored.
struct EventFrame: Decodable, Sendable {
    struct Payload: Decodable, Sendable {
        var agent: String?
        var conversation: String?

        private enum Keys: String, CodingKey { case agent, conversation }
        private struct Identified: Decodable { var id: String }

        init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: Keys.self)
            agent = try? container.decode(String.self, forKey: .agent)
            conversation = (try? container.decode(Identified.self, forKey: .conversation))?.id
        }
    }

    var type: String
    var cursor: String?
    var data: Payload?
}

/// What the integrity check reads of a stored message.
struct StoredMessage: Sendable {
    var id: String?
    /// The provider's id of a customer's message.
    var externalId: String?
    /// An agent reply the outbox may have sent twice.
    var possibleDuplicate: Bool

    init(_ json: [String: Any]) {
        id = json["id"] as? String
        externalId = json["externalId"] as? String
        possibleDuplicate = (json["delivery"] as? [String: Any])?["possibleDuplicate"] as? Bool == true
    }
}

/// The balancer closed the socket to move it to a node holding fewer (close 1012 with
/// `Run.movedCloseReason`): not a drop.
struct MovedByTheBalancer: Error, CustomStringConvertible {
    var description: String { "moved by the balancer" }
}

/// One agent's socket across reconnects, shared with the socket's handler.
final class SocketState: Sendable {
    let continuity = Mutex(EventContinuity())
    /// Milliseconds into the run of the last frame received.
    let lastFrame = Atomic<Int>(0)
}

extension Atomic where Value == Int {
    /// Raises the value to `candidate` if it is higher.
    func max(_ candidate: Int) {
        var current = load(ordering: .relaxed)
        while candidate > current {
            let (exchanged, original) = compareExchange(expected: current, desired: candidate, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}
