import Foundation
import Logging
import NIOCertificateReloading
import NIOConcurrencyHelpers
import NIOSSL
import ServiceLifecycle
import X509

/// A server's certificate chain and private key, PEM files read at start and read again every
/// `reloadInterval` while it runs (a `Service`): a renewed certificate is served to the next
/// handshake without a restart, as etcd and Consul do. A file that cannot be read or does not
/// match its key keeps the last good pair in service and is logged once per distinct error.
public struct CertificateFiles: Service, Sendable {
    /// How often the files are read again.
    public static let reloadInterval: Duration = .seconds(5)

    public let certificatePath: String
    public let keyPath: String
    private let reloader: TimedCertificateReloader

    /// Reads both files now; throws a message naming them when they cannot serve.
    public init(certificatePath: String, keyPath: String, reloadInterval: Duration = CertificateFiles.reloadInterval, logger: Logger) throws {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        let lastFailure = NIOLockedValueBox<String?>(nil)
        let configuration = TimedCertificateReloader.Configuration(
            refreshInterval: reloadInterval,
            certificateSource: .init(location: .file(path: certificatePath), format: .pem),
            privateKeySource: .init(location: .file(path: keyPath), format: .pem)
        ) { configuration in
            configuration.onCertificateLoaded = { diff in
                lastFailure.withLockedValue { $0 = nil }
                guard diff.previousX509CertificateChain != diff.currentX509CertificateChain, let leaf = diff.currentX509CertificateChain.first else { return }
                logger.info(
                    diff.previousX509CertificateChain == nil ? "tls certificate loaded" : "tls certificate reloaded",
                    metadata: [
                        "tls.certificate": "\(certificatePath)", "tls.subject": "\(leaf.subject)",
                        "tls.not_after": "\(ISO8601DateFormatter().string(from: leaf.notValidAfter))",
                    ])
            }
            configuration.onCertificateLoadFailed = { failure in
                let reason = "\(failure.error)"
                let isNew = lastFailure.withLockedValue { last in
                    defer { last = reason }
                    return last != reason
                }
                if isNew {
                    logger.warning(
                        "tls certificate or key unreadable; still serving the last good pair",
                        metadata: ["tls.certificate": "\(certificatePath)", "tls.key": "\(keyPath)", "tls.error": "\(reason)"])
                }
            }
        }
        do {
            reloader = try TimedCertificateReloader.makeReloaderValidatingSources(configuration: configuration)
        } catch {
            throw TLSFilesError("cannot serve TLS with certificate \(certificatePath) and key \(keyPath): \(error)")
        }
    }

    /// A server configuration (TLS 1.2 and later) that serves the pair last read.
    public func serverConfiguration() throws -> TLSConfiguration {
        var configuration = try TLSConfiguration.makeServerConfiguration(certificateReloader: reloader)
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }

    /// The context handshakes are made with (thread-safe, shared by every event loop).
    public func serverContext() throws -> NIOSSLContext {
        try NIOSSLContext(configuration: serverConfiguration())
    }

    public func run() async throws {
        try await reloader.run()
    }
}

/// Clients' trust: the certificate authorities a client accepts a server's certificate from.
public enum ClientTrust {
    /// A client context that trusts only the CA certificates in the PEM file at `path`, and checks
    /// the server's name or address against the certificate.
    public static func context(trustingCA path: String) throws -> NIOSSLContext {
        try NIOSSLContext(configuration: configuration(trustingCA: path))
    }

    /// What a client puts in SNI and checks the certificate against: a name as it is; nil for
    /// an IP literal (invalid in SNI), which is then checked against the certificate's IP
    /// addresses.
    public static func serverName(for host: String) -> String? {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 ? nil : host
    }

    public static func configuration(trustingCA path: String) throws -> TLSConfiguration {
        let roots: [NIOSSLCertificate]
        do {
            roots = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw TLSFilesError("cannot read the CA certificate \(path): \(error)")
        }
        guard !roots.isEmpty else { throw TLSFilesError("\(path) holds no PEM certificate") }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(roots)
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }
}

/// A TLS file that cannot be used, said with its path.
public struct TLSFilesError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
