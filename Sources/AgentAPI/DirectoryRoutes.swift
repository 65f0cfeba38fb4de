import ContactCenter
import Hummingbird
import NodeRuntime

private struct CreateQueueBody: Decodable {
    var name: String
    var skills: [String]?
    var priority: Int?
    var channels: [String]?
}

private struct CreateRuleBody: Decodable {
    var name: String
    var keywords: [String]
    var action: String
    var reply: String?
    var queue: String?
    var order: Int?
}

private struct CreateContactBody: Decodable {
    var name: String
    var identifiers: [String: String]?
    var attributes: [String: String]?
}

private struct PatchContactBody: Decodable {
    var name: String?
    var attributes: [String: String?]?
}

/// Queues, rules, contacts and channel webhooks.
extension API {
    func addDirectoryRoutes(to router: Router<APIRequestContext>) {
        router.post("/v1/queues") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAdmin(principal)
            let body = try await request.decodeJSON(CreateQueueBody.self, context: context)
            var channels: [Channel] = []
            for raw in body.channels ?? [] {
                let channel = try Validate.enumValue(raw, Channel.self, field: "channels")
                if !channels.contains(channel) { channels.append(channel) }
            }
            return try await answer(
                .createQueue(
                    id: Secrets.id("qu"), name: try Validate.name(body.name, field: "name"),
                    skills: try Validate.names(body.skills ?? [], field: "skills"),
                    priority: try Validate.range(body.priority ?? 0, Limits.priorityRange, field: "priority"), channels: channels),
                as: principal, context: context)
        }

        router.get("/v1/queues") { request, _ -> Response in
            try requireAgentOrAdmin(try await authenticate(request))
            try await readBarrier(request)
            let queues = try await read { try $0.queuesWithWaiting() }
            return JSONResponse.make(API.page(queues.map { Render.queue($0.0, waiting: $0.1, oldestWaitingSince: $0.2) }, nextCursor: nil))
        }

        router.post("/v1/rules") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAdmin(principal)
            let body = try await request.decodeJSON(CreateRuleBody.self, context: context)
            let action = try Validate.enumValue(body.action, RuleAction.self, field: "action")
            let keywords = try Validate.names(body.keywords, field: "keywords", max: Validate.keywordsCountMax)
            guard !keywords.isEmpty, keywords.allSatisfy({ !Keywords.words($0).isEmpty }) else {
                throw APIError.invalid("keywords must hold at least one word each", field: "keywords")
            }
            let reply = try body.reply.map { try Validate.text($0, field: "reply") }
            if action == .reply, reply == nil { throw APIError.invalid("a reply rule needs reply text", field: "reply") }
            if action == .route, body.queue == nil { throw APIError.invalid("a route rule needs a queue", field: "queue") }
            return try await answer(
                .createRule(
                    id: Secrets.id("ru"), name: try Validate.name(body.name, field: "name"), keywords: keywords, action: action,
                    reply: reply, queueId: try body.queue.map { try Validate.name($0, field: "queue") },
                    order: try Validate.range(body.order ?? 0, Limits.ruleOrderRange, field: "order")),
                as: principal, context: context)
        }

        router.get("/v1/rules") { request, _ -> Response in
            try requireAgentOrAdmin(try await authenticate(request))
            try await readBarrier(request)
            return JSONResponse.make(API.page(try await read { try $0.rules() }.map(Render.rule), nextCursor: nil))
        }

        router.post("/v1/contacts") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let body = try await request.decodeJSON(CreateContactBody.self, context: context)
            var identifiers: [String: String] = [:]
            for (channel, value) in body.identifiers ?? [:] {
                _ = try Validate.enumValue(channel, Channel.self, field: "identifiers")
                identifiers[channel] = try Validate.name(value, field: "identifiers.\(channel)")
            }
            let attributes = try Validate.attributes((body.attributes ?? [:]).mapValues { Optional($0) }, field: "attributes")
            return try await answer(
                .createContact(
                    id: Secrets.id("ct"), name: try Validate.name(body.name, field: "name"), identifiers: identifiers,
                    attributes: attributes.compactMapValues { $0 }),
                as: principal, context: context)
        }

        router.get("/v1/contacts/:id") { request, context -> Response in
            try requireAgentOrAdmin(try await authenticate(request))
            try await readBarrier(request)
            return try await contactResponse(id: try context.parameters.require("id"), status: .ok)
        }

        router.patch("/v1/contacts/:id") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAgentOrAdmin(principal)
            let id = try context.parameters.require("id")
            let body = try await request.decodeJSON(PatchContactBody.self, context: context)
            return try await answer(
                .updateContact(
                    id: id, name: try body.name.map { try Validate.name($0, field: "name") },
                    attributes: try Validate.attributes(body.attributes ?? [:], field: "attributes"),
                    expectedVersion: try Validate.ifMatch(request.headers[.ifMatch])),
                as: principal, context: context)
        }

        router.post("/v1/channels/:channel/messages") { request, context -> Response in
            let principal = try await authenticate(request)
            guard principal.isAdmin || principal.actor == .channel else {
                throw APIError.forbidden("channel messages need the channel token or the admin token")
            }
            let channel = try Validate.enumValue(try context.parameters.require("channel"), Channel.self, field: "channel")
            // {"from": String, "text": String, "externalId": String, "name": String?}
            let body = try await request.jsonObjectFields()
            let proposal = try await propose(
                .inboundMessage(
                    channel: channel, from: try Validate.name(try body.string("from"), field: "from"),
                    text: try Validate.text(try body.string("text"), field: "text"),
                    externalId: try Validate.name(try body.string("externalId"), field: "externalId"),
                    name: try body.optionalString("name").map { try Validate.name($0, field: "name") }, contactId: Secrets.id("ct"),
                    conversationId: Secrets.id("cv"), messageId: Secrets.id("ms")),
                as: principal, context: context, readsBack: false)
            if let recorded = try API.settled(proposal) { return recorded }
            let outcome = proposal.outcome
            guard case .inbound(let conversationId, let messageId, let duplicate) = outcome else { throw APIError.from(outcome) }
            return JSONResponse.make(
                .object(["conversationId": .string(conversationId), "messageId": .string(messageId), "duplicate": .bool(duplicate)]),
                status: .accepted)
        }
    }

    func contactResponse(id: String, status: HTTPResponse.Status) async throws -> Response {
        guard let contact = try await read({ try $0.store.contact(id: id) }) else { throw APIError.notFound("contact", id) }
        return JSONResponse.make(Render.contact(contact), status: status, headers: API.etag(contact.version))
    }
}
