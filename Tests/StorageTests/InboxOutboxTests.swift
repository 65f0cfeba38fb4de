import ContactCenter
import Foundation
import GRDB
import Storage
import XCTest

/// Inboxes, the outbox written with each reply, and delivery, applied to a real SQLite file.
final class InboxOutboxTests: XCTestCase {
    static let whatsApp: [String: String] = [
        "phoneNumberId": "106540352242922", "accessToken": "EAAG-secret", "appSecret": "app-secret", "verifyToken": "verify-me",
        "apiBase": "http://127.0.0.1:9/v21.0",
    ]

    private func setUp(_ h: Harness) throws {
        try h.addQueue("q")
        try h.addAgent("ana")
        XCTAssertEqual(
            try h.apply(.createInbox(id: "ib_wa", name: "Ventas", channel: .whatsapp, queueId: "q", settings: Self.whatsApp, tokenHash: nil)),
            .inbox(id: "ib_wa"))
    }

    /// A WhatsApp customer's message through the inbox; returns the conversation.
    private func inbound(_ h: Harness, wamid: String = "wamid.A", text: String = "hola") throws -> String {
        let outcome = try h.apply(
            .inboundMessage(
                channel: .whatsapp, from: "+5491155550000", text: text, externalId: wamid, name: "Lucía", contactId: "ct_1",
                conversationId: "cv_\(wamid)", messageId: "ms_\(wamid)", inboxId: "ib_wa",
                attachments: #"[{"kind":"image","mediaId":"m1"}]"#),
            actor: .channel)
        guard case .inbound(let conversationId, _, _) = outcome else { throw XCTSkip("inbound gave \(outcome)") }
        return conversationId
    }

    private func outbox(_ h: Harness, _ messageId: String) throws -> OutboxEntry? {
        try h.state.pool.read { try SQLiteStore($0).outboxEntry(messageId: messageId) }
    }

    private func message(_ h: Harness, _ id: String) throws -> Message {
        try XCTUnwrap(try h.state.pool.read { try SQLiteStore($0).message(id: id) }, "message \(id)")
    }

    func testAnInboxKeepsItsSecretsAndRefusesSettingsItDoesNotKnow() throws {
        let h = try Harness()
        try setUp(h)
        let inbox = try XCTUnwrap(try h.state.pool.read { try SQLiteStore($0).inbox(id: "ib_wa") })
        let rendered = Render.inbox(inbox).serialized
        for secret in ["EAAG-secret", "app-secret", "verify-me"] {
            XCTAssertFalse(rendered.contains(secret), "a secret is never rendered: \(rendered)")
        }
        XCTAssertTrue(rendered.contains(#""secrets":["accessToken","appSecret","verifyToken"]"#), rendered)
        XCTAssertTrue(rendered.contains(#""webhookUrl":"/v1/inboxes/ib_wa/webhook""#), rendered)
        XCTAssertEqual(
            try h.apply(.createInbox(id: "ib_2", name: "Ventas", channel: .sms, queueId: nil, settings: [:], tokenHash: nil)),
            .rejected(DomainError(.conflict, "inbox_name_taken", "an inbox named 'Ventas' exists", field: "name")))
        XCTAssertEqual(
            try h.apply(.createInbox(id: "ib_2", name: "SMS", channel: .sms, queueId: nil, settings: ["accountSid": "AC1", "from": "+1"], tokenHash: nil)),
            .rejected(DomainError(.invalid, "missing_setting", "a sms inbox needs 'authToken'", field: "twilio.authToken")))
        XCTAssertEqual(
            try h.apply(.updateInbox(id: "ib_wa", name: nil, queueId: nil, settings: ["password": "x"], expectedVersion: nil)),
            .rejected(DomainError(.invalid, "invalid_setting", "a whatsapp inbox has no setting 'password'", field: "whatsapp.password")))
        XCTAssertEqual(try h.apply(.createInbox(id: "ib_2", name: "x", channel: .sms, queueId: nil, settings: [:], tokenHash: nil), actor: .agent(id: "ana")),
                       .rejected(DomainError(.forbidden, "forbidden", "this needs an admin")))
        XCTAssertEqual(try h.apply(.updateInbox(id: "ib_wa", name: "Ventas AR", queueId: "", settings: ["accessToken": "new"], expectedVersion: 1)), .inbox(id: "ib_wa"))
        let updated = try XCTUnwrap(try h.state.pool.read { try SQLiteStore($0).inbox(id: "ib_wa") })
        XCTAssertEqual([updated.name, updated.settings["accessToken"], updated.queueId ?? "none"], ["Ventas AR", "new", "none"])
        XCTAssertEqual(updated.version, 2)
    }

    func testAnAgentsReplyInAWhatsAppConversationIsQueuedInTheSameApply() throws {
        let h = try Harness()
        try setUp(h)
        let conversation = try inbound(h)
        XCTAssertEqual(try h.conversation(conversation).inboxId, "ib_wa")
        XCTAssertEqual(try h.conversation(conversation).assigneeId, "ana", "the inbox's queue routes it")
        XCTAssertEqual(try message(h, "ms_wamid.A").attachments, #"[{"kind":"image","mediaId":"m1"}]"#)
        XCTAssertEqual(
            try h.apply(.postMessage(conversationId: conversation, messageId: "ms_r1", text: "¡Hola Lucía!", isPrivate: false), actor: .agent(id: "ana")),
            .message(conversationId: conversation, messageId: "ms_r1"))
        let entry = try XCTUnwrap(try outbox(h, "ms_r1"), "the reply is in the outbox")
        XCTAssertEqual([entry.recipient, entry.inboxId, entry.text], ["+5491155550000", "ib_wa", "¡Hola Lucía!"])
        XCTAssertEqual([entry.attempts, entry.inFlight ? 1 : 0, entry.done ? 1 : 0], [0, 0, 0])
        XCTAssertEqual(try message(h, "ms_r1").delivery, Delivery(status: .queued))
        XCTAssertEqual(
            try h.apply(.postMessage(conversationId: conversation, messageId: "ms_n1", text: "nota", isPrivate: true), actor: .agent(id: "ana")),
            .message(conversationId: conversation, messageId: "ms_n1"))
        XCTAssertNil(try outbox(h, "ms_n1"), "a private note never leaves")
        XCTAssertNil(try message(h, "ms_n1").delivery)
    }

    func testFreeTextPastTheTwentyFourHourWindowIsRefusedAndATemplateIsNot() throws {
        let h = try Harness()
        try setUp(h)
        let conversation = try inbound(h)
        let later = Timestamp(milliseconds: h.clock + Limits.whatsAppWindowMilliseconds + 60_000)
        let reply = CommandEnvelope(
            at: later, actor: .agent(id: "ana"), idempotencyKey: nil,
            command: .postMessage(conversationId: conversation, messageId: "ms_late", text: "¿Sigues ahí?", isPrivate: false))
        guard case .rejected(let error) = try h.apply(reply) else { return XCTFail("free text past the window was accepted") }
        XCTAssertEqual([error.code, "\(error.kind)"], ["window_closed", "conflict"], error.message)
        XCTAssertNil(try outbox(h, "ms_late"), "a refused reply writes nothing")
        let template = CommandEnvelope(
            at: later, actor: .agent(id: "ana"), idempotencyKey: nil,
            command: .postMessage(
                conversationId: conversation, messageId: "ms_tpl", text: "seguimiento", isPrivate: false,
                template: #"{"language":{"code":"es_AR"},"name":"seguimiento"}"#))
        XCTAssertEqual(try h.apply(template), .message(conversationId: conversation, messageId: "ms_tpl"))
        XCTAssertEqual(try outbox(h, "ms_tpl")?.template, #"{"language":{"code":"es_AR"},"name":"seguimiento"}"#)
        let note = CommandEnvelope(
            at: later, actor: .agent(id: "ana"), idempotencyKey: nil,
            command: .postMessage(conversationId: conversation, messageId: "ms_note", text: "nota", isPrivate: true))
        XCTAssertEqual(try h.apply(note), .message(conversationId: conversation, messageId: "ms_note"), "notes are not bound by the window")
    }

    func testAttemptsAndResultsMoveDeliveryAndAResumedAttemptIsMarkedAPossibleDuplicate() throws {
        let h = try Harness()
        try setUp(h)
        let conversation = try inbound(h)
        try h.apply(.postMessage(conversationId: conversation, messageId: "ms_r1", text: "hola", isPrivate: false), actor: .agent(id: "ana"))
        XCTAssertEqual(try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 1), actor: .agent(id: "ana")),
                       .rejected(DomainError(.forbidden, "forbidden", "only the leader's dispatcher sends replies")))
        XCTAssertEqual(try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 2), actor: .system),
                       .rejected(DomainError(.conflict, "stale_attempt", "reply 'ms_r1' has had 0 attempts, not 1")))
        XCTAssertEqual(try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 1), actor: .system), .done)
        let retryAt = Timestamp(milliseconds: h.clock + 5000)
        XCTAssertEqual(try h.apply(.outboxResult(messageId: "ms_r1", attempt: 1, result: .retry(reason: "HTTP 503", notBefore: retryAt)), actor: .system), .done)
        XCTAssertEqual(try outbox(h, "ms_r1")?.notBefore, retryAt)
        XCTAssertEqual(try message(h, "ms_r1").delivery, Delivery(status: .queued, reason: "HTTP 503"))
        // Attempt 2 starts; its leader dies before the result commits; the next leader starts 3.
        XCTAssertEqual(try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 2), actor: .system), .done)
        XCTAssertEqual(try message(h, "ms_r1").delivery?.possibleDuplicate, false)
        let eventsBefore = h.events.count
        XCTAssertEqual(try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 3), actor: .system), .done)
        XCTAssertEqual(try message(h, "ms_r1").delivery?.possibleDuplicate, true, "an attempt after one without a result may duplicate it")
        XCTAssertEqual(h.events[eventsBefore...].map(\.type), [.messageUpdated])
        XCTAssertEqual(try h.apply(.outboxResult(messageId: "ms_r1", attempt: 2, result: .sent(providerId: "wamid.OLD")), actor: .system),
                       .rejected(DomainError(.conflict, "stale_attempt", "attempt 2 of reply 'ms_r1' is not the one under way")),
                       "the dead leader's late result does not land")
        XCTAssertEqual(try h.apply(.outboxResult(messageId: "ms_r1", attempt: 3, result: .sent(providerId: "wamid.OUT")), actor: .system), .done)
        XCTAssertEqual(try message(h, "ms_r1").delivery, Delivery(status: .sent, possibleDuplicate: true))
        XCTAssertEqual(try outbox(h, "ms_r1").map { [$0.done ? "done" : "pending", $0.providerId ?? ""] }, ["done", "wamid.OUT"])
        XCTAssertEqual(try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 4), actor: .system),
                       .rejected(DomainError(.conflict, "not_pending", "reply 'ms_r1' is not waiting to be sent")))

        // Statuses move forward only; a status about another message is dropped.
        for (status, expected) in [(DeliveryStatus.delivered, DeliveryStatus.delivered), (.read, .read), (.delivered, .read), (.sent, .read)] {
            XCTAssertEqual(try h.apply(.deliveryStatus(inboxId: "ib_wa", providerId: "wamid.OUT", status: status, reason: nil), actor: .channel), .done)
            XCTAssertEqual(try message(h, "ms_r1").delivery?.status, expected, "after \(status)")
        }
        XCTAssertEqual(try h.apply(.deliveryStatus(inboxId: "ib_wa", providerId: "wamid.UNKNOWN", status: .read, reason: nil), actor: .channel), .done)
        let updated = h.events.filter { $0.type == .messageUpdated }.last
        XCTAssertTrue(updated?.data.contains(#""delivery":{"possibleDuplicate":true,"reason":null,"status":"read"}"#) == true, updated?.data ?? "no event")
        XCTAssertEqual(updated?.audienceAgentId, "ana", "the assignee hears of it")
    }

    func testAnAttemptWithoutAnAnswerMarksTheReplyAPossibleDuplicate() throws {
        let h = try Harness()
        try setUp(h)
        let conversation = try inbound(h)
        try h.apply(.postMessage(conversationId: conversation, messageId: "ms_r1", text: "hola", isPrivate: false), actor: .agent(id: "ana"))
        XCTAssertEqual(try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 1), actor: .system), .done)
        let retryAt = Timestamp(milliseconds: h.clock + 2000)
        let eventsBefore = h.events.count
        XCTAssertEqual(
            try h.apply(.outboxResult(messageId: "ms_r1", attempt: 1, result: .unknown(reason: "no answer: read timeout", notBefore: retryAt)), actor: .system),
            .done)
        XCTAssertEqual(try message(h, "ms_r1").delivery, Delivery(status: .queued, reason: "no answer: read timeout", possibleDuplicate: true),
                       "the provider may have taken the attempt it never answered")
        XCTAssertEqual(h.events[eventsBefore...].map(\.type), [.messageUpdated], "the agent hears of it")
        XCTAssertEqual(try outbox(h, "ms_r1").map { [$0.done ? "done" : "pending", "\($0.notBefore.milliseconds)"] }, ["pending", "\(retryAt.milliseconds)"])
        XCTAssertEqual(try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 2), actor: .system), .done)
        XCTAssertEqual(try h.apply(.outboxResult(messageId: "ms_r1", attempt: 2, result: .sent(providerId: "wamid.TWO")), actor: .system), .done)
        XCTAssertEqual(try message(h, "ms_r1").delivery, Delivery(status: .sent, possibleDuplicate: true), "the mark stays once sent")
    }

    func testAWebChatReplyStartsSentAndTheVisitorsReceiptsMoveItForwardOnly() throws {
        let h = try Harness()
        try h.addQueue("q")
        try h.addAgent("ana")
        try h.addAgent("beto", available: false)
        XCTAssertEqual(try h.apply(.createInbox(id: "ib_web", name: "Sitio", channel: .webchat, queueId: "q", settings: [:], tokenHash: nil)), .inbox(id: "ib_web"))
        guard case .inbound(let conversation, _, _) = try h.apply(
            .inboundMessage(
                channel: .webchat, from: "visitor-1", text: "hola", externalId: "webchat-1", name: "Visitante", contactId: "ct_v",
                conversationId: "cv_v", messageId: "ms_v1", inboxId: "ib_web", attachments: nil),
            actor: .channel)
        else { return XCTFail("the visitor's message was not stored") }

        // Typing: an event for the assignee and the visitor's socket, nothing stored.
        let before = h.events.count
        XCTAssertEqual(try h.apply(.typing(conversationId: conversation), actor: .agent(id: "ana")), .done)
        let typing = try XCTUnwrap(h.events[before...].first)
        XCTAssertEqual([typing.type.rawValue, typing.audienceAgentId ?? "nobody"], ["conversation.typing", "ana"])
        XCTAssertEqual(typing.data, #"{"agent":"ana","agentName":"ana","conversationId":"cv_v"}"#)
        XCTAssertEqual(try h.apply(.typing(conversationId: conversation), actor: .agent(id: "beto")),
                       .rejected(DomainError(.forbidden, "not_assignee", "only the assignee or a supervisor may write in this conversation")))
        XCTAssertEqual(try h.apply(.typing(conversationId: conversation), actor: .channel),
                       .rejected(DomainError(.forbidden, "forbidden", "only an agent types in a conversation")))

        try h.apply(.postMessage(conversationId: conversation, messageId: "ms_r1", text: "¿En qué te ayudo?", isPrivate: false), actor: .agent(id: "ana"))
        XCTAssertEqual(try message(h, "ms_r1").delivery, Delivery(status: .sent), "the visitor's socket carries it as it applies")
        XCTAssertNil(try outbox(h, "ms_r1"), "nothing for a provider to send")
        try h.apply(.postMessage(conversationId: conversation, messageId: "ms_note", text: "nota", isPrivate: true), actor: .agent(id: "ana"))
        XCTAssertNil(try message(h, "ms_note").delivery)

        for (status, expected) in [(DeliveryStatus.delivered, DeliveryStatus.delivered), (.read, .read), (.delivered, .read)] {
            XCTAssertEqual(try h.apply(.webChatReceipt(conversationId: conversation, messageId: "ms_r1", status: status), actor: .channel), .done)
            XCTAssertEqual(try message(h, "ms_r1").delivery?.status, expected, "after \(status): forward only")
        }
        XCTAssertEqual(h.events.filter { $0.type == .messageUpdated }.count, 2, "the assignee hears of each move, not of the no-op")
        XCTAssertEqual(try h.apply(.webChatReceipt(conversationId: conversation, messageId: "ms_v1", status: .read), actor: .channel),
                       .rejected(DomainError(.conflict, "not_a_reply", "message 'ms_v1' is not a reply to the visitor", field: "messageId")))
        XCTAssertEqual(try h.apply(.webChatReceipt(conversationId: conversation, messageId: "ms_note", status: .read), actor: .channel),
                       .rejected(DomainError(.conflict, "not_a_reply", "message 'ms_note' is not a reply to the visitor", field: "messageId")),
                       "a note does not exist for the visitor")
        XCTAssertEqual(try h.apply(.webChatReceipt(conversationId: "cv_other", messageId: "ms_r1", status: .read), actor: .channel),
                       .rejected(DomainError.notFound("message", "ms_r1")), "a receipt names the reply's own conversation")
        XCTAssertEqual(try h.apply(.webChatReceipt(conversationId: conversation, messageId: "ms_r1", status: .failed), actor: .channel),
                       .rejected(DomainError(.invalid, "invalid_status", "a receipt says delivered or read, not failed", field: "status")))
        XCTAssertEqual(try h.apply(.webChatReceipt(conversationId: conversation, messageId: "ms_r1", status: .read), actor: .agent(id: "ana")),
                       .rejected(DomainError(.forbidden, "forbidden", "receipts come from the visitor's widget")))

        try h.apply(.resolve(conversationId: conversation), actor: .agent(id: "ana"))
        XCTAssertEqual(try h.apply(.typing(conversationId: conversation), actor: .agent(id: "ana")),
                       .rejected(DomainError(.conflict, "conversation_resolved", "conversation 'cv_v' is resolved; reopen it to reply")))
    }

    func testALastFailureDeadLettersTheReplyWithItsReason() throws {
        let h = try Harness()
        try setUp(h)
        let conversation = try inbound(h)
        try h.apply(.postMessage(conversationId: conversation, messageId: "ms_r1", text: "hola", isPrivate: false), actor: .agent(id: "ana"))
        try h.apply(.outboxAttempt(messageId: "ms_r1", attempt: 1), actor: .system)
        XCTAssertEqual(try h.apply(.outboxResult(messageId: "ms_r1", attempt: 1, result: .failed(reason: "131026: Message undeliverable")), actor: .system), .done)
        XCTAssertEqual(try message(h, "ms_r1").delivery, Delivery(status: .failed, reason: "131026: Message undeliverable"))
        XCTAssertEqual(try outbox(h, "ms_r1")?.done, true)
    }

    func testABotReplyInAWhatsAppInboxLeavesToo() throws {
        let h = try Harness()
        try setUp(h)
        XCTAssertEqual(
            try h.apply(.createRule(id: "ru", name: "horario", keywords: ["horario"], action: .reply, reply: "Abrimos 9 a 18", queueId: nil, order: 0)),
            .rule(id: "ru"))
        _ = try inbound(h, text: "¿Cuál es el horario?")
        let entry = try XCTUnwrap(try outbox(h, "ms_wamid.A-bot"), "the bot's answer is in the outbox")
        XCTAssertEqual([entry.text, entry.recipient], ["Abrimos 9 a 18", "+5491155550000"])
    }
}
