import ContactCenter
import Hummingbird
import NodeRuntime
import Storage

private struct PostMessageBody: Decodable {
    var text: String
    var `private`: Bool?
}

private struct AssignBody: Decodable {
    var agent: String?
    var queue: String?
}

extension API {
    /// Most messages returned with one conversation.
    static let conversationMessagesMax = 500

    func addConversationRoutes(to router: Router<APIRequestContext>) {
        router.get("/v1/conversations") { request, _ -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let query = request.uri.queryParameters
            var filter = StateReader.ConversationFilter()
            if let status = query.get("status") { filter.status = try Validate.enumValue(status, ConversationStatus.self, field: "status") }
            filter.queue = query.get("queue")
            switch query.get("assignee") {
            case nil: filter.assignee = principal.supervises ? nil : .some(principal.agent?.id)
            case "me":
                guard let agent = principal.agent else { throw APIError.malformed("assignee=me needs an agent session", field: "assignee") }
                filter.assignee = .some(agent.id)
            case "none": filter.assignee = .some(nil)
            case let id?:
                guard principal.supervises || principal.agent?.id == id else { throw APIError.forbidden("agents may only list their own conversations") }
                filter.assignee = .some(id)
            }
            try await readBarrier(request)
            let (limit, cursor) = try pagination(request)
            let page = try await read { [filter] in try $0.conversations(filter, limit: limit, after: cursor) }
            return JSONResponse.make(API.page(page.items.map { Render.conversation($0) }, nextCursor: page.nextCursor))
        }

        router.get("/v1/conversations/:id") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            try await readBarrier(request)
            let view = try await conversationView(id: id)
            try authorizeRead(status: view.status, assigneeId: view.assigneeId, principal)
            return Response(
                status: .ok,
                headers: [.contentType: "application/json; charset=utf-8", .eTag: "\"\(view.version)\""],
                body: ResponseBody(byteBuffer: view.body))
        }

        router.post("/v1/conversations/:id/messages") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            let body = try await request.decodeJSON(PostMessageBody.self, context: context)
            let outcome = try await propose(
                .postMessage(conversationId: id, messageId: Secrets.id("ms"), text: try Validate.text(body.text, field: "text"),
                             isPrivate: body.private ?? false),
                as: principal, request: request)
            guard case .message(_, let messageId) = outcome else { throw APIError.from(outcome) }
            guard let message = try await read({ try $0.message(id: messageId) }) else { throw APIError.notFound("message", messageId) }
            return JSONResponse.make(Render.message(message), status: .created)
        }

        router.post("/v1/conversations/:id/assign") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            let body = try await request.decodeJSON(AssignBody.self, context: context)
            _ = try await propose(.assign(conversationId: id, agentId: body.agent, queueId: body.queue), as: principal, request: request)
            return try await conversationResponse(id: id)
        }

        router.post("/v1/conversations/:id/resolve") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            _ = try await propose(.resolve(conversationId: id), as: principal, request: request)
            return try await conversationResponse(id: id)
        }

        router.post("/v1/conversations/:id/reopen") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            _ = try await propose(.reopen(conversationId: id), as: principal, request: request)
            return try await conversationResponse(id: id)
        }
    }

    /// The rendered conversation with its contact and latest messages, from `conversationViews`
    /// when apply has not written it since it was rendered.
    func conversationView(id: String) async throws -> ConversationViews.View {
        let (cached, epoch) = conversationViews.lookup(id)
        if let cached { return cached }
        let found = try await read { reader -> (Conversation, Contact?, [Message])? in
            guard let conversation = try reader.store.conversation(id: id) else { return nil }
            return (conversation, try reader.store.contact(id: conversation.contactId),
                    try reader.messages(conversationId: id, limit: API.conversationMessagesMax))
        }
        guard let (conversation, contact, messages) = found else { throw APIError.notFound("conversation", id) }
        let body = Render.conversation(conversation, contact: contact.map(Render.contact), messages: messages).serialized
        let view = ConversationViews.View(
            body: ByteBuffer(string: body), version: conversation.version, status: conversation.status,
            assigneeId: conversation.assigneeId, contactId: conversation.contactId)
        conversationViews.store(id, view, epoch: epoch)
        return view
    }

    /// Agents read their own conversations and the waiting ones; supervisors read all.
    func authorizeRead(status: ConversationStatus, assigneeId: String?, _ principal: Principal) throws {
        guard !principal.supervises, let agent = principal.agent else { return }
        let waiting = status == .queued || status == .bot
        guard assigneeId == agent.id || waiting else {
            throw APIError.forbidden("this conversation belongs to another agent")
        }
    }

    func conversationResponse(id: String) async throws -> Response {
        guard let conversation = try await read({ try $0.store.conversation(id: id) }) else { throw APIError.notFound("conversation", id) }
        return JSONResponse.make(Render.conversation(conversation), headers: API.etag(conversation.version))
    }
}
