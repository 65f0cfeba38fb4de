import ContactCenter
import XCTest

final class KeywordsTests: XCTestCase {
    func matches(_ text: String, _ keyword: String) -> Bool {
        Keywords.matches(textWords: Keywords.words(text), keywords: [keyword])
    }

    func testCaseAndAccentInsensitiveWholeWords() {
        for text in ["Factura", "factura", "FACTURA.", "mi fáctura por favor", "¿factura?"] {
            XCTAssertTrue(matches(text, "factura"), "'\(text)' should match 'factura'")
        }
        for text in ["facturación", "facturas", "refactura", ""] {
            XCTAssertFalse(matches(text, "factura"), "'\(text)' should not match 'factura'")
        }
        XCTAssertTrue(matches("Necesito FACTURACIÓN", "facturacion"), "accents fold on the keyword side too")
    }

    func testMultiWordKeywordsMatchConsecutiveWords() {
        XCTAssertTrue(matches("quiero HABLAR con alguien!", "hablar con alguien"))
        XCTAssertFalse(matches("hablar ya con alguien", "hablar con alguien"))
    }

    func testTimestampsRenderAsRFC3339() {
        XCTAssertEqual(Timestamp(milliseconds: 0).rfc3339, "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(Timestamp(milliseconds: 1_795_376_266_123).rfc3339, "2026-11-22T19:37:46.123Z")
        XCTAssertEqual(Timestamp(milliseconds: 951_782_400_000).rfc3339, "2000-02-29T00:00:00.000Z")
    }

    func testJSONIsDeterministicAndEscaped() {
        let value: JSONValue = .object(["b": .int(1), "a": .string("q\"\n\u{1}"), "c": .array([.null, .bool(true)])])
        XCTAssertEqual(value.serialized, #"{"a":"q\"\n\u0001","b":1,"c":[null,true]}"#)
    }
}
