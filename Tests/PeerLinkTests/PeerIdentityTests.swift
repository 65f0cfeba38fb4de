import Crypto
import Foundation
import Logging
import PeerLink
import RaftCore
import RaftWire
import Wire
import ServerTLS
import X509
import XCTest

/// Member identity bound to a certificate: every member holds the cluster secret, yet only the
/// holder of n1's key can be n1.
final class PeerIdentityTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "peer-identity-" + UUID().uuidString
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Identities of `members` from one CA (in `directory/name`).
    func identities(_ members: [String], ca name: String = "ca") throws -> [String: PeerIdentity] {
        let ca = try LocalCA(directory: directory + "/" + name)
        var result: [String: PeerIdentity] = [:]
        for member in members {
            try ca.ensureCertificate(member: member, hosts: ["127.0.0.1"])
            result[member] = try PeerIdentity(
                id: member, certificatePath: ca.certificatePath(member), keyPath: ca.keyPath(member), authorityPath: ca.caCertificatePath)
        }
        return result
    }

    /// Runs the handshake between a (claiming `claimedA`) and b; both must authenticate.
    func handshake(a: PeerIdentity?, claimedA: String = "n1", b: PeerIdentity?) throws -> (PeerHandshake, PeerHandshake) {
        var first = PeerHandshake(secret: "s", localId: claimedA, nonce: Array(repeating: 1, count: 16), identity: a)
        var second = PeerHandshake(secret: "s", localId: "n2", nonce: Array(repeating: 2, count: 16), identity: b)
        let proofFromSecond = try second.onHello(id: claimedA, nonce: first.hello.nonce)
        let proofFromFirst = try first.onHello(id: "n2", nonce: second.hello.nonce)
        try first.onProof(proofFromSecond)
        try second.onProof(proofFromFirst)
        if let statement = try first.identityStatement() { try second.onIdentity(statement) }
        if let statement = try second.identityStatement() { try first.onIdentity(statement) }
        return (first, second)
    }

    func testMembersWithCertificatesFromTheirAuthorityAuthenticateAndTalk() throws {
        let members = try identities(["n1", "n2"])
        var (a, b) = try handshake(a: members["n1"], b: members["n2"])
        XCTAssertTrue(a.isAuthenticated && b.isAuthenticated)
        XCTAssertEqual(b.peerId, "n1")
        XCTAssertEqual(try b.open(try a.seal([7, 7])), [7, 7])
    }

    func testAMemberWithTheSecretCannotClaimAnotherMembersId() throws {
        // n3 is a member (the secret, its own certificate) and says it is n1.
        let members = try identities(["n2", "n3"])
        let n3 = try XCTUnwrap(members["n3"])
        var first = PeerHandshake(secret: "s", localId: "n1", nonce: Array(repeating: 1, count: 16), identity: n3)
        var second = PeerHandshake(secret: "s", localId: "n2", nonce: Array(repeating: 2, count: 16), identity: members["n2"])
        let proof = try first.onHello(id: "n2", nonce: second.hello.nonce)
        _ = try second.onHello(id: "n1", nonce: first.hello.nonce)
        try second.onProof(proof)
        XCTAssertFalse(second.isAuthenticated, "the secret alone does not make a member")
        let statement = try XCTUnwrap(try first.identityStatement())
        XCTAssertThrowsError(try second.onIdentity(statement)) { error in
            XCTAssertTrue("\(error)".contains("cannot speak for member 'n1'"), "\(error)")
        }
        XCTAssertFalse(second.isAuthenticated)
        XCTAssertThrowsError(try second.open([0, 1, 2]), "no frame opens before the identity verified")
    }

    func testACertificateFromAnotherAuthorityIsRefused() throws {
        let ours = try identities(["n2"])
        let theirs = try identities(["n1"], ca: "other-ca")
        XCTAssertThrowsError(try handshake(a: theirs["n1"], b: ours["n2"])) { error in
            XCTAssertTrue("\(error)".contains("does not come from the members' authority"), "\(error)")
        }
    }

    func testASignatureFromAnotherSessionIsRefused() throws {
        let members = try identities(["n1", "n2"])
        // n1's statement for a session with other nonces, replayed into this one.
        var recorded = PeerHandshake(secret: "s", localId: "n1", nonce: Array(repeating: 5, count: 16), identity: members["n1"])
        _ = try recorded.onHello(id: "n2", nonce: Array(repeating: 6, count: 16))
        let old = try XCTUnwrap(try recorded.identityStatement())
        var first = PeerHandshake(secret: "s", localId: "n1", nonce: Array(repeating: 1, count: 16), identity: members["n1"])
        var second = PeerHandshake(secret: "s", localId: "n2", nonce: Array(repeating: 2, count: 16), identity: members["n2"])
        let proof = try first.onHello(id: "n2", nonce: second.hello.nonce)
        _ = try second.onHello(id: "n1", nonce: first.hello.nonce)
        try second.onProof(proof)
        XCTAssertThrowsError(try second.onIdentity(old)) { error in
            XCTAssertTrue("\(error)".contains("did not sign this handshake"), "\(error)")
        }
    }

    func testAMalformedOrTruncatedStatementIsRefusedWithoutATrap() throws {
        let members = try identities(["n1", "n2"])
        let (_, _) = try handshake(a: members["n1"], b: members["n2"])
        for statement: [UInt8] in [[], [0], [0xFF, 0xFF, 1, 2], [0, 3, 1, 2, 3], Array(repeating: 0x30, count: 600)] {
            var first = PeerHandshake(secret: "s", localId: "n1", nonce: Array(repeating: 1, count: 16), identity: members["n1"])
            var second = PeerHandshake(secret: "s", localId: "n2", nonce: Array(repeating: 2, count: 16), identity: members["n2"])
            let proof = try first.onHello(id: "n2", nonce: second.hello.nonce)
            _ = try second.onHello(id: "n1", nonce: first.hello.nonce)
            try second.onProof(proof)
            XCTAssertThrowsError(try second.onIdentity(statement), "\(statement.prefix(8))")
        }
    }

    func testAnIdentityWhoseCertificateNamesAnotherMemberIsRefusedAtStart() throws {
        let ca = try LocalCA(directory: directory + "/ca")
        try ca.ensureCertificate(member: "n3", hosts: [])
        XCTAssertThrowsError(
            try PeerIdentity(id: "n1", certificatePath: ca.certificatePath("n3"), keyPath: ca.keyPath("n3"), authorityPath: ca.caCertificatePath)
        ) { error in
            XCTAssertTrue("\(error)".contains("cannot speak for member 'n1'"), "\(error)")
        }
    }
}

/// The same over real TCP: certified members talk; a process with the secret and n3's
/// certificate that says it is n1 delivers nothing.
final class PeerIdentityLinkTests: XCTestCase {
    func testOverTCPOnlyTheCertifiedMemberIsHeard() async throws {
        let directory = NSTemporaryDirectory() + "peer-identity-link-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ca = try LocalCA(directory: directory)
        func identity(_ holder: String) throws -> PeerIdentity {
            try ca.ensureCertificate(member: holder, hosts: ["127.0.0.1"])
            return try PeerIdentity(id: holder, certificatePath: ca.certificatePath(holder), keyPath: ca.keyPath(holder), authorityPath: ca.caCertificatePath)
        }
        var logger = Logger(label: "peer-identity-test")
        logger.logLevel = .critical
        let heard = PeerLinkTests.Inbox()
        let receiver = PeerLink(localId: "n2", secret: "cluster secret", identity: try identity("n2"), logger: logger) { heard.add($0, $1) }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        let member = PeerLink(localId: "n1", secret: "cluster secret", identity: try identity("n1"), logger: logger) { _, _ in }
        // n3 holds the secret and its own certificate, and claims to be n4.
        let impostor = PeerLink(localId: "n4", secret: "cluster secret", identity: try identity("n3"), logger: logger) { _, _ in }
        let secretOnly = PeerLink(localId: "n5", secret: "cluster secret", logger: logger) { _, _ in }
        let beat = { (from: String) in RaftCodec.encode(Message(from: from, to: "n2", term: 1, kind: .heartbeat(commit: 0, round: 1))) }
        member.send(beat("n1"), to: "n2", host: "127.0.0.1", port: port)
        impostor.send(beat("n4"), to: "n2", host: "127.0.0.1", port: port)
        secretOnly.send(beat("n5"), to: "n2", host: "127.0.0.1", port: port)
        let deadline = Date().addingTimeInterval(5)
        while (heard.all.isEmpty || receiver.counters.failures < 2), Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertEqual(heard.all.map(\.0), ["n1"], "only the member with its own certificate is heard")
        XCTAssertGreaterThanOrEqual(receiver.counters.failures, 2, "the impostor and the member without a certificate are refused and counted: \(receiver.counters)")
        for link in [member, impostor, secretOnly, receiver] { await link.close() }
    }
}
