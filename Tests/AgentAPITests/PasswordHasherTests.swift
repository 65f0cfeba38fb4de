import AgentAPI
import ContactCenter
import Foundation
import HummingbirdTesting
import NodeRuntime
import XCTest

/// Hashes follow OWASP's first recommendation (Argon2id, m=19 MiB, t=2, p=1) in the PHC string
/// format, and a weaker stored hash is replaced at the next login without ending a session.
final class PasswordHasherTests: XCTestCase {
    static let cheap = PasswordHasher.Cost(memoryKiB: 8, passes: 1)

    func testHashesAreArgon2idPHCStringsThatVerify() throws {
        let hasher = PasswordHasher(cost: PasswordHasher.Cost(memoryKiB: 64, passes: 2))
        let stored = try hasher.hash("correct horse")
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        XCTAssertEqual(parts.count, 6, stored)
        XCTAssertEqual(Array(parts[1...3]), ["argon2id", "v=19", "m=64,t=2,p=1"], "scheme, version and cost are in the hash: \(stored)")
        XCTAssertEqual(parts[4].count, 22, "16 bytes of salt in unpadded base64: \(stored)")
        XCTAssertEqual(parts[5].count, 43, "a 32-byte tag in unpadded base64: \(stored)")
        XCTAssertTrue(hasher.verify("correct horse", against: stored))
        XCTAssertFalse(hasher.verify("correct horsE", against: stored))
        XCTAssertNotEqual(try hasher.hash("correct horse"), stored, "every hash has its own salt")
        XCTAssertEqual(PasswordHasher.Cost.owasp, PasswordHasher.Cost(memoryKiB: 19_456, passes: 2), "OWASP's Argon2id setting")
    }

    /// A hash from another implementation (the reference one, through argon2-cffi) verifies:
    /// the PHC format is the interchange format.
    func testAHashFromTheReferenceImplementationVerifies() {
        let reference = "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$5jdMIzWoFbzSOl6k3wai9uU3f8LD+HmGXQgo1uhHQPI"
        XCTAssertTrue(PasswordHasher(cost: Self.cheap).verify("correct horse", against: reference))
        XCTAssertFalse(PasswordHasher(cost: Self.cheap).verify("correct horse ", against: reference))
    }

    /// PBKDF2 hashes from before still log in, and are marked for an upgrade; so is an Argon2id
    /// hash with less memory or fewer passes than the node writes now. A costlier one is kept.
    func testOlderHashesVerifyAndAskForARehash() throws {
        let current = PasswordHasher(cost: PasswordHasher.Cost(memoryKiB: 64, passes: 2))
        for scheme in PasswordHasher.LegacyScheme.allCases {
            let old = try PasswordHasher.legacyHash("correct horse", scheme: scheme, rounds: 1000)
            XCTAssertTrue(old.hasPrefix("\(scheme.rawValue)$1000$"), old)
            XCTAssertTrue(current.verify("correct horse", against: old), "a \(scheme.rawValue) hash must still verify")
            XCTAssertFalse(current.verify("wrong", against: old))
            XCTAssertTrue(current.needsRehash(old), "PBKDF2 asks for a rehash")
        }
        XCTAssertFalse(current.needsRehash(try current.hash("x")), "a current hash is kept")
        XCTAssertTrue(current.needsRehash(try PasswordHasher(cost: .init(memoryKiB: 32, passes: 2)).hash("x")), "less memory asks for a rehash")
        XCTAssertTrue(current.needsRehash(try PasswordHasher(cost: .init(memoryKiB: 64, passes: 1)).hash("x")), "fewer passes ask for a rehash")
        XCTAssertFalse(current.needsRehash(try PasswordHasher(cost: .init(memoryKiB: 128, passes: 3)).hash("x")), "a costlier hash is kept")
    }

    /// A stored hash is data: a malformed or forged one never verifies, never traps, never asks
    /// for a rehash, and never makes the node allocate more than the bound.
    func testMalformedHashesAreRefusedWithoutTrapping() throws {
        let hasher = PasswordHasher(cost: Self.cheap)
        let good = try hasher.hash("pw").split(separator: "$", omittingEmptySubsequences: false).map(String.init)
        let (salt, tag) = (good[4], good[5])
        let legacy = try PasswordHasher.legacyHash("pw", scheme: .pbkdf2SHA512, rounds: 10).split(separator: "$").map(String.init)
        let bad = [
            "", "$$$", "$argon2id", "$argon2i$v=19$m=8,t=1,p=1$\(salt)$\(tag)", "$argon2id$v=16$m=8,t=1,p=1$\(salt)$\(tag)",
            "$argon2id$v=19$m=8,t=1$\(salt)$\(tag)", "$argon2id$v=19$m=8,t=1,p=1,x=2$\(salt)$\(tag)", "$argon2id$v=19$m=8,m=8,t=1$\(salt)$\(tag)",
            "$argon2id$v=19$m=4194304,t=1,p=1$\(salt)$\(tag)", "$argon2id$v=19$m=8,t=1000000,p=1$\(salt)$\(tag)",
            "$argon2id$v=19$m=8,t=1,p=0$\(salt)$\(tag)", "$argon2id$v=19$m=-8,t=1,p=1$\(salt)$\(tag)", "$argon2id$v=19$m=8,t=1,p=1$$\(tag)",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$\(tag)", "$argon2id$v=19$m=8,t=1,p=1$\(salt)$", "$argon2id$v=19$m=8,t=1,p=1$\(salt)$***",
            "$argon2id$v=19$m=8,t=1,p=1$\(salt)$\(tag)=", "$argon2id$v=19$m=8,t=1,p=1$\(salt)$\(tag)$", "x$argon2id$v=19$m=8,t=1,p=1$\(salt)$\(tag)",
            "md5$1000$00$00", "pbkdf2-sha512$0$\(legacy[2])$\(legacy[3])", "pbkdf2-sha512$99999999999999999999$\(legacy[2])$\(legacy[3])",
            "pbkdf2-sha512$\(PasswordHasher.storedRoundsMax + 1)$\(legacy[2])$\(legacy[3])", "pbkdf2-sha512$10$zz$\(legacy[3])",
            "pbkdf2-sha512$10$\(legacy[2])$abcd", "pbkdf2-sha512$10$$\(legacy[3])", "pbkdf2-sha256$10$\(legacy[2])$\(legacy[3])",
        ]
        for stored in bad {
            XCTAssertFalse(hasher.verify("pw", against: stored), "'\(stored)' must not verify")
            XCTAssertFalse(hasher.needsRehash(stored), "'\(stored)' is not a hash to upgrade")
        }
        let decoy = hasher.decoy()
        XCTAssertFalse(hasher.verify("", against: decoy), "the decoy matches no password")
        XCTAssertFalse(hasher.needsRehash(decoy), "the decoy is well-formed and current: \(decoy)")
    }

    /// An agent whose hash was written with a smaller cost logs in on a node that writes a
    /// bigger one: the login succeeds, the stored hash becomes the node's, and the session from
    /// before still works.
    func testALoginUpgradesAWeakerHashWithoutEndingSessions() async throws {
        let directory = NSTemporaryDirectory() + "switchboard-rehash-" + UUID().uuidString
        let first = try TestNode(directory: directory, passwordCost: Self.cheap)
        let (agentId, earlierToken) = try await first.application().test(.router) { client in try await client.setUpAgent() }
        let storedBefore = try await first.node.state.read { try $0.store.agent(id: agentId)?.passwordHash } ?? ""
        XCTAssertTrue(storedBefore.hasPrefix("$argon2id$v=19$m=8,t=1,p=1$"), storedBefore)
        first.close(removing: false)

        let second = try TestNode(directory: directory, passwordCost: PasswordHasher.Cost(memoryKiB: 16, passes: 2))
        defer { second.close() }
        try second.waitApplied(atLeast: 1)
        try await second.application().test(.router) { client in
            let login = try await client.call(.post, "/v1/sessions", token: nil, body: #"{"email":"ana@example.com","password":"correct horse"}"#)
            XCTAssertEqual(login.status, .created, "\(login.json)")
            let stored = try await second.node.state.read { try $0.store.agent(id: agentId)?.passwordHash } ?? ""
            XCTAssertTrue(stored.hasPrefix("$argon2id$v=19$m=16,t=2,p=1$"), "the login must store a hash at the node's cost, got \(stored)")
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
