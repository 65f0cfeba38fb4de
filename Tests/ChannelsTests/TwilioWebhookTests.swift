import Channels
import XCTest

final class TwilioWebhookTests: XCTestCase {
    /// Twilio's own example of request validation (its security documentation): this URL,
    /// these parameters and the auth token `12345` sign as `GvWf1cFY/Q7PnoempGyD5oXAezc=`.
    func testTheSignatureMatchesTwiliosDocumentedExample() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2"
        let parameters = [
            ("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675310"), ("Digits", "1234"), ("From", "+14158675310"), ("To", "+18005551212"),
        ]
        XCTAssertEqual(TwilioWebhook.signature(url: url, parameters: parameters, authToken: "12345"), "GvWf1cFY/Q7PnoempGyD5oXAezc=")
        XCTAssertTrue(TwilioWebhook.signatureIsValid("GvWf1cFY/Q7PnoempGyD5oXAezc=", url: url, parameters: parameters.reversed(), authToken: "12345"),
                      "the parameters' order does not matter")
        XCTAssertFalse(TwilioWebhook.signatureIsValid("GvWf1cFY/Q7PnoempGyD5oXAezc=", url: url + "&baz=3", parameters: parameters, authToken: "12345"))
        XCTAssertFalse(TwilioWebhook.signatureIsValid("GvWf1cFY/Q7PnoempGyD5oXAezc=", url: url, parameters: parameters, authToken: "54321"))
        XCTAssertFalse(TwilioWebhook.signatureIsValid(nil, url: url, parameters: parameters, authToken: "12345"))
    }

    func testAnInboundSMSWithMediaIsReadFromItsForm() throws {
        let body = "MessageSid=SM1f0e&From=%2B5491155550000&To=%2B15005550006&Body=Hola+%C2%BFc%C3%B3mo+est%C3%A1n%3F&NumMedia=1"
            + "&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2F2010-04-01%2FAccounts%2FAC1%2FMessages%2FSM1f0e%2FMedia%2FME1&MediaContentType0=image%2Fjpeg"
        let fields = try TwilioWebhook.form(Array(body.utf8))
        XCTAssertEqual(fields.first { $0.0 == "Body" }?.1, "Hola ¿cómo están?")
        let event = try TwilioWebhook.event(fields)
        XCTAssertEqual(event, .message(.init(
            sid: "SM1f0e", from: PhoneNumber("+5491155550000")!, to: PhoneNumber("+15005550006")!, body: "Hola ¿cómo están?",
            media: [.init(url: "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/SM1f0e/Media/ME1", contentType: "image/jpeg")])))
    }

    func testAStatusCallbackIsReadWithItsError() throws {
        let fields = try TwilioWebhook.form(Array("MessageSid=SM9&MessageStatus=undelivered&ErrorCode=30003&AccountSid=AC1".utf8))
        XCTAssertEqual(try TwilioWebhook.event(fields), .status(.init(sid: "SM9", status: "undelivered", errorCode: "30003")))
        XCTAssertEqual(try TwilioWebhook.event(TwilioWebhook.form(Array("SmsSid=SM8&SmsStatus=delivered&ErrorCode=".utf8))),
                       .status(.init(sid: "SM8", status: "delivered", errorCode: nil)))
    }

    func testHostileFormsThrowAndNeverTrap() {
        for body in ["a=%", "a=%4", "a=%zz", "a=%C3%28"] {
            XCTAssertThrowsError(try TwilioWebhook.form(Array(body.utf8)), "'\(body)' is refused")
        }
        XCTAssertThrowsError(try TwilioWebhook.form(Array(repeating: UInt8(ascii: "a"), count: TwilioWebhook.bodyBytesMax + 1)))
        XCTAssertThrowsError(try TwilioWebhook.form(Array((0...TwilioWebhook.fieldsMax).map { "f\($0)=1" }.joined(separator: "&").utf8)))
        let events: [(String, String)] = [
            ("From=%2B5491155550000&To=%2B15005550006&Body=hi", "no MessageSid"),
            ("MessageSid=SM1&From=abc&To=%2B15005550006&Body=hi", "a sender that is no number"),
            ("MessageSid=SM1&From=%2B5491155550000&To=%2B15005550006&Body=hi&NumMedia=11", "too many media"),
            ("MessageSid=SM1&From=%2B5491155550000&To=%2B15005550006&Body=hi&NumMedia=1", "a media without its URL"),
            ("MessageSid=SM1&From=%2B5491155550000&To=%2B15005550006&Body=hi&NumMedia=-1", "a negative count"),
        ]
        for (body, what) in events {
            XCTAssertThrowsError(try TwilioWebhook.event(TwilioWebhook.form(Array(body.utf8))), "\(what) is refused")
        }
    }
}
