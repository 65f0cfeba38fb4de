import ContactCenter
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NodeRuntime
import ServiceLifecycle
import Storage

/// Web chat: the widget a business puts on its site (`GET /widget.js`, one `<script>` tag naming
/// the inbox) and the visitor's API it calls from that site (CORS open: the visitor's token, not
/// a cookie, is the credential).
///
/// A visitor is anonymous: `POST /v1/webchat/{inbox}/visitors` hands out a random token, and the
/// visitor's identity is derived from its hash, so nothing is stored until the first message and
/// no node has to know the token beforehand. The token sees only its own conversation, and in it
/// only what the customer may see: public messages, with the writing agent's name.
extension API {
    /// Messages a visitor reads on (re)connecting.
    static let webChatMessagesPage = 100

    func addWebChatRoutes(to router: Router<APIRequestContext>) {
        router.get("/widget.js") { _, _ -> Response in
            Response(
                status: .ok,
                headers: [.contentType: "application/javascript; charset=utf-8", .cacheControl: "public, max-age=300"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: WidgetScript.source)))
        }

        router.post("/v1/webchat/:inbox/visitors") { request, context -> Response in
            try admitVisitorWrite(request, context: context)
            let inbox = try await webChatInbox(try context.parameters.require("inbox"))
            return JSONResponse.make(
                .object(["token": .string(Secrets.token()), "title": .string(inbox.settings["title"] ?? "Chat")]), status: .created)
        }

        router.get("/v1/webchat/:inbox/conversation") { request, context -> Response in
            let inbox = try await webChatInbox(try context.parameters.require("inbox"))
            let visitor = try visitorIdentity(request, allowQuery: false)
            // The widget reads this after every reconnect to fill what its socket missed: it must
            // hold everything committed, whichever node answers.
            try await node.linearizableBarrier()
            let found = try await read { reader -> (Conversation, [Message], [String: String])? in
                guard let contactId = try reader.store.contactId(channel: Channel.webchat.rawValue, identifier: visitor),
                    let conversation = try reader.store.openConversation(contactId: contactId, channel: .webchat)
                else { return nil }
                let messages = try reader.messages(conversationId: conversation.id, before: nil, limit: API.webChatMessagesPage)?.messages ?? []
                var names: [String: String] = [:]
                for agentId in Set(messages.compactMap(\.agentId)) { names[agentId] = try reader.store.agent(id: agentId)?.name }
                return (conversation, messages, names)
            }
            guard let (conversation, messages, names) = found else {
                return JSONResponse.make(.object(["title": .string(inbox.settings["title"] ?? "Chat"), "conversation": .null, "messages": .array([])]))
            }
            return JSONResponse.make(.object([
                "title": .string(inbox.settings["title"] ?? "Chat"),
                "conversation": .object(["id": .string(conversation.id), "status": .string(conversation.status.rawValue)]),
                "messages": .array(messages.filter { !$0.isPrivate }.map { Self.visitorMessage($0, agentName: $0.agentId.flatMap { names[$0] }) }),
            ]))
        }

        router.post("/v1/webchat/:inbox/messages") { request, context -> Response in
            try admitVisitorWrite(request, context: context)
            let inbox = try await webChatInbox(try context.parameters.require("inbox"))
            let visitor = try visitorIdentity(request, allowQuery: false)
            // {"text": String, "id": String (the widget's id for this message: a retry sends it again), "name": String?}
            let body = try await request.jsonObjectFields()
            let stored = try await deliverInbound(
                inbox: inbox, from: visitor, text: try Validate.text(try body.string("text"), field: "text"),
                externalId: "webchat-" + (try Validate.name(try body.string("id"), field: "id")),
                name: try body.optionalString("name").map { try Validate.name($0, field: "name") } ?? "Visitante", attachments: nil)
            return JSONResponse.make(
                .object([
                    "conversationId": .string(stored.conversationId), "messageId": .string(stored.messageId),
                    "duplicate": .bool(stored.duplicate),
                ]),
                status: .accepted)
        }

        // The widget received (`delivered`) or showed (`read`) a reply: the agent sees it on the
        // message. Only a reply in the visitor's own conversation.
        router.post("/v1/webchat/:inbox/receipts") { request, context -> Response in
            try admitVisitorWrite(request, context: context)
            _ = try await webChatInbox(try context.parameters.require("inbox"))
            let visitor = try visitorIdentity(request, allowQuery: false)
            // {"messageId": String, "status": "delivered" | "read"}
            let body = try await request.jsonObjectFields()
            let messageId = try Validate.name(try body.string("messageId"), field: "messageId")
            let status = try Validate.enumValue(try body.string("status"), DeliveryStatus.self, field: "status")
            guard status == .delivered || status == .read else {
                throw APIError.malformed("status must be delivered or read", field: "status")
            }
            // The reply may have reached the widget through another node.
            let conversationId = try await readCaughtUp { reader -> String? in
                guard let message = try reader.store.message(id: messageId), let conversation = try reader.store.conversation(id: message.conversationId),
                    let contactId = try reader.store.contactId(channel: Channel.webchat.rawValue, identifier: visitor), conversation.contactId == contactId
                else { return nil }
                return conversation.id
            }
            guard let conversationId else { throw APIError.notFound("message", messageId) }
            _ = try await proposeChannel(.webChatReceipt(conversationId: conversationId, messageId: messageId, status: status))
            return Response(status: .noContent)
        }

        router.ws("/v1/webchat/:inbox/events") { request, context in
            _ = try await webChatInbox(try context.parameters.require("inbox"))
            _ = try await visitorConversation(request)
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            let conversationId = try await visitorConversation(context.request)
            guard let subscription = node.hub.subscribe(audience: EventHub.conversationAudience(conversationId)) else {
                try await outbound.close(.unknown(1013), reason: "too many event sessions")
                return
            }
            defer { subscription.close() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await message in inbound.messages(maxSize: API.inboundMessageBytesMax) {
                        if case .text(let text) = message, API.isPing(text) { subscription.requestPong() }
                    }
                    subscription.close()
                }
                group.addTask { try await streamToVisitor(subscription, outbound: outbound) }
                group.addTask { try await gracefulShutdown() }
                _ = try await group.next()
                subscription.close()
                group.cancelAll()
            }
            try await outbound.close(.goingAway, reason: "reconnect and read the conversation again")
        }
    }

    /// A visitor's write within its address's rate, else 429 with `Retry-After`.
    private func admitVisitorWrite(_ request: Request, context: APIRequestContext) throws {
        if case .addressThrottled(let retryAfter) = webChatGuard.admit(address: clientAddress(request, context: context), account: "", now: LoginGuard.now()) {
            throw APIError(
                .tooManyRequests, "too_many_requests",
                "too many web chat writes from this address (\(Int(API.webChatWritesPerSecondPerAddress)) a second); retry in \(retryAfter) s",
                retryAfter: retryAfter)
        }
    }

    /// The conversation a visitor's socket asks for (`?conversation=`), only if it is theirs.
    private func visitorConversation(_ request: Request) async throws -> String {
        let visitor = try visitorIdentity(request, allowQuery: true)
        guard let conversationId = request.uri.queryParameters.get("conversation") else {
            throw APIError.malformed("the visitor's socket names its conversation (?conversation=)", field: "conversation")
        }
        let conversationIdText = String(conversationId)
        let owned = try await read { reader -> Bool in
            guard let conversation = try reader.store.conversation(id: conversationIdText),
                let contactId = try reader.store.contactId(channel: Channel.webchat.rawValue, identifier: visitor)
            else { return false }
            return conversation.contactId == contactId
        }
        guard owned else { throw APIError.notFound("conversation", conversationIdText) }
        return conversationIdText
    }

    /// Public messages of the conversation as they apply, in the visitor's shape, from the
    /// event's own data (the agent's name read once per agent); a socket that falls behind is
    /// closed and the widget reads the conversation again (its resume).
    private func streamToVisitor(_ subscription: EventSubscription, outbound: WebSocketOutboundWriter) async throws {
        var names: [String: String] = [:]
        while true {
            switch await subscription.next() {
            case .closed, .overflowed: return
            case .pong: try await outbound.write(.text("{\"type\":\"pong\"}"))
            case .events(let events):
                for event in events {
                    if event.type == .conversationTyping {
                        let data = try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any]
                        let frame: JSONValue = .object(["type": .string("typing"), "agentName": .optional(data?["agentName"] as? String)])
                        try await outbound.write(.text(frame.serialized))
                        continue
                    }
                    guard let message = (try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any])?["message"] as? [String: Any],
                        message["private"] as? Bool == false, let id = message["id"] as? String, let author = message["author"] as? String,
                        let text = message["text"] as? String, let createdAt = message["createdAt"] as? String
                    else { continue }
                    let agentId = message["agent"] as? String
                    if let agentId, names[agentId] == nil {
                        names[agentId] = try await read { try $0.store.agent(id: agentId)?.name } ?? ""
                    }
                    let frame: JSONValue = .object([
                        "type": .string(event.type == .messageCreated ? "message" : "message.updated"),
                        "message": Self.visitorMessage(
                            id: id, author: author, text: text, createdAt: .string(createdAt), agentName: agentId.flatMap { names[$0] },
                            status: (message["delivery"] as? [String: Any])?["status"] as? String),
                    ])
                    try await outbound.write(.text(frame.serialized))
                }
            }
        }
    }

    /// What a visitor sees of a message: no agent id, no notes, no provider ids.
    static func visitorMessage(_ message: Message, agentName: String?) -> JSONValue {
        visitorMessage(
            id: message.id, author: message.author.rawValue, text: message.text, createdAt: .timestamp(message.createdAt), agentName: agentName,
            status: message.delivery?.status.rawValue)
    }

    /// `status`: a reply's delivery as the widget reported it (sent, delivered, read), so the
    /// widget sends each receipt once.
    static func visitorMessage(id: String, author: String, text: String, createdAt: JSONValue, agentName: String?, status: String?) -> JSONValue {
        .object([
            "id": .string(id), "author": .string(author), "text": .string(text), "createdAt": createdAt, "agentName": .optional(agentName),
            "status": .optional(status),
        ])
    }

    /// A visitor's identity on the web chat channel: derived from its token's hash, so the token
    /// alone proves it and is never stored.
    private func visitorIdentity(_ request: Request, allowQuery: Bool) throws -> String {
        guard let token = bearerToken(request, allowQuery: allowQuery), token.utf8.count == 64, token.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw APIError.unauthorized
        }
        return "visitor-" + Secrets.tokenHash(token).prefix(32)
    }

    private func webChatInbox(_ id: String) async throws -> Inbox {
        let inbox = try await webhookInbox(id)
        guard inbox.channel == .webchat else { throw APIError.notFound("inbox", id) }
        return inbox
    }
}

/// Cross-origin access for the visitor's API and the widget: a business's site calls them from
/// its own origin. Preflights are answered here, before the routes.
struct WebChatCORSMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix("/v1/webchat/") || path == "/widget.js" else { return try await next(request, context) }
        if request.method == .options {
            return Response(status: .noContent, headers: Self.headers)
        }
        var response = try await next(request, context)
        for field in Self.headers { response.headers.append(field) }
        return response
    }

    static let headers: HTTPFields = [
        .accessControlAllowOrigin: "*", .accessControlAllowMethods: "GET, POST, OPTIONS",
        .accessControlAllowHeaders: "Authorization, Content-Type", .accessControlMaxAge: "600",
    ]
}
