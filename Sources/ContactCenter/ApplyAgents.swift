/// Agents, presence, queues' rules and contacts.
extension ApplyContext {
    mutating func createAgent(id: String, name: String, email: String, passwordHash: String, role: Role, skills: [String], capacity: Int) throws -> Outcome {
        try requireAdmin()
        try Limits.check(capacity, in: Limits.capacityRange, "capacity", name: "capacityRange", field: "capacity")
        let agents = try store.agentCount()
        guard agents < Limits.agentsMax else {
            throw Limits.exceeded("the number of agents", value: agents + 1, bound: Limits.agentsMax, name: "agentsMax")
        }
        guard try store.agent(email: email) == nil else {
            throw DomainError(.conflict, "email_taken", "an agent with email '\(email)' exists", field: "email")
        }
        try store.insert(Agent(
            id: id, name: name, email: email, passwordHash: passwordHash, role: role, skills: skills, capacity: capacity,
            status: .offline, openConversations: 0, lastRoutedIndex: index, version: 1, createdAt: at, updatedAt: at))
        return .agent(id: id)
    }

    mutating func updateAgent(
        id: String, name: String?, role: Role?, skills: [String]?, capacity: Int?, expectedVersion: Int64?, passwordHash: String?,
        disabled: Bool?
    ) throws -> Outcome {
        try requireAdmin()
        guard var agent = try store.agent(id: id) else { throw DomainError.notFound("agent", id) }
        if let expectedVersion, expectedVersion != agent.version {
            throw DomainError(.preconditionFailed, "version_mismatch", "agent is at version \(agent.version), not \(expectedVersion)")
        }
        if let name { agent.name = name }
        let roleChanged = role != nil && role != agent.role
        if let role { agent.role = role }
        if let skills { agent.skills = skills }
        if let capacity {
            try Limits.check(capacity, in: Limits.capacityRange, "capacity", name: "capacityRange", field: "capacity")
            // An agent never exceeds capacity: lowering it below what is open would.
            guard capacity >= agent.openConversations else {
                throw DomainError(
                    .conflict, "capacity_below_open",
                    "agent '\(id)' has \(agent.openConversations) conversations open; reassign some before lowering capacity to \(capacity)",
                    field: "capacity")
            }
            agent.capacity = capacity
        }
        if let passwordHash { agent.passwordHash = passwordHash }
        let disabling = disabled == true && !agent.disabled
        if let disabled { agent.disabled = disabled }
        agent.version += 1
        agent.updatedAt = at
        try store.update(agent)
        emitAgentUpdated(agent)
        if disabling {
            try endSessions(agentId: id, reason: "disabled")
            try requeueAssigned(agentId: id)
        } else if passwordHash != nil {
            try endSessions(agentId: id, reason: "password_changed")
        } else if roleChanged {
            emitSessionEnded(agentId: id, reason: "role_changed")
        }
        // More capacity or new skills may let the agent take waiting conversations.
        if !agent.disabled { try fill(agentId: agent.id) }
        return .agent(id: id)
    }

    /// A stronger hash of the same password, stored only if the hash is still the one the login
    /// verified. Nothing a client sees changes: no version, no event, no session ends.
    mutating func upgradePasswordHash(agentId: String, from: String, to: String) throws -> Outcome {
        guard to.utf8.count <= Limits.passwordHashBytesMax else {
            throw Limits.exceeded("a password hash", value: to.utf8.count, bound: Limits.passwordHashBytesMax, name: "passwordHashBytesMax")
        }
        guard var agent = try store.agent(id: agentId), agent.passwordHash == from else { return .done }
        agent.passwordHash = to
        try store.update(agent)
        return .done
    }

    /// A login. Past `Limits.sessionsPerAgentMax` live sessions the agent's oldest ends.
    /// The same login applied twice (a node proposed it again after a leader change lost its
    /// fate) is applied once: the token hash is fresh and random, so a session already under it
    /// is this login's.
    mutating func createSession(tokenHash: String, agentId: String, expiresAt: Timestamp) throws -> Outcome {
        if let holder = try store.sessionAgentId(tokenHash: tokenHash) {
            guard holder == agentId else { throw DomainError(.conflict, "session_exists", "another agent holds this session token") }
            return .session(agentId: agentId)
        }
        guard let agent = try store.agent(id: agentId) else { throw DomainError.notFound("agent", agentId) }
        guard !agent.disabled else { throw DomainError(.forbidden, "agent_disabled", "agent '\(agentId)' is disabled") }
        let existing = try store.sessionTokenHashes(agentId: agentId)
        if existing.count >= Limits.sessionsPerAgentMax {
            for old in existing.prefix(existing.count - Limits.sessionsPerAgentMax + 1) { _ = try store.deleteSession(tokenHash: old) }
            emitSessionEnded(agentId: agentId, reason: "evicted")
        }
        try store.insert(Session(tokenHash: tokenHash, agentId: agentId, createdAt: at, expiresAt: expiresAt))
        return .session(agentId: agentId)
    }

    /// A logout: the session ends everywhere; with no session left the agent goes offline, so
    /// nothing is routed to an agent who left.
    mutating func deleteSession(tokenHash: String) throws -> Outcome {
        guard let agentId = try store.sessionAgentId(tokenHash: tokenHash) else { return .done }
        _ = try store.deleteSession(tokenHash: tokenHash)
        emitSessionEnded(agentId: agentId, reason: "logout")
        if try store.sessionTokenHashes(agentId: agentId).isEmpty { try goOffline(agentId: agentId) }
        return .done
    }

    /// Every session of the agent ends (password changed, disabled) and the agent goes offline.
    mutating func endSessions(agentId: String, reason: String) throws {
        for tokenHash in try store.sessionTokenHashes(agentId: agentId) { _ = try store.deleteSession(tokenHash: tokenHash) }
        emitSessionEnded(agentId: agentId, reason: reason)
        try goOffline(agentId: agentId)
    }

    /// Offline, and the presence lease forgotten. Open conversations stay with the agent.
    mutating func goOffline(agentId: String) throws {
        try store.deleteLease(agentId: agentId)
        guard var agent = try store.agent(id: agentId), agent.status != .offline else { return }
        agent.status = .offline
        agent.version += 1
        agent.updatedAt = at
        try store.update(agent)
        emitAgentUpdated(agent)
    }

    /// Tells every node to close the agent's event sockets whose session no longer holds
    /// (`reason`: logout, evicted, expired, password_changed, disabled, role_changed).
    mutating func emitSessionEnded(agentId: String, reason: String) {
        emit(.sessionEnded, audience: agentId, .members(["agent": .string(agentId), "reason": .string(reason)]))
    }

    /// The leader's expiry timer (`Command.expire`).
    mutating func expire(warnSessionsThrough warnThrough: Timestamp) throws -> Outcome {
        for agentId in try store.deleteSessions(expiringAtOrBefore: at) {
            emitSessionEnded(agentId: agentId, reason: "expired")
            if try store.sessionTokenHashes(agentId: agentId).isEmpty { try goOffline(agentId: agentId) }
        }
        let warnedThrough = try store.sessionsWarnedThrough()
        if warnThrough > warnedThrough {
            for agentId in try store.agentsWithSessions(expiringAfter: max(warnedThrough, at), through: warnThrough) {
                emit(.sessionExpiring, audience: agentId, .members(["agent": .string(agentId)]))
            }
            try store.setSessionsWarnedThrough(warnThrough)
        }
        try store.deleteIdempotencyRecords(through: at.adding(milliseconds: -Limits.idempotencyKeyLifetimeMilliseconds))
        return .done
    }

    mutating func setPresence(agentId: String, status: Presence) throws -> Outcome {
        if case .agent(let actorId) = actor, actorId != agentId { try requireSupervisor() }
        guard var agent = try store.agent(id: agentId) else { throw DomainError.notFound("agent", agentId) }
        if agent.disabled, status != .offline {
            throw DomainError(.forbidden, "agent_disabled", "agent '\(agentId)' is disabled")
        }
        guard agent.status != status else { return .agent(id: agentId) }
        agent.status = status
        if status == .available { agent.lastRoutedIndex = index }
        agent.version += 1
        agent.updatedAt = at
        try store.update(agent)
        emitAgentUpdated(agent)
        if status == .available { try fill(agentId: agentId) }
        return .agent(id: agentId)
    }

    mutating func createRule(id: String, name: String, keywords: [String], action: RuleAction, reply: String?, queueId: String?, order: Int) throws -> Outcome {
        try requireAdmin()
        try Limits.check(order, in: Limits.ruleOrderRange, "order", name: "ruleOrderRange", field: "order")
        let rules = try store.rules().count
        guard rules < Limits.rulesMax else {
            throw Limits.exceeded("the number of rules", value: rules + 1, bound: Limits.rulesMax, name: "rulesMax")
        }
        guard try store.rule(name: name) == nil else {
            throw DomainError(.conflict, "rule_name_taken", "a rule named '\(name)' exists", field: "name")
        }
        if let queueId, try store.queue(id: queueId) == nil {
            throw DomainError(.invalid, "queue_not_found", "no queue with id '\(queueId)'", field: "queue")
        }
        try store.insert(Rule(id: id, name: name, keywords: keywords, action: action, reply: reply, queueId: queueId, order: order, createdAt: at))
        return .rule(id: id)
    }

    mutating func createContact(id: String, name: String, identifiers: [String: String], attributes: [String: String]) throws -> Outcome {
        try refuseChannel("create contacts")
        try Self.checkBounds(attributes: attributes.count, identifiers: identifiers.count)
        for (channel, identifier) in identifiers.sorted(by: { $0.key < $1.key }) {
            if let owner = try store.contactId(channel: channel, identifier: identifier) {
                throw DomainError(.conflict, "identifier_taken", "\(channel) '\(identifier)' belongs to contact '\(owner)'", field: "identifiers")
            }
        }
        try store.insert(Contact(id: id, name: name, identifiers: identifiers, attributes: attributes, version: 1, createdAt: at, updatedAt: at))
        return .contact(id: id)
    }

    mutating func updateContact(id: String, name: String?, attributes: [String: String?], expectedVersion: Int64?) throws -> Outcome {
        try refuseChannel("change contacts")
        guard var contact = try store.contact(id: id) else { throw DomainError.notFound("contact", id) }
        if let expectedVersion, expectedVersion != contact.version {
            throw DomainError(.preconditionFailed, "version_mismatch", "contact is at version \(contact.version), not \(expectedVersion)")
        }
        if let name { contact.name = name }
        guard attributes.count <= Limits.contactAttributesPerRequestMax else {
            throw Limits.exceeded(
                "attribute keys in one change", value: attributes.count, bound: Limits.contactAttributesPerRequestMax,
                name: "contactAttributesPerRequestMax", field: "attributes")
        }
        for (key, value) in attributes { contact.attributes[key] = value }
        try Self.checkBounds(attributes: contact.attributes.count, identifiers: contact.identifiers.count)
        contact.version += 1
        contact.updatedAt = at
        try store.update(contact)
        return .contact(id: id)
    }
}

extension ApplyContext {
    /// A contact's size bounds (`Limits`), checked on every write of a contact.
    static func checkBounds(attributes: Int, identifiers: Int) throws {
        guard attributes <= Limits.contactAttributesMax else {
            throw Limits.exceeded(
                "the contact's attributes", value: attributes, bound: Limits.contactAttributesMax, name: "contactAttributesMax",
                field: "attributes")
        }
        guard identifiers <= Limits.contactIdentifiersMax else {
            throw Limits.exceeded(
                "the contact's identifiers", value: identifiers, bound: Limits.contactIdentifiersMax, name: "contactIdentifiersMax",
                field: "identifiers")
        }
    }
}
