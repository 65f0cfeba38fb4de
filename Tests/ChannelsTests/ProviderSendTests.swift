import Channels
import Foundation
import XCTest

/// The send requests as the providers document them, and what their answers mean.
final class ProviderSendTests: XCTestCase {
    func testAWhatsAppTextReplyIsTheCloudAPIsMessageObject() throws {
        let request = WhatsAppSend.request(
            apiBase: "https://graph.facebook.com/v21.0", phoneNumberId: "106540352242922", accessToken: "EAAG",
            to: "+5491155550000", text: "Hola \"Lucía\"\nGracias", templateJSON: nil)
        XCTAssertEqual(request.url, "https://graph.facebook.com/v21.0/106540352242922/messages")
        XCTAssertEqual(request.headers, [.init("Authorization", "Bearer EAAG"), .init("Content-Type", "application/json")])
        let body = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        XCTAssertEqual(body["messaging_product"] as? String, "whatsapp")
        XCTAssertEqual(body["to"] as? String, "5491155550000", "Meta takes the wa_id, digits without the plus")
        XCTAssertEqual(body["type"] as? String, "text")
        XCTAssertEqual((body["text"] as? [String: Any])?["body"] as? String, "Hola \"Lucía\"\nGracias")
    }

    func testATemplateReplyCarriesTheTemplateAsGiven() throws {
        let template = #"{"components":[],"language":{"code":"es_AR"},"name":"seguimiento"}"#
        let request = WhatsAppSend.request(
            apiBase: "http://sim/v21.0", phoneNumberId: "1", accessToken: "t", to: "+5491155550000", text: "[template seguimiento]",
            templateJSON: template)
        let body = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        XCTAssertEqual(body["type"] as? String, "template")
        XCTAssertEqual((body["template"] as? [String: Any])?["name"] as? String, "seguimiento")
        XCTAssertNil(body["text"])
    }

    func testWhatsAppAnswersAreSentRetriedOrFailed() {
        let ok = #"{"messaging_product":"whatsapp","contacts":[{"input":"549","wa_id":"549"}],"messages":[{"id":"wamid.HBgL"}]}"#
        XCTAssertEqual(WhatsAppSend.answer(status: 200, body: Array(ok.utf8)), .sent(id: "wamid.HBgL"))
        let throttled = #"{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,"fbtrace_id":"A"}}"#
        XCTAssertEqual(WhatsAppSend.answer(status: 400, body: Array(throttled.utf8)), .retry(reason: "130429: (#130429) Rate limit hit"))
        XCTAssertEqual(WhatsAppSend.answer(status: 503, body: []), .retry(reason: "HTTP 503: HTTP 503"))
        let token = #"{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190}}"#
        XCTAssertEqual(WhatsAppSend.answer(status: 401, body: Array(token.utf8)), .failed(reason: "190: Invalid OAuth access token."))
        XCTAssertEqual(WhatsAppSend.answer(status: 200, body: Array("{}".utf8)), .failed(reason: "HTTP 200 without messages[0].id"))
    }

    func testATwilioSendIsAFormWithBasicAuthAndTheStatusCallback() {
        let request = TwilioSend.request(
            apiBase: "https://api.twilio.com", accountSid: "AC123", authToken: "tok", from: "+15557654321", to: "+15551234567",
            text: "¿Tu pedido? 100% listo & enviado", statusCallback: "https://cc.example.com/v1/inboxes/ib_1/webhook")
        XCTAssertEqual(request.url, "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json")
        XCTAssertEqual(request.headers.first?.value, "Basic " + Data("AC123:tok".utf8).base64EncodedString())
        let form = String(decoding: request.body, as: UTF8.self)
        XCTAssertEqual(
            form,
            "To=%2B15551234567&From=%2B15557654321&Body=%C2%BFTu+pedido%3F+100%25+listo+%26+enviado"
                + "&StatusCallback=https%3A%2F%2Fcc.example.com%2Fv1%2Finboxes%2Fib_1%2Fwebhook")
        XCTAssertEqual(TwilioSend.answer(status: 201, body: Array(#"{"sid":"SM1","status":"queued"}"#.utf8)), .sent(id: "SM1"))
        XCTAssertEqual(
            TwilioSend.answer(status: 400, body: Array(#"{"code":21211,"message":"The 'To' number is not a valid phone number."}"#.utf8)),
            .failed(reason: "21211: The 'To' number is not a valid phone number."))
        XCTAssertEqual(TwilioSend.answer(status: 429, body: Array(#"{"code":20429,"message":"Too Many Requests"}"#.utf8)), .retry(reason: "20429: Too Many Requests"))
    }

    func testBackoffDoublesWithinJitterUpToTheCap() {
        let policy = RetryPolicy(base: .seconds(1), cap: .seconds(60), attemptsMax: 8)
        for attempt in 1...10 {
            let ceiling = min(60_000, 1000 << (attempt - 1))
            for random: UInt64 in [0, 1, 12345, UInt64.max] {
                let delay = policy.delay(afterAttempt: attempt, random: random)
                XCTAssertTrue(
                    (.milliseconds(ceiling / 2)...(.milliseconds(ceiling))).contains(delay),
                    "attempt \(attempt) waits \(delay), between \(ceiling / 2) and \(ceiling) ms")
            }
        }
    }
}
