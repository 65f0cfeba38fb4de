/// Agents, presence, queues' rules and contacts.
extension ApplyContext {
    mutating func createAgent(id: String, name: String, email: String, passwordHash: String, role: Role, skills: [String], capacity: Int) throws -> Outcome {
        try requireAdmin()
        guard try store.agent(email: email) == nil else {
            throw DomainError(.conflict, "email_taken", "an agent with email '\(email)' exists", field: "email")
        }
        try store.insert(Agent(
            id: id, name: name, email: email, passwordHash: passwordHash, role: role, skills: skills, capacity: capacity,
            status: .offline, openConversations: 0, lastRoutedIndex: index, version: 1, createdAt: at, updatedAt: at))
        return .agent(id: id)
    }

    mutating func updateAgent(id: String, name: String?, role: Role?, skills: [String]?, capacity: Int?, expectedVersion: Int64?) throws -> Outcome {
        try requireAdmin()
        guard var agent = try store.agent(id: id) else { throw DomainError.notFound("agent", id) }
        if let expectedVersion, expectedVersion != agent.version {
            throw DomainError(.preconditionFailed, "version_mismatch", "agent is at version \(agent.version), not \(expectedVersion)")
        }
        if let name { agent.name = name }
        if let role { agent.role = role }
        if let skills { agent.skills = skills }
        if let capacity {
            // An agent never exceeds capacity: lowering it below what is open would.
            guard capacity >= agent.openConversations else {
                throw DomainError(
                    .conflict, "capacity_below_open",
                    "agent '\(id)' has \(agent.openConversations) conversations open; reassign some before lowering capacity to \(capacity)",
                    field: "capacity")
            }
            agent.capacity = capacity
        }
        agent.version += 1
        agent.updatedAt = at
        try store.update(agent)
        emitAgentUpdated(agent)
        // More capacity or new skills may let the agent take waiting conversations.
        try fill(agentId: agent.id)
        return .agent(id: id)
    }

    mutating func setPresence(agentId: String, status: Presence) throws -> Outcome {
        if case .agent(let actorId) = actor, actorId != agentId { try requireSupervisor() }
        guard var agent = try store.agent(id: agentId) else { throw DomainError.notFound("agent", agentId) }
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
        for (key, value) in attributes { contact.attributes[key] = value }
        contact.version += 1
        contact.updatedAt = at
        try store.update(contact)
        return .contact(id: id)
    }
}
