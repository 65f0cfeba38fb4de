import BalancerCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SWIMCore
import SWIMShell
import Wire
import ServiceLifecycle

/// `switchboard balancer` (DESIGN.md): the proxy listener, the active checks of every backend,
/// and what gossip says of the nodes, all feeding one `Policy`.
public final class BalancerService: Service, Sendable {
    public let policy: Policy
    let listen: HostPort
    let gossip: Gossip?
    let group: EventLoopGroup
    let logger: Logger
    let timeouts: ClientTimeouts
    /// Clients' TLS (`--tls-cert`/`--tls-key`): the listener speaks HTTPS and WSS only.
    let clientTLS: NIOSSLContext?
    /// TLS toward the nodes (`--backend-ca`).
    let backendTLS: NIOSSLContext?
    private let pools: NIOLockedValueBox<[ObjectIdentifier: NIOLoopBound<BackendPool>]> = NIOLockedValueBox([:])
    private let rosters: NIOLockedValueBox<[ObjectIdentifier: NIOLoopBound<SocketRoster>]> = NIOLockedValueBox([:])
    private let server = NIOLockedValueBox<Channel?>(nil)

    public init(
        policy: Policy, listen: HostPort, gossip: Gossip?, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeouts: ClientTimeouts = ClientTimeouts(), clientTLS: NIOSSLContext? = nil, backendTLS: NIOSSLContext? = nil, logger: Logger
    ) {
        self.policy = policy
        self.clientTLS = clientTLS
        self.backendTLS = backendTLS
        self.timeouts = timeouts
        self.listen = listen
        self.gossip = gossip
        self.group = group
        self.logger = logger
    }

    /// The pool of `eventLoop` (made on first use, on that loop).
    func pool(on eventLoop: EventLoop) -> BackendPool {
        let key = ObjectIdentifier(eventLoop)
        return pools.withLockedValue { pools in
            if let pool = pools[key] { return pool.value }
            let pool = BackendPool(eventLoop: eventLoop, tls: backendTLS)
            pools[key] = NIOLoopBound(pool, eventLoop: eventLoop)
            return pool
        }
    }

    /// The event sockets spliced on `eventLoop` (made on first use, on that loop).
    func roster(on eventLoop: EventLoop) -> SocketRoster {
        let key = ObjectIdentifier(eventLoop)
        return rosters.withLockedValue { rosters in
            if let roster = rosters[key] { return roster.value }
            let roster = SocketRoster()
            rosters[key] = NIOLoopBound(roster, eventLoop: eventLoop)
            return roster
        }
    }

    /// Closes the event sockets the policy moves (`Balancer.webSocketsToMove`), each loop its
    /// share; their clients reconnect to the node holding the fewest.
    private func moveWebSockets() {
        let moves = policy.webSocketsToMove()
        guard !moves.isEmpty else { return }
        let rosters = rosters.withLockedValue { Array($0.values) }
        guard !rosters.isEmpty else { return }
        for (backend, count) in moves {
            logger.debug("moving event sockets to nodes holding fewer", metadata: ["balancer.backend": "\(backend)", "balancer.sockets": "\(count)"])
            let share = (count + rosters.count - 1) / rosters.count
            for roster in rosters {
                roster.eventLoop.execute { [policy] in policy.recordMoved(roster.value.move(share, of: backend)) }
            }
        }
    }

    /// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`): a node's death
    /// sends a third of every event socket back through here at once.
    static let listenBacklog: Int32 = 4096

    /// Binds the listener; returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Self.listenBacklog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let clientTLS { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: clientTLS)) }
                    try channel.pipeline.syncOperations.addHandler(ClientGuard(timeouts: timeouts), name: ClientGuard.name)
                    try channel.pipeline.syncOperations.addHandler(
                        ProxyHandler(policy: policy, pool: pool(on: channel.eventLoop), roster: roster(on: channel.eventLoop), logger: logger), name: ProxyHandler.name)
                }
            }
            .bind(host: listen.host, port: listen.port).get()
        server.withLockedValue { $0 = channel }
        let port = channel.localAddress?.port ?? listen.port
        logger.info("balancer listening", metadata: ["balancer.address": "\(clientTLS == nil ? "http" : "https")://\(listen.host):\(port)"])
        return port
    }

    public func run() async throws {
        if server.withLockedValue({ $0 }) == nil { try await start() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.checkUntilShutdown() }
            if let gossip {
                let changes = gossip.changes()
                for member in gossip.members { self.learn(member) }
                group.addTask { for await change in changes { self.learn(change.member) } }
            }
            await group.next()
            group.cancelAll()
        }
        try? await server.withLockedValue { $0 }?.close()
    }

    private func learn(_ member: Member) {
        guard member.metadata.role == .node, let api = member.metadata.api else { return }
        let verdict: GossipVerdict =
            switch member.status {
            case .alive: .alive
            case .suspect: .suspect
            case .dead: .dead
            case .left: .left
            }
        policy.gossip(id: member.id, address: api, verdict: verdict)
    }

    /// `GET /readyz` on every backend each `checkInterval`; a check slower than the interval fails.
    private func checkUntilShutdown() async {
        let interval = policy.settings.checkInterval
        let timeout = TimeAmount(interval)
        let eventLoop = group.next()
        var previous: [String: String] = [:]
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let backends = policy.backends
            await withTaskGroup(of: Void.self) { checks in
                for backend in backends {
                    checks.addTask {
                        let outcome: Outcome
                        do {
                            let status = try await eventLoop.flatSubmit { self.pool(on: eventLoop).get(backend.address, path: "/readyz", timeout: timeout) }.get()
                            outcome = status == 200 ? .success : .failure("readyz \(status)")
                        } catch let error as BackendUnreachable {
                            outcome = .unreachable(error.description)
                        } catch {
                            outcome = .failure("\(error)")
                        }
                        self.policy.check(id: backend.id, outcome: outcome)
                    }
                }
            }
            for backend in policy.backends where previous[backend.id] != "\(backend.state)" {
                logger.info("backend \(backend.state)", metadata: ["balancer.backend": "\(backend.id)", "balancer.reason": "\(backend.transitions.last?.reason ?? "")"])
                previous[backend.id] = "\(backend.state)"
            }
            moveWebSockets()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
