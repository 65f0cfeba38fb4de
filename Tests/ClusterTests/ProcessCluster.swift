import Foundation
import Synchronization
import SWIMShell
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Real `switchboard node` processes on loopback: the first bootstraps, the others join. Each
/// node has its own data directory and log; `kill9`, `pause` and `restart` act on the process.
final class ProcessCluster: @unchecked Sendable {
    // @unchecked: used from one test at a time; `processes` is guarded by `lock`.
    struct Member {
        var id: String
        var api: String
        var peer: String
        var directory: String
    }

    static let adminToken = "cluster-test-admin"
    static let secret = "cluster-test-secret"
    let root: String
    private(set) var members: [Member] = []
    private var processes: [String: Process] = [:]
    private let lock = NSLock()
    let extraArguments: [String]

    init(extraArguments: [String] = []) {
        root = NSTemporaryDirectory() + "switchboard-cluster-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        self.extraArguments = extraArguments
    }

    static var binary: String? {
        // On Linux the test bundle's URL is the build products directory, which holds the executable.
        let products = Bundle(for: ProcessCluster.self).bundleURL
        return [products, products.deletingLastPathComponent()].map { $0.appendingPathComponent("switchboard").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Adds a member description with free ports on 127.0.0.1.
    @discardableResult
    func describe(_ id: String) -> Member {
        let member = Member(id: id, api: "127.0.0.1:\(Self.freePort())", peer: "127.0.0.1:\(Self.freePort())", directory: root + "/" + id)
        members.append(member)
        return member
    }

    func member(_ id: String) -> Member { members.first { $0.id == id }! }

    /// Starts `id`: bootstrap if it is the first member and its directory is new, join through
    /// the first member otherwise.
    func start(_ id: String, secret: String = ProcessCluster.secret, flags: [String] = []) throws {
        guard let binary = Self.binary else { throw XCTSkip("the switchboard executable is not built beside the tests") }
        let member = member(id)
        var arguments = [
            "node", "--id", id, "--data", member.directory, "--api", member.api, "--peer", member.peer,
            "--password-memory-kib", "8", "--log-level", "info",
        ] + extraArguments + flags
        if !FileManager.default.fileExists(atPath: member.directory + "/raft-snapshot") {
            arguments += id == members[0].id ? ["--bootstrap"] : ["--join", members[0].peer]
        }
        try FileManager.default.createDirectory(atPath: member.directory, withIntermediateDirectories: true)
        let logPath = member.directory + "/node.log"
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = FileHandle(forWritingAtPath: logPath)!
        log.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["SWITCHBOARD_SECRET": secret, "SWITCHBOARD_ADMIN_TOKEN": Self.adminToken]) { $1 }
        process.standardOutput = log
        process.standardError = log
        try process.run()
        lock.withLock { processes[id] = process }
    }

    func pid(_ id: String) -> pid_t? { lock.withLock { processes[id].map(\.processIdentifier) } }

    func kill9(_ id: String) {
        guard let process = lock.withLock({ processes.removeValue(forKey: id) }) else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func pause(_ id: String) { if let pid = pid(id) { kill(pid, SIGSTOP) } }
    func resume(_ id: String) { if let pid = pid(id) { kill(pid, SIGCONT) } }

    /// SIGTERM and wait for a clean exit.
    func stop(_ id: String) {
        guard let process = lock.withLock({ processes.removeValue(forKey: id) }) else { return }
        kill(process.processIdentifier, SIGCONT)
        process.terminate()
        process.waitUntilExit()
    }

    /// Sends SIGTERM to `id` and returns how long it took to exit (at most `limit`, then it is
    /// left running for `tearDown`).
    func terminateAndTime(_ id: String, limit: Duration) async throws -> Duration {
        guard let pid = pid(id) else { throw XCTSkip("\(id) is not running") }
        let started = ContinuousClock.now
        kill(pid, SIGTERM)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0, ContinuousClock.now - started < limit { try await Task.sleep(for: .milliseconds(10)) }
        return ContinuousClock.now - started
    }

    func stopAll() { for member in members { stop(member.id) } }

    func tearDown() {
        for member in members { kill9(member.id) }
        try? FileManager.default.removeItem(atPath: root)
    }

    func log(_ id: String) -> String { (try? String(contentsOfFile: member(id).directory + "/node.log", encoding: .utf8)) ?? "" }

    // MARK: HTTP

    struct Reply {
        var status: Int
        var json: [String: Any]
        var headers: [AnyHashable: Any]
    }

    /// A blocking TCP socket connected to `host:port` (IPv4), or -1.
    static func connectedSocket(host: String, port: Int) -> Int32 {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { return -1 }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(socket)
            return -1
        }
        return socket
    }

    /// The body of `GET path` on a member's API as text, or "" when it does not answer.
    func text(_ id: String, _ path: String) async -> String {
        guard let (data, _) = try? await URLSession.shared.data(from: URL(string: "http://\(member(id).api)\(path)")!) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    func request(_ id: String, _ method: String, _ path: String, body: String? = nil, token: String? = ProcessCluster.adminToken,
                 headers: [String: String] = [:], timeout: TimeInterval = 10) async throws -> Reply {
        var request = URLRequest(url: URL(string: "http://\(member(id).api)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = timeout
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        return Reply(
            status: http?.statusCode ?? 0, json: ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:],
            headers: http?.allHeaderFields ?? [:])
    }

    /// The leader according to `id`'s `/v1/cluster`, if it answers.
    func leader(asking id: String) async -> String? {
        guard let reply = try? await request(id, "GET", "/v1/cluster", timeout: 1) else { return nil }
        return reply.json["leader"] as? String
    }

    func voters(asking id: String) async -> [String] {
        guard let reply = try? await request(id, "GET", "/v1/cluster", timeout: 1), let nodes = reply.json["nodes"] as? [[String: Any]] else { return [] }
        return nodes.filter { (($0["raft"] as? [String: Any])?["voter"] as? Bool) ?? false }.compactMap { $0["id"] as? String }
    }

    func appliedIndex(_ id: String) async -> Int? {
        guard let reply = try? await request(id, "GET", "/readyz", token: nil, timeout: 1) else { return nil }
        return reply.json["appliedIndex"] as? Int
    }

    /// Waits until `condition` holds, polling every 25 ms; fails the test after `seconds`.
    func waitUntil(_ what: String, seconds: Double = 30, file: StaticString = #filePath, line: UInt = #line,
                   _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        XCTFail("timed out after \(seconds) s waiting for: \(what)", file: file, line: line)
        throw CancellationError()
    }

    /// Starts every described member and waits until all are voters with a leader.
    func startAll() async throws {
        try start(members[0].id)
        try await waitUntil("\(members[0].id) leads") { await leader(asking: members[0].id) == members[0].id }
        for member in members.dropFirst() { try start(member.id) }
        do {
            try await waitUntil("\(members.count) voters") { await voters(asking: members[0].id).count == members.count }
        } catch {
            // The logs go with the directory at tear-down: print what each member said.
            let view = try? await request(members[0].id, "GET", "/v1/cluster", timeout: 1)
            print("cluster view from \(members[0].id): \(view?.json ?? [:])")
            for member in members { print("--- \(member.id) node.log, last 4,000 bytes:\n\(log(member.id).suffix(4000))") }
            throw error
        }
    }

    /// Ports handed out in this process: the kernel may give a port just closed to the next
    /// probe, and two members of one cluster must not be given the same one.
    private static let handedOut = Mutex<Set<Int>>([])

    /// A port free on 127.0.0.1 now, never one this process handed out before.
    static func freePort() -> Int {
        while true {
            let port = probePort()
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
    }

    private static func probePort() -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Thread-safe set of acknowledged ids.
final class Acknowledged: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var ids: Set<String> = []
    func insert(_ id: String) { _ = lock.withLock { ids.insert(id) } }
    var count: Int { lock.withLock { ids.count } }
    var all: Set<String> { lock.withLock { ids } }
}

/// A real `switchboard balancer` process in front of a `ProcessCluster`, with its admin port;
/// its log is `balancer.log` in the cluster's directory.
final class BalancerProcess: @unchecked Sendable {
    // @unchecked: immutable after init; the Process is only terminated.
    let port = ProcessCluster.freePort()
    let adminPort = ProcessCluster.freePort()
    let logPath: String
    private let process = Process()

    var base: String { "http://127.0.0.1:\(port)" }

    /// The gossip key of `secret` seals the balancer's gossip (the balancer never holds the
    /// secret); it reaches the process in its environment.
    init(cluster: ProcessCluster, arguments: [String], secret: String = ProcessCluster.secret) throws {
        let binary = try XCTUnwrap(ProcessCluster.binary)
        logPath = cluster.root + "/balancer.log"
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["balancer", "--listen", "127.0.0.1:\(port)", "--admin", "127.0.0.1:\(adminPort)"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["SWITCHBOARD_GOSSIP_KEY": Keyring.gossipKey(fromSecret: secret)]) { $1 }
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The balancer logged that it admitted the backend `id` (two good checks).
    func admitted(_ id: String) -> Bool { log().contains("balancer.backend=\(id) balancer.reason=2 good checks") }

    /// The admin port's Prometheus text.
    func metrics() async -> String {
        guard let (data, _) = try? await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(adminPort)/metrics")!) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The value of `family{backend="id"}` on /metrics.
    func metric(_ family: String, backend: String) async -> Int? {
        let prefix = "\(family){backend=\"\(backend)\"} "
        return await metrics().split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }.map { Int($0) }
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}
