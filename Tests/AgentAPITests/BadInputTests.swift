import AgentAPI
import Foundation
import HummingbirdTesting
import NodeRuntime
import XCTest

/// Every kind of bad request gets API.md's error shape with the right status, and none of them
/// changes state.
final class BadInputTests: XCTestCase {
    func testBatteryOfBadRequestsChangesNothing() async throws {
        let testNode = try TestNode()
        defer { testNode.close() }
        try await testNode.application().test(.router) { client in
            _ = try await client.call(.post, "/v1/queues", body: #"{"name":"support"}"#)
            let (agentId, token) = try await client.setUpAgent(capacity: 1)
            let inbound = try await client.call(.post, "/v1/channels/whatsapp/messages", body: #"{"from":"+1","text":"hi","externalId":"w1"}"#)
            let conversationId = try XCTUnwrap(inbound.string("conversationId"))
            _ = try await client.call(.post, "/v1/conversations/\(conversationId)/resolve", token: token)
            let contact = try await client.call(.post, "/v1/contacts", body: #"{"name":"Bea","identifiers":{"email":"bea@example.com"}}"#)
            let contactId = try XCTUnwrap(contact.string("id"))
            let before = try testNode.node.state.dump()

            let oversize = String(repeating: "x", count: APIRequestContext.requestBodyBytesMax + 1)
            let battery: [(HTTPRequest.Method, String, String?, String?, HTTPResponse.Status, String)] = [
                (.post, "/v1/queues", TestNode.adminToken, "{not json", .badRequest, "malformed_request"),
                (.post, "/v1/queues", TestNode.adminToken, nil, .badRequest, "malformed_request"),
                (.post, "/v1/queues", TestNode.adminToken, #"{"name": 7}"#, .badRequest, "malformed_request"),
                (.post, "/v1/queues", TestNode.adminToken, #"{"name":"  "}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/queues", TestNode.adminToken, #"{"name":"q","channels":["fax"]}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/queues", TestNode.adminToken, #"{"name":"support"}"#, .conflict, "queue_name_taken"),
                (.post, "/v1/queues", token, #"{"name":"mine"}"#, .forbidden, "forbidden"),
                (.post, "/v1/queues", nil, #"{"name":"anon"}"#, .unauthorized, "unauthorized"),
                (.post, "/v1/queues", "not-a-token", #"{"name":"anon"}"#, .unauthorized, "unauthorized"),
                (.post, "/v1/agents", TestNode.adminToken, #"{"name":"X","email":"nope","password":"longenough"}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/agents", TestNode.adminToken, #"{"name":"X","email":"x@example.com","password":"short"}"#, .unprocessableContent, "invalid_field"),
                // Seven characters in 20 bytes: too short, counted as JSON Schema counts (code points).
                (.post, "/v1/agents", TestNode.adminToken, #"{"name":"X","email":"x@example.com","password":"ñ😀😀😀😀😀ñ"}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/agents", TestNode.adminToken, #"{"name":"X","email":"x@example.com","password":"longenough","role":"boss"}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/agents", TestNode.adminToken, #"{"name":"X","email":"ana@example.com","password":"longenough"}"#, .conflict, "email_taken"),
                (.post, "/v1/agents", TestNode.adminToken, #"{"name":"X","email":"y@example.com","password":"longenough","capacity":-1}"#, .unprocessableContent, "invalid_field"),
                (.put, "/v1/agents/me/status", token, #"{"status":"sleeping"}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/sessions", nil, #"{"email":"ana@example.com","password":"wrong password"}"#, .unauthorized, "invalid_credentials"),
                (.post, "/v1/sessions", nil, #"{"email":"nobody@example.com","password":"whatever1"}"#, .unauthorized, "invalid_credentials"),
                (.post, "/v1/channels/fax/messages", TestNode.adminToken, #"{"from":"1","text":"x","externalId":"e"}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/channels/sms/messages", TestNode.adminToken, #"{"from":"1","text":"","externalId":"e"}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/channels/sms/messages", TestNode.adminToken, #"{"from":"1","text":"x"}"#, .badRequest, "malformed_request"),
                (.post, "/v1/channels/sms/messages", token, #"{"from":"1","text":"x","externalId":"e"}"#, .forbidden, "forbidden"),
                (.post, "/v1/channels/sms/messages", TestNode.adminToken, #"{"from":"1","text":"\#(oversize)","externalId":"e"}"#, .contentTooLarge, "body_too_large"),
                (.post, "/v1/conversations/\(conversationId)/resolve", token, nil, .conflict, "already_resolved"),
                (.post, "/v1/conversations/\(conversationId)/messages", token, #"{"text":"late"}"#, .conflict, "conversation_resolved"),
                (.post, "/v1/conversations/\(conversationId)/messages", token, #"{"text":"   "}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/conversations/cv_missing/resolve", token, nil, .notFound, "conversation_not_found"),
                (.post, "/v1/conversations/cv_missing/assign", TestNode.adminToken, #"{"agent":"\#(agentId)"}"#, .notFound, "conversation_not_found"),
                (.get, "/v1/conversations/cv_missing", token, nil, .notFound, "conversation_not_found"),
                (.get, "/v1/conversations?status=open", token, nil, .unprocessableContent, "invalid_field"),
                (.get, "/v1/conversations?limit=900", token, nil, .badRequest, "malformed_request"),
                (.get, "/v1/agents/me?consistency=eventual", token, nil, .badRequest, "malformed_request"),
                (.get, "/v1/agents/me?minIndex=-4", token, nil, .badRequest, "malformed_request"),
                (.get, "/v1/agents/me?minIndex=999999", token, nil, .badRequest, "min_index_ahead"),
                (.get, "/v1/agents/ag_missing", TestNode.adminToken, nil, .notFound, "agent_not_found"),
                (.patch, "/v1/contacts/\(contactId)", TestNode.adminToken, #"{"name":"Bee"}"#, .preconditionFailed, "version_mismatch"),
                (.patch, "/v1/contacts/ct_missing", TestNode.adminToken, #"{"name":"Bee"}"#, .notFound, "contact_not_found"),
                (.post, "/v1/contacts", TestNode.adminToken, #"{"name":"Dup","identifiers":{"email":"bea@example.com"}}"#, .conflict, "identifier_taken"),
                (.post, "/v1/rules", TestNode.adminToken, #"{"name":"r","keywords":["x"],"action":"route"}"#, .unprocessableContent, "invalid_field"),
                (.post, "/v1/rules", TestNode.adminToken, #"{"name":"r","keywords":["x"],"action":"route","queue":"qu_missing"}"#, .unprocessableContent, "queue_not_found"),
                (.post, "/v1/rules", TestNode.adminToken, #"{"name":"r","keywords":["!!"],"action":"reply","reply":"x"}"#, .unprocessableContent, "invalid_field"),
                (.get, "/v1/nothing-here", TestNode.adminToken, nil, .notFound, "route_not_found"),
            ]
            for (method, uri, bearer, body, status, code) in battery {
                var headers: HTTPFields = [:]
                if uri.hasPrefix("/v1/contacts/") && method == .patch { headers[.ifMatch] = "\"7\"" }
                let reply = try await client.call(method, uri, token: bearer, body: body, headers: headers)
                XCTAssertEqual(reply.status, status, "\(method) \(uri) \(body?.prefix(80) ?? ""): \(reply.json)")
                XCTAssertEqual(reply.errorCode, code, "\(method) \(uri): \(reply.json)")
                XCTAssertNotNil((reply.json["error"] as? [String: Any])?["message"] as? String, "\(method) \(uri) has no error message")
                if status == .serviceUnavailable || status == .tooManyRequests {
                    XCTAssertNotNil(reply.headers[.retryAfter], "\(method) \(uri) lacks Retry-After")
                }
            }

            let after = try testNode.node.state.dump()
            // Rejections that reached apply consume log indexes, so only applied_index may move.
            let strip = { (dump: String) in dump.split(separator: "\n").filter { !$0.contains("applied_index") } }
            XCTAssertEqual(strip(before), strip(after), "a bad request changed state")
        }
    }
}

import HTTPTypes
