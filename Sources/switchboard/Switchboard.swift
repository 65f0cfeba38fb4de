import AgentAPI
import ArgumentParser
import Foundation
import Logging
import Metrics
import NodeRuntime
import Prometheus
import ServiceLifecycle

/// `switchboard`: the contact-center node and its tools. Wiring only; the behaviour lives in
/// the library modules.
@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A high-availability contact-center node.",
        discussion: """
            Start a node with its data under .switchboard/n1 and its API on 127.0.0.1:8081:

              switchboard node

            The first start prints an admin token (only its hash is kept); pass it as
            `Authorization: Bearer <token>` to the admin endpoints.
            """,
        subcommands: [NodeCommand.self, SimulateCommand.self])
}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a node: the HTTP and WebSocket API over a durable command log and state.sqlite.",
        discussion: """
            Every state change is a command appended to <data>/log/commands.log (fsynced, many per
            fsync) and applied to <data>/state.sqlite. Stopping with SIGTERM or SIGINT finishes the
            requests in flight and closes the log. After a crash the node replays the log.
            """)

    @Option(help: "This node's id, shown in X-Switchboard-Node and /v1/cluster.")
    var id = "n1"

    @Option(help: "Data directory (created if missing). Default: .switchboard/<id>.")
    var data: String?

    @Option(help: "host:port of the HTTP and WebSocket API.")
    var api = "127.0.0.1:8081"

    @Option(help: "Admin token (or SWITCHBOARD_ADMIN_TOKEN). If neither is set, one is generated on first start and printed once.")
    var adminToken: String?

    @Option(help: "Token for channel webhooks (or SWITCHBOARD_CHANNEL_TOKEN). Without one, webhooks use the admin token.")
    var channelToken: String?

    @Option(help: "PBKDF2-SHA256 rounds for new password hashes.")
    var passwordRounds = PasswordHasher.productionRounds

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical") }
        guard (1...10_000_000).contains(passwordRounds) else { throw ValidationError("--password-rounds must be 1...10000000") }
        _ = try HostPort(api, option: "--api")
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "switchboard")
        FileLimit.raise(logger: logger)
        let directory = data ?? ".switchboard/\(id)"
        let address = try HostPort(api, option: "--api")

        // 1. Secrets: the admin token is known only by its hash.
        let environment = ProcessInfo.processInfo.environment
        let adminHash = try AdminToken.resolve(
            given: adminToken ?? environment["SWITCHBOARD_ADMIN_TOKEN"], dataDirectory: directory, logger: logger)
        var configuration = NodeConfiguration(id: id, dataDirectory: directory, adminTokenHash: adminHash)
        configuration.channelTokenHash = (channelToken ?? environment["SWITCHBOARD_CHANNEL_TOKEN"]).map(Secrets.tokenHash)
        configuration.passwordRounds = passwordRounds
        configuration.apiAddress = api

        // 2. The node: opens the log and state.sqlite, replays what was not applied.
        let node = try Node(configuration: configuration, logger: logger)

        // 3. The API, then the service group. Services stop in reverse order: the API drains
        //    its in-flight requests first, then the node closes its log.
        let api = API(node: node, logger: logger)
        let application = api.application(host: address.host, port: address.port, metrics: APIMetrics(registry: registry))
        logger.info("api listening", metadata: ["node.id": "\(id)", "http.address": "\(address)"])
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: NodeService(node: node)), .init(service: application)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

/// `host:port` as given to a flag.
struct HostPort: CustomStringConvertible {
    var host: String
    var port: Int

    init(_ text: String, option: String) throws {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port),
            colon > text.startIndex
        else { throw ValidationError("\(option) must be host:port, e.g. 127.0.0.1:8081; got '\(text)'") }
        host = String(text[..<colon])
        self.port = port
    }

    var description: String { "\(host):\(port)" }
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
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        if limit.rlim_cur < 4096 {
            logger.warning(
                "open-file limit is low: each agent WebSocket needs one; raise it with `ulimit -n 65536` (hard limit in /etc/security/limits.conf)",
                metadata: ["process.open_files_max": "\(limit.rlim_cur)"])
        }
    }
}
