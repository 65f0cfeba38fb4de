import Crypto
import Foundation
import SwiftASN1
import X509

/// The certificate authority `switchboard cluster up` makes for a cluster file with
/// `tls = true`: one P-256 CA key and certificate, and a certificate per member naming the
/// addresses it serves on. Files are PEM, keys readable by their owner only. An existing CA is
/// kept (clients that already trust it keep working); a member's certificate is issued again
/// when it is missing, was issued by another CA, does not name the member's host, or has less
/// than `renewBefore` left.
public struct LocalCA: Sendable {
    public static let caValidity: TimeInterval = 10 * 365 * 86_400
    public static let memberValidity: TimeInterval = 397 * 86_400
    public static let renewBefore: TimeInterval = 30 * 86_400

    public let directory: String
    public var caCertificatePath: String { directory + "/ca.pem" }
    var caKeyPath: String { directory + "/ca.key" }
    public func certificatePath(_ member: String) -> String { directory + "/\(member).pem" }
    public func keyPath(_ member: String) -> String { directory + "/\(member).key" }

    private let key: P256.Signing.PrivateKey
    private let certificate: Certificate

    /// Opens the CA in `directory`, or makes one there.
    public init(directory: String, now: Date = Date()) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if let keyPEM = try? String(contentsOfFile: directory + "/ca.key", encoding: .utf8),
            let certificatePEM = try? String(contentsOfFile: directory + "/ca.pem", encoding: .utf8)
        {
            do {
                key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
                certificate = try Certificate(pemEncoded: certificatePEM)
            } catch {
                throw TLSFilesError("\(directory): the CA's key or certificate cannot be read (\(error)); remove ca.pem and ca.key to make a new CA")
            }
            guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
                throw TLSFilesError("\(directory): ca.pem does not belong to ca.key; remove both to make a new CA")
            }
            return
        }
        let key = P256.Signing.PrivateKey()
        self.key = key
        let name = try DistinguishedName {
            OrganizationName("Switchboard")
            CommonName("Switchboard local cluster CA")
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Self.caValidity),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(key.publicKey))
            },
            issuerPrivateKey: .init(key))
        self.certificate = certificate
        try Self.write(key.pemRepresentation, to: directory + "/ca.key", mode: 0o600)
        try Self.write(try certificate.serializeAsPEM().pemString, to: directory + "/ca.pem", mode: 0o644)
    }

    /// Makes sure `member` has a certificate for `hosts` (names or IP literals; localhost and
    /// the loopback addresses are always added); returns true when one was issued now.
    @discardableResult
    public func ensureCertificate(member: String, hosts: [String], now: Date = Date()) throws -> Bool {
        let names = Array(Set(hosts + ["localhost", "127.0.0.1", "::1"])).sorted()
        if let pem = try? String(contentsOfFile: certificatePath(member), encoding: .utf8),
            let existing = try? Certificate(pemEncoded: pem),
            FileManager.default.fileExists(atPath: keyPath(member)),
            existing.issuer == certificate.subject,
            (try? existing.extensions.authorityKeyIdentifier?.keyIdentifier) == SubjectKeyIdentifier(hash: .init(key.publicKey)).keyIdentifier,
            existing.notValidAfter.timeIntervalSince(now) > Self.renewBefore,
            let alternatives = try? existing.extensions.subjectAlternativeNames,
            names.allSatisfy({ name in alternatives.contains(Self.generalName(name)) })
        {
            return false
        }
        let memberKey = P256.Signing.PrivateKey()
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(memberKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Self.memberValidity),
            issuer: certificate.subject,
            subject: try DistinguishedName {
                OrganizationName("Switchboard")
                CommonName(member)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names.map(Self.generalName))
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(key.publicKey)).keyIdentifier)
            },
            issuerPrivateKey: .init(key))
        // The key first: a reloading server never sees a certificate without its key.
        try Self.write(memberKey.pemRepresentation, to: keyPath(member) + ".new", mode: 0o600)
        try Self.write(try leaf.serializeAsPEM().pemString, to: certificatePath(member) + ".new", mode: 0o644)
        try Self.replace(keyPath(member))
        try Self.replace(certificatePath(member))
        return true
    }

    /// An IP literal as an address name, anything else as a DNS name.
    static func generalName(_ host: String) -> GeneralName {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v4) { ArraySlice($0) }))
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), &v6) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v6) { ArraySlice($0) }))
        }
        return .dnsName(host)
    }

    static func write(_ text: String, to path: String, mode: mode_t) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw TLSFilesError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        fchmod(descriptor, mode)
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Foundation.write(descriptor, $0.baseAddress, $0.count) }) == bytes.count, fsync(descriptor) == 0 else {
            throw TLSFilesError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func replace(_ path: String) throws {
        guard rename(path + ".new", path) == 0 else { throw TLSFilesError("cannot rename \(path).new: \(String(cString: strerror(errno)))") }
    }
}
