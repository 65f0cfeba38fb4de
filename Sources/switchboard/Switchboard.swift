import AgentAPI
import ArgumentParser
import ClusterFile
import Foundation
import Logging
import Metrics
import NodeRuntime
import Outbound
import PeerLink
import NIOSSL
import Prometheus
import ServerTLS
import SWIMCore
import SWIMShell
import Telemetry
import ServiceLifecycle

/// `switchboard`: the contact-center node and its tools. Wiring only; the behaviour lives in
/// the library modules.
@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A high-availability contact-center node.",
        discussion: """
            Start a local three-node cluster (cluster/local.toml), then stop it:

              switchboard cluster up
              switchboard cluster down

            Or one node with its data under .switchboard/n1 and its API on 127.0.0.1:8081:

              switchboard node --bootstrap

            The first start prints an admin token (only its hash is kept); pass it as \
            `Authorization: Bearer <token>` to the admin endpoints.
            """,
        subcommands: [NodeCommand.self, ClusterCommand.self, BalancerCommand.self, GossipKeyCommand.self, SimulateCommand.self, BenchApplyCommand.self])
}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a cluster member: the HTTP and WebSocket API over a Raft log replicated into state.sqlite.",
        discussion: """
            Every state change is a command in the Raft log (<data>/raft.log, fsynced, many per \
            fsync), committed by a majority of voters and applied to <data>/state.sqlite on every \
            member. Any member takes any request: a follower forwards writes to the leader.

            A new cluster:
              switchboard node --id n1 --peer 127.0.0.1:7081 --secret-file cluster.secret --bootstrap
            Join it:
              switchboard node --id n2 --api 127.0.0.1:8082 --peer 127.0.0.1:7082 \\
                --secret-file cluster.secret --join 127.0.0.1:7081
            One node, no peers:
              switchboard node --bootstrap

            Secrets never go on the command line (`ps` shows it to every user): they come from \
            files readable by their owner only (--secret-file, --admin-token-file, ...) or from \
            the environment (SWITCHBOARD_SECRET, SWITCHBOARD_ADMIN_TOKEN, ...). Files the node \
            creates are its owner's alone (0600; directories 0700).

            Restart a member with the same command line: on a data directory that already belongs \
            to a cluster, --bootstrap and --join are ignored and the node rejoins as the member it \
            was. SIGTERM or SIGINT: a leader hands leadership to another voter, the API finishes \
            its requests in flight, then the node stops.
            """)

    @Option(help: "This node's id (letters, digits, '-', '_', '.'), shown in X-Switchboard-Node and /v1/cluster.")
    var id = "n1"

    @Option(help: "Data directory (created if missing). Default: .switchboard/<id>.")
    var data: String?

    @Option(help: "host:port of the HTTP and WebSocket API.")
    var api = "127.0.0.1:8081"

    @Option(help: "host:port the peer link (Raft and forwarded writes, TCP) listens on. Without it the node cannot have peers.")
    var peer: String?

    @Option(help: "A file holding the cluster secret (or SWITCHBOARD_SECRET); every member needs the same one. Required with --peer.")
    var secretFile: String?

    @Option(help: "host:port the SWIM gossip (UDP) listens on. Without it the node runs without a failure detector.")
    var gossip: String?

    @Option(help: "Gossip addresses of other members, comma-separated (any reachable one is enough; the first node needs none).")
    var seeds: String?

    @Option(help: "A file of previous cluster secrets, one per line, still accepted (peer link and gossip) while the secret rotates (or SWITCHBOARD_PREVIOUS_SECRETS, comma-separated).")
    var previousSecretsFile: String?

    @Flag(help: "Start a new cluster with this node as its first voter (only on an empty data directory).")
    var bootstrap = false

    @Option(help: "Join the cluster through the member whose peer link listens at host:port (only on an empty data directory).")
    var join: String?

    @Option(help: "A file holding the admin token (or SWITCHBOARD_ADMIN_TOKEN). If neither is set, one is generated on first start and printed once.")
    var adminTokenFile: String?

    @Option(help: "A file holding the token for channel webhooks (or SWITCHBOARD_CHANNEL_TOKEN). Without one, webhooks use the admin token.")
    var channelTokenFile: String?

    @Option(help: "Argon2id memory in KiB for new password hashes (OWASP: 19456). Hashes stored with less are upgraded at the next login.")
    var passwordMemoryKib = PasswordHasher.Cost.owasp.memoryKiB

    @Option(help: "Argon2id passes for new password hashes (OWASP: 2).")
    var passwordPasses = PasswordHasher.Cost.owasp.passes

    @Option(help: "Logins a second one client address may start on this node, with a burst of six seconds' worth; past it, 429 before any hashing. Raise it for many agents behind one address.")
    var loginsPerAddress = 10.0

    @Option(help: "The balancer's status page (http://host:port/), linked from the console's operations view; `cluster up` passes its [balancer] admin address.")
    var balancerPage: String?

    @Option(help: "Raft tick in milliseconds: the leader sends heartbeats every tick.")
    var tickMs = 25

    @Option(help: "Ticks without a leader before a follower campaigns (randomized up to twice this).")
    var electionTicks = 10

    @Option(help: "Take a snapshot of state.sqlite and compact the log every this many applied entries.")
    var snapshotEntries = 100_000

    @Option(help: """
        Milliseconds a follower may hold committed entries before it applies them, so it applies \
        bigger batches (cheaper per entry). Reads and forwarded writes waiting on this node apply \
        at once; only its event streams see the delay. 0 applies every batch as it commits.
        """)
    var followerApplyMs = 40

    @Option(help: """
        Milliseconds a leader may keep executed entries in one open SQLite transaction, so that \
        several batches share one commit. Writes that read nothing back (channel messages) are \
        answered at execution; reads and other writes waiting on this node commit at once; only \
        its event streams see the delay. 0 commits every batch as it executes.
        """)
    var leaderCommitMs = 10

    @Option(help: "PEM certificate of this member, its common name this node's --id, from the --peer-ca authority: peers then know it is this member, not merely a holder of the secret.")
    var peerCert: String?

    @Option(help: "PEM P-256 private key of --peer-cert (keep it 0600).")
    var peerKey: String?

    @Option(help: "PEM certificate of the authority members' certificates come from: with it, every peer must prove its id with a certificate from it (all members alike).")
    var peerCa: String?

    @Option(help: "PEM certificate chain for the API: with --tls-key it serves HTTPS and WSS only. Both files are read again every 5 s, so a renewed certificate needs no restart.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert (keep it 0600).")
    var tlsKey: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        try validateLogLevel(logLevel)
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together: the certificate and its private key") }
        guard [peerCert, peerKey, peerCa].allSatisfy({ $0 == nil }) || [peerCert, peerKey, peerCa].allSatisfy({ $0 != nil }) else {
            throw ValidationError("--peer-cert, --peer-key and --peer-ca go together: this member's certificate, its key, and the members' authority")
        }
        guard loginsPerAddress >= 0.1, loginsPerAddress <= 100_000 else { throw ValidationError("--logins-per-address must be 0.1...100000") }
        guard PasswordHasher.Cost(memoryKiB: passwordMemoryKib, passes: passwordPasses).isValid else {
            throw ValidationError(
                "--password-memory-kib must be 8...\(Argon2id.Parameters.memoryKiBMax) and --password-passes 1...\(Argon2id.Parameters.passesMax)")
        }
        _ = try HostPort(api, option: "--api")
        if let balancerPage {
            guard balancerPage.utf8.count <= 255, balancerPage.hasPrefix("http://") || balancerPage.hasPrefix("https://"),
                  !balancerPage.contains(where: { $0.isWhitespace || $0 == "\"" || $0 == "<" || $0 == ">" }) else {
                throw ValidationError("--balancer-page must be an http:// or https:// URL of at most 255 bytes: \(balancerPage)")
            }
        }
        if let peer { _ = try HostPort(peer, option: "--peer") }
        if let join { _ = try HostPort(join, option: "--join") }
        if let gossip { _ = try HostPort(gossip, option: "--gossip") }
        for seed in seedList { _ = try HostPort(seed, option: "--seeds") }
        guard gossip != nil || seeds == nil else { throw ValidationError("--seeds needs --gossip: the address this node gossips on") }
        guard !(bootstrap && join != nil) else { throw ValidationError("--bootstrap starts a new cluster and --join enters an existing one: pass one of them") }
        guard join == nil || peer != nil else { throw ValidationError("--join needs --peer: the other members reach this node there") }
        guard (1...10_000).contains(tickMs) else { throw ValidationError("--tick-ms must be 1...10000") }
        guard (2...1000).contains(electionTicks) else { throw ValidationError("--election-ticks must be 2...1000") }
        guard snapshotEntries >= 100 else { throw ValidationError("--snapshot-entries must be at least 100") }
        guard (0...1000).contains(followerApplyMs) else { throw ValidationError("--follower-apply-ms must be 0...1000, got \(followerApplyMs)") }
        guard (0...1000).contains(leaderCommitMs) else { throw ValidationError("--leader-commit-ms must be 0...1000, got \(leaderCommitMs)") }
    }

    func run() async throws {
        bootstrapLogging(logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(Telemetry.factory(registry: registry))
        let logger = Logger(label: "switchboard")
        FileLimit.raise(logger: logger)
        let directory = data ?? ".switchboard/\(id)"
        let address = try HostPort(api, option: "--api")
        let environment = ProcessInfo.processInfo.environment

        // 1. How this node enters a cluster. A directory that already holds one restarts it.
        let existing = FileManager.default.fileExists(atPath: directory + "/raft-snapshot")
        guard existing || bootstrap || join != nil else {
            throw ValidationError(
                "\(directory) holds no cluster yet: pass --bootstrap to start a new cluster, or --join <host:port> to join one through any member's peer address")
        }

        // 2. Secrets: the admin token is known only by its hash.
        SecretInput.restrictFiles(dataDirectory: directory)
        let adminHash = try AdminToken.resolve(
            given: try SecretInput.resolve(file: adminTokenFile, variable: "SWITCHBOARD_ADMIN_TOKEN", option: "--admin-token-file", logger: logger),
            dataDirectory: directory, logger: logger)
        var configuration = NodeConfiguration(id: id, dataDirectory: directory, adminTokenHash: adminHash)
        configuration.channelTokenHash = try SecretInput.resolve(
            file: channelTokenFile, variable: "SWITCHBOARD_CHANNEL_TOKEN", option: "--channel-token-file", logger: logger
        ).map(Secrets.tokenHash)
        configuration.passwordCost = PasswordHasher.Cost(memoryKiB: passwordMemoryKib, passes: passwordPasses)
        configuration.loginsPerSecondPerAddress = loginsPerAddress
        configuration.apiAddress = api
        configuration.balancerPage = balancerPage
        configuration.peerAddress = peer
        configuration.secret = try SecretInput.resolve(file: secretFile, variable: "SWITCHBOARD_SECRET", option: "--secret-file", logger: logger)
        configuration.previousSecrets = try SecretInput.previousSecrets(file: previousSecretsFile, logger: logger)
        if let peerCert, let peerKey, let peerCa {
            do {
                configuration.peerIdentity = try PeerIdentity(id: id, certificatePath: peerCert, keyPath: peerKey, authorityPath: peerCa)
            } catch {
                throw ValidationError("\(error)")
            }
        }
        configuration.start = join.map(ClusterStart.join) ?? .bootstrap
        configuration.tickInterval = .milliseconds(tickMs)
        configuration.raft.electionTicks = electionTicks
        configuration.snapshotEntries = UInt64(snapshotEntries)
        configuration.followerApplyDelay = .milliseconds(followerApplyMs)
        configuration.leaderCommitHold = .milliseconds(leaderCommitMs)

        // 3. The node: opens its data directory, then binds its peer link (a bad address fails the
        //    start with a clear message); its loop and upkeep start under the service group.
        let node = try Node(configuration: configuration, logger: logger)
        do {
            if let port = try await node.listen() {
                logger.info("peer link listening", metadata: ["node.id": "\(id)", "peer.port": "\(port)"])
            }
        } catch {
            node.shutdown()
            throw ValidationError("cannot listen for peers on \(peer ?? "-"): \(error)")
        }

        // 4. Gossip (SWIM over UDP, sealed with the cluster secret), when asked for.
        var gossipServices: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let gossip {
            let member = try await startGossip(
                listen: try HostPort(gossip, option: "--gossip"), secret: configuration.secret, previous: configuration.previousSecrets, logger: logger)
            // The bridge stops before gossip leaves (services stop in reverse order).
            gossipServices = [.init(service: member), .init(service: GossipBridge(node: node, gossip: member))]
        }

        // 5. The API, then the service group. Services stop in reverse order: gossip says it
        //    leaves, the API drains its in-flight requests, then the node stops.
        let api = API(node: node, logger: logger)
        var tlsServices: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var tls: TLSConfiguration?
        if let tlsCert, let tlsKey {
            let files = try CertificateFiles(certificatePath: tlsCert, keyPath: tlsKey, logger: logger)
            tls = try files.serverConfiguration()
            tlsServices = [.init(service: files)]
        }
        let application = try api.application(host: address.host, port: address.port, metrics: APIMetrics(registry: registry), tls: tls)
        logger.info("api listening", metadata: ["node.id": "\(id)", "http.address": "\(tls == nil ? "http" : "https")://\(address)"])
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: NodeService(node: node), successTerminationBehavior: .gracefullyShutdownGroup),
                    .init(service: application),
                    // Stops before the node: sends under way commit their results first.
                    .init(service: OutboxDispatcher(node: node, logger: logger)),
                ] + tlsServices + gossipServices + [.init(service: ShutdownNotice(node: node))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

extension NodeCommand {
    var seedList: [String] {
        (seeds ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Binds the gossip socket and joins through the seeds.
    func startGossip(listen: HostPort, secret: String?, previous: [String], logger: Logger) async throws -> Gossip {
        guard let secret, !secret.isEmpty else { throw ValidationError("--gossip needs the cluster secret (--secret-file or SWITCHBOARD_SECRET): it seals every packet") }
        let configuration = GossipConfiguration(
            id: id, listen: listen, seeds: seedList,
            metadata: Metadata(role: .node, api: api, peer: peer), keyring: try Keyring(primary: secret, previous: previous))
        let gossip = try Gossip(configuration: configuration, logger: logger)
        do {
            try await gossip.start()
        } catch {
            throw ValidationError("cannot listen for gossip on \(listen): \(error)")
        }
        return gossip
    }
}

/// `--log-level` as the node and the balancer accept it.
func validateLogLevel(_ level: String) throws {
    guard Logger.Level(rawValue: level) != nil else { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical") }
}

/// Logs to standard error at `level` (validated by `validateLogLevel`).
func bootstrapLogging(_ level: String) {
    let level = Logger.Level(rawValue: level)!
    LoggingSystem.bootstrap { label in
        var handler = StandardErrorLogHandler(label: label)
        handler.logLevel = level
        return handler
    }
}

/// `StreamLogHandler` to standard error, but a logger's metadata is formatted only when a line
/// is written. `StreamLogHandler` formats it every time it is set, and the HTTP server sets a
/// request id on every request's logger: 2 % of a loaded leader's CPU for lines rarely written.
struct StandardErrorLogHandler: LogHandler {
    private var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]

    init(label: String) { stream = .standardError(label: label) }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        if !metadata.isEmpty { event.metadata = metadata.merging(event.metadata ?? [:]) { _, explicit in explicit } }
        stream.log(event: event)
    }
}

extension HostPort {
    /// `host:port` as given to a flag, or a usage error naming the flag.
    init(_ text: String, option: String) throws {
        guard let address = HostPort(text) else { throw ValidationError("\(option) must be host:port, e.g. 127.0.0.1:8081; got '\(text)'") }
        self = address
    }
}

enum AdminToken {
    /// The admin token's hash: from the given token, else from `<data>/admin-token.sha256`, else
    /// a new token is generated, printed once on stdout, and only its hash kept.
    static func resolve(given: String?, dataDirectory: String, logger: Logger) throws -> String {
        if let given, !given.isEmpty { return Secrets.tokenHash(given) }
        let path = dataDirectory + "/admin-token.sha256"
        if let stored = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), stored.count == 64 {
            return stored
        }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let token = Secrets.token()
        let hash = Secrets.tokenHash(token)
        try (hash + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        FileHandle.standardOutput.write(Data("Admin token (shown once; only its hash is stored in \(path)):\n\(token)\n".utf8))
        logger.notice("generated an admin token", metadata: ["node.data": "\(dataDirectory)"])
        return hash
    }
}

enum FileLimit {
    /// Every WebSocket and HTTP connection is a file descriptor: raise the soft limit to the hard
    /// one, and say so when the hard limit is low.
    static func raise(logger: Logger) {
        let limit = OpenFiles.raiseToHardLimit()
        if limit < 4096 {
            logger.warning(
                "open-file limit is low: each agent WebSocket needs one; raise it with `ulimit -n 65536` (hard limit in /etc/security/limits.conf)",
                metadata: ["process.open_files_max": "\(limit)"])
        }
    }
}
