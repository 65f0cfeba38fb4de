import Crypto
import Foundation
import SwiftASN1
import X509

/// A member's own certificate and key, and the authority members' certificates come from
/// (`--peer-cert`, `--peer-key`, `--peer-ca`; a cluster file with `tls = true` gives each
/// member its certificate from the cluster's CA). With it, the handshake binds a member's id to
/// a key only that member holds: after proving the cluster secret, each side sends its
/// certificate and an ECDSA signature over both fresh nonces and its id, and the other checks
/// that the certificate comes from the authority, is in date, names that id as its common name,
/// and that the signature verifies under it. A process holding the secret but not a member's key
/// can no longer pass for that member.
public struct PeerIdentity: Sendable {
    public let id: String
    let certificate: Certificate
    let certificateDER: [UInt8]
    let key: P256.Signing.PrivateKey
    let authority: Certificate

    static let label = Array("switchboard-peer-v2 identity".utf8)

    public init(id: String, certificate: Certificate, key: P256.Signing.PrivateKey, authority: Certificate) throws(PeerLinkError) {
        self.id = id
        self.certificate = certificate
        self.key = key
        self.authority = authority
        do {
            var serializer = DER.Serializer()
            try serializer.serialize(certificate)
            certificateDER = serializer.serializedBytes
        } catch {
            throw .identityRefused("cannot encode this member's certificate: \(error)")
        }
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw .identityRefused("the member key does not belong to the member certificate")
        }
        // This member's own certificate must pass the checks its peers will make.
        try Self.check(certificate, claims: id, authority: authority, now: Date())
    }

    /// Reads PEM files: this member's certificate and key (P-256), and the authority's certificate.
    public init(id: String, certificatePath: String, keyPath: String, authorityPath: String) throws(PeerLinkError) {
        func read(_ path: String) throws(PeerLinkError) -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw .identityRefused("cannot read \(path)") }
            return text
        }
        let certificate: Certificate
        let key: P256.Signing.PrivateKey
        let authority: Certificate
        do { certificate = try Certificate(pemEncoded: try read(certificatePath)) } catch { throw .identityRefused("\(certificatePath): not a PEM certificate (\(error))") }
        do { key = try P256.Signing.PrivateKey(pemRepresentation: try read(keyPath)) } catch { throw .identityRefused("\(keyPath): not a PEM P-256 private key (\(error))") }
        do { authority = try Certificate(pemEncoded: try read(authorityPath)) } catch { throw .identityRefused("\(authorityPath): not a PEM certificate (\(error))") }
        try self.init(id: id, certificate: certificate, key: key, authority: authority)
    }

    /// What this member sends after its proof: `certificate length (u16) | DER | signature`.
    func statement(theirNonce: [UInt8], ourNonce: [UInt8]) throws(PeerLinkError) -> [UInt8] {
        guard let signature = try? key.signature(for: Self.transcript(theirNonce: theirNonce, ourNonce: ourNonce, id: id)) else {
            throw .identityRefused("cannot sign the handshake")
        }
        return [UInt8(certificateDER.count >> 8), UInt8(certificateDER.count & 0xFF)] + certificateDER + Array(signature.derRepresentation)
    }

    /// Checks a peer's statement for `peerId` in this session (our nonce first: the peer signed
    /// it as theirs).
    func verify(_ statement: [UInt8], peerId: String, ourNonce: [UInt8], peerNonce: [UInt8], now: Date = Date()) throws(PeerLinkError) {
        guard statement.count > 2 else { throw .identityRefused("'\(peerId)' sent an empty member certificate") }
        let length = Int(statement[0]) << 8 | Int(statement[1])
        guard statement.count > 2 + length else { throw .identityRefused("'\(peerId)' sent a truncated member certificate") }
        let certificate: Certificate
        do { certificate = try Certificate(derEncoded: Array(statement[2..<2 + length])) } catch { throw .identityRefused("'\(peerId)' sent a malformed member certificate") }
        try Self.check(certificate, claims: peerId, authority: authority, now: now)
        let transcript = Self.transcript(theirNonce: ourNonce, ourNonce: peerNonce, id: peerId)
        guard let publicKey = P256.Signing.PublicKey(certificate.publicKey),
              let signature = try? P256.Signing.ECDSASignature(derRepresentation: statement[(2 + length)...]),
              publicKey.isValidSignature(signature, for: transcript)
        else { throw .identityRefused("'\(peerId)' did not sign this handshake with its certificate's key") }
    }

    static func check(_ certificate: Certificate, claims id: String, authority: Certificate, now: Date) throws(PeerLinkError) {
        guard certificate.issuer == authority.subject, authority.publicKey.isValidSignature(certificate.signature, for: certificate) else {
            throw .identityRefused("'\(id)''s certificate does not come from the members' authority (\(authority.subject))")
        }
        guard certificate.notValidBefore <= now, now <= certificate.notValidAfter else {
            throw .identityRefused("'\(id)''s certificate is not valid now (\(certificate.notValidBefore) to \(certificate.notValidAfter))")
        }
        let names = certificate.subject.flatMap { $0 }.filter { $0.type == .RDNAttributeType.commonName }.map { "\($0.value)" }
        guard names == [id] else {
            throw .identityRefused("a certificate for \(names.joined(separator: ", ")) cannot speak for member '\(id)'")
        }
    }

    static func transcript(theirNonce: [UInt8], ourNonce: [UInt8], id: String) -> [UInt8] {
        label + theirNonce + ourNonce + Array(id.utf8)
    }
}
