/// Routing inside apply (DESIGN.md "Routing"): the longest-idle available agent with the queue's
/// skills and free capacity gets a queued conversation; an agent that gains capacity takes the
/// oldest waiting conversation it can serve, highest priority first. Invariants: an agent never
/// exceeds capacity; a conversation never has two assignees.
extension ApplyContext {
    /// Puts the conversation in `queue` (nil: no queue, any agent) and routes it at once.
    mutating func enqueue(_ conversation: inout Conversation, in queue: Queue?) throws {
        conversation.status = .queued
        conversation.queueId = queue?.id
        conversation.assigneeId = nil
        conversation.priority = queue?.priority ?? 0
        conversation.enqueuedIndex = index
        conversation.updatedAt = at
        conversation.version += 1
        let required = queue?.skills ?? []
        if var agent = try store.firstAvailableAgent(where: { $0.canServe(skills: required) }) {
            try give(&conversation, to: &agent)
        } else {
            try save(conversation)
            emitConversationUpdated(conversation)
        }
    }

    /// Assigns `conversation` to `agent`, who must have free capacity.
    mutating func give(_ conversation: inout Conversation, to agent: inout Agent) throws {
        precondition(agent.openConversations < agent.capacity, "agent \(agent.id) is full: \(agent.openConversations)/\(agent.capacity)")
        precondition(conversation.status != .resolved, "assigning resolved conversation \(conversation.id)")
        conversation.status = .assigned
        conversation.assigneeId = agent.id
        conversation.updatedAt = at
        conversation.version += 1
        try save(conversation)
        agent.openConversations += 1
        agent.lastRoutedIndex = index
        agent.version += 1
        agent.updatedAt = at
        try store.update(agent)
        emit(.conversationAssigned, audience: agent.id, .members(["agent": .string(agent.id), "conversation": Render.conversation(conversation)]))
        emitAgentUpdated(agent)
    }

    /// Writes a conversation: inserts it if this command created it and it is not stored yet.
    mutating func save(_ conversation: Conversation) throws {
        if conversation.id == unsavedConversationId {
            unsavedConversationId = nil
            try store.insert(conversation)
        } else {
            try store.update(conversation)
        }
    }

    /// The agent no longer holds one of its open conversations.
    mutating func release(agentId: String) throws {
        guard var agent = try store.agent(id: agentId) else { return }
        precondition(agent.openConversations > 0, "agent \(agentId) releases with no open conversation")
        agent.openConversations -= 1
        agent.version += 1
        agent.updatedAt = at
        try store.update(agent)
        emitAgentUpdated(agent)
    }

    /// The agent's presence lease ran out as of the command's time: offline, and its assigned
    /// conversations back in their queues (routed at once to another agent if one can take
    /// them). A lease renewed since the leader decided is left alone.
    mutating func expireLease(agentId: String) throws {
        guard let until = try store.lease(agentId: agentId), until < at else { return }
        try store.deleteLease(agentId: agentId)
        guard var agent = try store.agent(id: agentId) else { return }
        if agent.status != .offline {
            agent.status = .offline
            agent.version += 1
            agent.updatedAt = at
            try store.update(agent)
            emitAgentUpdated(agent)
        }
        try requeueAssigned(agentId: agentId)
    }

    /// The agent's assigned conversations go back to their queues (routed at once to another
    /// agent if one can take them).
    mutating func requeueAssigned(agentId: String) throws {
        for var conversation in try store.assignedConversations(agentId: agentId) {
            try release(agentId: agentId)
            let queue = try conversation.queueId.flatMap(store.queue(id:))
            try enqueue(&conversation, in: queue)
        }
    }

    /// While the agent is available with free capacity, gives it the next waiting conversation
    /// among the queues it has the skills for.
    mutating func fill(agentId: String) throws {
        guard var agent = try store.agent(id: agentId), agent.status == .available else { return }
        let servable: [String?] = try store.queues().filter { agent.canServe(skills: $0.skills) }.map(\.id) + [nil]
        while agent.hasFreeCapacity, var next = try store.nextQueuedConversation(queueIds: servable) {
            try give(&next, to: &agent)
        }
    }
}
