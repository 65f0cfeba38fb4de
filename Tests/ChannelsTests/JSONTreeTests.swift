import Foundation
import XCTest

@testable import Channels

/// The providers' JSON reader against Foundation's parser: the same values for valid documents,
/// a refusal (never a trap) for invalid ones.
final class JSONTreeTests: XCTestCase {
    func testValidDocumentsReadAsFoundationReadsThem() throws {
        let documents = [
            #"{"a":"x","b":[1,2.5,-3e2,0],"c":{"d":null,"e":true,"f":false},"g":"\u00e9\ud83d\ude00\n\"\\\/"}"#,
            #"  [ {} , [] , "" , 0.0 ]  "#, #""plain""#, "123", #"{"dup":1,"dup":2}"#,
        ]
        for document in documents {
            let tree = try JSONTree.parse(Array(document.utf8))
            let foundation = try JSONSerialization.jsonObject(with: Data(document.utf8), options: [.fragmentsAllowed])
            XCTAssertTrue(Self.same(tree, foundation), "\(document): \(tree) against \(foundation)")
        }
    }

    func testInvalidDocumentsAreRefused() {
        let invalid = [
            "", "{", "[1,]", #"{"a":1,}"#, #"{"a" 1}"#, "tru", "01", "1.", "-", "1e", #""\x""#, #""\ud800""#, #""\udc00""#,
            "\"a\u{01}b\"", #"{"a":1} x"#, "[" + String(repeating: "[", count: 100) + String(repeating: "]", count: 101),
        ]
        for document in invalid {
            XCTAssertThrowsError(try JSONTree.parse(Array(document.utf8)), "\(document.debugDescription) was read")
        }
        XCTAssertThrowsError(try JSONTree.parse([0x22, 0xFF, 0x22]), "invalid UTF-8 in a string")
    }

    private static func same(_ tree: JSONTree, _ value: Any) -> Bool {
        switch tree {
        case .null: return value is NSNull
        case .bool(let flag): return (value as? Bool) == flag
        case .number(let number): return (value as? NSNumber)?.doubleValue == number
        case .string(let text): return (value as? String) == text
        case .array(let values):
            guard let other = value as? [Any], other.count == values.count else { return false }
            return zip(values, other).allSatisfy { same($0, $1) }
        case .object(let members):
            guard let other = value as? [String: Any], other.count == members.count else { return false }
            // Foundation keeps the last of duplicate keys, this reader the first: both one key.
            return members.allSatisfy { key, member in other[key].map { key == "dup" || same(member, $0) } ?? false }
        }
    }
}
