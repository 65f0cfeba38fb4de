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
        let first = try a.seal([1, 2, 3]), second = try a.seal([4])
        var altered = first
        altered[1] ^= 0x01
        XCTAssertThrowsError(try b.open(altered), "altered payload")
        XCTAssertThrowsError(try b.open(second), "second frame delivered first")
        XCTAssertEqual(try b.open(first), [1, 2, 3])
        XCTAssertThrowsError(try b.open(first), "replayed frame")
        XCTAssertEqual(try b.open(second), [4])
        // The other direction has its own key: a frame sealed by b does not open as a's.
        let fromB = try b.seal([9])
        XCTAssertThrowsError(try b.open(fromB))
        XCTAssertEqual(try a.open(fromB), [9])
    }

    func testWhatCrossesTheWireIsEncrypted() throws {
        var (a, b) = try pair()
        let message = Array("Hola, mi pedido 4411 no llegó; mi tarjeta termina en 4242".utf8)
        let sealed = try a.seal(message)
        XCTAssertEqual(sealed.count, message.count + PeerHandshake.tagBytes)
        let text = String(decoding: sealed, as: UTF8.self)
        XCTAssertFalse(text.contains("pedido") || text.contains("4242"), "no plaintext on the wire: \(sealed)")
        XCTAssertEqual(try b.open(sealed), message)
        // The same payload sealed again looks different (each frame has its own nonce).
        XCTAssertNotEqual(try a.seal(message), sealed)
    }

    func testMembersOnBothSidesOfASecretRotationTalk() throws {
        // n1 already proves the new secret; n2 still proves the old one and accepts the new.
        var (a, b) = try pair(secretA: "new", secretB: "old", previousA: ["old"], previousB: ["new"])
        XCTAssertEqual(try b.open(try a.seal([7])), [7])
        XCTAssertEqual(try a.open(try b.seal([8])), [8])
        XCTAssertThrowsError(try pair(secretA: "new", secretB: "old"), "without the previous secret, a rotation would split the cluster")
        XCTAssertThrowsError(try pair(secretA: "new", secretB: "other", previousA: ["old"], previousB: ["old"])) { error in
            XCTAssertEqual(error as? PeerLinkError, .authenticationFailed(peer: "n2"), "a secret in nobody's keyring is still refused")
        }
    }
}
