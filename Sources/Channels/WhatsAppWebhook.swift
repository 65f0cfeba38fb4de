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
    /// Account payload, breaks a bound, or a message or status lacks what identifies it.
    public static func decode(_ body: [UInt8]) throws(DecodeError) -> [Event] {
        guard body.count <= bodyBytesMax else { throw DecodeError("the body is over \(bodyBytesMax) bytes") }
        let payload: Payload
        do {
            payload = try JSONDecoder().decode(Payload.self, from: Data(body))
        } catch {
            throw DecodeError("not a WhatsApp webhook payload: \(error)")
        }
        guard payload.object == "whatsapp_business_account" else { throw DecodeError("object is '\(payload.object)', not whatsapp_business_account") }
        guard payload.entry.count <= entriesMax else { throw DecodeError("\(payload.entry.count) entries, more than \(entriesMax)") }
        var events: [Event] = []
        for entry in payload.entry {
            for change in entry.changes ?? [] where change.field == "messages" {
                guard let value = change.value else { continue }
                let messages = value.messages ?? [], statuses = value.statuses ?? []
                guard messages.count + statuses.count <= itemsPerChangeMax else {
                    throw DecodeError("\(messages.count + statuses.count) messages and statuses in one change, more than \(itemsPerChangeMax)")
                }
                let names = Dictionary((value.contacts ?? []).compactMap { contact in contact.profile?.name.map { (contact.wa_id, $0) } }, uniquingKeysWith: { first, _ in first })
                for message in messages {
                    guard let from = PhoneNumber(message.from) else { throw DecodeError("message \(message.id): '\(message.from)' is not a phone number") }
                    events.append(.message(InboundMessage(
                        id: message.id, from: from, profileName: names[message.from], timestamp: Int64(message.timestamp) ?? 0,
                        phoneNumberId: value.metadata?.phone_number_id ?? "", content: try content(of: message))))
                }
                for status in statuses {
                    let error = status.errors?.first.map { "\($0.code ?? 0): \($0.title ?? $0.message ?? "unknown error")" }
                    events.append(.status(DeliveryStatus(
                        messageId: status.id, status: status.status, recipient: status.recipient_id.flatMap(PhoneNumber.init),
                        timestamp: Int64(status.timestamp ?? "") ?? 0, error: error)))
                }
            }
        }
        return events
    }

    private static func content(of message: Payload.Message) throws(DecodeError) -> Content {
        switch message.type {
        case "text":
            guard let body = message.text?.body else { throw DecodeError("message \(message.id): text without a body") }
            return .text(body)
        case "image", "audio", "voice", "video", "document", "sticker":
            let media = [message.image, message.audio, message.voice, message.video, message.document, message.sticker].compactMap { $0 }.first
            guard let media else { throw DecodeError("message \(message.id): \(message.type) without its media") }
            let kind = message.type == "audio" && media.voice == true ? "voice" : message.type
            return .media(kind: kind, mediaId: media.id, mimeType: media.mime_type, caption: media.caption, filename: media.filename)
        case "location":
            guard let location = message.location else { throw DecodeError("message \(message.id): location without coordinates") }
            return .location(latitude: location.latitude, longitude: location.longitude, name: location.name, address: location.address)
        case "interactive":
            guard let reply = message.interactive?.button_reply ?? message.interactive?.list_reply else {
                throw DecodeError("message \(message.id): interactive without a button or list reply")
            }
            return .interactive(id: reply.id, title: reply.title)
        case "button":
            guard let button = message.button else { throw DecodeError("message \(message.id): button without its text") }
            return .interactive(id: button.payload ?? button.text, title: button.text)
        default:
            return .unsupported(type: message.type)
        }
    }

    // MARK: Meta's shapes (only the fields read)

    private struct Payload: Decodable {
        var object: String
        var entry: [Entry]

        struct Entry: Decodable { var changes: [Change]? }
        struct Change: Decodable {
            var field: String
            var value: Value?
        }
        struct Value: Decodable {
            var metadata: Metadata?
            var contacts: [Contact]?
            var messages: [Message]?
            var statuses: [Status]?
        }
        struct Metadata: Decodable { var phone_number_id: String? }
        struct Contact: Decodable {
            var wa_id: String
            var profile: Profile?
        }
        struct Profile: Decodable { var name: String? }
        struct Message: Decodable {
            var from: String
            var id: String
            var timestamp: String
            var type: String
            var text: Text?
            var image: Media?, audio: Media?, voice: Media?, video: Media?, document: Media?, sticker: Media?
            var location: Location?
            var interactive: Interactive?
            var button: Button?
        }
        struct Text: Decodable { var body: String }
        struct Media: Decodable {
            var id: String
            var mime_type: String?
            var caption: String?
            var filename: String?
            var voice: Bool?
        }
        struct Location: Decodable {
            var latitude: Double
            var longitude: Double
            var name: String?
            var address: String?
        }
        struct Interactive: Decodable {
            var button_reply: Reply?
            var list_reply: Reply?
        }
        struct Reply: Decodable {
            var id: String
            var title: String
        }
        struct Button: Decodable {
            var text: String
            var payload: String?
        }
        struct Status: Decodable {
            var id: String
            var status: String
            var timestamp: String?
            var recipient_id: String?
            var errors: [StatusError]?
        }
        struct StatusError: Decodable {
            var code: Int?
            var title: String?
            var message: String?
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
