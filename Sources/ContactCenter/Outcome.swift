import Wire

/// Why apply refused a command. The command changed nothing; the caller gets this error.
public struct DomainError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable {
        case invalid = 1, notFound, conflict, preconditionFailed, forbidden
    }

    public var kind: Kind
    /// snake_case, stable: clients branch on it.
    public var code: String
    public var message: String
    public var field: String?

    public init(_ kind: Kind, _ code: String, _ message: String, field: String? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { "\(code): \(message)" }

    public static func notFound(_ what: String, _ id: String) -> DomainError {
        DomainError(.notFound, "\(what)_not_found", "no \(what) with id '\(id)'")
    }
}

/// The result of applying one command, identical on every node. Kept (replicated) under the
/// command's idempotency key so a retry returns it without a second effect.
public enum Outcome: Sendable, Equatable {
    case agent(id: String)
    case session(agentId: String)
    case queue(id: String)
    case rule(id: String)
    case contact(id: String)
    case inbound(conversationId: String, messageId: String, duplicate: Bool)
    case message(conversationId: String, messageId: String)
    case conversation(id: String)
    case inbox(id: String)
    case done
    case rejected(DomainError)
    /// The answer recorded for a request with an idempotency key: stored under the key, and what
    /// a retry of the same request returns, with no second effect.
    case answered(RecordedAnswer)

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        switch self {
        case .agent(let id): writer.write(UInt8(1)); writer.write(id)
        case .session(let agentId): writer.write(UInt8(2)); writer.write(agentId)
        case .queue(let id): writer.write(UInt8(3)); writer.write(id)
        case .rule(let id): writer.write(UInt8(4)); writer.write(id)
        case .contact(let id): writer.write(UInt8(5)); writer.write(id)
        case .inbound(let conversationId, let messageId, let duplicate):
            writer.write(UInt8(6)); writer.write(conversationId); writer.write(messageId); writer.write(duplicate)
        case .message(let conversationId, let messageId):
            writer.write(UInt8(7)); writer.write(conversationId); writer.write(messageId)
        case .conversation(let id): writer.write(UInt8(8)); writer.write(id)
        case .inbox(let id): writer.write(UInt8(12)); writer.write(id)
        case .done: writer.write(UInt8(9))
        case .rejected(let error):
            writer.write(UInt8(10)); writer.write(error.kind.rawValue); writer.write(error.code)
            writer.write(error.message); writer.write(error.field)
        case .answered(let answer):
            writer.write(UInt8(11)); writer.write(UInt16(clamping: answer.status)); writer.write(answer.body)
            writer.write(answer.etag)
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Outcome {
        var reader = ByteReader(bytes)
        let outcome: Outcome
        switch try reader.readUInt8() {
        case 1: outcome = .agent(id: try reader.readString())
        case 2: outcome = .session(agentId: try reader.readString())
        case 3: outcome = .queue(id: try reader.readString())
        case 4: outcome = .rule(id: try reader.readString())
        case 5: outcome = .contact(id: try reader.readString())
        case 6: outcome = .inbound(conversationId: try reader.readString(), messageId: try reader.readString(), duplicate: try reader.readBool())
        case 7: outcome = .message(conversationId: try reader.readString(), messageId: try reader.readString())
        case 8: outcome = .conversation(id: try reader.readString())
        case 9: outcome = .done
        case 12: outcome = .inbox(id: try reader.readString())
        case 10:
            let rawKind = try reader.readUInt8()
            guard let kind = DomainError.Kind(rawValue: rawKind) else { throw .invalid("error kind \(rawKind)") }
            outcome = .rejected(DomainError(kind, try reader.readString(), try reader.readString(), field: try reader.readOptionalString()))
        case 11:
            let status = Int(try reader.readUInt16())
            guard (100...599).contains(status) else { throw .invalid("answer status \(status)") }
            outcome = .answered(RecordedAnswer(status: status, body: try reader.readString(), etag: try reader.readOptionalInt64()))
        case let tag: throw .invalid("outcome tag \(tag)")
        }
        try reader.expectEnd()
        return outcome
    }
}
