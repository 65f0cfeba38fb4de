import AsyncHTTPClient
import ClusterFile
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServerTLS
import X509
import XCTest

/// A cluster file with `tls = true`, run for real: a node and the balancer from `LocalCluster`,
/// certificates from the cluster's own CA, clients that trust it (or not).
final class TLSClusterTests: XCTestCase {
    func testATLSClusterServesHTTPSAndWSSThroughTheBalancerAndReloadsItsCertificate() async throws {
        let binary = try XCTUnwrap(ProcessCluster.binary, "the switchboard executable is built beside the tests")
        let root = NSTemporaryDirectory() + "tls-cluster-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let api = "127.0.0.1:\(ProcessCluster.freePort())"
        let front = "127.0.0.1:\(ProcessCluster.freePort())"
        try """
            [cluster]
            secret = "tls-cluster-secret"
            admin_token = "tls-admin-token"
            data = "\(root)/data"
            password_memory_kib = 8
            tls = true
            [[node]]
            id = "n1"
            api = "\(api)"
            peer = "127.0.0.1:\(ProcessCluster.freePort())"
            gossip = "127.0.0.1:\(ProcessCluster.freePort())"
            [balancer]
            listen = "\(front)"
            gossip = "127.0.0.1:\(ProcessCluster.freePort())"
            """.write(toFile: root + "/cluster.toml", atomically: true, encoding: .utf8)
        let cluster = try LocalCluster(file: root + "/cluster.toml", executable: binary)
        XCTAssertEqual(cluster.scheme, "https")
        let ca = try XCTUnwrap(cluster.caCertificatePath)
        let node = try cluster.node("n1")
        try cluster.start(node)
        let nodePid = try XCTUnwrap(cluster.runningPid(node))
        defer { kill(nodePid, SIGKILL); _ = Spawn.reap(nodePid) }
        let balancer = try cluster.node("balancer")
        try cluster.start(balancer)
        let balancerPid = try XCTUnwrap(cluster.runningPid(balancer))
        defer { kill(balancerPid, SIGKILL); _ = Spawn.reap(balancerPid) }
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: root + "/data/tls/n1.key")[.posixPermissions] as? Int, 0o600)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: root + "/data/tls/ca.key")[.posixPermissions] as? Int, 0o600)

        // HTTPS on the node and through the balancer (which checks the node's certificate).
        try await waitUntil("the node answers over HTTPS") { await cluster.get("https://\(api)/readyz", admin: false)?["ready"] as? Bool == true }
        try await waitUntil("the balancer answers over HTTPS, through TLS to the node") {
            await cluster.get("https://\(front)/v1/cluster", admin: true)?["leader"] as? String == "n1"
        }
        let plain = await cluster.get("http://\(api)/readyz", admin: false)
        XCTAssertNil(plain, "the node speaks no plain HTTP once it has a certificate")

        // A client that trusts another CA refuses the node's certificate.
        let stranger = try LocalCA(directory: root + "/other-ca")
        var strangerConfiguration = HTTPClient.Configuration()
        strangerConfiguration.tlsConfiguration = try ClientTrust.configuration(trustingCA: stranger.caCertificatePath)
        let strangerClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: strangerConfiguration)
        do {
            _ = try await strangerClient.execute(HTTPClientRequest(url: "https://\(api)/readyz"), timeout: .seconds(5))
            XCTFail("a certificate from another CA must be refused")
        } catch {
            XCTAssertTrue("\(error)".lowercased().contains("certificate") || "\(error)".contains("handshake"), "refused for its certificate: \(error)")
        }
        try await strangerClient.shutdown()

        // WSS through the balancer: a customer message posted over HTTPS arrives as an event.
        // (By name: this WebSocket client puts the host in SNI, where an IP literal is invalid.)
        let tls = try ClientTrust.configuration(trustingCA: ca)
        let events = EventTexts()
        let socket = Task {
            do {
            try await WebSocketClient.connect(
                url: "wss://localhost:\(front.split(separator: ":").last!)/v1/events?token=tls-admin-token", tlsConfiguration: tls, logger: Logger(label: "test-wss")
            ) { inbound, _, _ in
                events.opened()
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    if case .text(let text) = message { events.add(text) }
                }
            }
            } catch {
                events.add("failed: \(error)")
            }
        }
        defer { socket.cancel() }
        try await waitUntil("the events socket is open over WSS (\(events.all))") { events.isOpen }
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = tls
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        var post = HTTPClientRequest(url: "https://\(front)/v1/channels/webchat/messages")
        post.method = .POST
        post.headers.add(name: "Authorization", value: "Bearer tls-admin-token")
        post.headers.add(name: "Content-Type", value: "application/json")
        post.body = .bytes(ByteBuffer(string: #"{"from":"tls-customer","text":"hola por TLS","externalId":"tls-1"}"#))
        let answer = try await client.execute(post, timeout: .seconds(10))
        XCTAssertTrue((200..<300).contains(Int(answer.status.code)), "the message is taken over HTTPS: \(answer.status)")
        try await client.shutdown()
        try await waitUntil("the message event arrives over WSS") { events.all.contains { $0.contains("hola por TLS") } }

        // A renewed certificate is served without a restart.
        let served = try await servedCertificate(api, trusting: ca)
        try FileManager.default.removeItem(atPath: root + "/data/tls/n1.pem")
        try LocalCA(directory: root + "/data/tls").ensureCertificate(member: "n1", hosts: ["127.0.0.1"])
        let renewed = try Certificate(pemEncoded: try String(contentsOfFile: root + "/data/tls/n1.pem", encoding: .utf8))
        XCTAssertNotEqual(renewed.serialNumber, served.serialNumber)
        try await waitUntil("the node serves the renewed certificate", seconds: 15) {
            (try? await self.servedCertificate(api, trusting: ca))?.serialNumber == renewed.serialNumber
        }
        XCTAssertEqual(kill(nodePid, 0), 0, "the same process serves it")
        let log = try String(contentsOfFile: cluster.directory(node) + "/node.log", encoding: .utf8)
        XCTAssertTrue(log.contains("tls certificate reloaded"), "the reload is logged")
    }

    /// The leaf certificate `address` presents in a TLS handshake.
    func servedCertificate(_ address: String, trusting ca: String) async throws -> Certificate {
        let captured = CapturedCertificate()
        var configuration = try ClientTrust.configuration(trustingCA: ca)
        configuration.certificateVerification = .none
        let context = try NIOSSLContext(configuration: configuration)
        let target = try XCTUnwrap(address.split(separator: ":").last.flatMap { Int($0) })
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil, customVerificationCallback: { certificates, promise in
                            captured.set(certificates.first)
                            promise.succeed(.certificateVerified)
                        }))
                }
            }
            .connect(host: "127.0.0.1", port: target).get()
        defer { channel.close(promise: nil) }
        let deadline = Date().addingTimeInterval(5)
        while captured.get() == nil, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let leaf = try XCTUnwrap(captured.get(), "the server presented a certificate")
        return try Certificate(derEncoded: try leaf.toDERBytes())
    }

    func waitUntil(_ what: @autoclosure () -> String, seconds: Double = 20, _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTFail("timed out after \(seconds) s waiting until \(what())")
        throw CancellationError()
    }
}

private final class EventTexts: @unchecked Sendable {
    private let lock = NSLock()
    private var texts: [String] = []
    private var open = false
    func opened() { lock.withLock { open = true } }
    func add(_ text: String) { lock.withLock { texts.append(text) } }
    var isOpen: Bool { lock.withLock { open } }
    var all: [String] { lock.withLock { texts } }
}

private final class CapturedCertificate: @unchecked Sendable {
    private let lock = NSLock()
    private var certificate: NIOSSLCertificate?
    func set(_ value: NIOSSLCertificate?) { lock.withLock { if certificate == nil { certificate = value } } }
    func get() -> NIOSSLCertificate? { lock.withLock { certificate } }
}
