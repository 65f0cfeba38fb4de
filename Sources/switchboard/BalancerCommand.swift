import ArgumentParser
import Balancer
import BalancerCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import NodeRuntime
import SWIMCore
import SWIMShell
import ServerTLS
import ServiceLifecycle

/// `switchboard balancer`: the front door. Wiring only; the policy is BalancerCore, the proxy
/// the Balancer module.
struct BalancerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balancer",
        abstract: "Proxy agents and channel webhooks to the healthy nodes of a cluster.",
        discussion: """
            The balancer joins the gossip as an observer (role balancer: it never votes and holds \
            no data), learns each node's API address from gossip, checks every node's /readyz \
            every 250 ms, and sends each request to a node that gossip says is alive and whose \
            checks pass (power of two choices on requests in flight). A refused, reset or \
            timed-out connection or a 5xx ejects a node at once; two good checks readmit it. \
            A safe request (GET, HEAD, PUT, DELETE, or POST with Idempotency-Key) that failed \
            before any answer byte, or got 503, is retried once on another node, within a \
            retry budget of 20 % of requests.

              switchboard balancer --listen 127.0.0.1:8080 --gossip 127.0.0.1:7990 \\
                --seeds 127.0.0.1:7091,127.0.0.1:7092 --gossip-key-file gossip.key

            The balancer faces clients, so it holds the cluster's gossip key, not its secret \
            (`switchboard gossip-key --secret-file cluster.secret > gossip.key`): with it the \
            balancer observes membership and nothing more; it cannot join, vote or append.
              switchboard balancer --listen 127.0.0.1:8080 \\
                --backend n1=127.0.0.1:8081 --backend n2=127.0.0.1:8082
            """)

    @Option(help: "host:port agents and webhooks connect to.")
    var listen = "127.0.0.1:8080"

    @Option(help: "host:port of the admin port: /metrics (Prometheus) and / (status page). Off without it.")
    var admin: String?

    @Option(help: "This balancer's id in the gossip.")
    var id = "balancer"

    @Option(help: "host:port the balancer gossips on (UDP); with --seeds it learns the nodes from gossip.")
    var gossip: String?

    @Option(help: "Gossip addresses of cluster members, comma-separated.")
    var seeds: String?

    @Option(help: "A file holding the cluster's gossip key (or SWITCHBOARD_GOSSIP_KEY; `switchboard gossip-key` derives it from the secret): gossip packets are sealed with it. Never on the command line.")
    var gossipKeyFile: String?

    @Option(help: "A file of previous gossip keys, one per line, still accepted while the cluster secret rotates (or SWITCHBOARD_PREVIOUS_GOSSIP_KEYS, comma-separated).")
    var previousGossipKeysFile: String?

    @Option(help: "A node given by hand, id=host:port of its API (repeatable); used without gossip, e.g. in tests.")
    var backend: [String] = []

    @Option(help: "Milliseconds between active /readyz checks of each node.")
    var checkMs = 250

    @Option(help: "Milliseconds a client has to send a whole request (headers and body); slower gets 408 and the connection closes.")
    var requestTimeoutMs = 10_000

    @Option(help: "Milliseconds a keep-alive client connection may sit idle between requests before it is closed.")
    var idleTimeoutMs = 60_000

    @Option(
        help: """
            Event sockets a second the balancer moves off a node holding more than its share to one holding less (0: never). \
            A node back from a restart holds none of the sockets its death sent elsewhere until some move.
            """)
    var rebalanceSocketsPerSecond = 100.0

    @Option(help: "Event-loop threads for the proxy (default: one per core).")
    var threads = System.coreCount

    @Option(help: "PEM certificate chain: with --tls-key the balancer serves HTTPS and WSS only. Read again every 5 s, so a renewed certificate needs no restart.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert (keep it 0600).")
    var tlsKey: String?

    @Option(help: "PEM file of the CA the nodes' certificates come from: the balancer then reaches the nodes over HTTPS and checks each certificate names the node's address.")
    var backendCa: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        try validateLogLevel(logLevel)
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together: the certificate and its private key") }
        _ = try HostPort(listen, option: "--listen")
        if let admin { _ = try HostPort(admin, option: "--admin") }
        if let gossip { _ = try HostPort(gossip, option: "--gossip") }
        guard gossip != nil || !backend.isEmpty else {
            throw ValidationError("give --gossip with --seeds (learn the nodes from the cluster) or at least one --backend id=host:port")
        }
        guard gossip == nil || !(seeds ?? "").isEmpty else { throw ValidationError("--gossip needs --seeds: the gossip addresses of one or more nodes") }
        for entry in backend {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, HostPort(parts[1]) != nil else { throw ValidationError("--backend must be id=host:port, got '\(entry)'") }
        }
        guard (10...60_000).contains(checkMs) else { throw ValidationError("--check-ms must be 10...60000") }
        guard (0...100_000).contains(rebalanceSocketsPerSecond) else { throw ValidationError("--rebalance-sockets-per-second must be 0...100000") }
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be 1...256") }
        guard (100...3_600_000).contains(requestTimeoutMs) else { throw ValidationError("--request-timeout-ms must be 100...3600000") }
        guard (100...86_400_000).contains(idleTimeoutMs) else { throw ValidationError("--idle-timeout-ms must be 100...86400000") }
    }

    func run() async throws {
        bootstrapLogging(logLevel)
        let logger = Logger(label: "switchboard-balancer")
        SecretInput.restrictFiles(dataDirectory: nil)
        var settings = BalancerSettings()
        settings.checkInterval = .milliseconds(checkMs)
        settings.rebalanceSocketsPerSecond = rebalanceSocketsPerSecond
        let policy = try Policy(settings: settings)
        for entry in backend {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            policy.addStatic(id: parts[0], address: parts[1])
        }

        // Gossip as an observer: the nodes and their API addresses come from the cluster.
        var member: Gossip?
        if let gossip {
            guard let gossipKey = try SecretInput.resolve(file: gossipKeyFile, variable: "SWITCHBOARD_GOSSIP_KEY", option: "--gossip-key-file", logger: logger)
            else {
                throw ValidationError("--gossip needs the cluster's gossip key (--gossip-key-file or SWITCHBOARD_GOSSIP_KEY; `switchboard gossip-key` prints it)")
            }
            let previousKeys = try SecretInput.previous(
                file: previousGossipKeysFile, variable: "SWITCHBOARD_PREVIOUS_GOSSIP_KEYS", option: "--previous-gossip-keys-file", logger: logger)
            let address = try HostPort(gossip, option: "--gossip")
            let seedList = (seeds ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let configuration = GossipConfiguration(
                id: id, listen: address, seeds: seedList, metadata: Metadata(role: .balancer),
                keyring: try Keyring(gossipKey: gossipKey, previousGossipKeys: previousKeys))
            member = try Gossip(configuration: configuration, logger: logger)
            try await member!.start()
        }

        let address = try HostPort(listen, option: "--listen")
        var certificateFiles: CertificateFiles?
        if let tlsCert, let tlsKey { certificateFiles = try CertificateFiles(certificatePath: tlsCert, keyPath: tlsKey, logger: logger) }
        let service = BalancerService(
            policy: policy, listen: address, gossip: member, group: MultiThreadedEventLoopGroup(numberOfThreads: threads),
            timeouts: ClientTimeouts(request: .milliseconds(Int64(requestTimeoutMs)), idle: .milliseconds(Int64(idleTimeoutMs))),
            clientTLS: try certificateFiles?.serverContext(), backendTLS: try backendCa.map(ClientTrust.context(trustingCA:)), logger: logger)
        do {
            try await service.start()
        } catch {
            throw ValidationError("cannot listen on \(listen): \(error)")
        }
        if let admin {
            let address = try HostPort(admin, option: "--admin")
            do {
                _ = try await AdminServer.start(policy: policy, host: address.host, port: address.port)
            } catch {
                throw ValidationError("cannot listen on --admin \(admin): \(error)")
            }
            logger.info("balancer admin port listening", metadata: ["balancer.admin": "\(admin)"])
        }
        // Gossip stops last (it says it leaves after the proxy stopped taking requests).
        let group = ServiceGroup(
            configuration: .init(
                services: (member.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0)] } ?? []) + [.init(service: service)]
                    + (certificateFiles.map { [.init(service: $0)] } ?? []),
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
