import Channels
import XCTest

final class WhatsAppWebhookTests: XCTestCase {
    /// A payload shaped as Meta's Cloud API documents it: a text from a customer with a profile
    /// name, an image with a caption, a voice note, a location, a button reply, and two statuses
    /// of messages the business sent, one failed.
    static let payload = #"""
        {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
          "messaging_product":"whatsapp",
          "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
          "contacts":[{"profile":{"name":"Lucía Pérez"},"wa_id":"5491155550000"}],
          "messages":[
            {"from":"5491155550000","id":"wamid.A1","timestamp":"1764800000","type":"text","text":{"body":"Hola, necesito ayuda"}},
            {"from":"5491155550000","id":"wamid.A2","timestamp":"1764800001","type":"image","image":{"caption":"la factura","mime_type":"image/jpeg","sha256":"abc","id":"1234567890"}},
            {"from":"5491155550000","id":"wamid.A3","timestamp":"1764800002","type":"audio","audio":{"mime_type":"audio/ogg; codecs=opus","sha256":"def","id":"2233","voice":true}},
            {"from":"5491155550000","id":"wamid.A4","timestamp":"1764800003","type":"location","location":{"latitude":-34.6037,"longitude":-58.3816,"name":"Obelisco","address":"Av. 9 de Julio"}},
            {"from":"5491155550000","id":"wamid.A5","timestamp":"1764800004","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"yes","title":"Sí"}}},
            {"from":"5491155550000","id":"wamid.A6","timestamp":"1764800005","type":"reaction","reaction":{"message_id":"wamid.B0","emoji":"👍"}}
          ],
          "statuses":[
            {"id":"wamid.B1","status":"delivered","timestamp":"1764800010","recipient_id":"5491155550000"},
            {"id":"wamid.B2","status":"failed","timestamp":"1764800011","recipient_id":"5491155550000",
             "errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message"}]}
          ]},"field":"messages"}]}]}
        """#

    func testMetasPayloadBecomesMessagesAndStatuses() throws {
        let events = try WhatsAppWebhook.decode(Array(Self.payload.utf8))
        let customer = try XCTUnwrap(PhoneNumber("+5491155550000"))
        guard events.count == 8, case .message(let text) = events[0] else { return XCTFail("8 events, a text first: \(events)") }
        XCTAssertEqual(text.id, "wamid.A1")
        XCTAssertEqual(text.from, customer, "wa_id and +E.164 are one number")
        XCTAssertEqual(text.profileName, "Lucía Pérez")
        XCTAssertEqual(text.phoneNumberId, "106540352242922")
        XCTAssertEqual(text.timestamp, 1_764_800_000)
        XCTAssertEqual(text.content, .text("Hola, necesito ayuda"))
        let contents = events.dropFirst().prefix(5).compactMap { event -> WhatsAppWebhook.Content? in
            if case .message(let message) = event { return message.content }
            return nil
        }
        XCTAssertEqual(contents, [
            .media(kind: "image", mediaId: "1234567890", mimeType: "image/jpeg", caption: "la factura", filename: nil),
            .media(kind: "voice", mediaId: "2233", mimeType: "audio/ogg; codecs=opus", caption: nil, filename: nil),
            .location(latitude: -34.6037, longitude: -58.3816, name: "Obelisco", address: "Av. 9 de Julio"),
            .interactive(id: "yes", title: "Sí"),
            .unsupported(type: "reaction"),
        ])
        XCTAssertEqual(events[6], .status(.init(messageId: "wamid.B1", status: "delivered", recipient: customer, timestamp: 1_764_800_010, error: nil)))
        XCTAssertEqual(events[7], .status(.init(messageId: "wamid.B2", status: "failed", recipient: customer, timestamp: 1_764_800_011, error: "131047: Re-engagement message")))
    }

    func testTheSignatureIsCheckedOnTheRawBody() {
        let body = Array(Self.payload.utf8)
        let signature = WhatsAppWebhook.signature(of: body, appSecret: "app-secret")
        XCTAssertTrue(WhatsAppWebhook.signatureIsValid(signature, body: body, appSecret: "app-secret"))
        XCTAssertTrue(WhatsAppWebhook.signatureIsValid(signature.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256="), body: body, appSecret: "app-secret"),
                      "hex digits in either case")
        var tampered = body
        tampered[tampered.count / 2] ^= 1
        XCTAssertFalse(WhatsAppWebhook.signatureIsValid(signature, body: tampered, appSecret: "app-secret"), "one flipped bit")
        XCTAssertFalse(WhatsAppWebhook.signatureIsValid(signature, body: body, appSecret: "other-secret"), "another app's secret")
        for header in [nil, "", "sha256=", "sha1=" + signature.dropFirst(7), "sha256=zz" + signature.dropFirst(9), String(signature.dropLast(2))] {
            XCTAssertFalse(WhatsAppWebhook.signatureIsValid(header, body: body, appSecret: "app-secret"), "header \(header ?? "nil") is refused")
        }
    }

    func testTheSubscriptionHandshakeAnswersTheChallengeOnlyForTheToken() {
        XCTAssertEqual(WhatsAppWebhook.challenge(mode: "subscribe", token: "t0k", challenge: "1158201444", verifyToken: "t0k"), "1158201444")
        XCTAssertNil(WhatsAppWebhook.challenge(mode: "subscribe", token: "wrong", challenge: "1", verifyToken: "t0k"))
        XCTAssertNil(WhatsAppWebhook.challenge(mode: "unsubscribe", token: "t0k", challenge: "1", verifyToken: "t0k"))
        XCTAssertNil(WhatsAppWebhook.challenge(mode: "subscribe", token: nil, challenge: "1", verifyToken: "t0k"))
        XCTAssertNil(WhatsAppWebhook.challenge(mode: "subscribe", token: "t0k", challenge: "", verifyToken: "t0k"))
    }

    func testHostilePayloadsThrowAndNeverTrap() {
        let cases: [(String, String)] = [
            ("", "empty"),
            ("[]", "not an object"),
            (#"{"object":"page","entry":[]}"#, "another product"),
            (#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"abc","id":"x","timestamp":"1","type":"text","text":{"body":"hi"}}]}}]}]}"#, "a sender that is no number"),
            (#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"5491155550000","id":"x","timestamp":"1","type":"text"}]}}]}]}"#, "a text without a body"),
            (#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"5491155550000","id":"x","timestamp":"1","type":"image"}]}}]}]}"#, "an image without its media"),
            (#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"x"}]}}]}]}"#, "a message without its sender"),
        ]
        for (body, what) in cases {
            XCTAssertThrowsError(try WhatsAppWebhook.decode(Array(body.utf8)), "\(what) is refused")
        }
        let many = "{\"object\":\"whatsapp_business_account\",\"entry\":[" + Array(repeating: "{}", count: WhatsAppWebhook.entriesMax + 1).joined(separator: ",") + "]}"
        XCTAssertThrowsError(try WhatsAppWebhook.decode(Array(many.utf8)), "more than \(WhatsAppWebhook.entriesMax) entries")
        XCTAssertEqual(try WhatsAppWebhook.decode(Array(#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"account_update","value":{}}]}]}"#.utf8)), [],
                       "a change of another field carries no message")
    }

    func testPhoneNumbersAreKeptInE164() {
        for text in ["5491155550000", "+5491155550000", "+54 9 11 5555-0000", "(+54) 911.5555.0000", "005491155550000"] {
            XCTAssertEqual(PhoneNumber(text)?.e164, "+5491155550000", "'\(text)'")
        }
        XCTAssertEqual(PhoneNumber("+5491155550000")?.digits, "5491155550000")
        for text in ["", "+", "123456", "+0123456789", "+1234567890123456", "54911abc", "54+911", "++5491155550000"] {
            XCTAssertNil(PhoneNumber(text), "'\(text)' is not E.164")
        }
    }
}
