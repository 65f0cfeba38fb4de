import Foundation
import Seeded

/// An HTTP request to a provider's send API, built without I/O: the dispatcher carries it out.
public struct ProviderRequest: Sendable, Equatable {
    public var url: String
    /// Header names and values, in order.
    public var headers: [Header]
    public var body: [UInt8]

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) { (self.name, self.value) = (name, value) }
    }

    public init(url: String, headers: [Header], body: [UInt8]) {
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// What a provider's answer to a send means for the reply.
public enum ProviderAnswer: Sendable, Equatable {
    /// Taken, under the provider's id (status callbacks name it).
    case sent(id: String)
    /// Worth another attempt, and the provider did not take it: a 5xx, a rate limit, a refused
    /// connection.
    case retry(reason: String)
    /// Worth another attempt, but the request was written and no answer came (a timeout, a
    /// reset): the provider may have taken it, so the next attempt may deliver it twice.
    case unknown(reason: String)
    /// Never going to work as it is: a bad number, a revoked token, an unknown template.
    case failed(reason: String)

    /// A send that got no answer: `written` when the request may have reached the provider.
    public static func unanswered(_ error: String, written: Bool) -> ProviderAnswer {
        written ? .unknown(reason: "no answer: \(error)") : .retry(reason: "not sent: \(error)")
    }
}

/// WhatsApp Cloud API: `POST {apiBase}/{phoneNumberId}/messages` with the business token.
public enum WhatsAppSend {
    /// Meta's error codes that mean "slow down or try later", answered with 4xx or 5xx.
    static let retryableCodes: Set<Int> = [1, 2, 4, 17, 341, 80007, 130429, 131000, 131016, 131048, 131056, 133004]

    /// A text reply, or a template (`templateJSON`: the Cloud API's `template` member).
    public static func request(
        apiBase: String, phoneNumberId: String, accessToken: String, to recipient: String, text: String, templateJSON: String?
    ) -> ProviderRequest {
        // Meta takes `to` as the wa_id: the E.164 digits without the plus.
        let to = recipient.hasPrefix("+") ? String(recipient.dropFirst()) : recipient
        var body = #"{"messaging_product":"whatsapp","recipient_type":"individual","to":"# + jsonString(to)
        if let templateJSON {
            body += #","type":"template","template":"# + templateJSON + "}"
        } else {
            body += #","type":"text","text":{"preview_url":false,"body":"# + jsonString(text) + "}}"
        }
        return ProviderRequest(
            url: "\(apiBase)/\(phoneNumberId)/messages",
            headers: [.init("Authorization", "Bearer \(accessToken)"), .init("Content-Type", "application/json")],
            body: Array(body.utf8))
    }

    /// 200 with `messages[0].id` is sent; 429, 5xx and Meta's throttling codes are retried;
    /// any other error is permanent, reported as `<code>: <message>`.
    public static func answer(status: Int, body: [UInt8]) -> ProviderAnswer {
        let json = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        if (200..<300).contains(status) {
            if let messages = json?["messages"] as? [[String: Any]], let id = messages.first?["id"] as? String, !id.isEmpty {
                return .sent(id: id)
            }
            return .failed(reason: "HTTP \(status) without messages[0].id")
        }
        let (code, reason) = failure(status: status, error: json?["error"] as? [String: Any])
        if status == 429 || status >= 500 || code.map(retryableCodes.contains) == true { return .retry(reason: reason) }
        return .failed(reason: reason)
    }
}

/// Twilio Programmable Messaging: `POST {apiBase}/2010-04-01/Accounts/{AccountSid}/Messages.json`
/// with HTTP basic auth and a form body.
public enum TwilioSend {
    public static func request(
        apiBase: String, accountSid: String, authToken: String, from: String, to: String, text: String, statusCallback: String?
    ) -> ProviderRequest {
        var fields = [("To", to), ("From", from), ("Body", text)]
        if let statusCallback { fields.append(("StatusCallback", statusCallback)) }
        let body = fields.map { "\(formEncode($0.0))=\(formEncode($0.1))" }.joined(separator: "&")
        let credentials = Data("\(accountSid):\(authToken)".utf8).base64EncodedString()
        return ProviderRequest(
            url: "\(apiBase)/2010-04-01/Accounts/\(accountSid)/Messages.json",
            headers: [.init("Authorization", "Basic \(credentials)"), .init("Content-Type", "application/x-www-form-urlencoded")],
            body: Array(body.utf8))
    }

    /// 201 with `sid` is sent; 429 and 5xx are retried; other errors (`{"code", "message"}`)
    /// are permanent.
    public static func answer(status: Int, body: [UInt8]) -> ProviderAnswer {
        let json = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        if (200..<300).contains(status) {
            if let sid = json?["sid"] as? String, !sid.isEmpty { return .sent(id: sid) }
            return .failed(reason: "HTTP \(status) without a sid")
        }
        let reason = failure(status: status, error: json).reason
        if status == 429 || status >= 500 { return .retry(reason: reason) }
        return .failed(reason: reason)
    }

    /// `application/x-www-form-urlencoded`: unreserved bytes as they are, space as `+`, the rest
    /// percent-encoded.
    public static func formEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "*"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "): out += "+"
            default: out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}

/// A provider's error object (`{"code", "message"}`, Meta's and Twilio's alike) as a code and
/// the reason kept on the message: `<code>: <message>`, else the HTTP status.
func failure(status: Int, error: [String: Any]?) -> (code: Int?, reason: String) {
    let code = (error?["code"] as? Int) ?? (error?["code"] as? NSNumber)?.intValue
    let message = (error?["message"] as? String).map { String($0.prefix(300)) } ?? "HTTP \(status)"
    return (code, code.map { "\($0): \(message)" } ?? "HTTP \(status): \(message)")
}

/// Retries with exponential backoff and full jitter over its upper half: attempt n waits between
/// half and all of `base * 2^(n-1)`, at most `cap`, and `attemptsMax` attempts in all.
public struct RetryPolicy: Sendable {
    public var base: Duration = .seconds(1)
    public var cap: Duration = .seconds(300)
    public var attemptsMax = 8

    public init(base: Duration = .seconds(1), cap: Duration = .seconds(300), attemptsMax: Int = 8) {
        self.base = base
        self.cap = cap
        self.attemptsMax = attemptsMax
    }

    public func delay(afterAttempt attempt: Int, random: UInt64) -> Duration {
        let ceiling = min(cap.milliseconds, base.milliseconds << min(max(attempt - 1, 0), 30))
        let floor = ceiling / 2
        let span = UInt64(max(ceiling - floor, 0)) + 1
        return .milliseconds(floor + Int64(random % span))
    }
}

/// A JSON string literal (quotes included).
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04X", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
