@testable import AgentAPI
import Foundation
import RaftCore
import Seeded
import XCTest

/// `JSONObjectFields` replaced `JSONDecoder` on the webhook path: it must accept exactly the
/// objects Foundation's parser accepts and read the same strings from them.
final class JSONObjectFieldsTests: XCTestCase {
    func parse(_ text: [UInt8]) -> JSONObjectFields? {
        text.withUnsafeBytes { try? JSONObjectFields($0) }
    }

    /// What Foundation makes of the document: nil when it refuses it or it is not an object.
    func foundation(_ text: [UInt8]) -> [String: JSONObjectFields.Value]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text)) as? [String: Any] else { return nil }
        return object.mapValues { value in
            switch value {
            case let text as String: .string(text)
            case is NSNull: .null
            case is [Any]: .other("array")
            case is [String: Any]: .other("object")
            default: .other("scalar")
            }
        }
    }

    func assertAgrees(_ text: [UInt8], _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
        let ours = parse(text)?.members
        let theirs = foundation(text)
        // Foundation gives booleans and numbers both as NSNumber: compare them as one kind.
        func kinds(_ members: [String: JSONObjectFields.Value]?) -> [String: JSONObjectFields.Value]? {
            members?.mapValues { if case .other(let kind) = $0, kind == "boolean" || kind == "number" { return .other("scalar") }; return $0 }
        }
        XCTAssertEqual(kinds(ours), kinds(theirs), "\(message()) document \(String(decoding: text, as: UTF8.self).debugDescription) bytes \(text)", file: file, line: line)
    }

    func testHandWrittenDocuments() {
        let documents = [
            #"{"from":"+5491155","text":"Hola","externalId":"wamid.1"}"#,
            #" { "a" : "b" , "c" : null , "d" : 1.5e-3 , "e" : [1, {"x": [true, false, null]}], "f": {} , "g": [] } "#,
            #"{"esc":"\"\\\/\b\f\n\r\t\u00e9\u0000\ud83d\ude00"}"#,
            #"{"lone":"\ud83d"}"#, #"{"lone":"\ude00"}"#, #"{"bad":"\x"}"#, #"{"ctl":"a"# + "\u{01}" + #""}"#,
            #"{"n":-0}"#, #"{"n":01}"#, #"{"n":1.}"#, #"{"n":.5}"#, #"{"n":1e}"#, #"{"n":-}"#, #"{"n":1E+2}"#,
            #"{"a":"b",}"#, #"{"a" "b"}"#, #"{a:"b"}"#, #"{"a":"b"} x"#, #"{"a":"b"}}"#, "{", "}", "", " ", "[]", #""s""#, "null",
            #"{"a":tru}"#, #"{"a":nulls}"#, #"{"a":[1,]}"#, #"{"a":[,1]}"#, #"{"a":{"b"}}"#, #"{"dup":"1","dup":"2"}"#,
            #"{"unicode":"Pérez 名前 😀"}"#, "{\"tab\":\t\"x\"\n}",
        ]
        for document in documents { assertAgrees(Array(document.utf8)) }
        assertAgrees([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D], "invalid UTF-8 inside a string")
        assertAgrees(Array(String(repeating: "[", count: 70).utf8), "deep nesting")
    }

    func testTheWebhookFieldsAndTheirErrors() throws {
        let body = try XCTUnwrap(parse(Array(#"{"from":"+1","text":"hi\nthere","externalId":"e","name":null,"n":3}"#.utf8)))
        XCTAssertEqual(try body.string("text"), "hi\nthere")
        XCTAssertNil(try body.optionalString("name"))
        XCTAssertNil(try body.optionalString("absent"))
        XCTAssertThrowsError(try body.string("absent")) { XCTAssertEqual(($0 as? APIError)?.message, "missing field 'absent'") }
        XCTAssertThrowsError(try body.string("name")) { XCTAssertEqual(($0 as? APIError)?.message, "null where String is required") }
        XCTAssertThrowsError(try body.string("n")) { XCTAssertEqual(($0 as? APIError)?.message, "wrong type: expected String") }
        XCTAssertThrowsError(try body.optionalString("n")) { XCTAssertEqual(($0 as? APIError)?.message, "wrong type: expected String") }
    }

    /// A number past a Double's range is refused, as Foundation refuses it (a random mutation,
    /// seed 3942904489407787001, once made one).
    func testNumbersOutsideADoublesRangeAgreeWithFoundation() {
        for document in [#"{"text":-0.5E522}"#, #"{"text":1e308}"#, #"{"text":1e-400}"#, #"{"k":""# + String(repeating: "9", count: 400) + "}"] {
            assertAgrees(Array(document.utf8), document)
        }
    }

    /// Random documents, then the same with random bytes deleted, inserted or replaced.
    func testRandomDocumentsAndTheirMutationsAgreeWithFoundation() {
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(seed: seed)
        let alphabet = Array(#"{}[]":,\ "abcu0123456789.eE+-tfnrlsu\"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF, 0x0A]
        for round in 0..<3000 {
            var document = Array(Self.object(&random, depth: 0).utf8)
            let mutations = round % 3 == 0 ? 0 : Int(random.next() % 3) + 1
            for _ in 0..<mutations where !document.isEmpty {
                let position = Int(random.next() % UInt64(document.count))
                switch random.next() % 3 {
                case 0: document.remove(at: position)
                case 1: document.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: position)
                default: document[position] = alphabet[Int(random.next() % UInt64(alphabet.count))]
                }
            }
            assertAgrees(document, "seed \(seed) round \(round)")
        }
    }

    static func space(_ random: inout SplitMix64) -> String { ["", "", " ", "\n\t ", "\r\n"][Int(random.next() % 5)] }

    static func string(_ random: inout SplitMix64) -> String {
        let pieces = ["a", "Z", "é", "名", "😀", "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u00e9", "\\u0041", "\\ud83d\\ude00", " ", "\\b"]
        return "\"" + (0..<Int(random.next() % 6)).map { _ in pieces[Int(random.next() % UInt64(pieces.count))] }.joined() + "\""
    }

    static func value(_ random: inout SplitMix64, depth: Int) -> String {
        switch random.next() % (depth < 3 ? 8 : 6) {
        case 0, 1: return string(&random)
        case 2: return ["0", "-12", "3.25", "1e9", "-0.5E-2", "42"][Int(random.next() % 6)]
        case 3: return ["true", "false"][Int(random.next() % 2)]
        case 4, 5: return "null"
        case 6: return object(&random, depth: depth + 1)
        default:
            let items = (0..<Int(random.next() % 4)).map { _ in space(&random) + value(&random, depth: depth + 1) + space(&random) }
            return "[" + items.joined(separator: ",") + "]"
        }
    }

    static func object(_ random: inout SplitMix64, depth: Int) -> String {
        let keys = ["from", "text", "externalId", "name", "k", "é"]
        // Distinct keys: which of two equal keys a parser keeps is not part of JSON.
        let chosen = keys.filter { _ in random.next() % 2 == 0 }
        let members = chosen.map { space(&random) + "\"\($0)\"" + space(&random) + ":" + space(&random) + value(&random, depth: depth) + space(&random) }
        return space(&random) + "{" + members.joined(separator: ",") + "}" + space(&random)
    }
}
