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
}
