import ContactCenter
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NodeRuntime

/// An error answered with API.md's shape: `{"error": {"code", "message", "field"?}}`.
public struct APIError: Error, Sendable, HTTPResponseError {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var field: String?
    /// Seconds, for 429 and 503.
    public var retryAfter: Int?
    /// A 503 about the cluster, not the node that answers it (a leader change under way): the
    /// answer carries `X-Switchboard-Scope: cluster`, so a balancer retries it elsewhere but does
    /// not eject a live node for it.
    public var aboutTheCluster = false

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, field: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retryAfter = retryAfter
    }

    public var body: JSONValue {
        var error: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        if let field { error["field"] = .string(field) }
        return .object(["error": .object(error)])
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = JSONResponse.make(body, status: status)
        if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        if aboutTheCluster { response.headers[.switchboardScope] = "cluster" }
        return response
    }

    /// A 503 about the cluster (see `aboutTheCluster`).
    static func cluster(_ code: String, _ message: String) -> APIError {
        var error = APIError(.serviceUnavailable, code, message, retryAfter: 1)
        error.aboutTheCluster = true
        return error
    }

    static func invalid(_ message: String, field: String) -> APIError { APIError(.unprocessableContent, "invalid_field", message, field: field) }
    static func malformed(_ message: String, field: String? = nil) -> APIError { APIError(.badRequest, "malformed_request", message, field: field) }
    static let unauthorized = APIError(.unauthorized, "unauthorized", "missing or invalid bearer token")
    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, "forbidden", message) }
    static func notFound(_ what: String, _ id: String) -> APIError { APIError(.notFound, "\(what)_not_found", "no \(what) with id '\(id)'") }

    /// A domain rejection from apply, as HTTP.
    init(_ error: DomainError) {
        let status: HTTPResponse.Status = switch error.kind {
        case .invalid: .unprocessableContent
        case .notFound: .notFound
        case .conflict: .conflict
        case .preconditionFailed: .preconditionFailed
        case .forbidden: .forbidden
        }
        self.init(status, error.code, error.message, field: error.field)
    }

    /// Maps anything a handler threw to the API's error shape; unknown errors are 500s.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let error as APIError: return error
        case let error as DomainError: return APIError(error)
        case let error as NodeError:
            switch error {
            case .overloaded(let why): return APIError(.tooManyRequests, "overloaded", why, retryAfter: 1)
            case .stopped(let why): return APIError(.serviceUnavailable, "unavailable", "this node is not taking writes: \(why)", retryAfter: 1)
            case .timedOut(let index):
                return APIError(.serviceUnavailable, "not_caught_up", "log index \(index) was not applied in time", retryAfter: 1)
            case .noLeader(let why):
                return .cluster("no_leader", "the cluster has no reachable leader now (\(why)); retry")
            case .unknownOutcome(let why):
                return .cluster("outcome_unknown", "the write may or may not have been applied (\(why)); retry with the same Idempotency-Key")
            case .notCommitted(let why):
                return .cluster("not_committed", "the write was not applied (\(why)); retry")
            case .clusterRejected(let why):
                return APIError(.conflict, "cluster_rejected", why)
            }
        case is NIOTooManyBytesError:
            return APIError(.contentTooLarge, "body_too_large", "request body exceeds \(APIRequestContext.requestBodyBytesMax) bytes")
        case let error as HTTPError:
            switch error.status {
            case .notFound: return APIError(.notFound, "route_not_found", "no such endpoint")
            case .methodNotAllowed: return APIError(.methodNotAllowed, "method_not_allowed", "this endpoint does not take that method")
            case .contentTooLarge:
                return APIError(.contentTooLarge, "body_too_large", "request body exceeds \(APIRequestContext.requestBodyBytesMax) bytes")
            default: return APIError(error.status, "http_error", error.body ?? error.status.reasonPhrase)
            }
        case let error as any HTTPResponseError:
            return APIError(error.status, "http_error", error.status.reasonPhrase)
        default:
            return APIError(.internalServerError, "internal", "internal error; the node logged it")
        }
    }
}

enum JSONResponse {
    static func make(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        var body: [UInt8] = []
        body.reserveCapacity(512)
        value.write(into: &body)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
