import Channels
import Foundation
import HummingbirdWSClient
import Logging
import ServerTLS
import Wire
import XCTest

#if canImport(Glibc)
import Glibc
#endif

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Replies that reach the customer: a three-node cluster of real processes takes WhatsApp and
/// Twilio webhooks as the providers send them (signed) and sends agents' replies to a provider
/// simulator that speaks the providers' documented HTTP (`loadtest/provider-sim.py`).
final class ChannelProcessTests: XCTestCase {
    static let appSecret = "meta-app-secret"
    static let verifyToken = "verify-me"
    static let customer = "5491155550000"

    /// `loadtest/provider-sim.py` as a process on a free port.
    final class ProviderSimulator {
        let process = Process()
        let port: Int

        init(script name: String = "provider-sim.py", arguments: [String] = []) throws {
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("loadtest/\(name)").path
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", script, "--port", "0"] + arguments
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            var line = Data()
            var byte: UInt8 = 0
            let descriptor = output.fileHandleForReading.fileDescriptor
            while !line.contains(UInt8(ascii: "\n")), read(descriptor, &byte, 1) == 1 { line.append(byte) }
            let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard text.hasPrefix("listening "), let port = Int(text.dropFirst("listening ".count)) else {
                process.terminate()
                throw XCTSkip("\(name) did not start: '\(text)'")
            }
            self.port = port
        }

        deinit {
            // SIGKILL: a child of the test process may inherit a mask that blocks SIGTERM.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        var base: String { "http://127.0.0.1:\(port)" }

        func list(_ path: String) async -> [[String: Any]] {
            guard let (data, _) = try? await URLSession.shared.data(from: URL(string: base + path)!) else { return [] }
            return ((try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]]) ?? []
        }

        func sent() async -> [[String: Any]] { await list("/_sim/sent") }
        func requests() async -> [[String: Any]] { await list("/_sim/requests") }

        func mode(_ json: String) async throws {
            var request = URLRequest(url: URL(string: base + "/_sim/mode")!)
            request.httpMethod = "POST"
            request.httpBody = Data(json.utf8)
            _ = try await URLSession.shared.data(for: request)
        }
    }

    /// A cluster with a queue, an available agent (its session token returned) and a WhatsApp
    /// inbox whose API base is the simulator.
    private func setUp(_ cluster: ProcessCluster, simulator: ProviderSimulator) async throws -> (agentToken: String, inbox: String) {
        for id in ["n1", "n2", "n3"] { cluster.describe(id) }
        try await cluster.startAll()
        let queue = try await cluster.request("n1", "POST", "/v1/queues", body: #"{"name":"Ventas"}"#)
        XCTAssertEqual(queue.status, 201, "\(queue.json)")
        let agent = try await cluster.request(
            "n1", "POST", "/v1/agents", body: #"{"name":"Ana","email":"ana@example.com","password":"ana-password","role":"agent"}"#)
        XCTAssertEqual(agent.status, 201, "\(agent.json)")
        let session = try await cluster.request("n2", "POST", "/v1/sessions", body: #"{"email":"ana@example.com","password":"ana-password"}"#, token: nil)
        let token = try XCTUnwrap(session.json["token"] as? String, "login: \(session.json)")
        let available = try await cluster.request("n2", "PUT", "/v1/agents/me/status", body: #"{"status":"available"}"#, token: token)
        XCTAssertEqual(available.status, 200, "\(available.json)")
        let created = try await cluster.request("n1", "POST", "/v1/inboxes", body: """
            {"name":"WhatsApp Ventas","channel":"whatsapp","queue":"\(queue.json["id"] as? String ?? "")","whatsapp":{
            "phoneNumberId":"106540352242922","accessToken":"sim-access-token","appSecret":"\(Self.appSecret)",
            "verifyToken":"\(Self.verifyToken)","apiBase":"\(simulator.base)/v21.0"}}
            """)
        XCTAssertEqual(created.status, 201, "\(created.json)")
        let inbox = try XCTUnwrap(created.json["id"] as? String)
        XCTAssertEqual(created.json["webhookUrl"] as? String, "/v1/inboxes/\(inbox)/webhook")
        XCTAssertEqual(created.json["secrets"] as? [String], ["accessToken", "appSecret", "verifyToken"])
        let answer = try JSONSerialization.data(withJSONObject: created.json)
        for secret in ["sim-access-token", Self.appSecret, Self.verifyToken] {
            XCTAssertFalse(String(decoding: answer, as: UTF8.self).contains(secret), "the answer never holds a secret: \(created.json)")
        }
        return (token, inbox)
    }

    private static func whatsAppMessage(id: String, text: String) -> String {
        """
        {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
        "contacts":[{"profile":{"name":"Lucía"},"wa_id":"\(customer)"}],
        "messages":[{"from":"\(customer)","id":"\(id)","timestamp":"1749416383","type":"text","text":{"body":"\(text)"}}]},
        "field":"messages"}]}]}
        """
    }

    private static func whatsAppStatus(wamid: String, status: String) -> String {
        """
        {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
        "statuses":[{"id":"\(wamid)","status":"\(status)","timestamp":"1749416390","recipient_id":"\(customer)"}]},
        "field":"messages"}]}]}
        """
    }

    private func postSigned(_ cluster: ProcessCluster, _ node: String, _ path: String, _ body: String, signature: String? = nil) async throws -> ProcessCluster.Reply {
        let signed = signature ?? WhatsAppWebhook.signature(of: Array(body.utf8), appSecret: Self.appSecret)
        return try await cluster.request(node, "POST", path, body: body, token: nil, headers: ["X-Hub-Signature-256": signed])
    }

    /// The conversation's messages, oldest first.
    private func messages(_ cluster: ProcessCluster, _ node: String, _ conversation: String) async throws -> [[String: Any]] {
        let page = try await cluster.request(node, "GET", "/v1/conversations/\(conversation)/messages")
        return (page.json["items"] as? [[String: Any]]) ?? []
    }

    func testWhatsAppAndSMSBothWaysThroughAThreeNodeCluster() async throws {
        let simulator = try ProviderSimulator()
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let (agentToken, inbox) = try await setUp(cluster, simulator: simulator)
        let webhook = "/v1/inboxes/\(inbox)/webhook"

        // Meta's verification handshake, on any node.
        let challenge = await cluster.text("n3", webhook + "?hub.mode=subscribe&hub.verify_token=\(Self.verifyToken)&hub.challenge=1158201444")
        XCTAssertEqual(challenge, "1158201444")
        let refused = try await cluster.request("n3", "GET", webhook + "?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", token: nil)
        XCTAssertEqual(refused.status, 403, "a wrong verify token: \(refused.json)")

        // Unsigned or wrongly signed bodies change nothing.
        let body = Self.whatsAppMessage(id: "wamid.HBgLNTQ5MTE1NTU1MDAwMBUCABIYFjNFQjBDMEEzN0Y4", text: "Hola, ¿tienen envíos a Córdoba?")
        let unsigned = try await cluster.request("n2", "POST", webhook, body: body, token: nil)
        XCTAssertEqual([unsigned.status, (unsigned.json["error"] as? [String: Any])?["code"] as? String ?? ""] as [AnyHashable], [401, "invalid_signature"])
        let forged = try await postSigned(cluster, "n2", webhook, body, signature: WhatsAppWebhook.signature(of: Array(body.utf8), appSecret: "guess"))
        XCTAssertEqual(forged.status, 401)
        let none = try await cluster.request("n1", "GET", "/v1/conversations")
        XCTAssertEqual((none.json["items"] as? [Any])?.count, 0, "nothing was stored: \(none.json)")

        let first = try await postSigned(cluster, "n2", webhook, body)
        XCTAssertEqual(first.status, 200, "\(first.json)")
        XCTAssertEqual(first.json["received"] as? Int, 1)
        let again = try await postSigned(cluster, "n3", webhook, body)
        XCTAssertEqual(again.json["duplicates"] as? Int, 1, "Meta's redelivery is stored once: \(again.json)")

        let list = try await cluster.request("n1", "GET", "/v1/conversations")
        let conversation = try XCTUnwrap((list.json["items"] as? [[String: Any]])?.first, "\(list.json)")
        let conversationId = try XCTUnwrap(conversation["id"] as? String)
        XCTAssertEqual(conversation["inbox"] as? String, inbox)
        XCTAssertEqual(conversation["status"] as? String, "assigned", "routed through the inbox's queue: \(conversation)")
        let contact = try await cluster.request("n1", "GET", "/v1/contacts/\(conversation["contact"] as? String ?? "")")
        XCTAssertEqual(contact.json["name"] as? String, "Lucía")
        XCTAssertEqual((contact.json["identifiers"] as? [String: String])?["whatsapp"], "+\(Self.customer)", "E.164: \(contact.json)")

        // Ana replies; the leader's dispatcher sends it to the Cloud API.
        let reply = try await cluster.request(
            "n3", "POST", "/v1/conversations/\(conversationId)/messages", body: #"{"text":"¡Hola Lucía! Sí, enviamos a todo el país."}"#,
            token: agentToken)
        XCTAssertEqual(reply.status, 201, "\(reply.json)")
        XCTAssertEqual((reply.json["delivery"] as? [String: Any])?["status"] as? String, "queued")
        let replyId = try XCTUnwrap(reply.json["id"] as? String)
        try await cluster.waitUntil("the simulator got the reply", seconds: 10) { await !simulator.sent().isEmpty }
        let sent = await simulator.sent()
        XCTAssertEqual(sent.count, 1, "one send: \(sent)")
        XCTAssertEqual(sent.first?["to"] as? String, Self.customer)
        XCTAssertEqual(sent.first?["text"] as? String, "¡Hola Lucía! Sí, enviamos a todo el país.")
        XCTAssertEqual(sent.first?["phoneNumberId"] as? String, "106540352242922")
        let wamid = try XCTUnwrap(sent.first?["id"] as? String)
        try await cluster.waitUntil("the reply is sent") {
            let message = try? await self.messages(cluster, "n1", conversationId).first { $0["id"] as? String == replyId }
            return (message?["delivery"] as? [String: Any])?["status"] as? String == "sent"
        }

        // Meta's status callbacks move it on: delivered, then read; an older one never moves it back.
        for status in ["delivered", "read", "delivered"] {
            let answer = try await postSigned(cluster, "n1", webhook, Self.whatsAppStatus(wamid: wamid, status: status))
            XCTAssertEqual(answer.json["statuses"] as? Int, 1, "\(status): \(answer.json)")
        }
        let read = try await messages(cluster, "n2", conversationId).first { $0["id"] as? String == replyId }
        XCTAssertEqual((read?["delivery"] as? [String: Any])?["status"] as? String, "read", "\(read ?? [:])")

        // A template goes out as the Cloud API's template message.
        let template = try await cluster.request(
            "n2", "POST", "/v1/conversations/\(conversationId)/messages",
            body: #"{"template":{"name":"seguimiento_pedido","language":"es_AR","components":[{"type":"body","parameters":[{"type":"text","text":"1234"}]}]}}"#,
            token: agentToken)
        XCTAssertEqual(template.status, 201, "\(template.json)")
        XCTAssertEqual(template.json["text"] as? String, "[template seguimiento_pedido]")
        try await cluster.waitUntil("the simulator got the template", seconds: 10) { await simulator.sent().count == 2 }
        let sentTemplate = await simulator.sent().last?["template"] as? [String: Any]
        XCTAssertEqual(sentTemplate?["name"] as? String, "seguimiento_pedido")
        XCTAssertEqual((sentTemplate?["language"] as? [String: Any])?["code"] as? String, "es_AR")
        let parameters = ((sentTemplate?["components"] as? [[String: Any]])?.first?["parameters"] as? [[String: Any]])?.first
        XCTAssertEqual(parameters?["text"] as? String, "1234", "\(sentTemplate ?? [:])")
        let privateTemplate = try await cluster.request(
            "n2", "POST", "/v1/conversations/\(conversationId)/messages", body: #"{"template":{"name":"x","language":"es"},"private":true}"#,
            token: agentToken)
        XCTAssertEqual(privateTemplate.status, 422, "a note cannot be a template: \(privateTemplate.json)")

        // A private note stays in the cluster.
        let note = try await cluster.request(
            "n1", "POST", "/v1/conversations/\(conversationId)/messages", body: #"{"text":"cliente VIP","private":true}"#, token: agentToken)
        XCTAssertEqual(note.status, 201)
        XCTAssertTrue(note.json["delivery"] is NSNull, "a note has no delivery: \(note.json)")

        // SMS through Twilio: a signed inbound form, a reply sent with basic auth, a status callback.
        let sms = try await cluster.request("n1", "POST", "/v1/inboxes", body: """
            {"name":"SMS","channel":"sms","twilio":{"accountSid":"ACsim","authToken":"sim-auth-token","from":"+15557654321",
            "apiBase":"\(simulator.base)"}}
            """)
        XCTAssertEqual(sms.status, 201, "\(sms.json)")
        let smsHook = "/v1/inboxes/\(sms.json["id"] as? String ?? "")/webhook"
        let form: [(String, String)] = [
            ("ToCountry", "US"), ("From", "+15551234567"), ("To", "+15557654321"), ("Body", "Necesito ayuda con mi pedido"),
            ("MessageSid", "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9"), ("NumMedia", "0"), ("AccountSid", "ACsim"),
        ]
        let encoded = form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&")
        let smsURL = "http://\(cluster.member("n2").api)\(smsHook)"
        let formHeaders = ["Content-Type": "application/x-www-form-urlencoded"]
        let wrong = try await cluster.request(
            "n2", "POST", smsHook, body: encoded, token: nil,
            headers: formHeaders.merging(["X-Twilio-Signature": TwilioWebhook.signature(url: smsURL, parameters: form, authToken: "nope")]) { $1 })
        XCTAssertEqual(wrong.status, 401)
        let inbound = try await cluster.request(
            "n2", "POST", smsHook, body: encoded, token: nil,
            headers: formHeaders.merging(["X-Twilio-Signature": TwilioWebhook.signature(url: smsURL, parameters: form, authToken: "sim-auth-token")]) { $1 })
        XCTAssertEqual(inbound.status, 200, "a signed Twilio webhook: \(inbound.json)")
        let smsConversation = try await cluster.request("n1", "GET", "/v1/conversations").json["items"] as? [[String: Any]]
        let smsId = try XCTUnwrap(smsConversation?.first { $0["channel"] as? String == "sms" }?["id"] as? String)
        let smsReply = try await cluster.request(
            "n1", "POST", "/v1/conversations/\(smsId)/messages", body: #"{"text":"Hola, soy Ana. ¿Cuál es tu número de pedido?"}"#)
        XCTAssertEqual(smsReply.status, 201, "\(smsReply.json)")
        try await cluster.waitUntil("Twilio got the SMS reply", seconds: 10) { await simulator.sent().count == 3 }
        let allSent = await simulator.sent()
        let twilio = try XCTUnwrap(allSent.last)
        XCTAssertEqual(twilio["provider"] as? String, "twilio")
        XCTAssertEqual([twilio["to"] as? String, twilio["from"] as? String], ["+15551234567", "+15557654321"])
        let status: [(String, String)] = [("MessageSid", twilio["id"] as? String ?? ""), ("MessageStatus", "delivered"), ("AccountSid", "ACsim")]
        let statusBody = status.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        try await cluster.waitUntil("the SMS reply is sent") {
            let message = try? await self.messages(cluster, "n1", smsId).last
            return (message?["delivery"] as? [String: Any])?["status"] as? String == "sent"
        }
        let callback = try await cluster.request(
            "n2", "POST", smsHook, body: statusBody, token: nil,
            headers: formHeaders.merging(["X-Twilio-Signature": TwilioWebhook.signature(url: smsURL, parameters: status, authToken: "sim-auth-token")]) { $1 })
        XCTAssertEqual(callback.status, 200)
        let delivered = try await messages(cluster, "n3", smsId).last
        XCTAssertEqual((delivered?["delivery"] as? [String: Any])?["status"] as? String, "delivered", "\(delivered ?? [:])")
    }

    func testRepliesSurviveTheLeaderBeingKilledAndAResumedSendIsCounted() async throws {
        let simulator = try ProviderSimulator()
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let (agentToken, inbox) = try await setUp(cluster, simulator: simulator)
        let webhook = "/v1/inboxes/\(inbox)/webhook"
        let hello = try await postSigned(cluster, "n1", webhook, Self.whatsAppMessage(id: "wamid.first", text: "hola"))
        XCTAssertEqual(hello.status, 200)
        let list = try await cluster.request("n1", "GET", "/v1/conversations")
        let conversationId = try XCTUnwrap((list.json["items"] as? [[String: Any]])?.first?["id"] as? String)

        // The provider holds the send; the leader dies while it waits for the answer.
        try await simulator.mode(#"{"hold": true}"#)
        let reply = try await cluster.request(
            "n1", "POST", "/v1/conversations/\(conversationId)/messages", body: #"{"text":"primera respuesta"}"#, token: agentToken)
        XCTAssertEqual(reply.status, 201, "\(reply.json)")
        try await cluster.waitUntil("the provider holds the send", seconds: 10) { await simulator.requests().count == 1 }
        let leaderNow = await cluster.leader(asking: "n1")
        let leader = try XCTUnwrap(leaderNow)
        cluster.kill9(leader)
        let survivors = cluster.members.map(\.id).filter { $0 != leader }
        try await simulator.mode(#"{"hold": false}"#)

        // While the cluster elects, more replies queue; the provider fails the first sends.
        try await simulator.mode(#"{"fail": 2, "status": 503}"#)
        var replies = 0
        try await cluster.waitUntil("a survivor leads") { survivors.contains(await cluster.leader(asking: survivors[0]) ?? "") }
        for number in 1...10 {
            let answer = try await cluster.request(
                survivors[number % 2], "POST", "/v1/conversations/\(conversationId)/messages", body: #"{"text":"respuesta \#(number)"}"#,
                token: agentToken)
            if answer.status == 201 { replies += 1 } else { XCTFail("reply \(number): \(answer.status) \(answer.json)") }
        }
        try await cluster.waitUntil("every reply is sent", seconds: 30) {
            let items = (try? await self.messages(cluster, survivors[0], conversationId)) ?? []
            let delivered = items.filter { ($0["delivery"] as? [String: Any])?["status"] as? String == "sent" }
            return delivered.count == 1 + replies
        }
        let texts = await simulator.sent().compactMap { $0["text"] as? String }
        for expected in ["primera respuesta"] + (1...10).map({ "respuesta \($0)" }) {
            XCTAssertGreaterThanOrEqual(texts.filter { $0 == expected }.count, 1, "'\(expected)' reached the provider: \(texts)")
        }
        XCTAssertEqual(texts.filter { $0 == "primera respuesta" }.count, 2, "the held send went out again from the new leader: \(texts)")
        XCTAssertEqual(texts.count, 12, "only the held send went twice: \(texts)")
        let first = try await messages(cluster, survivors[0], conversationId).first { $0["text"] as? String == "primera respuesta" }
        XCTAssertEqual((first?["delivery"] as? [String: Any])?["possibleDuplicate"] as? Bool, true, "visible on the message: \(first ?? [:])")
        let leaderAfter = await cluster.leader(asking: survivors[0])
        let newLeader = try XCTUnwrap(leaderAfter)
        let metrics = await cluster.text(newLeader, "/metrics")
        // At least the resumed send; a send the held simulator never answered counts too.
        let counted = metrics.split(separator: "\n").first { $0.hasPrefix("switchboard_outbox_possible_duplicates_total ") }.flatMap { Double($0.split(separator: " ")[1]) } ?? 0
        XCTAssertGreaterThanOrEqual(counted, 1, "counted on the new leader: \(metrics.split(separator: "\n").filter { $0.contains("outbox") })")
    }

    /// A multipart/form-data body as SendGrid's Inbound Parse posts it.
    private static func inboundParse(boundary: String, fields: [(String, String)], file: (String, String, String)?) -> String {
        var body = ""
        for (name, value) in fields {
            body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n"
        }
        if let (name, filename, content) = file {
            body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(filename)\"\r\nContent-Type: application/pdf\r\n\r\n\(content)\r\n"
        }
        return body + "--\(boundary)--\r\n"
    }

    func testEmailInThreadsAndRepliesLeaveThroughAnSMTPRelayOverSTARTTLS() async throws {
        let directory = NSTemporaryDirectory() + "switchboard-smtp-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ca = try LocalCA(directory: directory)
        _ = try ca.ensureCertificate(member: "relay", hosts: ["127.0.0.1"])
        let sink = directory + "/messages.jsonl"
        let relay = try ProviderSimulator(script: "smtp-sink.py", arguments: [
            "--out", sink, "--cert", ca.certificatePath("relay"), "--key", ca.keyPath("relay"), "--user", "relay-user", "--password", "relay-pass",
        ])
        let simulator = try ProviderSimulator()
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let (agentToken, _) = try await setUp(cluster, simulator: simulator)
        let created = try await cluster.request("n1", "POST", "/v1/inboxes", body: """
            {"name":"Soporte","channel":"email","email":{"address":"soporte@tienda.example","smtpHost":"127.0.0.1",
            "smtpPort":"\(relay.port)","smtpUsername":"relay-user","smtpPassword":"relay-pass","smtpCaFile":"\(ca.caCertificatePath)"}}
            """)
        XCTAssertEqual(created.status, 201, "\(created.json)")
        XCTAssertEqual(created.json["secrets"] as? [String], ["smtpPassword"])
        let token = try XCTUnwrap(created.json["token"] as? String, "the webhook's token is in the first answer: \(created.json)")
        let webhook = "/v1/inboxes/\(created.json["id"] as? String ?? "")/webhook"
        let shown = try await cluster.request("n2", "GET", "/v1/inboxes/\(created.json["id"] as? String ?? "")")
        XCTAssertNil(shown.json["token"], "never shown again")

        // A long e-mail (250,000 bytes of text) with an attachment, as Inbound Parse posts it.
        let long = String(repeating: "Detalle del pedido, línea larga. ", count: 7_600).prefix(249_990) + " FIN"
        let boundary = "xYzZY"
        let body = Self.inboundParse(
            boundary: boundary,
            fields: [
                ("headers", "Received: by mx.example\nMessage-ID: <CA+lucia-1@mail.example.com>\nSubject: Pedido 1234\nFrom: Lucía Pérez <lucia@example.com>"),
                ("from", "Lucía Pérez <Lucia@Example.com>"), ("to", "soporte@tienda.example"), ("subject", "Pedido 1234"),
                ("text", String(long)), ("attachments", "1"),
            ],
            file: ("attachment1", "factura.pdf", "%PDF-1.4 fake"))
        let headers = ["Content-Type": "multipart/form-data; boundary=\(boundary)"]
        let basic = { (password: String) in "Basic " + Data("sendgrid:\(password)".utf8).base64EncodedString() }
        let refused = try await cluster.request("n3", "POST", webhook, body: body, token: nil, headers: headers.merging(["Authorization": basic("wrong")]) { $1 })
        XCTAssertEqual(refused.status, 401)
        let accepted = try await cluster.request("n3", "POST", webhook, body: body, token: nil, headers: headers.merging(["Authorization": basic(token)]) { $1 })
        XCTAssertEqual(accepted.status, 200, "\(accepted.json)")
        XCTAssertEqual(accepted.json["received"] as? Int, 1)

        let list = try await cluster.request("n1", "GET", "/v1/conversations")
        let conversation = try XCTUnwrap((list.json["items"] as? [[String: Any]])?.first { $0["channel"] as? String == "email" }, "\(list.json)")
        let conversationId = try XCTUnwrap(conversation["id"] as? String)
        let stored = try await messages(cluster, "n2", conversationId)
        XCTAssertEqual((stored.first?["text"] as? String)?.utf8.count, long.utf8.count, "a long e-mail is kept whole")
        let kinds = (stored.first?["attachments"] as? [[String: Any]])?.compactMap { $0["kind"] as? String }
        XCTAssertEqual(kinds, ["email", "document"], "\(stored.first?["attachments"] ?? "none")")

        let reply = try await cluster.request(
            "n1", "POST", "/v1/conversations/\(conversationId)/messages", body: #"{"text":"Hola Lucía, tu pedido 1234 sale mañana."}"#,
            token: agentToken)
        XCTAssertEqual(reply.status, 201, "\(reply.json)")
        let replyId = try XCTUnwrap(reply.json["id"] as? String)
        try await cluster.waitUntil("the relay got the reply", seconds: 15) {
            ((try? String(contentsOfFile: sink, encoding: .utf8)) ?? "").contains("\n")
        }
        let line = try XCTUnwrap(try String(contentsOfFile: sink, encoding: .utf8).split(separator: "\n").first)
        let mail = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(mail["to"] as? [String], ["lucia@example.com"])
        XCTAssertEqual(mail["from"] as? String, "soporte@tienda.example")
        XCTAssertEqual(mail["tls"] as? Bool, true, "STARTTLS was used")
        XCTAssertEqual(mail["login"] as? String, "relay-user", "AUTH over TLS")
        let data = mail["data"] as? String ?? ""
        for header in ["In-Reply-To: <CA+lucia-1@mail.example.com>", "References: <CA+lucia-1@mail.example.com>", "Subject: Re: Pedido 1234",
                       "Message-ID: <\(replyId)@tienda.example>", "To: lucia@example.com"] {
            XCTAssertTrue(data.contains(header), "the reply carries '\(header)': \(data.prefix(800))")
        }
        let encodedBody = data.components(separatedBy: "\r\n\r\n").dropFirst().joined().replacingOccurrences(of: "\r\n", with: "")
        XCTAssertEqual(Data(base64Encoded: encodedBody).map { String(decoding: $0, as: UTF8.self) }, "Hola Lucía, tu pedido 1234 sale mañana.")
        try await cluster.waitUntil("the e-mail reply is sent") {
            let message = try? await self.messages(cluster, "n1", conversationId).first { $0["id"] as? String == replyId }
            return (message?["delivery"] as? [String: Any])?["status"] as? String == "sent"
        }

        // Lucía answers from her work address, In-Reply-To our reply: the same conversation.
        let answer = Self.inboundParse(
            boundary: boundary,
            fields: [
                ("headers", "Message-ID: <CA+lucia-2@work.example>\nIn-Reply-To: <\(replyId)@tienda.example>\nReferences: <CA+lucia-1@mail.example.com> <\(replyId)@tienda.example>"),
                ("from", "Lucía <lucia.perez@work.example>"), ("to", "soporte@tienda.example"), ("subject", "Re: Pedido 1234"), ("text", "¡Gracias!"),
            ],
            file: nil)
        let threaded = try await cluster.request("n2", "POST", webhook, body: answer, token: nil, headers: headers.merging(["Authorization": basic(token)]) { $1 })
        XCTAssertEqual(threaded.status, 200, "\(threaded.json)")
        let after = try await cluster.request("n1", "GET", "/v1/conversations")
        let emailConversations = (after.json["items"] as? [[String: Any]])?.filter { $0["channel"] as? String == "email" } ?? []
        XCTAssertEqual(emailConversations.count, 1, "threaded by In-Reply-To into the open conversation: \(emailConversations)")
        let last = try await messages(cluster, "n3", conversationId).last
        XCTAssertEqual(last?["text"] as? String, "¡Gracias!")
    }

    func testAWebChatVisitorTalksWithAnAgentLiveAndSeesOnlyTheirOwnConversation() async throws {
        let simulator = try ProviderSimulator()
        let cluster = ProcessCluster()
        defer { cluster.tearDown() }
        let (agentToken, _) = try await setUp(cluster, simulator: simulator)
        let created = try await cluster.request("n1", "POST", "/v1/inboxes", body: #"{"name":"Web","channel":"webchat","webchat":{"title":"Tienda"}}"#)
        XCTAssertEqual(created.status, 201, "\(created.json)")
        let inbox = try XCTUnwrap(created.json["id"] as? String)

        // The widget: one file from any node, callable from the business's own site.
        let widget = await cluster.text("n2", "/widget.js")
        XCTAssertTrue(widget.contains("data-inbox") && widget.contains("/v1/webchat/"), "the widget script: \(widget.prefix(200))")
        XCTAssertLessThan(widget.utf8.count, 32 << 10, "one small file")
        XCTAssertFalse(widget.contains("https://cdn") || widget.contains("<link"), "no external assets")
        let preflight = try await cluster.request(
            "n2", "OPTIONS", "/v1/webchat/\(inbox)/messages", token: nil,
            headers: ["Origin": "https://tienda.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"])
        XCTAssertEqual(preflight.status, 204)
        XCTAssertEqual(preflight.headers["Access-Control-Allow-Origin"] as? String, "*")

        let visitor = try await cluster.request("n2", "POST", "/v1/webchat/\(inbox)/visitors", token: nil)
        XCTAssertEqual(visitor.status, 201, "\(visitor.json)")
        XCTAssertEqual(visitor.json["title"] as? String, "Tienda")
        let token = try XCTUnwrap(visitor.json["token"] as? String)
        let first = try await cluster.request("n3", "POST", "/v1/webchat/\(inbox)/messages", body: #"{"text":"Hola, ¿tienen stock?","id":"w-1"}"#, token: token)
        XCTAssertEqual(first.status, 202, "\(first.json)")
        let conversationId = try XCTUnwrap(first.json["conversationId"] as? String)
        let retried = try await cluster.request("n1", "POST", "/v1/webchat/\(inbox)/messages", body: #"{"text":"Hola, ¿tienen stock?","id":"w-1"}"#, token: token)
        XCTAssertEqual(retried.json["duplicate"] as? Bool, true, "the widget's retry is stored once: \(retried.json)")

        // The visitor's socket, on another node than the agent's reply.
        let frames = EventTexts()
        let url = "ws://\(cluster.member("n3").api)/v1/webchat/\(inbox)/events?token=\(token)&conversation=\(conversationId)"
        let socket = Task {
            _ = try? await WebSocketClient.connect(url: url, logger: Logger(label: "visitor")) { inbound, _, _ in
                frames.opened()
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    if case .text(let text) = message { frames.add(text) }
                }
            }
        }
        defer { socket.cancel() }
        try await cluster.waitUntil("the visitor's socket is open", seconds: 10) { frames.isOpen }
        let note = try await cluster.request(
            "n1", "POST", "/v1/conversations/\(conversationId)/messages", body: #"{"text":"nota interna: cliente nuevo","private":true}"#, token: agentToken)
        XCTAssertEqual(note.status, 201, "\(note.json)")
        let reply = try await cluster.request(
            "n1", "POST", "/v1/conversations/\(conversationId)/messages", body: #"{"text":"¡Hola! Sí, hay stock."}"#, token: agentToken)
        XCTAssertEqual(reply.status, 201, "\(reply.json)")
        try await cluster.waitUntil("the reply reaches the visitor live", seconds: 5) { frames.all.contains { $0.contains("Sí, hay stock") } }
        let live = frames.all.joined(separator: "\n")
        XCTAssertTrue(live.contains(#""agentName":"Ana""#), "the visitor sees the agent's name: \(live)")
        XCTAssertFalse(live.contains("nota interna"), "a private note never reaches the visitor: \(live)")
        XCTAssertFalse(live.contains("ag_"), "no agent id: \(live)")

        // Reading the conversation again (the widget's resume) gives every public message once.
        let read = try await cluster.request("n2", "GET", "/v1/webchat/\(inbox)/conversation", token: token)
        let texts = (read.json["messages"] as? [[String: Any]])?.compactMap { $0["text"] as? String }
        XCTAssertEqual(texts, ["Hola, ¿tienen stock?", "¡Hola! Sí, hay stock."], "\(read.json)")

        // Another visitor sees none of it.
        let stranger = try await cluster.request("n1", "POST", "/v1/webchat/\(inbox)/visitors", token: nil)
        let strangerToken = try XCTUnwrap(stranger.json["token"] as? String)
        let nothing = try await cluster.request("n1", "GET", "/v1/webchat/\(inbox)/conversation", token: strangerToken)
        XCTAssertTrue(nothing.json["conversation"] is NSNull, "\(nothing.json)")
        let api = try XCTUnwrap(HostPort(cluster.member("n1").api))
        let refused = try Self.upgradeStatusLine(
            host: api.host, port: api.port, path: "/v1/webchat/\(inbox)/events?token=\(strangerToken)&conversation=\(conversationId)")
        XCTAssertTrue(refused.hasPrefix("HTTP/1.1 4"), "another visitor's conversation is refused before the upgrade: \(refused)")
        let mine = try Self.upgradeStatusLine(
            host: api.host, port: api.port, path: "/v1/webchat/\(inbox)/events?token=\(token)&conversation=\(conversationId)")
        XCTAssertTrue(mine.hasPrefix("HTTP/1.1 101"), "the visitor's own: \(mine)")

        // One address writing without pause is throttled (anyone may write in).
        var statuses: [Int] = []
        for _ in 0..<40 { statuses.append(try await cluster.request("n3", "POST", "/v1/webchat/\(inbox)/visitors", token: nil).status) }
        XCTAssertTrue(statuses.contains(429), "a burst from one address meets 429: \(statuses)")
        XCTAssertEqual(statuses.prefix(20).filter { $0 == 201 }.count, 20, "within the burst every write is taken: \(statuses)")
    }

    /// The status line a WebSocket upgrade request to `path` gets, over a plain TCP socket.
    static func upgradeStatusLine(host: String, port: Int, path: String) throws -> String {
        let socket = ProcessCluster.connectedSocket(host: host, port: port)
        guard socket >= 0 else { return "connect failed" }
        defer { close(socket) }
        let request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        _ = Array(request.utf8).withUnsafeBytes { send(socket, $0.baseAddress, $0.count, 0) }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.last != 10, recv(socket, &byte, 1, 0) == 1 { line.append(byte) }
        return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

private final class EventTexts: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = NSLock()
    private var texts: [String] = []
    private var open = false

    func opened() { lock.withLock { open = true } }
    var isOpen: Bool { lock.withLock { open } }
    func add(_ text: String) { lock.withLock { texts.append(text) } }
    var all: [String] { lock.withLock { texts } }
}
