import ContactCenter
import Hummingbird
import NodeRuntime
import Storage

private struct PostMessageBody: Decodable {
    var text: String?
    var `private`: Bool?
    /// A WhatsApp template, sent instead of free text (also outside the 24-hour window).
    var template: TemplateBody?
}

/// WhatsApp's template message, as the Cloud API takes it: `language` is its code (`es_AR`),
/// `components` the body, header and button parameters.
private struct TemplateBody: Decodable {
    struct Component: Decodable {
        var type: String
        var subType: String?
        var parameters: [Parameter]?

        enum CodingKeys: String, CodingKey {
            case type, parameters
            case subType = "sub_type"
        }
    }

    struct Parameter: Decodable {
        var type: String
        var text: String?
    }

    var name: String
    var language: String
    var components: [Component]?

    /// The template as the Cloud API's `template` member, serialized with sorted keys.
    func validated() throws -> (name: String, json: String) {
        let name = try Validate.name(self.name, field: "template.name")
        let language = try Validate.name(self.language, field: "template.language")
        let components = components ?? []
        guard components.count <= Validate.listCountMax else {
            throw APIError.invalid("template.components holds at most \(Validate.listCountMax)", field: "template.components")
        }
        var rendered: [JSONValue] = []
        for (position, component) in components.enumerated() {
            let field = "template.components[\(position)]"
            var members: [String: JSONValue] = ["type": .string(try Validate.name(component.type, field: "\(field).type"))]
            if let subType = component.subType { members["sub_type"] = .string(try Validate.name(subType, field: "\(field).sub_type")) }
            let parameters = component.parameters ?? []
            guard parameters.count <= Validate.listCountMax else {
                throw APIError.invalid("\(field).parameters holds at most \(Validate.listCountMax)", field: "\(field).parameters")
            }
            members["parameters"] = .array(try parameters.enumerated().map { index, parameter in
                let parameterField = "\(field).parameters[\(index)]"
                var value: [String: JSONValue] = ["type": .string(try Validate.name(parameter.type, field: "\(parameterField).type"))]
                if let text = parameter.text { value["text"] = .string(try Validate.name(text, field: "\(parameterField).text")) }
                return .object(value)
            })
            rendered.append(.object(members))
        }
        let template: JSONValue = .object([
            "name": .string(name), "language": .object(["code": .string(language)]), "components": .array(rendered),
        ])
        return (name, template.serialized)
    }
}

private struct AssignBody: Decodable {
    var agent: String?
    var queue: String?

    /// The ids named, checked as names.
    func ids() throws -> (agent: String?, queue: String?) {
        (try agent.map { try Validate.name($0, field: "agent") }, try queue.map { try Validate.name($0, field: "queue") })
    }
}

extension API {
    /// Messages returned with one conversation: the newest, oldest first (older ones page
    /// through `GET /v1/conversations/{id}/messages?before=`).
    static let conversationMessagesMax = 100

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

        // An agent is writing: the assignee and the conversation's web chat visitor see it for a
        // few seconds. Coalesced per agent and conversation (`TypingCoalescer`); 202 either way.
        router.post("/v1/conversations/:id/typing") { request, context -> Response in
            let principal = try await authenticate(request)
            guard let agent = principal.agent else { throw APIError.forbidden("typing notices come from an agent's session") }
            let id = try Validate.name(try context.parameters.require("id"), field: "id")
            if typing.admit(agent: agent.id, conversation: id) {
                let proposal = try await propose(.typing(conversationId: id), as: principal, context: context, readsBack: false)
                if case .rejected(let error) = proposal.outcome { throw APIError(error) }
            }
            return Response(status: .accepted)
        }

        router.get("/v1/conversations/:id/messages") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            try await readBarrier(request)
            let (limit, _) = try pagination(request)
            let before = request.uri.queryParameters.get("before")
            let found = try await read { reader -> (Conversation, (messages: [Message], olderCursor: String?)?)? in
                guard let conversation = try reader.store.conversation(id: id) else { return nil }
                return (conversation, try reader.messages(conversationId: id, before: before, limit: limit))
            }
            guard let (conversation, page) = found else { throw APIError.notFound("conversation", id) }
            try authorizeRead(status: conversation.status, assigneeId: conversation.assigneeId, principal)
            guard let page else {
                throw APIError.malformed("before must be the id of a message of conversation '\(id)'", field: "before")
            }
            return JSONResponse.make(API.page(page.messages.map(Render.message), nextCursor: page.olderCursor))
        }

        router.post("/v1/conversations/:id/messages") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            let body = try await request.decodeJSON(PostMessageBody.self, context: context)
            let template = try body.template?.validated()
            if template != nil, body.private == true { throw APIError.invalid("a private note cannot be a template", field: "template") }
            guard let text = body.text ?? template.map({ "[template \($0.name)]" }) else {
                throw APIError.malformed("missing field 'text'", field: "text")
            }
            return try await answer(
                .postMessage(conversationId: id, messageId: Secrets.id("ms"), text: try Validate.text(text, field: "text"),
                             isPrivate: body.private ?? false, template: template?.json),
                as: principal, context: context)
        }

        router.post("/v1/conversations/:id/assign") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            let (agent, queue) = try await request.decodeJSON(AssignBody.self, context: context).ids()
            return try await answer(.assign(conversationId: id, agentId: agent, queueId: queue), as: principal, context: context)
        }

        router.post("/v1/conversations/:id/transfer") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            let (agent, queue) = try await request.decodeJSON(AssignBody.self, context: context).ids()
            guard (agent == nil) != (queue == nil) else {
                throw APIError.invalid("a transfer names either an agent or a queue, not both or neither", field: agent == nil ? "agent" : "queue")
            }
            return try await answer(.transfer(conversationId: id, agentId: agent, queueId: queue), as: principal, context: context)
        }

        router.post("/v1/conversations/:id/resolve") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            return try await answer(.resolve(conversationId: id), as: principal, context: context)
        }

        router.post("/v1/conversations/:id/reopen") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            return try await answer(.reopen(conversationId: id), as: principal, context: context)
        }
    }

    /// The rendered conversation with its contact and latest messages, from `conversationViews`
    /// when apply has not written it since it was rendered.
    func conversationView(id: String) async throws -> ConversationViews.View {
        let (cached, epoch) = conversationViews.lookup(id)
        if let cached { return cached }
        let found = try await read { reader -> (Conversation, Contact?, (messages: [Message], olderCursor: String?)?)? in
            guard let conversation = try reader.store.conversation(id: id) else { return nil }
            return (conversation, try reader.store.contact(id: conversation.contactId),
                    try reader.messages(conversationId: id, before: nil, limit: API.conversationMessagesMax))
        }
        guard let (conversation, contact, page) = found else { throw APIError.notFound("conversation", id) }
        let body = Render.conversation(
            conversation, contact: contact.map(Render.contact), messages: page?.messages ?? [], olderMessages: page?.olderCursor
        ).serialized
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
}
