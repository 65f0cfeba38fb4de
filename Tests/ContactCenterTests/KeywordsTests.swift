import Foundation
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

    func testYearsOutsideFourDigitsKeepTheirSignAndEveryDigit() {
        XCTAssertEqual(Timestamp(milliseconds: -62_167_219_200_000).rfc3339, "0000-01-01T00:00:00.000Z")
        XCTAssertEqual(Timestamp(milliseconds: -62_167_305_600_000).rfc3339, "-0001-12-31T00:00:00.000Z", "the sign before the padded year")
        XCTAssertEqual(Timestamp(milliseconds: 253_402_300_800_000).rfc3339, "10000-01-01T00:00:00.000Z", "a fifth digit, not cut")
    }

    func testJSONIsDeterministicAndEscaped() {
        let value: JSONValue = .object(["b": .int(1), "a": .string("q\"\n\u{1}"), "c": .array([.null, .bool(true)])])
        XCTAssertEqual(value.serialized, #"{"a":"q\"\n\u0001","b":1,"c":[null,true]}"#)
    }

    func testJSONRoundTripsThroughFoundationsParser() throws {
        let text = "Pérez 😀 \u{7f} \\ / \u{1f}\t\r\"end"
        let value: JSONValue = .object([
            "min": .int(Int64.min), "max": .int(Int64.max), "zero": .int(0), "negative": .int(-42), "text": .string(text),
            "nested": .object(["z": .array([.string(""), .object([:]), .array([])]), "é": .bool(false)]), "none": .null,
        ])
        let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(value.serialized.utf8)) as? [String: Any], value.serialized)
        XCTAssertEqual(parsed["min"] as? Int64, Int64.min, value.serialized)
        XCTAssertEqual(parsed["max"] as? Int64, Int64.max, value.serialized)
        XCTAssertEqual(parsed["negative"] as? Int, -42, value.serialized)
        XCTAssertEqual(parsed["zero"] as? Int, 0, value.serialized)
        XCTAssertEqual(parsed["text"] as? String, text, value.serialized)
        XCTAssertTrue(parsed["none"] is NSNull, value.serialized)
        let nested = try XCTUnwrap(parsed["nested"] as? [String: Any])
        XCTAssertEqual(nested["é"] as? Bool, false)
        XCTAssertEqual((nested["z"] as? [Any])?.count, 3)
        XCTAssertTrue(value.serialized.hasPrefix(#"{"max":"#), "keys sorted: \(value.serialized)")
    }

    func testRFC3339MatchesFoundationsCalendarAcrossTheYears() {
        // Whole seconds are exact in a Double, so Foundation's Gregorian calendar is the reference;
        // the milliseconds are checked by arithmetic.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let milliseconds = Int64.random(in: 0...253_402_300_799_999, using: &generator)  // 1970 to 9999-12-31
            let parts = calendar.dateComponents(
                [.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(milliseconds / 1000)))
            let expected = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.year!, parts.month!, parts.day!, parts.hour!, parts.minute!,
                parts.second!, Int(milliseconds % 1000))
            XCTAssertEqual(Timestamp(milliseconds: milliseconds).rfc3339, expected, "milliseconds \(milliseconds)")
        }
    }
}
