import Crypto
import Foundation
import Wire

/// What Meta's WhatsApp Cloud API posts to a webhook, read into what Switchboard keeps: the
/// customers' messages (text, media with its id, MIME type and caption, locations, interactive
/// replies) with their senders' profile names, and the delivery statuses of the messages the
/// business sent. Pure: bytes in, values out; the body is checked against its
/// `X-Hub-Signature-256` before it is read.
public enum WhatsAppWebhook {
    /// Most entries, changes per entry, and messages plus statuses per change read from one
    /// payload; a payload past one is refused whole (Meta batches at most a few).
    public static let entriesMax = 100
    public static let itemsPerChangeMax = 1000
    /// Largest body read (Meta's payloads are a few KiB).
    public static let bodyBytesMax = 1 << 20

    // MARK: Signature

    /// True when `header` is `sha256=<hex of HMAC-SHA256(appSecret, body)>`, compared in
    /// constant time. A missing, malformed or wrong header is false.
    public static func signatureIsValid(_ header: String?, body: [UInt8], appSecret: String) -> Bool {
        guard let header, header.hasPrefix("sha256="), let mac = Hex.decode(header.dropFirst(7)), mac.count == SHA256.byteCount else { return false }
        let key = SymmetricKey(data: Array(appSecret.utf8))
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: body, using: key)
    }

    /// `sha256=<hex>` for `body`: what Meta sends (for simulators and tests).
    public static func signature(of body: [UInt8], appSecret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(appSecret.utf8)))
        return "sha256=" + Hex.encode(Array(mac))
    }

    /// The subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`):
    /// the challenge to answer when the mode and the token match, else nil (403).
    public static func challenge(mode: String?, token: String?, challenge: String?, verifyToken: String) -> String? {
        guard mode == "subscribe", let token, let challenge, !challenge.isEmpty, constantTimeEqual(Array(token.utf8), Array(verifyToken.utf8)) else {
            return nil
        }
        return challenge
    }

    // MARK: The payload

    public enum Event: Sendable, Equatable {
        case message(InboundMessage)
        case status(DeliveryStatus)
    }

    public struct InboundMessage: Sendable, Equatable {
        /// Meta's message id (`wamid...`): the key that makes a redelivered webhook a no-op.
        public var id: String
        public var from: PhoneNumber
        /// `contacts[].profile.name` of the sender, when Meta sent it.
        public var profileName: String?
        /// Seconds since 1970, as Meta stamps it.
        public var timestamp: Int64
        /// The business number it was sent to (`metadata.phone_number_id`).
        public var phoneNumberId: String
        public var content: Content

        public init(id: String, from: PhoneNumber, profileName: String?, timestamp: Int64, phoneNumberId: String, content: Content) {
            self.id = id
            self.from = from
            self.profileName = profileName
            self.timestamp = timestamp
            self.phoneNumberId = phoneNumberId
            self.content = content
        }
    }

    public enum Content: Sendable, Equatable {
        case text(String)
        /// image, audio, voice, video, document, sticker: Meta's media id to fetch it with.
        case media(kind: String, mediaId: String, mimeType: String?, caption: String?, filename: String?)
        case location(latitude: Double, longitude: Double, name: String?, address: String?)
        /// A button or list reply: the option's id and title.
        case interactive(id: String, title: String)
        /// A type Switchboard does not read (reaction, order, system...): kept as its name.
        case unsupported(type: String)
    }

    public struct DeliveryStatus: Sendable, Equatable {
        /// The id of the message the business sent (`messages[0].id` of the send's answer).
        public var messageId: String
        /// sent, delivered, read or failed.
        public var status: String
        public var recipient: PhoneNumber?
        public var timestamp: Int64
        /// For `failed`: Meta's first error, as `<code>: <title>`.
        public var error: String?

        public init(messageId: String, status: String, recipient: PhoneNumber?, timestamp: Int64, error: String?) {
            self.messageId = messageId
            self.status = status
            self.recipient = recipient
            self.timestamp = timestamp
            self.error = error
        }
    }

    public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Reads a webhook body. Throws (and nothing is kept) when it is not a WhatsApp Business
    /// Account payload, breaks a bound, or a message or status lacks what identifies it. A field
    /// read here with another type than Meta documents is refused too.
    public static func decode(_ body: [UInt8]) throws(DecodeError) -> [Event] {
        guard body.count <= bodyBytesMax else { throw DecodeError("the body is over \(bodyBytesMax) bytes") }
        let payload: JSONTree
        do {
            payload = try JSONTree.parse(body)
        } catch {
            throw DecodeError("not a WhatsApp webhook payload: not JSON (\(error.reason) at byte \(error.offset))")
        }
        guard case .object = payload else { throw DecodeError("not a WhatsApp webhook payload: not a JSON object") }
        let object = try required(payload, "object", "the payload")
        guard object == "whatsapp_business_account" else { throw DecodeError("object is '\(object)', not whatsapp_business_account") }
        guard let entries = payload["entry"]?.array else { throw DecodeError("not a WhatsApp webhook payload: no entry list") }
        guard entries.count <= entriesMax else { throw DecodeError("\(entries.count) entries, more than \(entriesMax)") }
        var events: [Event] = []
        for entry in entries {
            guard case .object = entry else { throw DecodeError("an entry is not an object") }
            for change in try list(entry, "changes", "an entry") {
                guard case .object = change else { throw DecodeError("a change is not an object") }
                guard try required(change, "field", "a change") == "messages", let value = change["value"], value != .null else { continue }
                guard case .object = value else { throw DecodeError("a change's value is not an object") }
                let messages = try list(value, "messages", "a value"), statuses = try list(value, "statuses", "a value")
                guard messages.count + statuses.count <= itemsPerChangeMax else {
                    throw DecodeError("\(messages.count + statuses.count) messages and statuses in one change, more than \(itemsPerChangeMax)")
                }
                var names: [String: String] = [:]
                for contact in try list(value, "contacts", "a value") {
                    let waId = try required(contact, "wa_id", "a contact")
                    if let name = try optional(contact["profile"] ?? .null, "name", "a profile"), names[waId] == nil { names[waId] = name }
                }
                let phoneNumberId = try optional(value["metadata"] ?? .null, "phone_number_id", "metadata") ?? ""
                for message in messages {
                    let id = try required(message, "id", "a message"), fromText = try required(message, "from", "message \(id)")
                    let timestamp = try required(message, "timestamp", "message \(id)")
                    guard let from = PhoneNumber(fromText) else { throw DecodeError("message \(id): '\(fromText)' is not a phone number") }
                    events.append(.message(InboundMessage(
                        id: id, from: from, profileName: names[fromText], timestamp: Int64(timestamp) ?? 0, phoneNumberId: phoneNumberId,
                        content: try content(of: message, id: id))))
                }
                for status in statuses {
                    let id = try required(status, "id", "a status")
                    var error: String?
                    if let first = try list(status, "errors", "status \(id)").first {
                        // Int(exactly:): a code of 1e300 is no code, not a trap.
                        let code = try optionalNumber(first, "code", "an error").flatMap { Int(exactly: $0.rounded()) }
                        let title = try optional(first, "title", "an error")
                        let message = try optional(first, "message", "an error")
                        error = "\(code ?? 0): \(title ?? message ?? "unknown error")"
                    }
                    events.append(.status(DeliveryStatus(
                        messageId: id, status: try required(status, "status", "status \(id)"),
                        recipient: try optional(status, "recipient_id", "status \(id)").flatMap(PhoneNumber.init),
                        timestamp: Int64(try optional(status, "timestamp", "status \(id)") ?? "") ?? 0, error: error)))
                }
            }
        }
        return events
    }

    private static func content(of message: JSONTree, id: String) throws(DecodeError) -> Content {
        let type = try required(message, "type", "message \(id)")
        switch type {
        case "text":
            guard let text = message["text"], let body = try optional(text, "body", "message \(id)") else {
                throw DecodeError("message \(id): text without a body")
            }
            return .text(body)
        case "image", "audio", "voice", "video", "document", "sticker":
            let media = ["image", "audio", "voice", "video", "document", "sticker"].lazy.compactMap { message[$0] }.first { $0 != .null }
            guard let media, case .object = media else { throw DecodeError("message \(id): \(type) without its media") }
            let voice = try optionalBool(media, "voice", "message \(id)")
            return .media(
                kind: type == "audio" && voice == true ? "voice" : type, mediaId: try required(media, "id", "message \(id)'s media"),
                mimeType: try optional(media, "mime_type", "message \(id)"), caption: try optional(media, "caption", "message \(id)"),
                filename: try optional(media, "filename", "message \(id)"))
        case "location":
            guard let location = message["location"], let latitude = try optionalNumber(location, "latitude", "message \(id)"),
                let longitude = try optionalNumber(location, "longitude", "message \(id)")
            else { throw DecodeError("message \(id): location without coordinates") }
            return .location(
                latitude: latitude, longitude: longitude, name: try optional(location, "name", "message \(id)"),
                address: try optional(location, "address", "message \(id)"))
        case "interactive":
            let interactive = message["interactive"] ?? .null
            guard let reply = [interactive["button_reply"], interactive["list_reply"]].compactMap({ $0 }).first(where: { $0 != .null }) else {
                throw DecodeError("message \(id): interactive without a button or list reply")
            }
            return .interactive(id: try required(reply, "id", "message \(id)'s reply"), title: try required(reply, "title", "message \(id)'s reply"))
        case "button":
            guard let button = message["button"], button != .null else { throw DecodeError("message \(id): button without its text") }
            let text = try required(button, "text", "message \(id)'s button")
            return .interactive(id: try optional(button, "payload", "message \(id)'s button") ?? text, title: text)
        default:
            return .unsupported(type: type)
        }
    }

    // MARK: Reading Meta's shapes (only the fields read)

    private static func required(_ value: JSONTree, _ key: String, _ what: String) throws(DecodeError) -> String {
        guard let text = try optional(value, key, what) else { throw DecodeError("\(what) has no \(key)") }
        return text
    }

    /// The string under `key`; nil when absent or null; an error when it is another type.
    private static func optional(_ value: JSONTree, _ key: String, _ what: String) throws(DecodeError) -> String? {
        switch value[key] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw DecodeError("\(what): \(key) is not a string")
        }
    }

    private static func optionalNumber(_ value: JSONTree, _ key: String, _ what: String) throws(DecodeError) -> Double? {
        switch value[key] {
        case nil, .null?: return nil
        case .number(let number)?: return number
        default: throw DecodeError("\(what): \(key) is not a number")
        }
    }

    private static func optionalBool(_ value: JSONTree, _ key: String, _ what: String) throws(DecodeError) -> Bool? {
        switch value[key] {
        case nil, .null?: return nil
        case .bool(let flag)?: return flag
        default: throw DecodeError("\(what): \(key) is not a boolean")
        }
    }

    /// The list under `key`, empty when absent or null; an error when it is another type.
    private static func list(_ value: JSONTree, _ key: String, _ what: String) throws(DecodeError) -> [JSONTree] {
        switch value[key] {
        case nil, .null?: return []
        case .array(let values)?: return values
        default: throw DecodeError("\(what): \(key) is not a list")
        }
    }

    // MARK: Helpers

    /// Equal bytes, in time that depends only on the lengths.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
