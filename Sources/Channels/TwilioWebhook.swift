import Crypto
import Foundation
import Wire

/// What Twilio posts to an SMS webhook (`application/x-www-form-urlencoded`): an inbound message
/// (`From`, `To`, `Body`, `MessageSid`, `NumMedia`, `MediaUrl<N>`, `MediaContentType<N>`) or the
/// status callback of a message the business sent (`MessageSid`, `MessageStatus`, `ErrorCode`).
/// The request is checked against `X-Twilio-Signature` before it is read.
public enum TwilioWebhook {
    /// Largest body read, and most fields and media per message (Twilio sends at most 10 media).
    public static let bodyBytesMax = 64 << 10
    public static let fieldsMax = 256
    public static let mediaMax = 10

    public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: Signature

    /// Twilio's signature: base64 of HMAC-SHA1(authToken, the full URL Twilio called, then each
    /// POST parameter's name and value, sorted by name).
    public static func signature(url: String, parameters: [(String, String)], authToken: String) -> String {
        var data = Array(url.utf8)
        for (name, value) in parameters.sorted(by: { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }) {
            data += Array(name.utf8)
            data += Array(value.utf8)
        }
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: data, using: SymmetricKey(data: Array(authToken.utf8)))
        return Data(mac).base64EncodedString()
    }

    /// True when `header` is the signature of this request, compared in constant time.
    public static func signatureIsValid(_ header: String?, url: String, parameters: [(String, String)], authToken: String) -> Bool {
        guard let header else { return false }
        return WhatsAppWebhook.constantTimeEqual(Array(header.utf8), Array(signature(url: url, parameters: parameters, authToken: authToken).utf8))
    }

    // MARK: The form

    /// The form's fields in order, percent-decoded (`+` is a space). Throws on a malformed
    /// escape, invalid UTF-8 or a bound passed.
    public static func form(_ body: [UInt8]) throws(DecodeError) -> [(String, String)] {
        guard body.count <= bodyBytesMax else { throw DecodeError("the body is over \(bodyBytesMax) bytes") }
        var fields: [(String, String)] = []
        for pair in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            guard fields.count < fieldsMax else { throw DecodeError("more than \(fieldsMax) fields") }
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let name = try decodeComponent(parts[0])
            let value = parts.count > 1 ? try decodeComponent(parts[1]) : ""
            fields.append((name, value))
        }
        return fields
    }

    public struct InboundMessage: Sendable, Equatable {
        public var sid: String
        public var from: PhoneNumber
        public var to: PhoneNumber
        public var body: String
        public var media: [Media]

        public init(sid: String, from: PhoneNumber, to: PhoneNumber, body: String, media: [Media]) {
            (self.sid, self.from, self.to, self.body, self.media) = (sid, from, to, body, media)
        }
    }

    public struct Media: Sendable, Equatable {
        public var url: String
        public var contentType: String?

        public init(url: String, contentType: String?) { (self.url, self.contentType) = (url, contentType) }
    }

    public struct StatusCallback: Sendable, Equatable {
        public var sid: String
        /// queued, sending, sent, delivered, undelivered, failed, read.
        public var status: String
        public var errorCode: String?

        public init(sid: String, status: String, errorCode: String?) { (self.sid, self.status, self.errorCode) = (sid, status, errorCode) }
    }

    public enum Event: Sendable, Equatable {
        case message(InboundMessage)
        case status(StatusCallback)
    }

    /// Reads a form Twilio posted: a status callback when it carries `MessageStatus` without a
    /// `Body`, else an inbound message.
    public static func event(_ fields: [(String, String)]) throws(DecodeError) -> Event {
        var byName: [String: String] = [:]
        for (name, value) in fields where byName[name] == nil { byName[name] = value }
        guard let sid = byName["MessageSid"] ?? byName["SmsSid"], !sid.isEmpty else { throw DecodeError("no MessageSid") }
        if let status = byName["MessageStatus"] ?? byName["SmsStatus"], byName["Body"] == nil {
            let code = byName["ErrorCode"].flatMap { $0.isEmpty ? nil : $0 }
            return .status(StatusCallback(sid: sid, status: status, errorCode: code))
        }
        guard let fromText = byName["From"], let from = PhoneNumber(fromText) else { throw DecodeError("From is not a phone number: \(byName["From"] ?? "missing")") }
        guard let toText = byName["To"], let to = PhoneNumber(toText) else { throw DecodeError("To is not a phone number: \(byName["To"] ?? "missing")") }
        let count = Int(byName["NumMedia"] ?? "0") ?? -1
        guard (0...mediaMax).contains(count) else { throw DecodeError("NumMedia must be 0...\(mediaMax), got \(byName["NumMedia"] ?? "")") }
        var media: [Media] = []
        for index in 0..<count {
            guard let url = byName["MediaUrl\(index)"], !url.isEmpty else { throw DecodeError("MediaUrl\(index) is missing") }
            media.append(Media(url: url, contentType: byName["MediaContentType\(index)"]))
        }
        return .message(InboundMessage(sid: sid, from: from, to: to, body: byName["Body"] ?? "", media: media))
    }

    private static func decodeComponent(_ bytes: ArraySlice<UInt8>) throws(DecodeError) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%") {
                guard bytes.distance(from: index, to: bytes.endIndex) >= 3, let high = Hex.value(of: bytes[index + 1]), let low = Hex.value(of: bytes[index + 2])
                else { throw DecodeError("a malformed percent escape") }
                out.append(high << 4 | low)
                index += 2
            } else {
                out.append(byte)
            }
            index += 1
        }
        guard let text = String(validating: out, as: UTF8.self) else { throw DecodeError("a field is not UTF-8") }
        return text
    }
}
