import ClusterFile
import Foundation
import SWIMShell
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `switchboard cluster status/down/kill` find a member's process from its pid file; the pid
/// must be that member's process, whatever the executable is called.
final class LocalClusterTests: XCTestCase {
    func testARunningMemberIsFoundWhateverTheExecutableIsCalledAndAnotherProgramIsNot() throws {
        let root = NSTemporaryDirectory() + "local-cluster-" + UUID().uuidString  // no "switchboard" in any argument
        try FileManager.default.createDirectory(atPath: root + "/data/n1", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try """
            [cluster]
            secret = "s"
            admin_token = "t"
            data = "\(root)/data"
            [[node]]
            id = "n1"
            api = "127.0.0.1:1"
            peer = "127.0.0.1:2"
            """.write(toFile: root + "/cluster.toml", atomically: true, encoding: .utf8)
        let cluster = try LocalCluster(file: root + "/cluster.toml")
        let member = try cluster.node("n1")

        // A process started with this member's arguments, by an executable not named switchboard.
        let ours = try Spawn.detached(
            executable: "/bin/sh", arguments: ["-c", "sleep 30; true", "node", "--id", "n1", "--data", cluster.directory(member), "--api", "x"],
            environment: [:], log: root + "/ours.log")
        defer { kill(ours, SIGKILL); _ = Spawn.reap(ours) }
        try "\(ours)\n".write(toFile: cluster.directory(member) + "/pid", atomically: true, encoding: .utf8)
        XCTAssertEqual(cluster.runningPid(member), ours, "a member's process under another executable name is still running")

        // A recycled pid: some other program.
        let other = try Spawn.detached(
            executable: "/bin/sh", arguments: ["-c", "sleep 30; true", "node", "--id", "n2", "--data", root + "/data/n2"],
            environment: [:], log: root + "/other.log")
        defer { kill(other, SIGKILL); _ = Spawn.reap(other) }
        try "\(other)\n".write(toFile: cluster.directory(member) + "/pid", atomically: true, encoding: .utf8)
        XCTAssertNil(cluster.runningPid(member), "pid \(other) runs another member's arguments: not n1")
    }

    /// The cluster file's hashing cost and login rate reach the nodes; the PBKDF2 setting that
    /// Argon2id replaced is refused with what to write instead; out-of-range values say their range.
    func testHashingCostAndLoginRateSettings() throws {
        let root = NSTemporaryDirectory() + "local-cluster-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        func file(_ settings: String) throws -> String {
            let path = root + "/\(UUID().uuidString).toml"
            try "[cluster]\nsecret = \"s\"\nadmin_token = \"t\"\n\(settings)\n[[node]]\nid = \"n1\"\napi = \"127.0.0.1:1\"\npeer = \"127.0.0.1:2\"\n"
                .write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let cluster = try LocalCluster(file: try file("password_memory_kib = 64\nlogins_per_address = 1000"))
        XCTAssertEqual(cluster.passwordMemoryKiB, 64)
        XCTAssertEqual(cluster.loginsPerAddress, 1000)
        let plain = try LocalCluster(file: try file(""))
        XCTAssertNil(plain.passwordMemoryKiB, "unset: the nodes' default (OWASP's)")
        XCTAssertNil(plain.loginsPerAddress)
        for (setting, expected) in [
            ("password_rounds = 2000", "password_memory_kib"), ("password_memory_kib = 4", "8 to 262144"),
            ("logins_per_address = 0", "0.1 to 100000"), ("logins_per_address = many", "0.1 to 100000"),
        ] {
            XCTAssertThrowsError(try LocalCluster(file: try file(setting)), setting) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(setting): \(error)")
            }
        }
    }

    /// `cluster up` hands the secrets to a member in files only their owner reads, not on the
    /// command line where `ps` shows them; the member's own files are its owner's alone.
    func testAMemberGetsItsSecretsFromOwnerOnlyFilesAndKeepsItsDataPrivate() async throws {
        let binary = try XCTUnwrap(ProcessCluster.binary, "the switchboard executable is built beside the tests")
        let root = NSTemporaryDirectory() + "local-cluster-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let api = "127.0.0.1:\(ProcessCluster.freePort())"
        try """
            [cluster]
            secret = "the-cluster-secret-42"
            admin_token = "the-admin-token-42"
            data = "\(root)/data"
            password_memory_kib = 8
            [[node]]
            id = "n1"
            api = "\(api)"
            peer = "127.0.0.1:\(ProcessCluster.freePort())"
            gossip = "127.0.0.1:\(ProcessCluster.freePort())"
            [balancer]
            listen = "127.0.0.1:\(ProcessCluster.freePort())"
            gossip = "127.0.0.1:\(ProcessCluster.freePort())"
            """.write(toFile: root + "/cluster.toml", atomically: true, encoding: .utf8)
        let cluster = try LocalCluster(file: root + "/cluster.toml", executable: binary)
        let member = try cluster.node("n1")
        try cluster.start(member)
        let pid = try XCTUnwrap(cluster.runningPid(member))
        defer { kill(pid, SIGKILL); _ = Spawn.reap(pid) }

        let commandLine = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8).replacingOccurrences(of: "\0", with: " ")
        XCTAssertFalse(commandLine.contains("the-cluster-secret-42") || commandLine.contains("the-admin-token-42"), "no secret in argv: \(commandLine)")
        func mode(_ path: String) throws -> Int {
            try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int, path)
        }
        XCTAssertEqual(try mode(root + "/data/cluster.secret"), 0o600)
        XCTAssertEqual(try mode(root + "/data/admin.token"), 0o600)

        // The balancer gets the gossip key alone: not the secret, in no argument, file or variable.
        let front = try cluster.node("balancer")
        try cluster.start(front)
        let balancerPid = try XCTUnwrap(cluster.runningPid(front))
        defer { kill(balancerPid, SIGKILL); _ = Spawn.reap(balancerPid) }
        let balancerArguments = try String(contentsOfFile: "/proc/\(balancerPid)/cmdline", encoding: .utf8).replacingOccurrences(of: "\0", with: " ")
        XCTAssertFalse(balancerArguments.contains("cluster.secret") || balancerArguments.contains("the-cluster-secret-42"), balancerArguments)
        XCTAssertTrue(balancerArguments.contains("--gossip-key-file"), balancerArguments)
        let environment = try String(contentsOfFile: "/proc/\(balancerPid)/environ", encoding: .utf8)
        XCTAssertFalse(environment.contains("the-cluster-secret-42"), "the balancer's environment holds no cluster secret")
        let gossipKey = try String(contentsOfFile: root + "/data/gossip.key", encoding: .utf8).trimmingCharacters(in: .newlines)
        XCTAssertEqual(gossipKey, Keyring.gossipKey(fromSecret: "the-cluster-secret-42"))
        XCTAssertFalse(gossipKey.contains("the-cluster-secret-42"))
        XCTAssertEqual(try mode(root + "/data/gossip.key"), 0o600)

        // The admin token in the file is the one the node takes.
        var answered = false
        let deadline = Date().addingTimeInterval(20)
        while !answered, Date() < deadline {
            var request = URLRequest(url: URL(string: "http://\(api)/v1/cluster")!)
            request.setValue("Bearer the-admin-token-42", forHTTPHeaderField: "Authorization")
            if let (_, response) = try? await URLSession.shared.data(for: request), (response as? HTTPURLResponse)?.statusCode == 200 {
                answered = true
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        XCTAssertTrue(answered, "the node accepts the admin token from its file")
        let directory = cluster.directory(member)
        XCTAssertEqual(try mode(directory), 0o700, "the data directory is closed to others")
        for file in ["raft.log", "state.sqlite", "raft-snapshot"] {
            XCTAssertEqual(try mode(directory + "/" + file), 0o600, "\(file) holds customers' data: its owner's alone")
        }
    }
}
