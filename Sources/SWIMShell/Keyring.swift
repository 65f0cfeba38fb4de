import Crypto
import Foundation
import SWIMCore

/// The gossip keys: one primary that seals every packet, and older ones still accepted, so the
/// cluster secret can rotate without downtime (add the new secret everywhere as primary with the
/// old one as previous, then drop the old one).
///
/// A sealed packet: `version (1) | key id (4) | nonce (12) | AES-256-GCM ciphertext | tag (16)`.
/// The version and key id are authenticated too. Forged, altered, truncated or foreign packets
/// fail to open and are dropped. Version 2: the plaintext starts with `ReplayGuard`'s header
/// (version 1 had none; its packets are dropped as malformed).
public struct Keyring: Sendable {
    public static let version: UInt8 = 2
    public static let overheadBytes = 1 + 4 + 12 + 16
    static let label = Array("switchboard-gossip-v1".utf8)

    struct Key: Sendable {
        var id: [UInt8]
        var key: SymmetricKey
    }

    let primary: Key
    let accepted: [Key]

    /// A member's keyring, from the cluster secret (and previous ones during a rotation).
    public init(primary secret: String, previous: [String] = []) throws(GossipError) {
        guard !secret.isEmpty else { throw .invalid("the gossip needs the cluster secret (--secret-file or SWITCHBOARD_SECRET)") }
        primary = Self.key(Self.derive(secret))
        accepted = [primary] + previous.filter { !$0.isEmpty && $0 != secret }.map { Self.key(Self.derive($0)) }
        precondition(SWIMSettings.sealBytesMax >= Self.overheadBytes + ReplayGuard.headerBytes, "the core keeps \(SWIMSettings.sealBytesMax) bytes for a seal of \(Self.overheadBytes + ReplayGuard.headerBytes)")
    }

    /// An observer's keyring (the balancer's), from gossip keys alone (`gossipKey(fromSecret:)`,
    /// 64 hex digits each): it seals and opens gossip, and cannot derive the cluster secret or
    /// the peer link's key from it (HKDF is one-way), so it can neither join, vote nor append.
    public init(gossipKey: String, previousGossipKeys: [String] = []) throws(GossipError) {
        guard let primaryKey = Self.parse(gossipKey) else {
            throw .invalid("a gossip key is 64 hex digits (`switchboard gossip-key` prints the cluster's)")
        }
        var accepted = [Self.key(primaryKey)]
        for previous in previousGossipKeys where !previous.isEmpty {
            guard let key = Self.parse(previous) else { throw .invalid("a previous gossip key is 64 hex digits") }
            accepted.append(Self.key(key))
        }
        primary = accepted[0]
        self.accepted = accepted
    }

    /// The gossip key of a cluster secret, in hex: what an observer holds instead of the secret.
    public static func gossipKey(fromSecret secret: String) -> String {
        derive(secret).withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
    }

    /// The secret stretched to a 256-bit key (HKDF-SHA256, info `switchboard-gossip-v1`; the
    /// peer link derives its own key with another info).
    static func derive(_ secret: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: Array(secret.utf8)), info: label, outputByteCount: 32)
    }

    static func parse(_ hex: String) -> SymmetricKey? {
        let digits = Array(hex.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        guard digits.count == 64 else { return nil }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: 64, by: 2) {
            guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(byte)
        }
        return SymmetricKey(data: bytes)
    }

    /// A key and its id (the key's hash, first 4 bytes).
    static func key(_ key: SymmetricKey) -> Key {
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
