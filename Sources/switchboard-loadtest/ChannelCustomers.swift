import AsyncHTTPClient
import Channels
import Foundation
import NIOHTTP1
import Wire

/// A webhook as a provider sends it: the body, signed, with its headers.
struct SignedRequest: Sendable {
    var headers: [(String, String)]
    var body: [UInt8]
}

struct ChannelSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The inboxes a run creates, one per provider, pointed at the simulator, and what it takes to
/// write to them as the providers do.
struct ChannelInboxes: Sendable {
    var whatsApp: String?
    var sms: String?
    var phoneNumberId: String
    var appSecret: String
    var twilioAccountSid: String
    var twilioAuthToken: String
    var twilioFrom: String
    /// Where the webhooks are posted (the target), also the SMS inbox's `webhookBase`: Twilio
    /// signs the URL it calls.
    var base: String

    func path(_ inbox: String) -> String { "/v1/inboxes/\(inbox)/webhook" }

    /// The run's inboxes' ids.
    var ids: Set<String> { Set([whatsApp, sms].compactMap { $0 }) }

    /// Meta's `messages` webhook for one text message, signed with the app secret.
    func whatsAppMessage(from waId: String, name: String, id: String, text: String, at seconds: Int) -> SignedRequest {
        let value: [String: Any] = [
            "messaging_product": "whatsapp",
            "metadata": ["display_phone_number": "15550001234", "phone_number_id": phoneNumberId],
            "contacts": [["profile": ["name": name], "wa_id": waId]],
            "messages": [["from": waId, "id": id, "timestamp": "\(seconds)", "type": "text", "text": ["body": text]]],
        ]
        return whatsApp(value)
    }

    /// Meta's `statuses` webhook for a message the business sent.
    func whatsAppStatus(_ status: String, of id: String, to waId: String, at seconds: Int) -> SignedRequest {
        let value: [String: Any] = [
            "messaging_product": "whatsapp",
            "metadata": ["display_phone_number": "15550001234", "phone_number_id": phoneNumberId],
            "statuses": [["id": id, "status": status, "timestamp": "\(seconds)", "recipient_id": waId]],
        ]
        return whatsApp(value)
    }

    private func whatsApp(_ value: [String: Any]) -> SignedRequest {
        let payload: [String: Any] = [
            "object": "whatsapp_business_account",
            "entry": [["id": "102290129340398", "changes": [["value": value, "field": "messages"]]]],
        ]
        let body = Array((try? JSONSerialization.data(withJSONObject: payload)) ?? Data())
        return SignedRequest(
            headers: [("Content-Type", "application/json"), ("X-Hub-Signature-256", WhatsAppWebhook.signature(of: body, appSecret: appSecret))],
            body: body)
    }

    /// Twilio's incoming-message webhook, form-encoded and signed over the URL and the sorted
    /// parameters.
    func twilioMessage(from number: String, sid: String, text: String, inbox: String) -> SignedRequest {
        twilio(
            [
                ("ToCountry", "US"), ("SmsMessageSid", sid), ("NumMedia", "0"), ("SmsSid", sid), ("SmsStatus", "received"), ("Body", text),
                ("To", twilioFrom), ("NumSegments", "1"), ("MessageSid", sid), ("AccountSid", twilioAccountSid), ("From", number),
                ("ApiVersion", "2010-04-01"),
            ], url: base + path(inbox))
    }

    /// Twilio's status callback, posted to the `StatusCallback` the send named.
    func twilioStatus(_ status: String, of sid: String, to number: String, url: String) -> SignedRequest {
        twilio(
            [
                ("SmsSid", sid), ("SmsStatus", status), ("MessageStatus", status), ("To", number), ("MessageSid", sid),
                ("AccountSid", twilioAccountSid), ("From", twilioFrom), ("ApiVersion", "2010-04-01"),
            ], url: url)
    }

    private func twilio(_ fields: [(String, String)], url: String) -> SignedRequest {
        let body = fields.map { "\(TwilioSend.formEncode($0.0))=\(TwilioSend.formEncode($0.1))" }.joined(separator: "&")
        return SignedRequest(
            headers: [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Twilio-Signature", TwilioWebhook.signature(url: url, parameters: fields, authToken: twilioAuthToken)),
            ], body: Array(body.utf8))
    }
}

extension ProviderSimulator.Credentials {
    static func random() -> Self {
        Self(whatsAppToken: "EAAG" + randomHex(24), twilioAccountSid: "AC" + randomHex(16), twilioAuthToken: randomHex(16))
    }
}

func randomHex(_ bytes: Int) -> String { Hex.encode((0..<bytes).map { _ in UInt8.random(in: 0...255) }) }

extension Run {
    /// Replies still not at the provider after the run are waited for this long (the outbox
    /// retries with backoff; a dead-lettered reply never arrives and counts as lost).
    static let repliesSettleMax = Duration.seconds(120)
    /// Status callbacks posted at once, at most; past it the next send waits for one to end.
    static let statusCallbacksInFlightMax = 256

    /// One inbox per provider of `--channels`, its API base the simulator's.
    func setUpInboxes(simulator base: String) async throws {
        guard let simulator else { return }
        var inboxes = ChannelInboxes(
            phoneNumberId: String(100_000_000_000_000 + Int.random(in: 0..<899_999_999_999_999)), appSecret: randomHex(16),
            twilioAccountSid: simulator.credentials.twilioAccountSid, twilioAuthToken: simulator.credentials.twilioAuthToken, twilioFrom: "+15550001234",
            base: settings.target)
        for provider in Set(settings.channels) {
            let body: [String: Any] =
                switch provider {
                case .whatsApp:
                    [
                        "name": "Load WhatsApp \(runId)", "channel": "whatsapp",
                        "whatsapp": [
                            "phoneNumberId": inboxes.phoneNumberId, "accessToken": simulator.credentials.whatsAppToken, "appSecret": inboxes.appSecret,
                            "verifyToken": randomHex(8), "apiBase": base + "/v21.0",
                        ],
                    ]
                case .twilio:
                    [
                        "name": "Load SMS \(runId)", "channel": "sms",
                        "twilio": [
                            "accountSid": inboxes.twilioAccountSid, "authToken": inboxes.twilioAuthToken, "from": inboxes.twilioFrom, "apiBase": base,
                            "webhookBase": settings.target,
                        ],
                    ]
                }
            let created = await retrying {
                await call(.POST, "/v1/inboxes", token: settings.adminToken, body: body, key: "lt-\(runId)-inbox-\(provider.rawValue)", measured: false)
            }
            guard created.ok, let id = created.json["id"] as? String else {
                throw ChannelSetupError("cannot create the \(provider.rawValue) inbox: \(created.status) \(created.json)")
            }
            switch provider {
            case .whatsApp: inboxes.whatsApp = id
            case .twilio: inboxes.sms = id
            }
            log("inbox \(id): \(provider.rawValue), sending to the simulator")
        }
        self.inboxes.withLock { $0 = inboxes }
    }

    /// A customer on a provider channel (customers alternate between `--channels`): a first
    /// message through the provider's signed webhook, then one follow-up after a think time.
    /// Acknowledged is a 2xx to the webhook, as the provider reads it.
    func channelCustomer(_ n: Int, intended: ContinuousClock.Instant) async {
        guard let inboxes = inboxes.withLock({ $0 }) else { return }
        let provider = settings.channels[n % settings.channels.count]
        // Numbers unique within the run and, but for one run in 9,999, from earlier runs' on the
        // same cluster: Argentine mobiles on WhatsApp, Mexican ones on SMS.
        let serial = (Int(runId, radix: 36).map { $0 % 9_999 } ?? 0) * 10_000 + n % 10_000
        for message in 0..<2 {
            let due = message == 0 ? intended : ContinuousClock.now
            let text = "customer \(n) message \(message)"
            let (path, request, externalId, number): (String, SignedRequest, String, String)
            switch provider {
            case .whatsApp:
                let waId = "54911" + String(format: "%08d", serial)
                let id = "wamid.LT\(runId.uppercased())X\(n)X\(message)"
                path = inboxes.path(inboxes.whatsApp ?? "")
                request = inboxes.whatsAppMessage(from: waId, name: "Cliente \(n)", id: id, text: text, at: Int(Date().timeIntervalSince1970))
                (externalId, number) = (id, waId)
            case .twilio:
                let e164 = "+5255" + String(format: "%08d", serial)
                let sid = "SM" + String(format: "%016llx", UInt64(Int(runId, radix: 36) ?? 0)) + String(format: "%014x", n) + String(format: "%02x", message)
                path = inboxes.path(inboxes.sms ?? "")
                request = inboxes.twilioMessage(from: e164, sid: sid, text: text, inbox: inboxes.sms ?? "")
                (externalId, number) = (sid, e164)
            }
            let reply = await call(.POST, path, token: nil, intended: due, raw: request)
            guard reply.ok else { return }
            acknowledgedExternal.withLock { $0[externalId] = number }
            if message == 0 { openedExternal.withLock { $0[externalId] = .now } }
            try? await Task.sleep(for: settings.think)
            if stopped { return }
        }
    }

    /// Every send the simulator took goes to the reply ledger, and its status callback back to
    /// the cluster as the provider posts it (`delivered`).
    func recordSends(_ simulator: ProviderSimulator) async {
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for await sent in simulator.sends {
                replies.withLock { $0.delivered(text: sent.text, to: sent.to) }
                guard let inboxes = inboxes.withLock({ $0 }) else { continue }
                if inFlight >= Self.statusCallbacksInFlightMax {
                    await group.next()
                    inFlight -= 1
                }
                inFlight += 1
                group.addTask {
                    let (path, base, request): (String, String?, SignedRequest)
                    switch sent.provider {
                    case .whatsApp:
                        guard let inbox = inboxes.whatsApp else { return }
                        (path, base) = (inboxes.path(inbox), nil)
                        request = inboxes.whatsAppStatus("delivered", of: sent.id, to: sent.to, at: Int(Date().timeIntervalSince1970))
                    case .twilio:
                        guard let url = sent.statusCallback, let split = url.range(of: "/v1/") else { return }
                        (path, base) = (String(url[split.lowerBound...]), String(url[..<split.lowerBound]))
                        request = inboxes.twilioStatus("delivered", of: sent.id, to: sent.to, url: url)
                    }
                    let reply = await self.call(.POST, path, token: nil, base: base, measured: false, raw: request)
                    self.statusCallbacks.add(1, ordering: .relaxed)
                    if !reply.ok { self.statusCallbacksFailed.add(1, ordering: .relaxed) }
                }
            }
        }
    }

    /// After the run: waits until every acknowledged reply reached the provider, and every send
    /// the simulator held unanswered came again (its second copy is what the check must see),
    /// or `repliesSettleMax`, showing how many are left.
    func settleReplies() async {
        let deadline = ContinuousClock.now + Self.repliesSettleMax
        var lastShown = ContinuousClock.now - .seconds(10)
        while ContinuousClock.now < deadline {
            let held = simulator?.heldTexts.withLock { $0 } ?? []
            let (waiting, acknowledged, unrepeated) = replies.withLock { ledger in
                (ledger.undelivered, ledger.acknowledgedCount, held.filter { ledger.sends(of: $0) < 2 }.count)
            }
            if waiting == 0 && unrepeated == 0 {
                log("settling: all \(acknowledged) acknowledged replies reached the provider, and the \(held.count) it held unanswered came again")
                break
            }
            if ContinuousClock.now - lastShown >= .seconds(5) {
                log(
                    "settling: \(waiting) of \(acknowledged) acknowledged replies not at the provider yet, \(unrepeated) held unanswered not sent again yet (the outbox retries with backoff)"
                )
                lastShown = .now
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        if let simulator {
            log(
                "provider simulator: \(replies.withLock { $0.deliveredTotal }) sends taken, \(simulator.refusedOnPurpose.load(ordering: .relaxed)) refused on purpose (5xx), \(simulator.heldOnPurpose.load(ordering: .relaxed)) taken and never answered on purpose, \(simulator.malformed.load(ordering: .relaxed)) refused as malformed, \(simulator.unrecorded.load(ordering: .relaxed)) not recorded (buffer full); status callbacks \(statusCallbacks.load(ordering: .relaxed)) posted, \(statusCallbacksFailed.load(ordering: .relaxed)) failed"
            )
        }
    }

    /// Every conversation of the run's inboxes, listed through the target (all statuses).
    func runConversations() async -> Set<String> {
        guard let inboxes = inboxes.withLock({ $0 }) else { return [] }
        var found = Set<String>()
        var cursor: String?
        repeat {
            let path = "/v1/conversations?limit=500" + (cursor.map { "&cursor=" + ($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0) } ?? "")
            let page = await retrying(afterTheRun: true) { await call(.GET, path, token: settings.adminToken, measured: false) }
            guard page.ok else {
                log("integrity: listing conversations (\(path)) answered \(page.status) \(page.failure ?? ""); the run's conversations not yet seen count as lost")
                break
            }
            for conversation in (page.json["items"] as? [[String: Any]]) ?? [] {
                if let inbox = conversation["inbox"] as? String, inboxes.ids.contains(inbox), let id = conversation["id"] as? String { found.insert(id) }
            }
            cursor = page.json["nextCursor"] as? String
        } while cursor != nil
        return found
    }
}
