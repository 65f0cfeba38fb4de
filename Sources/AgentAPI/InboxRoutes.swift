import Channels
import ContactCenter
import Foundation
import HTTPTypes
import Hummingbird
import NodeRuntime

private struct CreateInboxBody: Decodable {
    var name: String
    var channel: String
    var queue: String?
    var whatsapp: [String: String]?
    var twilio: [String: String]?
    var email: [String: String]?
    var webchat: [String: String]?

    func settings(_ member: String?) -> [String: String]? {
        switch member {
        case "whatsapp": whatsapp
        case "twilio": twilio
        case "email": email
        case "webchat": webchat
        default: nil
        }
    }
}

private struct PatchInboxBody: Decodable {
    var name: String?
    /// "" clears the queue.
    var queue: String?
    var whatsapp: [String: String?]?
    var twilio: [String: String?]?
    var email: [String: String?]?
    var webchat: [String: String?]?

    func settings(_ member: String?) -> [String: String?]? {
        switch member {
        case "whatsapp": whatsapp
        case "twilio": twilio
        case "email": email
        case "webchat": webchat
        default: nil
        }
    }
}

/// Inboxes (admin) and their webhooks, which providers call as they document: WhatsApp's Cloud
/// API (a `hub.challenge` handshake, then bodies signed with `X-Hub-Signature-256`), Twilio
/// (form bodies signed with `X-Twilio-Signature`) and the generic `api` inbox (its own token).
extension API {
    func addInboxRoutes(to router: Router<APIRequestContext>) {
        router.post("/v1/inboxes") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAdmin(principal)
            let body = try await request.decodeJSON(CreateInboxBody.self, context: context)
            let channel = try Validate.enumValue(body.channel, Channel.self, field: "channel")
            let member = InboxSettings.member(channel)
            try Self.refuseOtherSettings(of: channel) { body.settings($0) != nil }
            let given = body.settings(member) ?? [:]
            var settings: [String: String] = [:]
            for key in InboxSettings.keys(channel) {
                if let value = given[key.name] {
                    settings[key.name] = try Validate.setting(value, key: key.name, field: "\(member ?? "settings").\(key.name)")
                } else if let value = key.defaultValue {
                    settings[key.name] = value
                } else if key.required {
                    throw APIError.invalid("a \(channel.rawValue) inbox needs '\(key.name)'", field: "\(member ?? "settings").\(key.name)")
                }
            }
            for key in given.keys.sorted() where !InboxSettings.keys(channel).contains(where: { $0.name == key }) {
                throw APIError.invalid("a \(channel.rawValue) inbox has no setting '\(key)'", field: "\(member ?? "settings").\(key)")
            }
            // The token of an api or email inbox's webhook is shown once, in this answer; only its
            // hash is kept.
            let token = channel == .api || channel == .email ? Secrets.token() : nil
            let proposal = try await propose(
                .createInbox(
                    id: Secrets.id("ib"), name: try Validate.name(body.name, field: "name"), channel: channel,
                    queueId: try body.queue.map { try Validate.name($0, field: "queue") }, settings: settings,
                    tokenHash: token.map(Secrets.tokenHash)),
                as: principal, context: context)
            var answer: RecordedAnswer
            switch proposal.outcome {
            case .answered(let recorded):
                if proposal.replayed { return API.response(recorded, replayed: true) }
                answer = recorded
            case .rejected(let error):
                throw APIError(error)
            case .inbox(let id):
                guard let inbox = try await read({ try $0.store.inbox(id: id) }) else { throw APIError.notFound("inbox", id) }
                answer = RecordedAnswer(status: 201, body: Render.inbox(inbox).serialized, etag: inbox.version)
            default:
                throw APIError.from(proposal.outcome)
            }
            if let token, answer.status == 201, answer.body.hasPrefix("{") {
                answer.body = "{\"token\":" + JSONValue.string(token).serialized + "," + answer.body.dropFirst()
            }
            return API.response(answer, replayed: false)
        }

        router.get("/v1/inboxes") { request, _ -> Response in
            try requireSupervisorPrincipal(try await authenticate(request))
            try await readBarrier(request)
            return JSONResponse.make(API.page(try await read { try $0.inboxes() }.map(Render.inbox), nextCursor: nil))
        }

        router.get("/v1/inboxes/:id") { request, context -> Response in
            try requireSupervisorPrincipal(try await authenticate(request))
            try await readBarrier(request)
            let id = try context.parameters.require("id")
            guard let inbox = try await read({ try $0.store.inbox(id: id) }) else { throw APIError.notFound("inbox", id) }
            return JSONResponse.make(Render.inbox(inbox), headers: API.etag(inbox.version))
        }

        router.patch("/v1/inboxes/:id") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAdmin(principal)
            let id = try context.parameters.require("id")
            let body = try await request.decodeJSON(PatchInboxBody.self, context: context)
            // The settings member is the inbox's channel's, which never changes: a cached read
            // names it.
            let inbox = try await webhookInbox(id)
            let member = InboxSettings.member(inbox.channel)
            try Self.refuseOtherSettings(of: inbox.channel) { body.settings($0) != nil }
            var settings: [String: String?] = [:]
            for (key, value) in body.settings(member) ?? [:] {
                let field = "\(member ?? "settings").\(key)"
                guard let known = InboxSettings.keys(inbox.channel).first(where: { $0.name == key }) else {
                    throw APIError.invalid("a \(inbox.channel.rawValue) inbox has no setting '\(key)'", field: field)
                }
                if let value {
                    settings[key] = .some(try Validate.setting(value, key: key, field: field))
                } else {
                    guard !known.required else { throw APIError.invalid("'\(key)' is required and cannot be removed", field: field) }
                    settings[key] = .some(known.defaultValue)
                }
            }
            return try await answer(
                .updateInbox(
                    id: id, name: try body.name.map { try Validate.name($0, field: "name") },
                    queueId: try body.queue.map { $0.isEmpty ? "" : try Validate.name($0, field: "queue") }, settings: settings,
                    expectedVersion: try Validate.ifMatch(request.headers[.ifMatch])),
                as: principal, context: context)
        }

        router.delete("/v1/inboxes/:id") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAdmin(principal)
            return try await answer(.deleteInbox(id: try context.parameters.require("id")), as: principal, context: context)
        }

        router.get("/v1/inboxes/:id/webhook") { request, context -> Response in
            let inbox = try await webhookInbox(try context.parameters.require("id"))
            guard inbox.channel == .whatsapp, let verifyToken = inbox.settings["verifyToken"] else {
                throw APIError(.methodNotAllowed, "method_not_allowed", "only a whatsapp inbox's webhook answers GET (Meta's verification)")
            }
            let query = request.uri.queryParameters
            guard let challenge = WhatsAppWebhook.challenge(
                mode: query.get("hub.mode"), token: query.get("hub.verify_token"), challenge: query.get("hub.challenge"),
                verifyToken: verifyToken)
            else {
                logger.warning("a webhook verification with the wrong verify token", metadata: ["inbox.id": "\(inbox.id)"])
                throw APIError(.forbidden, "verification_failed", "hub.mode must be subscribe and hub.verify_token the inbox's verify token")
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: challenge)))
        }

        router.post("/v1/inboxes/:id/webhook") { request, context -> Response in
            let inbox = try await webhookInbox(try context.parameters.require("id"))
            switch inbox.channel {
            case .whatsapp: return try await whatsAppWebhook(request, inbox: inbox)
            case .sms: return try await twilioWebhook(request, inbox: inbox)
            case .api: return try await apiInboxWebhook(request, context: context, inbox: inbox)
            case .email: return try await emailWebhook(request, inbox: inbox)
            case .webchat:
                throw APIError(.conflict, "channel_not_available", "a webchat inbox's visitors write through /v1/webchat/\(inbox.id)/messages")
            }
        }
    }

    /// A request may carry only its inbox's channel's settings member.
    static func refuseOtherSettings(of channel: Channel, present: (String) -> Bool) throws {
        for other in Channel.allCases.compactMap(InboxSettings.member) where other != InboxSettings.member(channel) && present(other) {
            throw APIError.invalid("a \(channel.rawValue) inbox has no \(other) settings", field: other)
        }
    }

    func requireSupervisorPrincipal(_ principal: Principal) throws {
        guard principal.supervises else { throw APIError.forbidden("this endpoint needs a supervisor, an admin or the admin token") }
    }

    /// The inbox a provider calls: read here, and once more after catching up with the leader
    /// (an inbox created a moment ago through another node).
    func webhookInbox(_ id: String) async throws -> Inbox {
        if let inbox = inboxes.inbox(id) { return inbox }
        guard let inbox = try await readCaughtUp({ try $0.store.inbox(id: id) }) else { throw APIError.notFound("inbox", id) }
        inboxes.store(inbox)
        return inbox
    }

    private func rawBody(_ request: Request, max: Int) async throws -> [UInt8] {
        var request = request
        let buffer = try await request.collectBody(upTo: max)
        return Array(buffer.readableBytesView)
    }

    private func whatsAppWebhook(_ request: Request, inbox: Inbox) async throws -> Response {
        let body = try await rawBody(request, max: WhatsAppWebhook.bodyBytesMax)
        guard WhatsAppWebhook.signatureIsValid(request.headers[.hubSignature256], body: body, appSecret: inbox.settings["appSecret"] ?? "") else {
            logger.warning("a WhatsApp webhook with a wrong or missing signature", metadata: ["inbox.id": "\(inbox.id)"])
            throw APIError(.unauthorized, "invalid_signature", "X-Hub-Signature-256 does not match the body under the inbox's app secret")
        }
        let events: [WhatsAppWebhook.Event]
        do {
            events = try WhatsAppWebhook.decode(body)
        } catch {
            throw APIError(.badRequest, "malformed_webhook", "not a WhatsApp Business Account webhook: \(error.description)")
        }
        var received = 0, duplicates = 0, statuses = 0
        for event in events {
            switch event {
            case .message(let message):
                let (text, attachments) = ChannelContent.whatsApp(message.content)
                let duplicate = try await deliverInbound(
                    inbox: inbox, from: message.from.e164, text: text, externalId: message.id, name: message.profileName,
                    attachments: attachments).duplicate
                if duplicate { duplicates += 1 } else { received += 1 }
            case .status(let status):
                guard let delivery = ChannelContent.whatsAppStatus(status.status) else { continue }
                try await proposeChannel(.deliveryStatus(inboxId: inbox.id, providerId: status.messageId, status: delivery, reason: status.error))
                statuses += 1
            }
        }
        return JSONResponse.make(.object(["received": .int(received), "duplicates": .int(duplicates), "statuses": .int(statuses)]))
    }

    private func twilioWebhook(_ request: Request, inbox: Inbox) async throws -> Response {
        let body = try await rawBody(request, max: TwilioWebhook.bodyBytesMax)
        let fields: [(String, String)]
        do {
            fields = try TwilioWebhook.form(body)
        } catch {
            throw APIError(.badRequest, "malformed_webhook", "not a form-encoded Twilio webhook: \(error.description)")
        }
        // Twilio signs the URL it called: the inbox's public base when set, else this request's.
        let base = inbox.settings["webhookBase"] ?? "\(request.headers[.xForwardedProto] ?? "http")://\(request.head.authority ?? "")"
        let url = base + request.uri.description
        guard TwilioWebhook.signatureIsValid(request.headers[.twilioSignature], url: url, parameters: fields, authToken: inbox.settings["authToken"] ?? "") else {
            logger.warning("a Twilio webhook with a wrong or missing signature", metadata: ["inbox.id": "\(inbox.id)", "webhook.url": "\(url)"])
            throw APIError(.unauthorized, "invalid_signature", "X-Twilio-Signature does not match \(url) and the parameters under the inbox's auth token")
        }
        let event: TwilioWebhook.Event
        do {
            event = try TwilioWebhook.event(fields)
        } catch {
            throw APIError(.badRequest, "malformed_webhook", "not a Twilio message or status callback: \(error.description)")
        }
        switch event {
        case .message(let message):
            let (text, attachments) = ChannelContent.twilio(message)
            try await deliverInbound(inbox: inbox, from: message.from.e164, text: text, externalId: message.sid, name: nil, attachments: attachments)
        case .status(let status):
            if let delivery = ChannelContent.twilioStatus(status.status) {
                try await proposeChannel(.deliveryStatus(
                    inboxId: inbox.id, providerId: status.sid, status: delivery,
                    reason: delivery == .failed ? "Twilio \(status.status)\(status.errorCode.map { " (error \($0))" } ?? "")" : nil))
            }
        }
        // An empty TwiML answer: nothing to reply automatically.
        return Response(
            status: .ok, headers: [.contentType: "text/xml; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: #"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#)))
    }

    private func apiInboxWebhook(_ request: Request, context: APIRequestContext, inbox: Inbox) async throws -> Response {
        guard let token = bearerToken(request, allowQuery: false), let expected = inbox.tokenHash,
            Secrets.constantTimeEquals(Secrets.tokenHash(token), expected)
        else { throw APIError.unauthorized }
        // {"from": String, "text": String, "externalId": String, "name": String?}
        let body = try await request.jsonObjectFields()
        let duplicate = try await deliverInbound(
            inbox: inbox, from: try Validate.name(try body.string("from"), field: "from"),
            text: try Validate.text(try body.string("text"), field: "text"),
            externalId: try Validate.name(try body.string("externalId"), field: "externalId"),
            name: try body.optionalString("name").map { try Validate.name($0, field: "name") }, attachments: nil).duplicate
        return JSONResponse.make(.object(["duplicate": .bool(duplicate)]), status: .accepted)
    }

    /// SendGrid's Inbound Parse (`multipart/form-data`), authenticated with the inbox's token as
    /// the password of HTTP basic auth (how SendGrid calls a URL with credentials) or as a bearer
    /// token.
    private func emailWebhook(_ request: Request, inbox: Inbox) async throws -> Response {
        guard let expected = inbox.tokenHash, let token = Self.basicPassword(request) ?? bearerToken(request, allowQuery: false),
            Secrets.constantTimeEquals(Secrets.tokenHash(token), expected)
        else { throw APIError.unauthorized }
        guard let boundary = EmailInbound.boundary(contentType: request.headers[.contentType]) else {
            throw APIError(.badRequest, "malformed_webhook", "an inbound e-mail is multipart/form-data with a boundary")
        }
        let body = try await rawBody(request, max: EmailInbound.bodyBytesMax)
        let email: EmailInbound.Message
        do {
            email = try EmailInbound.message(try EmailInbound.parts(body, boundary: boundary))
        } catch {
            throw APIError(.badRequest, "malformed_webhook", "not an inbound-parse e-mail: \(error.description)")
        }
        var metadata: [String: JSONValue] = [
            "kind": .string("email"), "subject": .string(String(email.subject.prefix(998))), "messageId": .string(email.messageId),
            "references": .strings(email.references + (email.inReplyTo.map { email.references.contains($0) ? [] : [$0] } ?? [])),
        ]
        if let name = email.fromName { metadata["fromName"] = .string(String(name.prefix(200))) }
        var attachments: [JSONValue] = [.object(metadata)]
        for file in email.attachments.prefix(20) {
            attachments.append(.object([
                "kind": .string(ChannelContent.kind(of: file.contentType)), "filename": .string(String(file.filename.prefix(200))),
                "mimeType": .optional(file.contentType), "bytes": .int(file.bytes),
            ]))
        }
        var text = email.text
        if text.utf8.count > Limits.textBytesMax {
            // Longer than a message holds: kept up to the bound, cut at a character.
            var cut = ""
            for character in text {
                if cut.utf8.count + character.utf8.count > Limits.textBytesMax - 32 { break }
                cut.append(character)
            }
            text = cut + "\n[truncated]"
        }
        let threads = (email.inReplyTo.map { [$0] } ?? []) + email.references.reversed()
        let duplicate = try await deliverInbound(
            inbox: inbox, from: email.fromAddress, text: text, externalId: email.messageId, name: email.fromName,
            attachments: JSONValue.array(attachments).serialized, references: Array(threads.prefix(Limits.referencesMax))).duplicate
        return JSONResponse.make(.object(["received": .int(duplicate ? 0 : 1), "duplicates": .int(duplicate ? 1 : 0), "statuses": .int(0)]))
    }

    /// The password of `Authorization: Basic`, if that is how the request authenticates.
    static func basicPassword(_ request: Request) -> String? {
        guard let header = request.headers[.authorization], header.hasPrefix("Basic "),
            let decoded = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        return String(text[text.index(after: colon)...])
    }

    /// Proposes a customer's message through `inbox` (every channel's webhook, and web chat
    /// visitors): where it landed, and whether it was a redelivery.
    @discardableResult
    func deliverInbound(
        inbox: Inbox, from: String, text: String, externalId: String, name: String?, attachments: String?, references: [String] = []
    ) async throws -> (conversationId: String, messageId: String, duplicate: Bool) {
        guard text.utf8.count <= Limits.textBytesMax, externalId.utf8.count <= Limits.nameBytesMax, from.utf8.count <= Limits.nameBytesMax else {
            throw APIError(.contentTooLarge, "message_too_large", "a message's text is over \(Limits.textBytesMax) bytes or its ids over \(Limits.nameBytesMax)")
        }
        let outcome = try await proposeChannel(.inboundMessage(
            channel: inbox.channel, from: from, text: text, externalId: externalId,
            name: name.map { String($0.utf8.prefix(Limits.nameBytesMax)) ?? "" }, contactId: Secrets.id("ct"),
            conversationId: Secrets.id("cv"), messageId: Secrets.id("ms"), inboxId: inbox.id, attachments: attachments,
            references: references))
        guard case .inbound(let conversationId, let messageId, let duplicate) = outcome else { throw APIError.from(outcome) }
        return (conversationId, messageId, duplicate)
    }

    @discardableResult
    func proposeChannel(_ command: Command) async throws -> Outcome {
        let proposal = try await node.propose(command, actor: .channel, idempotency: nil, readsBack: false)
        if case .rejected(let error) = proposal.outcome { throw APIError(error) }
        return proposal.outcome
    }

}

/// Provider content as Switchboard keeps it: the text, and the attachments as JSON.
enum ChannelContent {
    static func whatsApp(_ content: WhatsAppWebhook.Content) -> (text: String, attachments: String?) {
        switch content {
        case .text(let text):
            return (text, nil)
        case .media(let kind, let mediaId, let mimeType, let caption, let filename):
            let attachment: JSONValue = .object([
                "kind": .string(kind), "mediaId": .string(mediaId), "mimeType": .optional(mimeType), "caption": .optional(caption),
                "filename": .optional(filename),
            ])
            return (caption ?? "", JSONValue.array([attachment]).serialized)
        case .location(let latitude, let longitude, let name, let address):
            let attachment: JSONValue = .object([
                "kind": .string("location"), "latitude": .string("\(latitude)"), "longitude": .string("\(longitude)"),
                "name": .optional(name), "address": .optional(address),
            ])
            return ([name, address].compactMap { $0 }.joined(separator: ", "), JSONValue.array([attachment]).serialized)
        case .interactive(let id, let title):
            return (title, JSONValue.array([.object(["kind": .string("reply"), "id": .string(id), "title": .string(title)])]).serialized)
        case .unsupported(let type):
            return ("", JSONValue.array([.object(["kind": .string("unsupported"), "type": .string(type)])]).serialized)
        }
    }

    static func whatsAppStatus(_ status: String) -> DeliveryStatus? {
        switch status {
        case "sent": .sent
        case "delivered": .delivered
        case "read": .read
        case "failed": .failed
        default: nil
        }
    }

    static func twilio(_ message: TwilioWebhook.InboundMessage) -> (text: String, attachments: String?) {
        guard !message.media.isEmpty else { return (message.body, nil) }
        let attachments = message.media.map { media -> JSONValue in
            .object(["kind": .string(kind(of: media.contentType)), "url": .string(media.url), "mimeType": .optional(media.contentType)])
        }
        return (message.body, JSONValue.array(attachments).serialized)
    }

    /// image, audio or video by the MIME type's top level; anything else is a document.
    static func kind(of contentType: String?) -> String {
        contentType.flatMap { type in ["image", "audio", "video"].first { type.hasPrefix($0 + "/") } } ?? "document"
    }

    /// Twilio's message statuses: queued, accepted, scheduled and sending say nothing new.
    static func twilioStatus(_ status: String) -> DeliveryStatus? {
        switch status {
        case "sent": .sent
        case "delivered": .delivered
        case "read": .read
        case "undelivered", "failed", "canceled": .failed
        default: nil
        }
    }
}

extension HTTPField.Name {
    static let hubSignature256 = Self("X-Hub-Signature-256")!
    static let twilioSignature = Self("X-Twilio-Signature")!
    static let xForwardedProto = Self("X-Forwarded-Proto")!
}
