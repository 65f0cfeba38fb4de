import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `switchboard cluster`: runs a cluster described by a file (cluster/local.toml) as child
/// processes on this machine, for development, demos and fault drills.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Start, inspect, stop and break a local cluster described by a file (default cluster/local.toml).",
        discussion: """
            up               start every node (the first bootstraps, the others join)
            status           each node's process, readiness and Raft role
            kill n1          kill -9 one node, as a crash would
            restart n1       stop it if running, start it again on its data
            down             SIGTERM every node (a leader hands over first)

            Each node keeps its data and log under <data>/<id>/ (data = .switchboard by
            default): state.sqlite, raft.log, node.log, pid.
            """,
        subcommands: [Up.self, Status.self, Down.self, Kill.self, Restart.self])

    struct Options: ParsableArguments {
        @Argument(help: "The cluster file.")
        var file = "cluster/local.toml"
    }

    /// One node of the cluster file: `<id> [file]`.
    struct NodeOptions: ParsableArguments {
        @Argument(help: "The node's id.")
        var nodeId: String
        @OptionGroup var options: Options

        func resolve() throws -> (LocalCluster, LocalCluster.Member) {
            let cluster = try LocalCluster(file: options.file)
            return (cluster, try cluster.node(nodeId))
        }
    }

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start every node not already running; wait for a leader and every member.")
        @OptionGroup var options: Options
        @Option(help: "Seconds to wait for the cluster to form.")
        var timeout = 60.0

        func run() async throws {
            let cluster = try LocalCluster(file: options.file)
            for node in cluster.nodes { try cluster.start(node) }
            print("waiting for a leader and \(cluster.nodes.count) voters...")
            let deadline = Date().addingTimeInterval(timeout)
            var view: [String: Any] = [:]
            while Date() < deadline {
                if let current = await cluster.clusterView(), let nodes = current["nodes"] as? [[String: Any]] {
                    view = current
                    let voters = nodes.filter { (($0["raft"] as? [String: Any])?["voter"] as? Bool) ?? false }.count
                    if current["leader"] is String, voters == cluster.nodes.count { break }
                }
                try await Task.sleep(for: .milliseconds(250))
            }
            guard let leader = view["leader"] as? String else {
                throw ValidationError("no leader within \(Int(timeout)) s; see \(cluster.dataRoot)/<id>/node.log")
            }
            print("cluster is up; leader \(leader)")
            for node in cluster.nodes { print("  \(node.id)  http://\(node.api)   peer \(node.peer)   log \(cluster.directory(node))/node.log") }
            if let balancer = cluster.balancer {
                try cluster.start(balancer)
                print("  balancer  http://\(balancer.api)   (point agents and webhooks here)   log \(cluster.directory(balancer))/balancer.log")
                if let admin = balancer.admin { print("  balancer status page http://\(admin)/   metrics http://\(admin)/metrics") }
            }
            print("admin token: \(cluster.adminToken)")
            print("try: curl -H 'Authorization: Bearer \(cluster.adminToken)' http://\((cluster.balancer ?? cluster.nodes[0]).api)/v1/cluster")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show each node's process, readiness and Raft view.")
        @OptionGroup var options: Options

        func run() async throws {
            let cluster = try LocalCluster(file: options.file)
            for node in cluster.nodes {
                let pid = cluster.runningPid(node)
                let ready = await cluster.get("http://\(node.api)/readyz", admin: false)
                let role = await cluster.get("http://\(node.api)/v1/cluster", admin: true).flatMap { view -> String? in
                    guard let nodes = view["nodes"] as? [[String: Any]], let me = nodes.first(where: { $0["id"] as? String == node.id }) else { return nil }
                    return (me["raft"] as? [String: Any])?["role"] as? String
                }
                let state = pid.map { "running (pid \($0))" } ?? "stopped"
                let readiness = ready.map { ($0["ready"] as? Bool ?? false) ? "ready, applied \($0["appliedIndex"] ?? "?")" : "not ready" } ?? "no answer"
                print("\(node.id)  \(state)  \(readiness)  role \(role ?? "-")  http://\(node.api)")
            }
            if let balancer = cluster.balancer {
                print("balancer  \(cluster.runningPid(balancer).map { "running (pid \($0))" } ?? "stopped")  http://\(balancer.api)")
            }
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop every node with SIGTERM (SIGKILL after 10 s).")
        @OptionGroup var options: Options

        func run() async throws {
            let cluster = try LocalCluster(file: options.file)
            if let balancer = cluster.balancer { await cluster.stop(balancer) }
            for node in cluster.nodes { await cluster.stop(node) }
        }
    }

    struct Kill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "kill -9 one node, as a crash would.")
        @OptionGroup var target: NodeOptions

        func run() async throws {
            let (cluster, node) = try target.resolve()
            guard let pid = cluster.runningPid(node) else { throw ValidationError("\(node.id) is not running") }
            kill(pid, SIGKILL)
            print("killed \(node.id) (pid \(pid)) with SIGKILL")
        }
    }

    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop one node if it runs, then start it again on its data.")
        @OptionGroup var target: NodeOptions

        func run() async throws {
            let (cluster, node) = try target.resolve()
            await cluster.stop(node)
            try cluster.start(node)
        }
    }
}

/// A cluster file and the processes it describes.
struct LocalCluster {
    struct Member {
        var id: String
        var api: String
        var peer: String
        /// UDP gossip address (optional: without it the node runs without SWIM).
        var gossip: String?
        /// The `[balancer]` of the file: `api` is where it listens.
        var isBalancer = false
        /// The balancer's admin port (`/metrics`, status page), if the file gives one.
        var admin: String? = nil
    }

    var nodes: [Member] = []
    /// The balancer in front of the nodes, if the file has a `[balancer]` table.
    var balancer: Member?
    var secret = ""
    var adminToken = ""
    var dataRoot = ".switchboard"

    init(file: String) throws {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("cannot read the cluster file \(file)")
        }
        let tables = try MiniTOML.parse(text, file: file)
        for (name, values) in tables {
            switch name {
            case "cluster":
                secret = values["secret"] ?? ""
                adminToken = values["admin_token"] ?? ""
                dataRoot = values["data"] ?? dataRoot
            case "node":
                guard let id = values["id"], let api = values["api"], let peer = values["peer"] else {
                    throw ValidationError("\(file): every [[node]] needs id, api and peer")
                }
                nodes.append(Member(id: id, api: api, peer: peer, gossip: values["gossip"]))
            case "balancer":
                guard let listen = values["listen"], let gossip = values["gossip"] else {
                    throw ValidationError("\(file): [balancer] needs listen and gossip")
                }
                balancer = Member(id: "balancer", api: listen, peer: "", gossip: gossip, isBalancer: true, admin: values["admin"])
            default: throw ValidationError("\(file): unknown table [\(name)]")
            }
        }
        guard !nodes.isEmpty else { throw ValidationError("\(file) describes no [[node]]") }
        guard !secret.isEmpty, !adminToken.isEmpty else { throw ValidationError("\(file): [cluster] needs secret and admin_token") }
        guard Set(nodes.map(\.id)).count == nodes.count else { throw ValidationError("\(file): node ids must be distinct") }
        guard balancer == nil || nodes.allSatisfy({ $0.gossip != nil }) else {
            throw ValidationError("\(file): the balancer learns the nodes from gossip: give every [[node]] a gossip address")
        }
    }

    func node(_ id: String) throws -> Member {
        guard let node = (nodes + (balancer.map { [$0] } ?? [])).first(where: { $0.id == id }) else {
            throw ValidationError("no node '\(id)' in the cluster file; nodes: \(nodes.map(\.id).joined(separator: ", "))\(balancer == nil ? "" : ", balancer")")
        }
        return node
    }

    func directory(_ node: Member) -> String { dataRoot + "/" + node.id }

    func runningPid(_ node: Member) -> pid_t? {
        guard let text = try? String(contentsOfFile: directory(node) + "/pid", encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0
        else { return nil }
        // A recycled pid belongs to another program: check it is a switchboard node.
        let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        return command.contains("switchboard") ? pid : nil
    }

    /// Starts `node` unless it runs: the first node of a fresh cluster bootstraps it, the
    /// others join through the first.
    func start(_ node: Member) throws {
        if let pid = runningPid(node) {
            print("\(node.id) already running (pid \(pid))")
            return
        }
        let directory = directory(node)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var arguments = ["node", "--id", node.id, "--data", directory, "--api", node.api, "--peer", node.peer, "--admin-token", adminToken]
        if node.isBalancer, let gossip = node.gossip {
            arguments = ["balancer", "--id", node.id, "--listen", node.api, "--gossip", gossip, "--seeds", nodes.compactMap(\.gossip).joined(separator: ",")]
            if let admin = node.admin { arguments += ["--admin", admin] }
        } else if let gossip = node.gossip {
            // Any reachable member is enough; every other member is listed so that a restart
            // finds one whichever are down.
            arguments += ["--gossip", gossip]
            let seeds = nodes.compactMap(\.gossip).filter { $0 != gossip }
            if !seeds.isEmpty { arguments += ["--seeds", seeds.joined(separator: ",")] }
        }
        if !node.isBalancer, !FileManager.default.fileExists(atPath: directory + "/raft-snapshot") {
            arguments += node.id == nodes[0].id ? ["--bootstrap"] : ["--join", nodes[0].peer]
        }
        let logPath = directory + (node.isBalancer ? "/balancer.log" : "/node.log")
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw ValidationError("cannot write \(logPath)") }
        log.seekToEndOfFile()
        let process = Process()
        // Foundation starts the child in a process group of its own: Ctrl-C in this terminal
        // does not reach the nodes.
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["SWITCHBOARD_SECRET"] = secret
        process.environment = environment
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try "\(process.processIdentifier)\n".write(toFile: directory + "/pid", atomically: true, encoding: .utf8)
        print(
            node.isBalancer
                ? "started balancer (pid \(process.processIdentifier)): http://\(node.api), gossip \(node.gossip ?? "-")"
                : "started \(node.id) (pid \(process.processIdentifier)): api http://\(node.api), peer \(node.peer)\(node.gossip.map { ", gossip \($0)" } ?? "")")
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    func stop(_ node: Member) async {
        guard let pid = runningPid(node) else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0, Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if kill(pid, 0) == 0 {
            kill(pid, SIGKILL)
            print("\(node.id) did not stop within 10 s; killed it")
        } else {
            print("stopped \(node.id)")
        }
        try? FileManager.default.removeItem(atPath: directory(node) + "/pid")
    }

    /// This executable, so children run the same build.
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    func clusterView() async -> [String: Any]? {
        for node in nodes {
            if let view = await get("http://\(node.api)/v1/cluster", admin: true) { return view }
        }
        return nil
    }

    func get(_ url: String, admin: Bool) async -> [String: Any]? {
        guard let url = URL(string: url) else { return nil }
        var request = URLRequest(url: url, timeoutInterval: 2)
        if admin { request.setValue("Bearer \(adminToken)", forHTTPHeaderField: "Authorization") }
        guard let (data, _) = try? await URLSession.shared.data(for: request) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }
}

/// The part of TOML a cluster file uses: `[table]`, `[[array-table]]`, `key = "string"`,
/// `key = number`, `key = true|false`, and `#` comments.
enum MiniTOML {
    static func parse(_ text: String, file: String) throws -> [(String, [String: String])] {
        var tables: [(String, [String: String])] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#"), !line[..<hash].contains("\"") || line[..<hash].filter({ $0 == "\"" }).count % 2 == 0 {
                line = line[..<hash]
            }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            if trimmed.hasPrefix("[[") && trimmed.hasSuffix("]]") {
                tables.append((String(trimmed.dropFirst(2).dropLast(2)).trimmingCharacters(in: .whitespaces), [:]))
            } else if trimmed.hasPrefix("[") && trimmed.hasSuffix("]") {
                tables.append((String(trimmed.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces), [:]))
            } else if let equals = trimmed.firstIndex(of: "=") {
                guard !tables.isEmpty else { throw ValidationError("\(file):\(number + 1): a key outside any [table]") }
                let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
                var value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                if value.hasPrefix("\"") {
                    guard value.count >= 2, value.hasSuffix("\"") else { throw ValidationError("\(file):\(number + 1): unterminated string") }
                    value = String(value.dropFirst().dropLast())
                }
                tables[tables.count - 1].1[key] = value
            } else {
                throw ValidationError("\(file):\(number + 1): expected [table], [[table]] or key = value, got '\(trimmed)'")
            }
        }
        return tables
    }
}
