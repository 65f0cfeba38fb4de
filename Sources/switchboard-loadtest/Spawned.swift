import ClusterFile
import Foundation
import LoadTestCore
import RaftCore
import Seeded
import Synchronization
import Wire

/// The cluster a `--spawn` run started from its file: real processes, real signals. Faults
/// from the `--chaos` rules act on them and are timestamped.
final class Spawned: Sendable {
    let cluster: LocalCluster
    let log: @Sendable (String) -> Void
    private let faults = Mutex<[Summary.Fault]>([])
    /// The faults in force, by node: "kill" until its restart, "pause" until it resumes,
    /// "restart" until it is ready again. A paused node is not chosen for another fault.
    private let ongoing = Mutex<[String: String]>([:])

    var currentFault: String? {
        let now = ongoing.withLock { $0 }
        return now.isEmpty ? nil : now.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    }

    /// The processes it started that run now, by name (the nodes' ids and "balancer").
    var processes: [(name: String, pid: pid_t)] {
        (cluster.nodes + [cluster.balancer!]).compactMap { node in cluster.runningPid(node).map { (node.id, $0) } }
    }

    init(file: String, switchboard: String, log: @escaping @Sendable (String) -> Void) throws {
        cluster = try LocalCluster(file: file, executable: switchboard)
        guard cluster.balancer != nil else {
            throw LoadTestError.usage("--spawn \(file): the file has no [balancer]; the load goes through the balancer")
        }
        self.log = log
    }

    var target: String { "\(cluster.scheme)://\(cluster.balancer!.api)" }
    var recorded: [Summary.Fault] { faults.withLock { $0 }.sorted { $0.atSeconds < $1.atSeconds } }

    /// Starts every node and the balancer; returns once there is a leader, every member votes,
    /// and the balancer answers `/readyz` through a node.
    func up(timeout: Duration = .seconds(90)) async throws {
        // Something already listening where this cluster will (a previous run's processes, whose
        // data directory may be gone) would answer the readiness checks, and the run would
        // measure that stale cluster or hang. Refuse at once instead.
        for member in cluster.nodes + [cluster.balancer!] {
            for address in [member.api, member.peer] where !address.isEmpty && Self.accepts(address) {
                let pid = cluster.runningPid(member).map { " (pid \($0))" } ?? ""
                throw LoadTestError.usage(
                    "\(address), where \(member.id) of this cluster listens, already takes connections\(pid): a cluster from an earlier run "
                        + "is still up; stop it (switchboard cluster down <file>, or kill its processes) and run again")
            }
        }
        for node in cluster.nodes { try cluster.start(node) }
        let deadline = ContinuousClock.now + timeout
        _ = await cluster.waitForLeaderAndVoters(until: deadline)
        try cluster.start(cluster.balancer!)
        while ContinuousClock.now < deadline {
            if await cluster.get(target + "/readyz", admin: false)?["ready"] as? Bool == true {
                // The balancer admits a node after two good checks and warms it over 5 s.
                try await Task.sleep(for: .seconds(6))
                return
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw LoadTestError.usage("the spawned cluster did not become ready within \(timeout); see the logs under \(cluster.dataRoot)/")
    }

    /// True when something accepts a TCP connection at `address` (`host:port`, numeric IPv4).
    static func accepts(_ address: String) -> Bool {
        guard let target = HostPort(address) else { return false }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = UInt16(target.port).bigEndian
        guard inet_pton(AF_INET, target.host, &socketAddress.sin_addr) == 1 else { return false }
        return withUnsafePointer(to: &socketAddress) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// SIGTERM everything it started (nodes hand over leadership first).
    func down() async {
        for node in cluster.nodes + [cluster.balancer!] {
            if let pid = cluster.runningPid(node) { kill(pid, SIGCONT) }
            await cluster.stop(node)
        }
    }

    /// Before the integrity check: every node running and none paused.
    func heal() async {
        for node in cluster.nodes {
            if let pid = cluster.runningPid(node) {
                kill(pid, SIGCONT)
            } else {
                try? cluster.start(node)
                record(kind: "restart", node: node.id, at: nil)
            }
        }
        ongoing.withLock { $0.removeAll() }
    }

    /// Runs `rules` from `start` for `length` of run time.
    func chaos(_ rules: [ChaosRule], start: ContinuousClock.Instant, length: Duration, seed: UInt64) async {
        await withTaskGroup(of: Void.self) { group in
            for (number, rule) in rules.enumerated() {
                group.addTask {
                    var rng = SplitMix64(seed: seed &+ UInt64(number))
                    for at in rule.times(within: length) {
                        try? await Task.sleep(until: start + at)
                        await self.fire(rule, start: start, rng: &rng)
                    }
                }
            }
        }
    }

    private func fire(_ rule: ChaosRule, start: ContinuousClock.Instant, rng: inout SplitMix64) async {
        let seconds = { (ContinuousClock.now - start) / .seconds(1) }
        if case .all = rule.target {
            for node in cluster.nodes { await restart(node, at: seconds()) }
            return
        }
        guard let node = await choose(rule.target, rng: &rng) else {
            log("chaos '\(rule)': no node to act on now (none running, or no leader known); skipped")
            return
        }
        switch rule.action {
        case .kill(let restartAfter):
            guard let pid = cluster.runningPid(node) else { return }
            kill(pid, SIGKILL)
            record(kind: "kill", node: node.id, at: seconds())
            ongoing.withLock { $0[node.id] = "kill" }
            if let restartAfter {
                try? await Task.sleep(for: restartAfter)
                do {
                    try cluster.start(node)
                    ongoing.withLock { _ = $0.removeValue(forKey: node.id) }
                    record(kind: "restart", node: node.id, at: seconds())
                } catch {
                    log("chaos: could not restart \(node.id): \(error)")
                }
            }
        case .pause(let length):
            guard let pid = cluster.runningPid(node) else { return }
            kill(pid, SIGSTOP)
            ongoing.withLock { $0[node.id] = "pause" }
            record(kind: "pause", node: node.id, at: seconds())
            try? await Task.sleep(for: length)
            kill(pid, SIGCONT)
            ongoing.withLock { _ = $0.removeValue(forKey: node.id) }
            record(kind: "resume", node: node.id, at: seconds())
        case .restart:
            await restart(node, at: seconds())
        }
    }

    /// SIGTERM, start again, and wait (up to 30 s) until it is ready.
    private func restart(_ node: LocalCluster.Member, at seconds: Double) async {
        record(kind: "restart", node: node.id, at: seconds)
        ongoing.withLock { $0[node.id] = "restart" }
        defer { ongoing.withLock { _ = $0.removeValue(forKey: node.id) } }
        await cluster.stop(node)
        try? cluster.start(node)
        for _ in 0..<120 {
            if await cluster.get("\(cluster.scheme)://\(node.api)/readyz", admin: false)?["ready"] as? Bool == true { return }
            try? await Task.sleep(for: .milliseconds(250))
        }
        log("chaos: \(node.id) was not ready 30 s after its restart")
    }

    private func choose(_ target: ChaosRule.Target, rng: inout SplitMix64) async -> LocalCluster.Member? {
        let faults = ongoing.withLock { $0 }
        let running = cluster.nodes.filter { cluster.runningPid($0) != nil && faults[$0.id] != "pause" }
        switch target {
        case .node(let id): return running.first { $0.id == id }
        case .random: return running.isEmpty ? nil : running[Int(rng.next() % UInt64(running.count))]
        case .all: return nil
        case .leader, .follower:
            var leader: String?
            for node in running {
                if let view = await cluster.get("\(cluster.scheme)://\(node.api)/v1/cluster", admin: true), let id = view["leader"] as? String {
                    leader = id
                    break
                }
            }
            guard let leader else { return nil }
            if target == .leader { return running.first { $0.id == leader } }
            let followers = running.filter { $0.id != leader }
            return followers.isEmpty ? nil : followers[Int(rng.next() % UInt64(followers.count))]
        }
    }

    private func record(kind: String, node: String, at seconds: Double?) {
        let at = seconds ?? -1
        log("fault: \(kind) \(node)\(at >= 0 ? String(format: " at %.1fs", at) : " (settling)")")
        faults.withLock { $0.append(Summary.Fault(atSeconds: (at * 10).rounded() / 10, kind: kind, node: node)) }
    }
}
