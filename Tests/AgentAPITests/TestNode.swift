import AgentAPI
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NodeRuntime
import Prometheus
import XCTest

/// A real node (command log with fsync, state.sqlite) in a temporary directory, and its API.
final class TestNode: @unchecked Sendable {
    // @unchecked: immutable after init; the node and API are Sendable.
    static let adminToken = "test-admin-token"
    let directory: String
    let node: Node
    let api: API
    let metrics = APIMetrics(registry: PrometheusCollectorRegistry())

    init(directory: String? = nil, passwordCost: PasswordHasher.Cost = PasswordHasher.Cost(memoryKiB: 8, passes: 1)) throws {
        self.directory = directory ?? NSTemporaryDirectory() + "switchboard-api-" + UUID().uuidString
        var configuration = NodeConfiguration(id: "n1", dataDirectory: self.directory, adminTokenHash: Secrets.tokenHash(Self.adminToken))
        configuration.passwordCost = passwordCost
        configuration.readWaitMax = .seconds(2)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        node = try Node(configuration: configuration, logger: logger)
        node.start()
        api = API(node: node, logger: logger)
    }

    /// Waits (up to 5 s) until the node has applied `index`: a single member elects itself
    /// within its first election timeout.
    func waitApplied(atLeast index: Int64) throws {
        let deadline = Date().addingTimeInterval(5)
        while node.appliedIndex < index, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertGreaterThanOrEqual(node.appliedIndex, index, "the node did not apply index \(index) within 5 s")
    }

    func close(removing: Bool = true) {
        node.shutdown()
        if removing { try? FileManager.default.removeItem(atPath: directory) }
    }

    func application() -> some ApplicationProtocol {
        try! api.application(host: "127.0.0.1", port: 0, metrics: metrics)
    }
}

/// A decoded response: status, headers and the JSON body as Foundation values.
struct Reply {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var json: [String: Any]

    subscript(key: String) -> Any? { json[key] }
    var string: (String) -> String? { { json[$0] as? String } }
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
}

extension TestClientProtocol {
    func call(
        _ method: HTTPRequest.Method, _ uri: String, token: String? = TestNode.adminToken, body: String? = nil,
        headers extra: HTTPFields = [:]
    ) async throws -> Reply {
        var headers = extra
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { response in
            let data = Data(buffer: response.body)
            let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
            return Reply(status: response.status, headers: response.headers, json: json)
        }
    }

    /// Creates a queue, an available agent and its session; returns (agentId, token).
    func setUpAgent(email: String = "ana@example.com", skills: [String] = [], capacity: Int = 2) async throws -> (String, String) {
        let agent = try await call(.post, "/v1/agents", body: #"{"name":"Ana","email":"\#(email)","password":"correct horse","skills":\#(skills),"capacity":\#(capacity)}"#)
        XCTAssertEqual(agent.status, .created, "\(agent.json)")
        let login = try await call(.post, "/v1/sessions", token: nil, body: #"{"email":"\#(email)","password":"correct horse"}"#)
        XCTAssertEqual(login.status, .created, "\(login.json)")
        let token = try XCTUnwrap(login["token"] as? String)
        let status = try await call(.put, "/v1/agents/me/status", token: token, body: #"{"status":"available"}"#)
        XCTAssertEqual(status.string("status"), "available")
        return (try XCTUnwrap(agent["id"] as? String), token)
    }
}

import NIOCore
import HTTPTypes
