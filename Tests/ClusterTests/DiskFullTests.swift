import Foundation
import XCTest

/// A member whose disk fills while it serves writes: a real tmpfs under its data directory,
/// filled by a file, with real node processes around it.
final class DiskFullTests: XCTestCase {
    /// Mounts a tmpfs of `megabytes` at `path`; nil when this machine does not allow it (not root).
    func mountTmpfs(at path: String, megabytes: Int) throws -> Bool {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", path]
        mount.standardError = FileHandle.nullDevice
        try mount.run()
        mount.waitUntilExit()
        return mount.terminationStatus == 0
    }

    func unmount(_ path: String) {
        let umount = Process()
        umount.executableURL = URL(fileURLWithPath: "/bin/umount")
        umount.arguments = ["-l", path]
        try? umount.run()
        umount.waitUntilExit()
    }

    /// Writes zeros to `path` until the file system refuses: the disk is full.
    func fill(_ path: String) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        let chunk = [UInt8](repeating: 0, count: 1 << 16)
        while chunk.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0 {}
    }

    func testAMemberWhoseDiskFillsIsNotReadyRefusesWritesAndCatchesUpAfterARestart() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        for id in ["n1", "n2", "n3"] { cluster.describe(id) }
        let full = cluster.member("n3").directory
        guard try mountTmpfs(at: full, megabytes: 48) else { throw XCTSkip("mounting a tmpfs needs root") }
        defer { unmount(full) }
        try await cluster.startAll()

        var acknowledged: [String] = []
        func write(through id: String, _ n: Int) async -> Int {
            let reply = try? await cluster.request(id, "POST", "/v1/contacts", body: #"{"name":"Contact \#(n)"}"#, timeout: 5)
            if reply?.status == 201, let contact = reply?.json["id"] as? String { acknowledged.append(contact) }
            return reply?.status ?? 0
        }
        for n in 0..<20 { _ = await write(through: "n1", n) }
        XCTAssertEqual(acknowledged.count, 20)

        // n3's disk fills while writes go on through n1.
        fill(full + "/filler")
        var n = 20
        try await cluster.waitUntil("n3 reports its storage failure on /readyz", seconds: 20) {
            n += 1
            _ = await write(through: "n1", n)
            guard let reply = try? await cluster.request("n3", "GET", "/readyz", token: nil, timeout: 1) else { return false }
            return reply.status == 503 && ((reply.json["reason"] as? String) ?? "").contains("storage failed")
        }
        let reason = try await cluster.request("n3", "GET", "/readyz", token: nil).json["reason"] as? String ?? ""
        XCTAssertTrue(reason.contains("No space left") || reason.contains("full"), "the reason names the cause: \(reason)")
        // The other two go on; n3 refuses writes with a 503 that says why, never a 2xx.
        for _ in 0..<10 {
            n += 1
            let status = await write(through: "n1", n)
            XCTAssertEqual(status, 201, "the majority keeps taking writes")
        }
        let refused = try await cluster.request("n3", "POST", "/v1/contacts", body: #"{"name":"Refused"}"#)
        XCTAssertEqual(refused.status, 503, "a write to the member with a full disk: \(refused.json)")

        // Space returns; a restart recovers from what reached n3's disk and catches up.
        try FileManager.default.removeItem(atPath: full + "/filler")
        cluster.kill9("n3")
        try cluster.start("n3")
        let applied = await cluster.appliedIndex("n1")
        let commit = try XCTUnwrap(applied)
        try await cluster.waitUntil("n3 ready and caught up to \(commit)", seconds: 30) {
            (await cluster.appliedIndex("n3") ?? 0) >= commit
        }
        for contact in acknowledged {
            let reply = try await cluster.request("n3", "GET", "/v1/contacts/\(contact)")
            XCTAssertEqual(reply.status, 200, "acknowledged contact \(contact) is on n3 after the restart")
        }
    }

    /// The leader's disk fills: it hands leadership to the most caught-up voter, the other two
    /// go on taking writes, and after a restart with space back it has every acknowledged write.
    func testALeaderWhoseDiskFillsHandsLeadershipOver() async throws {
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        for id in ["n1", "n2", "n3"] { cluster.describe(id) }
        let full = cluster.member("n1").directory
        guard try mountTmpfs(at: full, megabytes: 48) else { throw XCTSkip("mounting a tmpfs needs root") }
        defer { unmount(full) }
        try await cluster.startAll()
        try await cluster.waitUntil("n1 leads") { await cluster.leader(asking: "n1") == "n1" }

        var acknowledged: [String] = []
        func write(through id: String, _ n: Int) async -> Int {
            let reply = try? await cluster.request(id, "POST", "/v1/contacts", body: #"{"name":"Contact \#(n)"}"#, timeout: 5)
            if reply?.status == 201, let contact = reply?.json["id"] as? String { acknowledged.append(contact) }
            return reply?.status ?? 0
        }
        for n in 0..<10 { _ = await write(through: "n2", n) }
        fill(full + "/filler")
        var n = 10
        try await cluster.waitUntil("n2 or n3 leads after n1's disk filled", seconds: 20) {
            n += 1
            _ = await write(through: "n2", n)
            let leader = await cluster.leader(asking: "n2")
            return leader == "n2" || leader == "n3"
        }
        XCTAssertTrue(cluster.log("n1").contains("handing leadership to the most caught-up voter"), "the failed leader handed over")
        for _ in 0..<10 {
            n += 1
            let status = await write(through: "n2", n)
            XCTAssertEqual(status, 201, "the two others keep taking writes")
        }

        try FileManager.default.removeItem(atPath: full + "/filler")
        cluster.kill9("n1")
        try cluster.start("n1")
        let applied = await cluster.appliedIndex("n2")
        let commit = try XCTUnwrap(applied)
        try await cluster.waitUntil("n1 caught up to \(commit)", seconds: 30) { (await cluster.appliedIndex("n1") ?? 0) >= commit }
        for contact in acknowledged {
            let reply = try await cluster.request("n1", "GET", "/v1/contacts/\(contact)")
            XCTAssertEqual(reply.status, 200, "acknowledged contact \(contact) is on n1 after the restart")
        }
    }
}
