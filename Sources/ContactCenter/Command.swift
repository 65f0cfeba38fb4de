import Wire

/// Who asked for a command. Apply re-reads an agent's role from state, so a role change that
/// commits before the command is honoured on every node alike.
public enum Actor: Sendable, Equatable, CustomStringConvertible {
    /// The cluster's admin token.
    case admin
    /// An agent session.
    case agent(id: String)
    /// A channel webhook (channel token or admin).
    case channel
    /// The node itself (timers, maintenance).
    case system

    /// Scope of this actor's idempotency keys: the same key from two actors never collides.
    public var description: String {
        switch self {
        case .admin: "admin"
        case .agent(let id): "agent:\(id)"
        case .channel: "channel"
        case .system: "system"
        }
    }
}

/// A state change, with everything non-deterministic (ids, hashes, times) already resolved by
/// the node that took the request.
public enum Command: Sendable, Equatable {
    case createAgent(id: String, name: String, email: String, passwordHash: String, role: Role, skills: [String], capacity: Int)
    /// `passwordHash` or `disabled: true` end every session of the agent; a new `role` closes its
    /// event sockets (their audience changes).
    case updateAgent(
        id: String, name: String?, role: Role?, skills: [String]?, capacity: Int?, expectedVersion: Int64?,
        passwordHash: String? = nil, disabled: Bool? = nil)
    case setPresence(agentId: String, status: Presence)
    case createSession(tokenHash: String, agentId: String, expiresAt: Timestamp)
    case deleteSession(tokenHash: String)
    case createQueue(id: String, name: String, skills: [String], priority: Int, channels: [Channel])
    case createRule(id: String, name: String, keywords: [String], action: RuleAction, reply: String?, queueId: String?, order: Int)
    case createContact(id: String, name: String, identifiers: [String: String], attributes: [String: String])
    case updateContact(id: String, name: String?, attributes: [String: String?], expectedVersion: Int64?)
    /// A customer's message from a channel webhook. `contactId`, `conversationId` and
    /// `messageId` are fresh ids, used only if apply needs to create those things.
    /// `inboxId`: the inbox it came through (replies leave through it); `attachments`: a JSON
    /// array the node rendered from the provider's payload; `references`: the ids of the
    /// messages it answers (an e-mail's `In-Reply-To` and `References`, newest first), which
    /// thread it into their open conversation.
    case inboundMessage(
        channel: Channel, from: String, text: String, externalId: String, name: String?,
        contactId: String, conversationId: String, messageId: String, inboxId: String? = nil, attachments: String? = nil,
        references: [String] = [])
    /// `template`: a WhatsApp template (JSON `{"name", "language", "components"}`) sent instead
    /// of free text, allowed outside the 24-hour window.
    case postMessage(conversationId: String, messageId: String, text: String, isPrivate: Bool, template: String? = nil)
    /// `settings` holds the channel's keys (`InboxSettings`), defaults filled in by the node.
    case createInbox(id: String, name: String, channel: Channel, queueId: String?, settings: [String: String], tokenHash: String?)
    /// `settings`: keys to set (a value) or remove (nil); `queueId` "" clears the queue.
    case updateInbox(id: String, name: String?, queueId: String?, settings: [String: String?], expectedVersion: Int64?)
    case deleteInbox(id: String)
    /// The leader's dispatcher starts attempt `attempt` (1, 2, ...) of sending a reply.
    case outboxAttempt(messageId: String, attempt: Int)
    /// The result of that attempt.
    case outboxResult(messageId: String, attempt: Int, result: OutboxResult)
    /// A provider's status callback about a reply it took under `providerId`.
    case deliveryStatus(inboxId: String, providerId: String, status: DeliveryStatus, reason: String?)
    /// An agent is writing in a conversation: an event for the assignee and the conversation's
    /// web chat visitor, and no state. It rides the log so it reaches the visitor on any node in
    /// order with the messages (never after the reply it announced).
    case typing(conversationId: String)
    /// A web chat visitor's widget received (`delivered`) or showed (`read`) a reply.
    case webChatReceipt(conversationId: String, messageId: String, status: DeliveryStatus)
    case assign(conversationId: String, agentId: String?, queueId: String?)
    /// The assignee (or a supervisor) hands a conversation to another agent or to a queue.
    case transfer(conversationId: String, agentId: String?, queueId: String?)
    case resolve(conversationId: String)
    case reopen(conversationId: String)
    /// Forget events produced before `beforeIndex`.
    case trimEvents(beforeIndex: Int64)
    /// Records a cluster member's addresses (and whether it should vote once caught up), so
    /// every node, and every snapshot, knows where each member listens.
    case setMember(ClusterMember)
    /// The node holding these agents' event WebSockets extends their presence leases to `until`.
    case renewLeases(agentIds: [String], until: Timestamp)
    /// The leader's timer: these agents' leases ran out (nobody renewed them: their node died
    /// and they did not reconnect elsewhere). Apply checks each lease against the command's time
    /// again, sets the agent offline and re-queues its conversations.
    case expireLeases(agentIds: [String])
    /// The leader's expiry timer: sessions that expired by the command's time end (their sockets
    /// close, an agent left with none goes offline); sessions expiring up to
    /// `warnSessionsThrough` and not warned yet get `session.expiring`; idempotency keys older
    /// than `Limits.idempotencyKeyLifetimeMilliseconds` are forgotten.
    case expire(warnSessionsThrough: Timestamp)
    /// A login found the agent's hash weaker than what the node writes now and hashed the same
    /// password again: apply stores `to` only while the hash is still `from` (a password changed
    /// in between wins). Not a password change: no session ends, the version does not move.
    case upgradePasswordHash(agentId: String, from: String, to: String)
}

extension Command {
    /// Applying this command twice is applying it once, without an idempotency key: a node may
    /// propose it again when a leader change lost its fate. Only a login is: its token hash is
    /// fresh and random, and apply takes a session already under it as this login's.
    public var isRepeatable: Bool {
        if case .createSession = self { return true }
        return false
    }
}

/// What travels in a log entry: the command, who asked, when, and the optional idempotency key.
///
/// Encoding: `[version u8][at i64][actor][idempotency?][command tag u8][fields...]`. Version 2
/// carries the key with its route and request hash (`Idempotency`); version 1, the key alone, is
/// still decoded (entries already in logs and snapshots). Any other version is refused by
/// `decode`, never applied half-way.
public struct CommandEnvelope: Sendable, Equatable {
    public static let currentVersion: UInt8 = 2

    public var at: Timestamp
    public var actor: Actor
    public var idempotency: Idempotency?
    public var command: Command

    public init(at: Timestamp, actor: Actor, idempotency: Idempotency? = nil, command: Command) {
        self.at = at
        self.actor = actor
        self.idempotency = idempotency
        self.command = command
    }

    /// A key without a route or request hash, as version 1 entries carry it.
    public init(at: Timestamp, actor: Actor, idempotencyKey: String?, command: Command) {
        self.init(at: at, actor: actor, idempotency: idempotencyKey.map { Idempotency(key: $0) }, command: command)
    }
}

extension CommandEnvelope {
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 128)
        writer.write(Self.currentVersion)
        writer.write(at.milliseconds)
        switch actor {
        case .admin: writer.write(UInt8(1))
        case .agent(let id):
            writer.write(UInt8(2))
            writer.write(id)
        case .channel: writer.write(UInt8(3))
        case .system: writer.write(UInt8(4))
        }
        writer.write(idempotency != nil)
        if let idempotency {
            writer.write(idempotency.key)
            writer.write(idempotency.route)
            writer.write(UInt8(idempotency.requestHash.count))
            writer.writeRaw(idempotency.requestHash)
        }
        command.encode(into: &writer)
        return writer.bytes
    }

    /// Longest request hash an entry may carry (SHA-256).
    static let requestHashBytesMax = 32

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> CommandEnvelope {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == 1 || version == currentVersion else {
            throw .invalid("command version \(version), this node knows 1...\(currentVersion)")
        }
        let at = Timestamp(milliseconds: try reader.readInt64())
        let actor: Actor
        switch try reader.readUInt8() {
        case 1: actor = .admin
        case 2: actor = .agent(id: try reader.readString())
        case 3: actor = .channel
        case 4: actor = .system
        case let tag: throw .invalid("actor tag \(tag)")
        }
        var idempotency: Idempotency?
        if version == 1 {
            idempotency = try reader.readOptionalString().map { Idempotency(key: $0) }
        } else if try reader.readBool() {
            let key = try reader.readString(), route = try reader.readString()
            let hashBytes = Int(try reader.readUInt8())
            guard hashBytes <= requestHashBytesMax else { throw .tooLarge(what: "request hash", size: hashBytes, max: requestHashBytesMax) }
            idempotency = Idempotency(key: key, route: route, requestHash: try reader.readBytes(hashBytes))
        }
        let command = try Command.decode(from: &reader)
        try reader.expectEnd()
        return CommandEnvelope(at: at, actor: actor, idempotency: idempotency, command: command)
    }
}

private func decodeEnum<T: RawRepresentable>(_ reader: inout ByteReader, _ type: T.Type) throws(WireError) -> T where T.RawValue == String {
    let raw = try reader.readString()
    guard let value = T(rawValue: raw) else { throw .invalid("unknown \(T.self) '\(raw)'") }
    return value
}

extension Command {
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .createAgent(let id, let name, let email, let passwordHash, let role, let skills, let capacity):
            writer.write(UInt8(1))
            writer.write(id); writer.write(name); writer.write(email); writer.write(passwordHash)
            writer.write(role.rawValue); writer.write(skills); writer.write(capacity)
        case .updateAgent(let id, let name, let role, let skills, let capacity, let expectedVersion, let passwordHash, let disabled):
            // Tag 2 was the layout without `passwordHash` and `disabled` (still decoded).
            writer.write(UInt8(19))
            writer.write(id); writer.write(name); writer.write(role?.rawValue)
            writer.write(skills != nil)
            if let skills { writer.write(skills) }
            writer.write(capacity.map(Int64.init)); writer.write(expectedVersion)
            writer.write(passwordHash)
            writer.write(disabled != nil)
            if let disabled { writer.write(disabled) }
        case .expire(let warnThrough):
            writer.write(UInt8(20))
            writer.write(warnThrough.milliseconds)
        case .upgradePasswordHash(let agentId, let from, let to):
            writer.write(UInt8(21))
            writer.write(agentId); writer.write(from); writer.write(to)
        case .setPresence(let agentId, let status):
            writer.write(UInt8(3))
            writer.write(agentId); writer.write(status.rawValue)
        case .createSession(let tokenHash, let agentId, let expiresAt):
            writer.write(UInt8(4))
            writer.write(tokenHash); writer.write(agentId); writer.write(expiresAt.milliseconds)
        case .deleteSession(let tokenHash):
            writer.write(UInt8(5))
            writer.write(tokenHash)
        case .createQueue(let id, let name, let skills, let priority, let channels):
            writer.write(UInt8(6))
            writer.write(id); writer.write(name); writer.write(skills); writer.write(priority)
            writer.write(channels.map(\.rawValue))
        case .createRule(let id, let name, let keywords, let action, let reply, let queueId, let order):
            writer.write(UInt8(7))
            writer.write(id); writer.write(name); writer.write(keywords); writer.write(action.rawValue)
            writer.write(reply); writer.write(queueId); writer.write(order)
        case .createContact(let id, let name, let identifiers, let attributes):
            writer.write(UInt8(8))
            writer.write(id); writer.write(name); writer.write(identifiers); writer.write(attributes)
        case .updateContact(let id, let name, let attributes, let expectedVersion):
            writer.write(UInt8(9))
            writer.write(id); writer.write(name); writer.write(attributes); writer.write(expectedVersion)
        case .inboundMessage(let channel, let from, let text, let externalId, let name, let contactId, let conversationId, let messageId,
                             let inboxId, let attachments, let references):
            // Tag 10 was the layout without `inboxId` and `attachments` (still decoded).
            writer.write(UInt8(22))
            writer.write(channel.rawValue); writer.write(from); writer.write(text); writer.write(externalId)
            writer.write(name); writer.write(contactId); writer.write(conversationId); writer.write(messageId)
            writer.write(inboxId); writer.write(attachments); writer.write(references)
        case .postMessage(let conversationId, let messageId, let text, let isPrivate, let template):
            // Tag 11 was the layout without `template` (still decoded).
            writer.write(UInt8(23))
            writer.write(conversationId); writer.write(messageId); writer.write(text); writer.write(isPrivate)
            writer.write(template)
        case .createInbox(let id, let name, let channel, let queueId, let settings, let tokenHash):
            writer.write(UInt8(24))
            writer.write(id); writer.write(name); writer.write(channel.rawValue); writer.write(queueId)
            writer.write(settings); writer.write(tokenHash)
        case .updateInbox(let id, let name, let queueId, let settings, let expectedVersion):
            writer.write(UInt8(25))
            writer.write(id); writer.write(name); writer.write(queueId); writer.write(settings); writer.write(expectedVersion)
        case .deleteInbox(let id):
            writer.write(UInt8(26))
            writer.write(id)
        case .outboxAttempt(let messageId, let attempt):
            writer.write(UInt8(27))
            writer.write(messageId); writer.write(attempt)
        case .outboxResult(let messageId, let attempt, let result):
            writer.write(UInt8(28))
            writer.write(messageId); writer.write(attempt)
            switch result {
            case .sent(let providerId): writer.write(UInt8(1)); writer.write(providerId)
            case .retry(let reason, let notBefore): writer.write(UInt8(2)); writer.write(reason); writer.write(notBefore.milliseconds)
            case .failed(let reason): writer.write(UInt8(3)); writer.write(reason)
            case .unknown(let reason, let notBefore): writer.write(UInt8(4)); writer.write(reason); writer.write(notBefore.milliseconds)
            }
        case .deliveryStatus(let inboxId, let providerId, let status, let reason):
            writer.write(UInt8(29))
            writer.write(inboxId); writer.write(providerId); writer.write(status.rawValue); writer.write(reason)
        case .typing(let conversationId):
            writer.write(UInt8(30))
            writer.write(conversationId)
        case .webChatReceipt(let conversationId, let messageId, let status):
            writer.write(UInt8(31))
            writer.write(conversationId); writer.write(messageId); writer.write(status.rawValue)
        case .assign(let conversationId, let agentId, let queueId):
            writer.write(UInt8(12))
            writer.write(conversationId); writer.write(agentId); writer.write(queueId)
        case .transfer(let conversationId, let agentId, let queueId):
            writer.write(UInt8(32))
            writer.write(conversationId); writer.write(agentId); writer.write(queueId)
        case .resolve(let conversationId):
            writer.write(UInt8(13))
            writer.write(conversationId)
        case .reopen(let conversationId):
            writer.write(UInt8(14))
            writer.write(conversationId)
        case .trimEvents(let beforeIndex):
            writer.write(UInt8(15))
            writer.write(beforeIndex)
        case .renewLeases(let agentIds, let until):
            writer.write(UInt8(17))
            writer.write(agentIds); writer.write(until.milliseconds)
        case .expireLeases(let agentIds):
            writer.write(UInt8(18))
            writer.write(agentIds)
        case .setMember(let member):
            writer.write(UInt8(16))
            writer.write(member.id); writer.write(member.peer); writer.write(member.api); writer.write(member.voter)
        }
    }

    static func decode(from reader: inout ByteReader) throws(WireError) -> Command {
        switch try reader.readUInt8() {
        case 1:
            return .createAgent(
                id: try reader.readString(), name: try reader.readString(), email: try reader.readString(),
                passwordHash: try reader.readString(), role: try decodeEnum(&reader, Role.self),
                skills: try reader.readStrings(), capacity: try reader.readInt())
        case let tag where tag == 2 || tag == 19:
            let id = try reader.readString()
            let name = try reader.readOptionalString()
            let role = try reader.readOptionalString().map { raw throws(WireError) in
                guard let role = Role(rawValue: raw) else { throw .invalid("unknown role '\(raw)'") }
                return role
            }
            let skills = try reader.readBool() ? try reader.readStrings() : nil
            let capacity = try reader.readOptionalInt64().map { Int($0) }
            let expectedVersion = try reader.readOptionalInt64()
            guard tag == 19 else {
                return .updateAgent(id: id, name: name, role: role, skills: skills, capacity: capacity, expectedVersion: expectedVersion)
            }
            let passwordHash = try reader.readOptionalString()
            let disabled = try reader.readBool() ? try reader.readBool() : nil
            return .updateAgent(
                id: id, name: name, role: role, skills: skills, capacity: capacity, expectedVersion: expectedVersion,
                passwordHash: passwordHash, disabled: disabled)
        case 20:
            return .expire(warnSessionsThrough: Timestamp(milliseconds: try reader.readInt64()))
        case 21:
            return .upgradePasswordHash(agentId: try reader.readString(), from: try reader.readString(), to: try reader.readString())
        case 3:
            return .setPresence(agentId: try reader.readString(), status: try decodeEnum(&reader, Presence.self))
        case 4:
            return .createSession(
                tokenHash: try reader.readString(), agentId: try reader.readString(),
                expiresAt: Timestamp(milliseconds: try reader.readInt64()))
        case 5:
            return .deleteSession(tokenHash: try reader.readString())
        case 6:
            let id = try reader.readString(), name = try reader.readString(), skills = try reader.readStrings()
            let priority = try reader.readInt()
            var channels: [Channel] = []
            for raw in try reader.readStrings() {
                guard let channel = Channel(rawValue: raw) else { throw .invalid("unknown channel '\(raw)'") }
                channels.append(channel)
            }
            return .createQueue(id: id, name: name, skills: skills, priority: priority, channels: channels)
        case 7:
            return .createRule(
                id: try reader.readString(), name: try reader.readString(), keywords: try reader.readStrings(),
                action: try decodeEnum(&reader, RuleAction.self), reply: try reader.readOptionalString(),
                queueId: try reader.readOptionalString(), order: try reader.readInt())
        case 8:
            return .createContact(
                id: try reader.readString(), name: try reader.readString(), identifiers: try reader.readStringMap(),
                attributes: try reader.readStringMap())
        case 9:
            return .updateContact(
                id: try reader.readString(), name: try reader.readOptionalString(),
                attributes: try reader.readOptionalStringMap(), expectedVersion: try reader.readOptionalInt64())
        case let tag where tag == 10 || tag == 22:
            let channel = try decodeEnum(&reader, Channel.self), from = try reader.readString(), text = try reader.readString()
            let externalId = try reader.readString(), name = try reader.readOptionalString(), contactId = try reader.readString()
            let conversationId = try reader.readString(), messageId = try reader.readString()
            let inboxId = tag == 22 ? try reader.readOptionalString() : nil
            let attachments = tag == 22 ? try reader.readOptionalString() : nil
            let references = tag == 22 ? try reader.readStrings() : []
            return .inboundMessage(
                channel: channel, from: from, text: text, externalId: externalId, name: name, contactId: contactId,
                conversationId: conversationId, messageId: messageId, inboxId: inboxId, attachments: attachments, references: references)
        case let tag where tag == 11 || tag == 23:
            let conversationId = try reader.readString(), messageId = try reader.readString(), text = try reader.readString()
            let isPrivate = try reader.readBool()
            let template = tag == 23 ? try reader.readOptionalString() : nil
            return .postMessage(conversationId: conversationId, messageId: messageId, text: text, isPrivate: isPrivate, template: template)
        case 24:
            return .createInbox(
                id: try reader.readString(), name: try reader.readString(), channel: try decodeEnum(&reader, Channel.self),
                queueId: try reader.readOptionalString(), settings: try reader.readStringMap(), tokenHash: try reader.readOptionalString())
        case 25:
            return .updateInbox(
                id: try reader.readString(), name: try reader.readOptionalString(), queueId: try reader.readOptionalString(),
                settings: try reader.readOptionalStringMap(), expectedVersion: try reader.readOptionalInt64())
        case 26:
            return .deleteInbox(id: try reader.readString())
        case 27:
            return .outboxAttempt(messageId: try reader.readString(), attempt: try reader.readInt())
        case 28:
            let messageId = try reader.readString(), attempt = try reader.readInt()
            let result: OutboxResult
            switch try reader.readUInt8() {
            case 1: result = .sent(providerId: try reader.readString())
            case 2: result = .retry(reason: try reader.readString(), notBefore: Timestamp(milliseconds: try reader.readInt64()))
            case 3: result = .failed(reason: try reader.readString())
            case 4: result = .unknown(reason: try reader.readString(), notBefore: Timestamp(milliseconds: try reader.readInt64()))
            case let tag: throw .invalid("outbox result tag \(tag)")
            }
            return .outboxResult(messageId: messageId, attempt: attempt, result: result)
        case 29:
            return .deliveryStatus(
                inboxId: try reader.readString(), providerId: try reader.readString(), status: try decodeEnum(&reader, DeliveryStatus.self),
                reason: try reader.readOptionalString())
        case 30:
            return .typing(conversationId: try reader.readString())
        case 31:
            return .webChatReceipt(
                conversationId: try reader.readString(), messageId: try reader.readString(), status: try decodeEnum(&reader, DeliveryStatus.self))
        case 12:
            return .assign(conversationId: try reader.readString(), agentId: try reader.readOptionalString(), queueId: try reader.readOptionalString())
        case 32:
            return .transfer(conversationId: try reader.readString(), agentId: try reader.readOptionalString(), queueId: try reader.readOptionalString())
        case 13:
            return .resolve(conversationId: try reader.readString())
        case 14:
            return .reopen(conversationId: try reader.readString())
        case 15:
            return .trimEvents(beforeIndex: try reader.readInt64())
        case 17:
            return .renewLeases(agentIds: try reader.readStrings(), until: Timestamp(milliseconds: try reader.readInt64()))
        case 18:
            return .expireLeases(agentIds: try reader.readStrings())
        case 16:
            return .setMember(ClusterMember(id: try reader.readString(), peer: try reader.readString(), api: try reader.readString(), voter: try reader.readBool()))
        case let tag:
            throw .invalid("unknown command tag \(tag)")
        }
    }
}
