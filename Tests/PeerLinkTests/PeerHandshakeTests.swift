import PeerLink
import XCTest

/// The pure handshake: both sides authenticate; frames are bound to their order and content.
final class PeerHandshakeTests: XCTestCase {
    func pair(secretA: String = "s", secretB: String = "s", previousA: [String] = [], previousB: [String] = []) throws -> (PeerHandshake, PeerHandshake) {
        var a = PeerHandshake(secret: secretA, previousSecrets: previousA, localId: "n1", nonce: Array(repeating: 1, count: 16))
        var b = PeerHandshake(secret: secretB, previousSecrets: previousB, localId: "n2", nonce: Array(repeating: 2, count: 16))
        let proofFromB = try b.onHello(id: "n1", nonce: a.hello.nonce)
        let proofFromA = try a.onHello(id: "n2", nonce: b.hello.nonce)
        try a.onProof(proofFromB)
        try b.onProof(proofFromA)
        return (a, b)
    }

    func testBothSidesAuthenticateWithTheSameSecret() throws {
        let (a, b) = try pair()
        XCTAssertTrue(a.isAuthenticated)
        XCTAssertTrue(b.isAuthenticated)
        XCTAssertEqual(a.peerId, "n2")
        XCTAssertEqual(b.peerId, "n1")
    }

    func testADifferentSecretFailsAuthentication() {
        XCTAssertThrowsError(try pair(secretB: "other")) { error in
            XCTAssertEqual(error as? PeerLinkError, .authenticationFailed(peer: "n2"))
        }
    }

    func testFramesAreBoundToContentAndOrder() throws {
        var (a, b) = try pair()
        let first = a.seal([1, 2, 3]), second = a.seal([4])
        XCTAssertThrowsError(try b.open([1, 2, 4], mac: first), "altered payload")
        XCTAssertThrowsError(try b.open([4], mac: second), "second frame delivered first")
        try b.open([1, 2, 3], mac: first)
        XCTAssertThrowsError(try b.open([1, 2, 3], mac: first), "replayed frame")
        try b.open([4], mac: second)
        // The other direction has its own key: a frame sealed by b does not open as a's.
        let fromB = b.seal([9])
        XCTAssertThrowsError(try b.open([9], mac: fromB))
        try a.open([9], mac: fromB)
    }

    func testMembersOnBothSidesOfASecretRotationTalk() throws {
        // n1 already proves the new secret; n2 still proves the old one and accepts the new.
        var (a, b) = try pair(secretA: "new", secretB: "old", previousA: ["old"], previousB: ["new"])
        try b.open([7], mac: a.seal([7]))
        try a.open([8], mac: b.seal([8]))
        XCTAssertThrowsError(try pair(secretA: "new", secretB: "old"), "without the previous secret, a rotation would split the cluster")
        XCTAssertThrowsError(try pair(secretA: "new", secretB: "other", previousA: ["old"], previousB: ["old"])) { error in
            XCTAssertEqual(error as? PeerLinkError, .authenticationFailed(peer: "n2"), "a secret in nobody's keyring is still refused")
        }
    }
}
