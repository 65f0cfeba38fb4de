import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SWIMCore
import Seeded
import ServiceLifecycle
import Wire

/// What a gossip member needs to start.
public struct GossipConfiguration: Sendable {
    public var id: MemberID
    /// UDP `host:port` to listen on (port 0 picks one).
    public var listen: HostPort
    /// The address other members reach us at; default: the listen address (with the bound port).
    public var advertise: String?
    /// Gossip addresses of any members; empty for the first member.
    public var seeds: [String]
    public var metadata: Metadata
    public var keyring: Keyring
    public var settings = SWIMSettings()
    /// How often the core's clock advances.
    public var tickInterval: Duration = .milliseconds(20)

    public init(id: MemberID, listen: HostPort, seeds: [String], metadata: Metadata, keyring: Keyring) {
        self.id = id
        self.listen = listen
        self.seeds = seeds
        self.metadata = metadata
        self.keyring = keyring
    }
}

/// The SWIM shell (DESIGN.md): one UDP socket, the core confined to its event loop, a tick timer;
/// it seals and opens packets, carries out directives, and publishes the view and its changes.
/// As a `Service` it runs until graceful shutdown, then announces that it leaves.
public final class Gossip: Service, Sendable {
    /// Changes buffered for a slow subscriber; the oldest are dropped past it.
    public static let changesBufferedMax = 1024
    /// Resolved addresses cached by the shell.
    static let addressesCachedMax = 4096

    public struct Counters: Sendable, Equatable {
        public var packetsSent = 0
        public var packetsReceived = 0
        /// Dropped by reason: not sealed by us (`malformed`), sealed with a key we do not hold
        /// (`unknownKey`), failing authentication (`forged`), not decodable after opening (`undecodable`).
        public var droppedMalformed = 0
        public var droppedUnknownKey = 0
        public var droppedForged = 0
        public var droppedUndecodable = 0
        /// Authentic packets taken before (`replayed`) or sent too far from our clock (`stale`,
        /// see `ReplayGuard`).
        public var droppedReplayed = 0
        public var droppedStale = 0
        public var sendFailures = 0

        /// Every packet dropped, whatever the reason.
        public var dropped: Int { droppedMalformed + droppedUnknownKey + droppedForged + droppedUndecodable + droppedReplayed + droppedStale }
    }

    private struct Shared {
        var view: [Member] = []
        var me: Member?
        var counters = Counters()
        var localHealth = 0
        var stats = SWIM.Stats()
        var subscribers: [Int: AsyncStream<MemberChange>.Continuation] = [:]
        var nextSubscriber = 0
        var channel: Channel?
        var handler: NIOLoopBound<GossipHandler>?
    }

    public let configuration: GossipConfiguration
    let logger: Logger
    let group: EventLoopGroup
    private let shared = NIOLockedValueBox(Shared())

    public init(configuration: GossipConfiguration, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) throws {
        try configuration.settings.validate()
        try configuration.metadata.validate()
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    // MARK: Views

    /// Every member this node knows (itself included), sorted by id.
    public var members: [Member] { shared.withLockedValue { $0.view } }
    public var me: Member? { shared.withLockedValue { $0.me } }
    public var counters: Counters { shared.withLockedValue { $0.counters } }
    public var stats: SWIM.Stats { shared.withLockedValue { $0.stats } }
    public var localHealth: Int { shared.withLockedValue { $0.localHealth } }

    /// Changes of the view from now on (each subscriber gets every change, newest kept when slow).
    public func changes() -> AsyncStream<MemberChange> {
        let (stream, continuation) = AsyncStream.makeStream(of: MemberChange.self, bufferingPolicy: .bufferingNewest(Self.changesBufferedMax))
        let key = shared.withLockedValue { shared in
            defer { shared.nextSubscriber += 1 }
            shared.subscribers[shared.nextSubscriber] = continuation
            return shared.nextSubscriber
        }
        continuation.onTermination = { [shared] _ in _ = shared.withLockedValue { $0.subscribers.removeValue(forKey: key) } }
        return stream
    }

    // MARK: Life

    /// Binds the socket and starts probing; returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: configuration.listen.host, port: configuration.listen.port).get()
        let port = channel.localAddress?.port ?? configuration.listen.port
        let advertise = configuration.advertise ?? "\(configuration.listen.host):\(port)"
        let seed = UInt64.random(in: .min ... .max)
        try await channel.eventLoop.submit { [self] in
            let core = try SWIM(
                id: configuration.id, address: advertise, metadata: configuration.metadata, settings: configuration.settings, seed: seed,
                now: Self.now())
            let handler = GossipHandler(core: core, gossip: self)
            try channel.pipeline.syncOperations.addHandler(handler)
            shared.withLockedValue {
                $0.channel = channel
                $0.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
            }
            handler.start(seeds: configuration.seeds)
        }.get()
        logger.info("gossip listening", metadata: ["swim.member": "\(configuration.id)", "swim.address": "\(advertise)", "swim.seeds": "\(configuration.seeds)"])
        return port
    }

    public func run() async throws {
        if shared.withLockedValue({ $0.channel }) == nil { try await start() }
        await withGracefulShutdownHandler {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
            }
        } onGracefulShutdown: {}
        await leave()
    }

    /// Announces `left` to every member, then closes the socket.
    public func leave() async {
        guard let (channel, handler) = shared.withLockedValue({ shared in shared.channel.map { ($0, shared.handler!) } }) else { return }
        try? await channel.eventLoop.submit { handler.value.leave() }.get()
        try? await Task.sleep(for: .milliseconds(50))  // let the datagrams leave
        try? await channel.close()
        // Finished outside the lock: a stream's termination handler takes the lock itself
        // (finishing inside it deadlocked a release build and trapped a debug one at SIGTERM).
        let subscribers = shared.withLockedValue { shared in
            shared.channel = nil
            defer { shared.subscribers = [:] }
            return Array(shared.subscribers.values)
        }
        for continuation in subscribers { continuation.finish() }
        logger.info("gossip left", metadata: ["swim.member": "\(configuration.id)"])
    }

    /// Replaces this member's tags (announced at a higher incarnation).
    public func updateTags(_ tags: [String: String]) async throws {
        guard let (channel, handler) = shared.withLockedValue({ shared in shared.channel.map { ($0, shared.handler!) } }) else { return }
        try await channel.eventLoop.submit { try handler.value.updateTags(tags) }.get()
    }

    // MARK: Called by the handler on the event loop

    static func now() -> Duration { Monotonic.now() }

    func publish(core: SWIM, changes: [MemberChange], counters update: (inout Counters) -> Void) {
        let subscribers = shared.withLockedValue { shared in
            update(&shared.counters)
            shared.stats = core.stats
            shared.localHealth = core.localHealth
            if !changes.isEmpty || shared.me == nil {
                shared.view = core.view
                shared.me = core.me
            }
            return changes.isEmpty ? [] : Array(shared.subscribers.values)
        }
        for change in changes {
            logger.info(
                "member \(change.member.status)",
                metadata: [
                    "swim.member": "\(change.member.id)", "swim.incarnation": "\(change.member.incarnation)",
                    "swim.previous": "\(change.previous.map { "\($0)" } ?? "unknown")",
                ])
            for subscriber in subscribers { subscriber.yield(change) }
        }
    }
}

/// Owns the core on the socket's event loop.
final class GossipHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private var core: SWIM
    private unowned let gossip: Gossip
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var stopped = false
    private var resolved: [String: SocketAddress] = [:]
    /// This process's boot id and its packets' numbers (ReplayGuard).
    private let boot = UInt64.random(in: 1...UInt64.max)
    private var sequence: UInt64 = 0
    private var replay = ReplayGuard()
    private var staleLoggedAt: Int64?

    init(core: SWIM, gossip: Gossip) {
        self.core = core
        self.gossip = gossip
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        scheduleTick(on: context.eventLoop)
    }

    private func scheduleTick(on eventLoop: EventLoop) {
        timer = eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(gossip.configuration.tickInterval)) { [self] in
            guard !stopped else { return }
            carryOut(core.onTick(now: Gossip.now()))
            scheduleTick(on: eventLoop)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopped = true
        timer?.cancel()
        self.context = nil
    }

    func start(seeds: [String]) {
        carryOut(core.join(seeds: seeds, now: Gossip.now()))
    }

    func leave() {
        carryOut(core.leave(now: Gossip.now()))
        stopped = true
        timer?.cancel()
    }

    func updateTags(_ tags: [String: String]) throws {
        carryOut(try core.updateTags(tags, now: Gossip.now()))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let sealed = Array(envelope.data.readableBytesView)
        let packet: Packet
        switch gossip.configuration.keyring.open(sealed) {
        case .failure(let reason):
            gossip.publish(core: core, changes: []) { counters in
                switch reason {
                case .malformed: counters.droppedMalformed += 1
                case .unknownKey: counters.droppedUnknownKey += 1
                case .forged: counters.droppedForged += 1
                }
            }
            return
        case .success(let plain):
            guard let header = ReplayGuard.parse(plain) else {
                gossip.publish(core: core, changes: []) { $0.droppedUndecodable += 1 }
                return
            }
            let nowMillis = Self.wallMillis()
            switch replay.admit(boot: header.boot, sequence: header.sequence, sentAtMillis: header.sentAtMillis, nowMillis: nowMillis) {
            case .fresh:
                break
            case .replayed:
                gossip.publish(core: core, changes: []) { $0.droppedReplayed += 1 }
                return
            case .stale:
                gossip.publish(core: core, changes: []) { $0.droppedStale += 1 }
                if staleLoggedAt.map({ nowMillis &- $0 >= 10_000 }) ?? true {
                    staleLoggedAt = nowMillis
                    gossip.logger.warning(
                        "gossip packet dropped: sent too far from this member's clock (clocks out of step, or a replay)",
                        metadata: [
                            "swim.from": "\(envelope.remoteAddress)", "swim.skew_ms": "\(nowMillis &- header.sentAtMillis)",
                            "swim.skew_max_ms": "\(ReplayGuard.ageMaxMillis)",
                        ])
                }
                return
            }
            do {
                packet = try SWIMCodec.decode(Array(plain[ReplayGuard.headerBytes...]))
            } catch {
                gossip.publish(core: core, changes: []) { $0.droppedUndecodable += 1 }
                return
            }
        }
        guard let ip = envelope.remoteAddress.ipAddress, let port = envelope.remoteAddress.port else { return }
        carryOut(core.onPacket(packet, from: "\(ip):\(port)", now: Gossip.now()), received: 1)
    }

    /// Carries out `directives`, then publishes the view and the counters (with `received`
    /// packets) under one lock.
    private func carryOut(_ directives: [Directive], received: Int = 0) {
        var changes: [MemberChange] = []
        var sent = 0
        var failed = 0
        for directive in directives {
            switch directive {
            case .send(let packet, let address):
                guard let context, let remote = resolve(address) else { failed += 1; continue }
                sequence += 1
                let sealed = gossip.configuration.keyring.seal(
                    ReplayGuard.header(boot: boot, sequence: sequence, sentAtMillis: Self.wallMillis()) + SWIMCodec.encode(packet))
                var buffer = context.channel.allocator.buffer(capacity: sealed.count)
                buffer.writeBytes(sealed)
                context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: buffer)), promise: nil)
                sent += 1
            case .changed(let change):
                changes.append(change)
            }
        }
        if sent > 0 { context?.flush() }
        gossip.publish(core: core, changes: changes) { counters in
            counters.packetsReceived += received
            counters.packetsSent += sent
            counters.sendFailures += failed
        }
    }

    /// The wall clock in ms since 1970: what members compare packets' sent times with (members'
    /// clocks agree within `ReplayGuard.ageMaxMillis`; timers use the monotonic clock).
    static func wallMillis() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// `host:port` to a socket address (numeric hosts at once; names resolved once and cached).
    private func resolve(_ address: String) -> SocketAddress? {
        if let known = resolved[address] { return known }
        guard let target = HostPort(address),
            let socketAddress = (try? SocketAddress(ipAddress: target.host, port: target.port))
                ?? (try? SocketAddress.makeAddressResolvingHost(target.host, port: target.port))
        else { return nil }
        if resolved.count >= Gossip.addressesCachedMax { resolved = [:] }
        resolved[address] = socketAddress
        return socketAddress
    }
}
