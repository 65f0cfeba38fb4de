import Channels
import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// The providers' send APIs on loopback, checked and answered as their documentation says:
///
/// - WhatsApp Cloud API: `POST /{version}/{phone-number-id}/messages`, `Authorization: Bearer
///   <access token>`, JSON `{"messaging_product": "whatsapp", "to", "type": "text" | "template"}`;
///   200 `{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid..."}]}`
///   or Graph's error `{"error": {"message", "type", "code", "fbtrace_id"}}`.
/// - Twilio Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP basic auth,
///   form `To`, `From`, `Body`[, `StatusCallback`]; 201 with the Message resource (`sid`
///   `SM...`, `status` `queued`) or Twilio's error `{"code", "message", "more_info", "status"}`.
///
/// Every send taken goes to `sends` (the run records it and posts the provider's status
/// callback). On command (`Faults`) a share of sends is refused with a 5xx (not taken: the
/// cluster must retry) or taken and never answered (the cluster's send times out: it must
/// retry and mark the reply a possible duplicate).
final class ProviderSimulator: Sendable {
    struct Credentials: Sendable {
        var whatsAppToken: String
        var twilioAccountSid: String
        var twilioAuthToken: String
    }

    struct Faults: Sendable {
        /// Share of sends answered 503 (WhatsApp: Graph error code 2) and not taken.
        var errors = 0.0
        /// Share of sends taken and never answered (held past any client's timeout).
        var timeouts = 0.0
        /// Added before every answer.
        var delay = Duration.zero
    }

    enum Provider: String, Sendable { case whatsApp = "whatsapp", twilio }

    struct Sent: Sendable {
        var provider: Provider
        /// The provider's id of the message (`wamid...`, `SM...`).
        var id: String
        /// wa_id (digits) for WhatsApp, E.164 for Twilio.
        var to: String
        var text: String
        var statusCallback: String?
    }

    /// A send held unanswered stays this long (longer than the cluster's send timeout).
    static let heldFor = Duration.seconds(30)
    static let bodyBytesMax = 1 << 20
    /// Sends taken and not yet recorded by the run, at most; past it a send is counted in
    /// `unrecorded` (and will show as a lost reply) rather than buffered without bound.
    static let sendsBufferedMax = 100_000

    let credentials: Credentials
    let faults: Faults
    let sends: AsyncStream<Sent>
    private let taken: AsyncStream<Sent>.Continuation
    private let counter = Atomic<Int>(0)
    let refusedOnPurpose = Atomic<Int>(0)
    let heldOnPurpose = Atomic<Int>(0)
    /// Requests refused for what they were (bad credentials, missing fields): a Switchboard bug.
    let malformed = Atomic<Int>(0)
    let unrecorded = Atomic<Int>(0)
    /// The texts of the sends taken and never answered: each must come again.
    let heldTexts = Mutex<[String]>([])

    init(credentials: Credentials, faults: Faults) {
        self.credentials = credentials
        self.faults = faults
        (sends, taken) = AsyncStream.makeStream(of: Sent.self, bufferingPolicy: .bufferingOldest(Self.sendsBufferedMax))
    }

    /// Serves on 127.0.0.1 (a free port, given to `bound`) until the task is cancelled.
    func serve(bound: @escaping @Sendable (Int) -> Void) async throws {
        let router = Router()
        router.post("/:version/:phoneNumberId/messages") { request, context -> Response in
            try await self.whatsApp(request, phoneNumberId: context.parameters.get("phoneNumberId") ?? "")
        }
        router.post("/2010-04-01/Accounts/:accountSid/Messages.json") { request, context -> Response in
            try await self.twilio(request, accountSid: context.parameters.get("accountSid") ?? "")
        }
        // The run says where the simulator listens; the server's own start and stop lines (a
        // cancelled child channel at the end) would only be noise.
        var logger = Logger(label: "provider-simulator")
        logger.logLevel = .critical
        let application = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "provider-simulator"),
            onServerRunning: { channel in bound(channel.localAddress?.port ?? 0) }, logger: logger)
        defer { taken.finish() }
        try await application.runService()
    }

    private func nextId(_ prefix: String, digits: Int) -> String {
        let n = counter.add(1, ordering: .relaxed).newValue
        let text = String(n, radix: 16)
        return prefix + String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    /// The fault this send gets (`faults`): refused with a 503 and not taken; taken and held
    /// unanswered for `heldFor` (then a 504 to a client long gone); or taken and answered
    /// `accepted` after `faults.delay`.
    private func play(
        _ send: Sent, refused: [String: Any], held: [String: Any], accepted: (Int, [String: Any])
    ) async throws -> Response {
        let draw = Double.random(in: 0..<1)
        if draw < faults.errors {
            refusedOnPurpose.add(1, ordering: .relaxed)
            try await Task.sleep(for: faults.delay)
            return Self.json(503, refused)
        }
        if draw < faults.errors + faults.timeouts {
            heldOnPurpose.add(1, ordering: .relaxed)
            heldTexts.withLock { $0.append(send.text) }
            record(send)
            try await Task.sleep(for: Self.heldFor)
            return Self.json(504, held)
        }
        try await Task.sleep(for: faults.delay)
        record(send)
        return Self.json(accepted.0, accepted.1)
    }

    private func whatsApp(_ request: Request, phoneNumberId: String) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: Self.bodyBytesMax)
        guard request.headers[.authorization] == "Bearer \(credentials.whatsAppToken)" else {
            malformed.add(1, ordering: .relaxed)
            return Self.json(401, ["error": ["message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "fbtrace_id": "sim"]])
        }
        let message = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
        let to = message["to"] as? String ?? ""
        let kind = message["type"] as? String
        let text = (message["text"] as? [String: Any])?["body"] as? String
        var problems: [String] = []
        if message["messaging_product"] as? String != "whatsapp" { problems.append("messaging_product must be whatsapp") }
        if to.isEmpty || !to.allSatisfy(\.isNumber) { problems.append("to must be a wa_id (digits)") }
        if kind == "text", text?.isEmpty != false { problems.append("text.body is required") }
        if kind == "template", ((message["template"] as? [String: Any])?["name"] as? String)?.isEmpty != false {
            problems.append("template.name is required")
        }
        if kind != "text" && kind != "template" { problems.append("type \(kind ?? "(none)") is not one the simulator takes") }
        guard problems.isEmpty else {
            malformed.add(1, ordering: .relaxed)
            return Self.json(400, ["error": ["message": "(#100) " + problems.joined(separator: "; "), "type": "OAuthException", "code": 100, "fbtrace_id": "sim"]])
        }
        let id = nextId("wamid.SIM", digits: 24)
        return try await play(
            Sent(provider: .whatsApp, id: id, to: to, text: text ?? "", statusCallback: nil),
            refused: ["error": ["message": "(#2) Service temporarily unavailable", "type": "OAuthException", "code": 2, "fbtrace_id": "sim"]],
            held: ["error": ["message": "held by the simulator", "type": "OAuthException", "code": 2]],
            accepted: (200, ["messaging_product": "whatsapp", "contacts": [["input": to, "wa_id": to]], "messages": [["id": id]]]))
    }

    private func twilio(_ request: Request, accountSid: String) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: Self.bodyBytesMax)
        let expected = "Basic " + Data("\(credentials.twilioAccountSid):\(credentials.twilioAuthToken)".utf8).base64EncodedString()
        guard accountSid == credentials.twilioAccountSid, request.headers[.authorization] == expected else {
            malformed.add(1, ordering: .relaxed)
            return Self.json(401, ["code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401])
        }
        let fields = (try? TwilioWebhook.form(Array(body.readableBytesView))) ?? []
        let form = Dictionary(fields, uniquingKeysWith: { first, _ in first })
        for field in ["To", "From", "Body"] where form[field]?.isEmpty != false {
            malformed.add(1, ordering: .relaxed)
            return Self.json(
                400, ["code": field == "To" ? 21604 : 21602, "message": "A '\(field)' is required.", "more_info": "https://www.twilio.com/docs/errors/21602", "status": 400])
        }
        let (to, from, text) = (form["To"]!, form["From"]!, form["Body"]!)
        let sid = nextId("SM", digits: 32)
        return try await play(
            Sent(provider: .twilio, id: sid, to: to, text: text, statusCallback: form["StatusCallback"]),
            refused: ["code": 20503, "message": "Service Unavailable", "more_info": "https://www.twilio.com/docs/errors/20503", "status": 503],
            held: ["code": 20504, "message": "held by the simulator", "status": 504],
            accepted: (201, [
                "sid": sid, "account_sid": accountSid, "to": to, "from": from, "body": text, "status": "queued", "num_segments": "1",
                "direction": "outbound-api", "api_version": "2010-04-01", "uri": "/2010-04-01/Accounts/\(accountSid)/Messages/\(sid).json",
            ]))
    }

    private func record(_ send: Sent) {
        if case .dropped = taken.yield(send) { unrecorded.add(1, ordering: .relaxed) }
    }

    private static func json(_ status: Int, _ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8)
        return Response(
            status: HTTPResponse.Status(code: status), headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
