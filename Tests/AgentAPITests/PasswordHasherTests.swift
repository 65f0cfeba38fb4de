import AgentAPI
import ContactCenter
import Foundation
import HummingbirdTesting
import NodeRuntime
import XCTest

/// Hashes follow OWASP's PBKDF2-HMAC-SHA512 setting, carry scheme and cost, and a weaker stored
/// hash is replaced at the next login without ending a session.
final class PasswordHasherTests: XCTestCase {
    func testHashesCarrySchemeAndRoundsAndVerify() throws {
        let hasher = PasswordHasher(rounds: 1000)
        let stored = try hasher.hash("correct horse")
        let parts = stored.split(separator: "$")
        XCTAssertEqual(parts.count, 4, stored)
        XCTAssertEqual(parts[0], "pbkdf2-sha512", "the scheme is named in the hash: \(stored)")
        XCTAssertEqual(parts[1], "1000", "the rounds are named in the hash: \(stored)")
        XCTAssertEqual(parts[2].count, 32, "16 bytes of salt in hex: \(stored)")
        XCTAssertEqual(parts[3].count, 128, "64 bytes of SHA-512 output in hex: \(stored)")
        XCTAssertTrue(hasher.verify("correct horse", against: stored))
        XCTAssertFalse(hasher.verify("correct horsE", against: stored))
        XCTAssertNotEqual(try hasher.hash("correct horse"), stored, "every hash has its own salt")
        XCTAssertEqual(PasswordHasher.productionRounds, 210_000, "OWASP's iteration count for PBKDF2-HMAC-SHA512")
    }

    /// A hash from before (PBKDF2-SHA256) still logs in, and is marked for an upgrade; so is one
    /// with fewer rounds than the node writes now. A stronger one is kept.
    func testOlderHashesVerifyAndAskForARehash() throws {
        let legacy = PasswordHasher(rounds: 1000, scheme: .pbkdf2SHA256)
        let old = try legacy.hash("correct horse")
        XCTAssertTrue(old.hasPrefix("pbkdf2-sha256$1000$"), old)
        let current = PasswordHasher(rounds: 1000)
        XCTAssertTrue(current.verify("correct horse", against: old), "a PBKDF2-SHA256 hash must still verify")
        XCTAssertTrue(current.needsRehash(old), "another scheme asks for a rehash")
        XCTAssertFalse(current.needsRehash(try current.hash("x")), "a current hash is kept")
        XCTAssertTrue(PasswordHasher(rounds: 2000).needsRehash(try current.hash("x")), "fewer rounds than configured ask for a rehash")
        XCTAssertFalse(PasswordHasher(rounds: 500).needsRehash(try current.hash("x")), "lowering the cost never weakens stored hashes")
    }

    /// A stored hash is data: a malformed one never verifies, never traps, never asks for work.
    func testMalformedHashesAreRefusedWithoutTrapping() throws {
        let hasher = PasswordHasher(rounds: 1000)
        let good = try hasher.hash("pw").split(separator: "$").map(String.init)
        let bad = [
            "", "$$$", "pbkdf2-sha512", "md5$1000$00$00", "pbkdf2-sha512$0$\(good[2])$\(good[3])",
            "pbkdf2-sha512$-5$\(good[2])$\(good[3])", "pbkdf2-sha512$99999999999999999999$\(good[2])$\(good[3])",
            "pbkdf2-sha512$\(PasswordHasher.storedRoundsMax + 1)$\(good[2])$\(good[3])", "pbkdf2-sha512$1000$zz$\(good[3])",
            "pbkdf2-sha512$1000$\(good[2])$abcd", "pbkdf2-sha512$1000$$\(good[3])", "pbkdf2-sha512$1000$\(good[2])$\(good[3])$extra",
            "pbkdf2-sha512$1000$\(String(repeating: "ab", count: 65))$\(good[3])", "pbkdf2-sha512$1000$é\(good[2].dropFirst())$\(good[3])",
        ]
        for stored in bad {
            XCTAssertFalse(hasher.verify("pw", against: stored), "'\(stored)' must not verify")
            XCTAssertFalse(hasher.needsRehash(stored), "'\(stored)' is not a hash to upgrade")
        }
        let decoy = hasher.decoy()
        XCTAssertFalse(hasher.verify("", against: decoy), "the decoy matches no password")
        XCTAssertFalse(hasher.needsRehash(decoy), "the decoy is well-formed and current: \(decoy)")
    }

    /// An agent whose hash was written with fewer rounds logs in on a node that writes more: the
    /// login succeeds, the stored hash becomes the node's, the version does not move and the
    /// session from before still works.
    func testALoginUpgradesAWeakerHashWithoutEndingSessions() async throws {
        let directory = NSTemporaryDirectory() + "switchboard-rehash-" + UUID().uuidString
        let first = try TestNode(directory: directory, passwordRounds: 1000)
        let (agentId, earlierToken) = try await first.application().test(.router) { client in try await client.setUpAgent() }
        let storedBefore = try await first.node.state.read { try $0.store.agent(id: agentId)?.passwordHash } ?? ""
        XCTAssertTrue(storedBefore.hasPrefix("pbkdf2-sha512$1000$"), storedBefore)
        first.close(removing: false)

        let second = try TestNode(directory: directory, passwordRounds: 2000)
        defer { second.close() }
        try second.waitApplied(atLeast: 1)
        try await second.application().test(.router) { client in
            let before = try await client.call(.get, "/v1/agents/me", token: earlierToken)
            XCTAssertEqual(before.status, .ok, "\(before.json)")
            let login = try await client.call(.post, "/v1/sessions", token: nil, body: #"{"email":"ana@example.com","password":"correct horse"}"#)
            XCTAssertEqual(login.status, .created, "\(login.json)")
            let stored = try await second.node.state.read { try $0.store.agent(id: agentId)?.passwordHash } ?? ""
            XCTAssertTrue(stored.hasPrefix("pbkdf2-sha512$2000$"), "the login must store a hash at the node's rounds, got \(stored)")
            XCTAssertTrue(second.node.passwords.verify("correct horse", against: stored))
            let after = try await client.call(.get, "/v1/agents/me", token: earlierToken)
            XCTAssertEqual(after.status, .ok, "an upgrade is not a password change: the earlier session holds (\(after.json))")
            let again = try await client.call(.post, "/v1/sessions", token: nil, body: #"{"email":"ana@example.com","password":"correct horse"}"#)
            XCTAssertEqual(again.status, .created, "\(again.json)")
            let unchanged = try await second.node.state.read { try $0.store.agent(id: agentId)?.passwordHash } ?? ""
            XCTAssertEqual(unchanged, stored, "a current hash is not written again")
        }
    }
}
