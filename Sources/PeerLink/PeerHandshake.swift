import Crypto
import Foundation

/// Mutual authentication of two members with the cluster secret, then encrypted and
/// authenticated frames (pure; the channel handler drives it).
///
/// Each side opens with `hello(id, nonce)`. Each answers the other's hello with
/// `proof = HMAC(secret, "switchboard-peer-v2 proof" | theirNonce | ourNonce | ourId)`, which only
/// a holder of the secret can compute for this pair of fresh nonces, so a recorded session
/// cannot be replayed. After both proofs verify, every payload is sealed with AES-256-GCM under a
/// key per direction derived from both nonces, its GCM nonce the frame's sequence number: an
/// altered, reordered, replayed or injected frame fails to open and closes the link, and what
/// crosses the network (customers' messages, passwords' hashes, tokens' hashes, snapshots) is
/// unreadable without the secret.
public struct PeerHandshake: Sendable {
    public static let nonceBytes = 16
    /// The GCM tag after each sealed payload.
    public static let tagBytes = 16
    static let label = Array("switchboard-peer-v2".utf8)

    /// Our proofs and our sending key use `secret`; a peer's proof may verify under `secret` or
    /// any of `previous` (the keyring of a secret rotation), and its frames are then checked
    /// with the key of the secret it proved.
    let secret: SymmetricKey
    let previous: [SymmetricKey]
    public let localId: String
    let localNonce: [UInt8]
    public private(set) var peerId: String?
    var peerNonce: [UInt8]?
    public private(set) var isAuthenticated = false
    /// With an identity, a peer is authenticated once its proof and then its certificate and
    /// signature verified (`PeerIdentity`).
    let identity: PeerIdentity?
    var proven: SymmetricKey?
    var sendKey: SymmetricKey?
    var receiveKey: SymmetricKey?
    var sendSequence: UInt64 = 0
    var receiveSequence: UInt64 = 0

    public init(secret: String, previousSecrets: [String] = [], localId: String, nonce: [UInt8], identity: PeerIdentity? = nil) {
        precondition(nonce.count == Self.nonceBytes, "nonce of \(nonce.count) bytes")
        self.identity = identity
        self.secret = Self.key(fromSecret: secret)
        previous = previousSecrets.filter { !$0.isEmpty && $0 != secret }.map(Self.key(fromSecret:))
        self.localId = localId
        localNonce = nonce
    }

    /// The cluster secret stretched to a 256-bit key (HKDF-SHA256), so secrets of any length work.
    static func key(fromSecret secret: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: Array(secret.utf8)), info: label, outputByteCount: 32)
    }

    public var hello: (id: String, nonce: [UInt8]) { (localId, localNonce) }

    /// The peer's hello: returns our proof to send.
    public mutating func onHello(id: String, nonce: [UInt8]) throws(PeerLinkError) -> [UInt8] {
        guard peerId == nil else { throw .protocolViolation("second hello") }
        guard nonce.count == Self.nonceBytes else { throw .protocolViolation("nonce of \(nonce.count) bytes") }
        guard nonce != localNonce else { throw .protocolViolation("the peer echoed our nonce") }
        guard !id.isEmpty, id != localId else { throw .protocolViolation("peer id '\(id)' (ours is '\(localId)')") }
        peerId = id
        peerNonce = nonce
        return Self.proof(secret, theirNonce: nonce, ourNonce: localNonce, ourId: localId)
    }

    /// What we send after our proof when we have an identity: our certificate and our signature
    /// of this session.
    public func identityStatement() throws(PeerLinkError) -> [UInt8]? {
        guard let identity, let peerNonce else { return nil }
        return try identity.statement(theirNonce: peerNonce, ourNonce: localNonce)
    }

    /// Whether the peer proved the secret and we still wait for its certificate.
    public var awaitsIdentity: Bool { proven != nil && !isAuthenticated }

    /// The peer's certificate and signature (after its proof): verifies them and derives the
    /// frame keys.
    public mutating func onIdentity(_ statement: [UInt8]) throws(PeerLinkError) {
        guard let identity, let peerId, let peerNonce, let proven, !isAuthenticated else {
            throw .protocolViolation("a member certificate out of turn")
        }
        try identity.verify(statement, peerId: peerId, ourNonce: localNonce, peerNonce: peerNonce)
        authenticate(proven, peerId: peerId, peerNonce: peerNonce)
    }

    /// The peer's proof: verifies it; derives the frame keys unless a certificate must follow.
    public mutating func onProof(_ proof: [UInt8]) throws(PeerLinkError) {
        guard let peerId, let peerNonce, !isAuthenticated, self.proven == nil else { throw .protocolViolation("proof before hello") }
        // Every candidate key is tried (no early exit), so timing does not tell which one matched.
        var proven: SymmetricKey?
        for candidate in [secret] + previous {
            let expected = Self.proof(candidate, theirNonce: localNonce, ourNonce: peerNonce, ourId: peerId)
            if proof.count == expected.count, Self.constantTimeEqual(proof, expected), proven == nil { proven = candidate }
        }
        guard let proven else { throw .authenticationFailed(peer: peerId) }
        if identity != nil {
            self.proven = proven
        } else {
            authenticate(proven, peerId: peerId, peerNonce: peerNonce)
        }
    }

    private mutating func authenticate(_ proven: SymmetricKey, peerId: String, peerNonce: [UInt8]) {
        sendKey = Self.directionKey(secret, from: localId, fromNonce: localNonce, toNonce: peerNonce)
        receiveKey = Self.directionKey(proven, from: peerId, fromNonce: peerNonce, toNonce: localNonce)
        isAuthenticated = true
    }

    /// An outgoing payload, encrypted, with its tag: the body of a data frame.
    public mutating func seal(_ payload: [UInt8]) throws(PeerLinkError) -> [UInt8] {
        guard isAuthenticated, let sendKey else { throw .protocolViolation("sealing before authentication") }
        guard sendSequence < UInt64.max else { throw .protocolViolation("the connection sent 2^64 - 1 frames: reconnect") }
        let nonce = Self.nonce(sendSequence)
        sendSequence += 1
        guard let box = try? AES.GCM.seal(payload, using: sendKey, nonce: nonce) else { throw .protocolViolation("cannot seal a frame") }
        return Array(box.ciphertext) + Array(box.tag)
    }

    /// The payload of an incoming data frame's body; throws when it is not the next frame the
    /// peer sealed, unaltered.
    public mutating func open(_ body: [UInt8]) throws(PeerLinkError) -> [UInt8] {
        guard isAuthenticated, let receiveKey else { throw .protocolViolation("data before authentication") }
        guard body.count >= Self.tagBytes else { throw .protocolViolation("short data frame") }
        guard receiveSequence < UInt64.max else { throw .protocolViolation("the connection received 2^64 - 1 frames") }
        let split = body.count - Self.tagBytes
        guard let box = try? AES.GCM.SealedBox(nonce: Self.nonce(receiveSequence), ciphertext: body[..<split], tag: body[split...]),
              let payload = try? AES.GCM.open(box, using: receiveKey)
        else { throw .integrityFailed(peer: peerId ?? "?") }
        receiveSequence += 1
        return Array(payload)
    }

    /// The GCM nonce of frame `sequence`: unique per key, since each connection and direction
    /// has its own key.
    static func nonce(_ sequence: UInt64) -> AES.GCM.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: sequence.bigEndian) { for (offset, byte) in $0.enumerated() { bytes[4 + offset] = byte } }
        // 12 bytes is a valid GCM nonce size: this cannot fail.
        return (try? AES.GCM.Nonce(data: bytes)) ?? AES.GCM.Nonce()
    }

    static func proof(_ secret: SymmetricKey, theirNonce: [UInt8], ourNonce: [UInt8], ourId: String) -> [UInt8] {
        var input = label + Array(" proof".utf8)
        input += theirNonce + ourNonce + Array(ourId.utf8)
        return Array(HMAC<SHA256>.authenticationCode(for: input, using: secret))
    }

    static func directionKey(_ secret: SymmetricKey, from id: String, fromNonce: [UInt8], toNonce: [UInt8]) -> SymmetricKey {
        let input = label + Array(" frames".utf8) + fromNonce + toNonce + Array(id.utf8)
        return SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: input, using: secret)))
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}

public enum PeerLinkError: Error, Equatable, Sendable, CustomStringConvertible {
    case protocolViolation(String)
    case authenticationFailed(peer: String)
    case integrityFailed(peer: String)
    case frameTooLarge(bytes: Int, max: Int)
    case identityRefused(String)

    public var description: String {
        switch self {
        case .protocolViolation(let what): "peer protocol violation: \(what)"
        case .authenticationFailed(let peer): "peer '\(peer)' failed authentication (a different cluster secret, or a member older than the encrypted peer link)"
        case .integrityFailed(let peer): "a frame from '\(peer)' failed its integrity check"
        case .frameTooLarge(let bytes, let max): "peer frame of \(bytes) bytes exceeds \(max)"
        case .identityRefused(let why): "member identity refused: \(why)"
        }
    }
}
