import ContactCenter
import Hummingbird
import NodeRuntime

/// Who is calling, as established from the bearer token.
enum Principal: Sendable {
    case admin
    case channel
    case agent(Agent, tokenHash: String)

    var actor: Actor {
        switch self {
        case .admin: .admin
        case .channel: .channel
        case .agent(let agent, _): .agent(id: agent.id)
        }
    }

    var agent: Agent? {
        if case .agent(let agent, _) = self { return agent }
        return nil
    }

    /// Admin token, or an agent with the supervisor or admin role.
    var supervises: Bool {
        switch self {
        case .admin: true
        case .channel: false
        case .agent(let agent, _): agent.role.supervises
        }
    }

    var isAdmin: Bool {
        switch self {
        case .admin: true
        case .channel: false
        case .agent(let agent, _): agent.role == .admin
        }
    }
}

extension API {
    /// The bearer token from `Authorization`, or (for WebSocket upgrades from browsers, which
    /// cannot set headers) from `?token=`.
    func bearerToken(_ request: Request, allowQuery: Bool) -> String? {
        if let header = request.headers[.authorization], header.utf8.starts(with: "Bearer ".utf8) {
            // On every request: UTF-8 slicing, no Character or Foundation work.
            var token = header.utf8.dropFirst(7)
            while token.first == UInt8(ascii: " ") { token = token.dropFirst() }
            while token.last == UInt8(ascii: " ") { token = token.dropLast() }
            return String(token)
        }
        return allowQuery ? request.uri.queryParameters.get("token") : nil
    }

    func authenticate(_ request: Request, allowQueryToken: Bool = false) async throws -> Principal {
        guard let token = bearerToken(request, allowQuery: allowQueryToken), !token.isEmpty, token.utf8.count <= 256 else {
            throw APIError.unauthorized
        }
        let hash = Secrets.tokenHash(token)
        if Secrets.constantTimeEquals(hash, node.configuration.adminTokenHash) { return .admin }
        if let channel = node.configuration.channelTokenHash, Secrets.constantTimeEquals(hash, channel) { return .channel }
        let now = node.now()
        if let agent = sessions.agent(tokenHash: hash, now: now) { return .agent(agent, tokenHash: hash) }
        let lookUp = { [node] in
            try await node.state.read { reader -> (Agent, Timestamp)? in
                guard let session = try reader.session(tokenHash: hash), session.expiresAt > now,
                    let agent = try reader.store.agent(id: session.agentId), !agent.disabled
                else { return nil }
                return (agent, session.expiresAt)
            }
        }
        var found = try await lookUp()
        if found == nil {
            // A session created a moment ago through another node (a balancer spreads an agent's
            // requests) may not be applied here yet: catch up to the leader's commit index once
            // before refusing, so a fresh token works on every node (read-your-writes).
            try await node.linearizableBarrier()
            found = try await lookUp()
        }
        guard let (agent, expiresAt) = found else { throw APIError.unauthorized }
        sessions.store(tokenHash: hash, agent: agent, sessionExpiresAt: expiresAt)
        return .agent(agent, tokenHash: hash)
    }

    func requireAdmin(_ principal: Principal) throws {
        guard principal.isAdmin else { throw APIError.forbidden("this endpoint needs the admin token or an admin agent") }
    }

    func requireAgentOrAdmin(_ principal: Principal) throws {
        if case .channel = principal { throw APIError.forbidden("a channel token may only post channel messages") }
    }
}

import Foundation
