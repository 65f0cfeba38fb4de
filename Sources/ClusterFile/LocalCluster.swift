import AsyncHTTPClient
import Foundation
import NIOCore
import Wire
import SWIMShell
import ServerTLS
import Synchronization

/// A cluster file's mistake, said plainly (`switchboard cluster` and `switchboard-loadtest
/// --spawn` print it).
public struct LocalClusterError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A cluster file and the processes it describes.
public struct LocalCluster: Sendable {
    public struct Member: Sendable {
        public var id: String
        public var api: String
        public var peer: String
        /// UDP gossip address (optional: without it the node runs without SWIM).
        public var gossip: String?
        /// The `[balancer]` of the file: `api` is where it listens.
        public var isBalancer = false
        /// The balancer's admin port (`/metrics`, status page), if the file gives one.
        public var admin: String? = nil
    }

    public var nodes: [Member] = []
    /// The balancer in front of the nodes, if the file has a `[balancer]` table.
    public var balancer: Member?
    public var secret = ""
    public var adminToken = ""
    public var dataRoot = ".switchboard"
    /// `password_memory_kib` of `[cluster]`: the Argon2id memory of the nodes' password hashing
    /// (`--password-memory-kib`); unset, the nodes' production default (OWASP's 19 MiB). Lowered
    /// only for load runs that log in thousands of agents.
    public var passwordMemoryKiB: Int?
    /// `logins_per_address` of `[cluster]`: `--logins-per-address` of the nodes; unset, their
    /// default (10 a second). Raised for load runs, where one address stands for every agent.
    public var loginsPerAddress: Double?
    /// `tls = true` in `[cluster]`: the members' APIs and the balancer speak HTTPS and WSS only,
    /// with certificates from a local CA kept in `<data>/tls` (`LocalCA`).
    public var tls = false

    /// `https` with `tls = true`, else `http`.
    public var scheme: String { tls ? "https" : "http" }
    /// The local CA's certificate, which clients trust (`curl --cacert`, the load tester).
    public var caCertificatePath: String? { tls ? dataRoot + "/tls/ca.pem" : nil }

    /// The `switchboard` executable the nodes and the balancer run.
    public let executable: String

    /// Reads and checks `file`; the processes will run `executable` (default: this program).
    public init(file: String, executable: String = LocalCluster.currentExecutable) throws {
        self.executable = executable
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw LocalClusterError("cannot read the cluster file \(file)")
        }
        let tables = try MiniTOML.parse(text, file: file)
        for (name, values) in tables {
            switch name {
            case "cluster":
                secret = values["secret"] ?? ""
                adminToken = values["admin_token"] ?? ""
                dataRoot = values["data"] ?? dataRoot
                if let memory = values["password_memory_kib"] {
                    guard let value = Int(memory), (8...262_144).contains(value) else {
                        throw LocalClusterError("\(file): password_memory_kib must be a number of KiB from 8 to 262144, got \(memory)")
                    }
                    passwordMemoryKiB = value
                }
                if let rate = values["logins_per_address"] {
                    guard let value = Double(rate), (0.1...100_000).contains(value) else {
                        throw LocalClusterError("\(file): logins_per_address must be a number of logins a second from 0.1 to 100000, got \(rate)")
                    }
                    loginsPerAddress = value
                }
                if let value = values["tls"] {
                    guard value == "true" || value == "false" else { throw LocalClusterError("\(file): tls must be true or false, got \(value)") }
                    tls = value == "true"
                }
                if values["password_rounds"] != nil {
                    throw LocalClusterError("\(file): password_rounds (PBKDF2) is gone: passwords are hashed with Argon2id; set password_memory_kib instead")
                }
            case "node":
                guard let id = values["id"], let api = values["api"], let peer = values["peer"] else {
                    throw LocalClusterError("\(file): every [[node]] needs id, api and peer")
                }
                nodes.append(Member(id: id, api: api, peer: peer, gossip: values["gossip"]))
            case "balancer":
                guard let listen = values["listen"], let gossip = values["gossip"] else {
                    throw LocalClusterError("\(file): [balancer] needs listen and gossip")
                }
                balancer = Member(id: "balancer", api: listen, peer: "", gossip: gossip, isBalancer: true, admin: values["admin"])
            default: throw LocalClusterError("\(file): unknown table [\(name)]")
            }
        }
        guard !nodes.isEmpty else { throw LocalClusterError("\(file) describes no [[node]]") }
        guard !secret.isEmpty, !adminToken.isEmpty else { throw LocalClusterError("\(file): [cluster] needs secret and admin_token") }
        guard Set(nodes.map(\.id)).count == nodes.count else { throw LocalClusterError("\(file): node ids must be distinct") }
        guard balancer == nil || nodes.allSatisfy({ $0.gossip != nil }) else {
            throw LocalClusterError("\(file): the balancer learns the nodes from gossip: give every [[node]] a gossip address")
        }
    }

    public func node(_ id: String) throws -> Member {
        guard let node = (nodes + (balancer.map { [$0] } ?? [])).first(where: { $0.id == id }) else {
            throw LocalClusterError("no node '\(id)' in the cluster file; nodes: \(nodes.map(\.id).joined(separator: ", "))\(balancer == nil ? "" : ", balancer")")
        }
        return node
    }

    public func directory(_ node: Member) -> String { dataRoot + "/" + node.id }

    public func runningPid(_ node: Member) -> pid_t? {
        guard let text = try? String(contentsOfFile: directory(node) + "/pid", encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        // An exited member is a zombie until its parent reaps it, and a zombie still answers
        // kill(pid, 0): our own children are reaped, anyone's zombie counts as stopped.
        guard Spawn.isAlive(pid) else { return nil }
        // A recycled pid belongs to another program: check the process runs this member (its
        // own arguments, as `start` gave them), whatever the executable is called: a copied or
        // renamed binary is still ours, another program is not.
        let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        return command.contains(Self.identifyingArguments(node, directory: directory(node))) ? pid : nil
    }

    /// The start of a member's arguments, NUL-separated as in `/proc/<pid>/cmdline`.
    static func identifyingArguments(_ node: Member, directory: String) -> String {
        let arguments = node.isBalancer ? ["balancer", "--id", node.id] : ["node", "--id", node.id, "--data", directory]
        return "\0" + arguments.joined(separator: "\0") + "\0"
    }

    /// Starts `node` unless it runs: the first node of a fresh cluster bootstraps it, the
    /// others join through the first.
    public func start(_ node: Member) throws {
        if let pid = runningPid(node) {
            print("\(node.id) already running (pid \(pid))")
            return
        }
        let directory = directory(node)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // Secrets go to the members in files only their owner reads, never on the command line.
        let secretFile = try writeSecret(secret, named: "cluster.secret")
        var arguments = [
            "node", "--id", node.id, "--data", directory, "--api", node.api, "--peer", node.peer,
            "--admin-token-file", try writeSecret(adminToken, named: "admin.token"), "--secret-file", secretFile,
        ]
        if node.isBalancer, let gossip = node.gossip {
            // The balancer faces clients: it gets the gossip key, never the cluster secret.
            arguments = [
                "balancer", "--id", node.id, "--listen", node.api, "--gossip", gossip, "--seeds", nodes.compactMap(\.gossip).joined(separator: ","),
                "--gossip-key-file", try writeSecret(Keyring.gossipKey(fromSecret: secret), named: "gossip.key"),
            ]
            if let admin = node.admin { arguments += ["--admin", admin] }
        } else if let gossip = node.gossip {
            // Any reachable member is enough; every other member is listed so that a restart
            // finds one whichever are down.
            arguments += ["--gossip", gossip]
            let seeds = nodes.compactMap(\.gossip).filter { $0 != gossip }
            if !seeds.isEmpty { arguments += ["--seeds", seeds.joined(separator: ",")] }
        }
        if tls {
            // Certificates from the cluster's local CA, naming the address the member serves on.
            let ca = try LocalCA(directory: dataRoot + "/tls")
            try ca.ensureCertificate(member: node.id, hosts: [HostPort(node.api)?.host].compactMap { $0 })
            arguments += ["--tls-cert", ca.certificatePath(node.id), "--tls-key", ca.keyPath(node.id)]
            if node.isBalancer {
                arguments += ["--backend-ca", ca.caCertificatePath]
            } else {
                // The same certificate proves the member's id on the peer link.
                arguments += ["--peer-cert", ca.certificatePath(node.id), "--peer-key", ca.keyPath(node.id), "--peer-ca", ca.caCertificatePath]
            }
        }
        if !node.isBalancer, let passwordMemoryKiB { arguments += ["--password-memory-kib", "\(passwordMemoryKiB)"] }
        if !node.isBalancer, let admin = balancer?.admin { arguments += ["--balancer-page", "http://\(admin)/"] }
        if !node.isBalancer, let loginsPerAddress { arguments += ["--logins-per-address", "\(loginsPerAddress)"] }
        if !node.isBalancer, !FileManager.default.fileExists(atPath: directory + "/raft-snapshot") {
            arguments += node.id == nodes[0].id ? ["--bootstrap"] : ["--join", nodes[0].peer]
        }
        let logPath = directory + (node.isBalancer ? "/balancer.log" : "/node.log")
        let pid = try Spawn.detached(executable: executable, arguments: arguments, environment: ProcessInfo.processInfo.environment, log: logPath)
        try "\(pid)\n".write(toFile: directory + "/pid", atomically: true, encoding: .utf8)
        print(
            node.isBalancer
                ? "started balancer (pid \(pid)): \(scheme)://\(node.api), gossip \(node.gossip ?? "-")"
                : "started \(node.id) (pid \(pid)): api \(scheme)://\(node.api), peer \(node.peer)\(node.gossip.map { ", gossip \($0)" } ?? "")")
    }

    /// Writes `value` to `<data>/<name>`, readable and writable by its owner only (0600), and
    /// returns the path.
    func writeSecret(_ value: String, named name: String) throws -> String {
        let path = dataRoot + "/" + name
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw LocalClusterError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        fchmod(descriptor, 0o600)
        let bytes = Array((value + "\n").utf8)
        guard bytes.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) == bytes.count else {
            throw LocalClusterError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        return path
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    public func stop(_ node: Member) async {
        guard let pid = runningPid(node) else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while Spawn.isAlive(pid), Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if Spawn.isAlive(pid) {
            kill(pid, SIGKILL)
            print("\(node.id) did not stop within 10 s; killed it")
        } else {
            print("stopped \(node.id)")
        }
        try? FileManager.default.removeItem(atPath: directory(node) + "/pid")
    }

    /// This executable, so children run the same build.
    public static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Polls the members' `/v1/cluster` every 250 ms until a leader is known and every member
    /// of the file votes, or until `deadline`; the leader last seen (nil: none).
    public func waitForLeaderAndVoters(until deadline: ContinuousClock.Instant) async -> String? {
        var leader: String?
        while ContinuousClock.now < deadline {
            if let view = await clusterView(), let members = view["nodes"] as? [[String: Any]] {
                leader = view["leader"] as? String
                let voters = members.filter { (($0["raft"] as? [String: Any])?["voter"] as? Bool) ?? false }.count
                if leader != nil, voters == nodes.count { return leader }
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return leader
    }

    /// Waits until the balancer forwards requests to a node (its `/readyz` answers through it),
    /// so the first request after `cluster up` is not refused; false at the deadline.
    public func waitForBalancer(until deadline: ContinuousClock.Instant) async -> Bool {
        guard let balancer else { return true }
        while ContinuousClock.now < deadline {
            if let ready = await get("\(scheme)://\(balancer.api)/readyz", admin: false), ready["ready"] as? Bool == true { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    public func clusterView() async -> [String: Any]? {
        for node in nodes {
            if let view = await get("\(scheme)://\(node.api)/v1/cluster", admin: true) { return view }
        }
        return nil
    }

    /// `GET url` (2 s at most), its JSON answer; nil when unreachable or not JSON.
    public func get(_ url: String, admin: Bool) async -> [String: Any]? {
        var request = HTTPClientRequest(url: url)
        if admin { request.headers.add(name: "Authorization", value: "Bearer \(adminToken)") }
        guard let client = try? Self.client(trusting: caCertificatePath),
            let response = try? await client.execute(request, timeout: .seconds(2)),
            let body = try? await response.body.collect(upTo: 4 << 20)
        else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
    }

    /// One HTTP client per CA file for the life of the process (they are few and long-lived).
    private static let clients = Mutex<[String: HTTPClient]>([:])

    static func client(trusting caPath: String?) throws -> HTTPClient {
        guard let caPath else { return HTTPClient.shared }
        return try clients.withLock { clients in
            if let client = clients[caPath] { return client }
            var configuration = HTTPClient.Configuration()
            configuration.tlsConfiguration = try ClientTrust.configuration(trustingCA: caPath)
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            clients[caPath] = client
            return client
        }
    }
}

/// The part of TOML a cluster file uses: `[table]`, `[[array-table]]`, `key = "string"`,
/// `key = number`, `key = true|false`, and `#` comments.
public enum MiniTOML {
    public static func parse(_ text: String, file: String) throws -> [(String, [String: String])] {
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
                guard !tables.isEmpty else { throw LocalClusterError("\(file):\(number + 1): a key outside any [table]") }
                let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
                var value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                if value.hasPrefix("\"") {
                    guard value.count >= 2, value.hasSuffix("\"") else { throw LocalClusterError("\(file):\(number + 1): unterminated string") }
                    value = String(value.dropFirst().dropLast())
                }
                tables[tables.count - 1].1[key] = value
            } else {
                throw LocalClusterError("\(file):\(number + 1): expected [table], [[table]] or key = value, got '\(trimmed)'")
            }
        }
        return tables
    }
}

/// The open-file limit: every socket is a file descriptor, and a node or a load test holds
/// thousands.
public enum OpenFiles {
    /// Raises the soft limit to the hard one; returns the soft limit now in force.
    @discardableResult
    public static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }
}
