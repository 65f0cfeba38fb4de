import ContactCenter
import Hummingbird
import NodeRuntime

private struct CreateAgentBody: Decodable {
    var name: String
    var email: String
    var password: String
    var role: String?
    var skills: [String]?
    var capacity: Int?
}

private struct PatchAgentBody: Decodable {
    var name: String?
    var role: String?
    var skills: [String]?
    var capacity: Int?
    var password: String?
    var disabled: Bool?
}

private struct LoginBody: Decodable {
    var email: String
    var password: String
}

private struct StatusBody: Decodable {
    var status: String
}

extension API {
    func addAgentRoutes(to router: Router<APIRequestContext>) {
        router.post("/v1/agents") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAdmin(principal)
            let body = try await request.decodeJSON(CreateAgentBody.self, context: context)
            let name = try Validate.name(body.name, field: "name")
            let email = try Validate.email(body.email)
            _ = try Validate.password(body.password)
            let role = try Validate.enumValue(body.role ?? "agent", Role.self, field: "role")
            let skills = try Validate.names(body.skills ?? [], field: "skills")
            let capacity = try Validate.range(body.capacity ?? 3, Limits.capacityRange, field: "capacity")
            let hash = try await node.hashPassword(body.password)
            return try await answer(
                .createAgent(id: Secrets.id("ag"), name: name, email: email, passwordHash: hash, role: role, skills: skills, capacity: capacity),
                as: principal, context: context)
        }

        router.get("/v1/agents") { request, _ -> Response in
            // Every agent sees its colleagues (to transfer a conversation to one); a supervisor
            // watches their presence and load. The channel token has no business here.
            try requireAgentOrAdmin(try await authenticate(request))
            try await readBarrier(request)
            let (limit, cursor) = try pagination(request)
            let page = try await read { try $0.agents(limit: limit, after: cursor) }
            return JSONResponse.make(API.page(page.items.map(Render.agent), nextCursor: page.nextCursor))
        }

        router.get("/v1/agents/me") { request, _ -> Response in
            guard let agent = try await authenticate(request).agent else { throw APIError.forbidden("only an agent session has a 'me'") }
            try await readBarrier(request)
            return try await agentResponse(id: agent.id, status: .ok)
        }

        router.put("/v1/agents/me/status") { request, context -> Response in
            let principal = try await authenticate(request)
            guard let agent = principal.agent else { throw APIError.forbidden("only an agent session has a status") }
            let body = try await request.decodeJSON(StatusBody.self, context: context)
            let status = try Validate.enumValue(body.status, Presence.self, field: "status")
            return try await answer(.setPresence(agentId: agent.id, status: status), as: principal, context: context)
        }

        router.get("/v1/agents/:id") { request, context -> Response in
            let principal = try await authenticate(request)
            let id = try context.parameters.require("id")
            guard principal.supervises || principal.agent?.id == id else { throw APIError.forbidden("agents may only read themselves") }
            try await readBarrier(request)
            return try await agentResponse(id: id, status: .ok)
        }

        router.patch("/v1/agents/:id") { request, context -> Response in
            let principal = try await authenticate(request)
            try requireAdmin(principal)
            let id = try context.parameters.require("id")
            let body = try await request.decodeJSON(PatchAgentBody.self, context: context)
            let name = try body.name.map { try Validate.name($0, field: "name") }
            let role = try body.role.map { try Validate.enumValue($0, Role.self, field: "role") }
            let skills = try body.skills.map { try Validate.names($0, field: "skills") }
            let capacity = try body.capacity.map { try Validate.range($0, Limits.capacityRange, field: "capacity") }
            let password = try body.password.map(Validate.password)
            // The body is checked whole before If-Match: a malformed request is a 4xx about it.
            let expectedVersion = try Validate.ifMatch(request.headers[.ifMatch])
            var passwordHash: String?
            if let password { passwordHash = try await node.hashPassword(password) }
            let command = Command.updateAgent(
                id: id, name: name, role: role, skills: skills, capacity: capacity, expectedVersion: expectedVersion,
                passwordHash: passwordHash, disabled: body.disabled)
            return try await answer(command, as: principal, context: context)
        }

        router.post("/v1/sessions") { request, context -> Response in
            let body = try await request.decodeJSON(LoginBody.self, context: context)
            guard !body.email.isEmpty, !body.password.isEmpty, body.password.unicodeScalars.count <= Validate.passwordCharactersRange.upperBound,
                  body.email.utf8.count <= 200 else {
                throw APIError.invalid("email and password are required", field: body.email.isEmpty ? "email" : "password")
            }
            let email = body.email.lowercased().trimmingCharacters(in: .whitespaces)
            let seconds = LoginGuard.now()
            switch loginGuard.admit(address: clientAddress(request, context: context), account: email, now: seconds) {
            case .addressThrottled(let retryAfter):
                throw APIError(.tooManyRequests, "too_many_logins", "too many logins from this address; retry in \(retryAfter) s", retryAfter: retryAfter)
            case .accountLocked(let retryAfter):
                throw APIError(
                    .tooManyRequests, "account_locked",
                    "\(LoginGuard.failuresBeforeLock) failed logins in a row locked this account; retry in \(retryAfter) s", retryAfter: retryAfter)
            case nil: break
            }
            var agent = try await read { try $0.store.agent(email: email) }
            if agent == nil {
                // An agent created a moment ago through another node (a balancer spreads requests)
                // may not be applied here yet: catch up to the leader's commit once before refusing.
                try await node.linearizableBarrier()
                agent = try await read { try $0.store.agent(email: email) }
            }
            // Hash even for an unknown email so response time does not reveal which emails exist.
            let valid = try await node.verifyPassword(body.password, against: agent?.passwordHash ?? decoyPasswordHash)
            loginGuard.record(account: email, succeeded: agent != nil && valid, now: seconds)
            guard let agent, valid else { throw APIError(.unauthorized, "invalid_credentials", "email or password is wrong") }
            guard !agent.disabled else { throw APIError(.forbidden, "agent_disabled", "this agent is disabled; ask an admin") }
            let token = Secrets.token()
            let expiresAt = node.now().adding(milliseconds: node.configuration.sessionLifetime.components.seconds * 1000)
            // Login is not idempotent by key: the token is never stored, so a retry logs in again.
            let proposal = try await node.propose(
                .createSession(tokenHash: Secrets.tokenHash(token), agentId: agent.id, expiresAt: expiresAt), actor: .agent(id: agent.id))
            if case .rejected(let error) = proposal.outcome { throw APIError(error) }
            await upgradePasswordHash(of: agent, password: body.password)
            let fresh = try await read { try $0.store.agent(id: agent.id) } ?? agent
            return JSONResponse.make(
                .object(["token": .string(token), "agent": Render.agent(fresh), "expiresAt": .timestamp(expiresAt)]), status: .created)
        }

        router.delete("/v1/sessions/current") { request, context -> Response in
            let principal = try await authenticate(request)
            guard case .agent(_, let tokenHash) = principal else { throw APIError.forbidden("only an agent session can log out") }
            let response = try await answer(.deleteSession(tokenHash: tokenHash), as: principal, context: context)
            sessions.evict(tokenHash: tokenHash)
            return response
        }
    }

    /// After a login that verified `password` against a hash weaker than the node writes now
    /// (`PasswordHasher.needsRehash`), stores a fresh hash. Best effort: the login stands either
    /// way, and the next login tries again.
    func upgradePasswordHash(of agent: Agent, password: String) async {
        do {
            guard let upgraded = try await node.rehashIfWeaker(password, stored: agent.passwordHash) else { return }
            let proposal = try await node.propose(
                .upgradePasswordHash(agentId: agent.id, from: agent.passwordHash, to: upgraded), actor: .agent(id: agent.id))
            if case .rejected(let error) = proposal.outcome { throw APIError(error) }
            logger.info("password hash upgraded", metadata: ["agent": "\(agent.id)", "cost": "\(node.passwords.cost)"])
        } catch {
            logger.warning("password hash upgrade failed; the next login tries again", metadata: ["agent": "\(agent.id)", "error": "\(error)"])
        }
    }

    func agentResponse(id: String, status: HTTPResponse.Status) async throws -> Response {
        guard let agent = try await read({ try $0.store.agent(id: id) }) else { throw APIError.notFound("agent", id) }
        return JSONResponse.make(Render.agent(agent), status: status, headers: API.etag(agent.version))
    }
}

extension APIError {
    /// An outcome of an unexpected kind for the endpoint: a programming error.
    static func from(_ outcome: Outcome) -> APIError {
        APIError(.internalServerError, "internal", "unexpected outcome \(outcome)")
    }
}

import Foundation

extension API {
    /// The client's address: the last `X-Forwarded-For` hop (what the balancer saw), else the
    /// peer of this connection.
    func clientAddress(_ request: Request, context: APIRequestContext) -> String {
        if let forwarded = request.headers[values: .xForwardedFor].last,
            let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty
        {
            return String(last.prefix(64))
        }
        return context.remoteAddress?.ipAddress ?? "unknown"
    }
}
