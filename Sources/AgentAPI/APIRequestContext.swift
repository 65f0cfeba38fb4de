import ContactCenter
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore

/// The request context of every route: Hummingbird's core storage plus the WebSocket handler slot.
public struct APIRequestContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    /// Largest request body any endpoint accepts: a provider's webhook (WhatsApp's bound) and a
    /// message of `Limits.textBytesMax` with its JSON escapes fit.
    public static let requestBodyBytesMax = 1 << 20

    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    /// The request's `Idempotency-Key` with its route and body hash, set by `APIMiddleware`.
    public var idempotency: Idempotency?
    /// The peer of the connection (the balancer, behind one).
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        remoteAddress = source.channel.remoteAddress
    }

    public var maxUploadSize: Int { Self.requestBodyBytesMax }
}

extension Request {
    /// Decodes the JSON body, mapping every failure to a 400 that says what was wrong where.
    func decodeJSON<T: Decodable>(_ type: T.Type, context: APIRequestContext) async throws -> T {
        let buffer = try await jsonBody()
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: buffer))
        } catch let error as DecodingError {
            throw APIError.malformed(Self.describe(error), field: Self.field(error))
        } catch {
            throw APIError.malformed("the body is not valid JSON")
        }
    }

    /// The body as a JSON object's top-level fields (`JSONObjectFields`), for the hot write path.
    func jsonObjectFields() async throws -> JSONObjectFields {
        let buffer = try await jsonBody()
        do {
            return try buffer.readableBytesView.withUnsafeBytes { bytes throws(JSONObjectFields.Invalid) in try JSONObjectFields(bytes) }
        } catch {
            throw APIError.malformed("the body is not valid JSON")
        }
    }

    /// The whole body, bounded by `requestBodyBytesMax`; an empty one is a 400.
    private func jsonBody() async throws -> ByteBuffer {
        let buffer = try await body.collect(upTo: APIRequestContext.requestBodyBytesMax)
        guard buffer.readableBytes > 0 else { throw APIError.malformed("the request needs a JSON body") }
        return buffer
    }

    private static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    private static func field(_ error: DecodingError) -> String? {
        switch error {
        case .keyNotFound(let key, let context): path(context.codingPath + [key])
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            context.codingPath.isEmpty ? nil : path(context.codingPath)
        @unknown default: nil
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): "missing field '\(key.stringValue)'"
        case .typeMismatch(let type, _): "wrong type: expected \(type)"
        case .valueNotFound(let type, _): "null where \(type) is required"
        case .dataCorrupted: "the body is not valid JSON"
        @unknown default: "the body could not be decoded"
        }
    }

    /// The `Idempotency-Key` of a write (POST, PUT, PATCH, DELETE; a login ignores it), with the
    /// key's route (`"<METHOD> <path>"`) and the SHA-256 of the body: the body is collected here
    /// (bounded by `requestBodyBytesMax`) and stays readable for the handler.
    mutating func idempotency() async throws -> Idempotency? {
        guard let key = headers[.idempotencyKey] else { return nil }
        switch method {
        case .post, .put, .patch, .delete: break
        default: return nil
        }
        if method == .post, uri.path == "/v1/sessions" { return nil }
        guard !key.isEmpty, key.utf8.count <= Limits.idempotencyKeyBytesMax, !key.unicodeScalars.contains(where: Validate.isControl) else {
            throw APIError(
                .badRequest, "invalid_idempotency_key",
                "Idempotency-Key must be 1 to \(Limits.idempotencyKeyBytesMax) bytes without control characters", field: "Idempotency-Key")
        }
        let body = try await collectBody(upTo: APIRequestContext.requestBodyBytesMax)
        let hash = body.readableBytesView.withUnsafeBytes { Array(SHA256.hash(data: $0)) }
        return Idempotency(key: key, route: "\(method.rawValue) \(uri.path)", requestHash: hash)
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
    static let xForwardedFor = Self("X-Forwarded-For")!
}
