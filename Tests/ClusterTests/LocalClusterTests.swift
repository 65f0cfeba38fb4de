import ClusterFile
import Foundation
import XCTest

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
}
