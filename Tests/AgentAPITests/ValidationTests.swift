@testable import AgentAPI
import Foundation
import XCTest

/// The hand-written trimming must agree with Foundation's character sets, which it replaced on the
/// request path.
final class ValidationTests: XCTestCase {
    let samples = [
        "", " ", "\t", "\n", " \r\n\t ", "Ana", "  Ana  ", "\tAna Pérez\t", "\u{00A0}Ana\u{2003}", "\u{3000}名前\u{3000}",
        "Ana\n", "\nAna", "\u{0085}Ana\u{2028}", "\u{2029}", "a b", " 😀 ", "\u{000B}x\u{000C}", "e\u{0301} ",
    ]

    func testNameTrimmingMatchesFoundationWhitespaces() {
        for sample in samples {
            let expected = sample.trimmingCharacters(in: .whitespaces)
            XCTAssertEqual(Validate.trimming(sample, where: Validate.isSpace), expected, "sample \(sample.debugDescription)")
        }
    }

    func testTextBlanknessMatchesFoundationWhitespacesAndNewlines() {
        for sample in samples {
            let expected = sample.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
            XCTAssertEqual(sample.unicodeScalars.allSatisfy(Validate.isSpaceOrNewline), expected, "sample \(sample.debugDescription)")
        }
    }

    func testControlMatchesTheUnicodeGeneralCategoryForEveryScalarBelowU0800() {
        for value in UInt32(0)..<0x800 {
            let scalar = Unicode.Scalar(value)!
            XCTAssertEqual(Validate.isControl(scalar), scalar.properties.generalCategory == .control, "U+\(String(value, radix: 16))")
        }
    }

    func testNameRejectsBlankAndControlCharactersAndKeepsTheTrimmedValue() throws {
        XCTAssertEqual(try Validate.name("  Ana Pérez ", field: "name"), "Ana Pérez")
        XCTAssertThrowsError(try Validate.name(" \t ", field: "name"))
        XCTAssertThrowsError(try Validate.name("Ana\u{0007}", field: "name"))
        XCTAssertThrowsError(try Validate.text(" \n\u{2028} ", field: "text"))
        XCTAssertThrowsError(try Validate.name("Ana\u{007F}", field: "name"))
        XCTAssertThrowsError(try Validate.name("Ana\u{0085}x", field: "name"))
        XCTAssertEqual(try Validate.text(" hola\n", field: "text"), " hola\n")
    }
}
