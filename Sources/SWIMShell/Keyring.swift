import Crypto
import Foundation
import SWIMCore

/// The gossip keys: one primary that seals every packet, and older ones still accepted, so the
/// cluster secret can rotate without downtime (add the new secret everywhere as primary with the
/// old one as previous, then drop the old one).
///
/// A sealed packet: `version (1) | key id (4) | nonce (12) | AES-256-GCM ciphertext | tag (16)`.
/// The version and key id are authenticated too. Forged, altered, truncated or foreign packets
/// fail to open and are dropped.
public struct Keyring: Sendable {
    public static let version: UInt8 = 1
    public static let overheadBytes = 1 + 4 + 12 + 16
    static let label = Array("switchboard-gossip-v1".utf8)

    struct Key: Sendable {
        var id: [UInt8]
        var key: SymmetricKey
    }

    let primary: Key
    let accepted: [Key]

    public init(primary secret: String, previous: [String] = []) throws(GossipError) {
        guard !secret.isEmpty else { throw .invalid("the gossip needs the cluster secret (--secret-file or SWITCHBOARD_SECRET)") }
        primary = Self.key(secret)
        accepted = [primary] + previous.filter { !$0.isEmpty && $0 != secret }.map(Self.key)
        precondition(SWIMSettings.sealBytesMax >= Self.overheadBytes, "the core keeps \(SWIMSettings.sealBytesMax) bytes for a seal of \(Self.overheadBytes)")
    }

    /// The secret stretched to a 256-bit key (HKDF-SHA256) and its id (the key's hash, first 4 bytes).
    static func key(_ secret: String) -> Key {
        let key = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: Array(secret.utf8)), info: label, outputByteCount: 32)
        let id = key.withUnsafeBytes { Array(SHA256.hash(data: Array($0))).prefix(4) }
        return Key(id: Array(id), key: key)
    }

    public func seal(_ plaintext: [UInt8]) -> [UInt8] {
        let header = [Self.version] + primary.id
        // A random 96-bit nonce per packet: collisions need ~2^48 packets under one key.
        let box = try! AES.GCM.seal(plaintext, using: primary.key, nonce: AES.GCM.Nonce(), authenticating: header)
        return header + Array(box.combined!)
    }

    public enum OpenError: Error, Equatable, Sendable {
        /// Too short, or an unknown version: not ours.
        case malformed
        /// No key of ours has this id: another cluster, or a secret we no longer accept.
        case unknownKey
        /// The tag does not verify: forged or altered.
        case forged
    }

    public func open(_ sealed: [UInt8]) -> Result<[UInt8], OpenError> {
        guard sealed.count >= Self.overheadBytes, sealed[0] == Self.version else { return .failure(.malformed) }
        let id = Array(sealed[1..<5])
        guard let key = accepted.first(where: { $0.id == id }) else { return .failure(.unknownKey) }
        do {
            let box = try AES.GCM.SealedBox(combined: sealed[5...])
            return .success(Array(try AES.GCM.open(box, using: key.key, authenticating: sealed[0..<5])))
        } catch {
            return .failure(.forged)
        }
    }
}
