/// A small, strict JSON reader (RFC 8259) for the providers' nested payloads: objects, arrays,
/// strings (escapes and surrogate pairs checked), numbers, booleans and null, at most
/// `depthMax` deep. Written by hand because `JSONDecoder` over Meta's nested, mostly optional
/// shapes cost 4.4 % of a loaded cluster's CPU (BENCHMARKS.md, "Real channels"); this reader
/// builds plain values in one pass.
enum JSONTree: Equatable {
    case object([String: JSONTree])
    case array([JSONTree])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    static let depthMax = 64

    struct Invalid: Error, Equatable {
        let offset: Int
        let reason: String
    }

    static func parse(_ bytes: [UInt8]) throws(Invalid) -> JSONTree {
        var reader = Reader(bytes: bytes)
        reader.skipSpace()
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.at == bytes.count else { throw Invalid(offset: reader.at, reason: "bytes after the value") }
        return value
    }

    subscript(key: String) -> JSONTree? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var number: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var array: [JSONTree]? {
        if case .array(let values) = self { return values }
        return nil
    }

    private struct Reader {
        let bytes: [UInt8]
        var at = 0

        mutating func skipSpace() {
            while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0A || bytes[at] == 0x0D || bytes[at] == 0x09 { at += 1 }
        }

        func fail(_ reason: String) -> Invalid { Invalid(offset: at, reason: reason) }

        mutating func value(depth: Int) throws(Invalid) -> JSONTree {
            guard depth < JSONTree.depthMax else { throw fail("nested deeper than \(JSONTree.depthMax)") }
            guard at < bytes.count else { throw fail("the value is missing") }
            switch bytes[at] {
            case UInt8(ascii: "{"):
                at += 1
                var members: [String: JSONTree] = [:]
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: "}") {
                    at += 1
                    return .object(members)
                }
                while true {
                    skipSpace()
                    guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw fail("an object key must be a string") }
                    let key = try string()
                    skipSpace()
                    guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw fail("':' expected") }
                    at += 1
                    skipSpace()
                    let member = try value(depth: depth + 1)
                    if members[key] == nil { members[key] = member }
                    skipSpace()
                    guard at < bytes.count else { throw fail("the object is not closed") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    guard bytes[at] == UInt8(ascii: "}") else { throw fail("',' or '}' expected") }
                    at += 1
                    return .object(members)
                }
            case UInt8(ascii: "["):
                at += 1
                var values: [JSONTree] = []
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: "]") {
                    at += 1
                    return .array(values)
                }
                while true {
                    skipSpace()
                    values.append(try value(depth: depth + 1))
                    skipSpace()
                    guard at < bytes.count else { throw fail("the array is not closed") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    guard bytes[at] == UInt8(ascii: "]") else { throw fail("',' or ']' expected") }
                    at += 1
                    return .array(values)
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            default:
                return .number(try number())
            }
        }

        mutating func literal(_ word: StaticString) throws(Invalid) {
            let count = word.utf8CodeUnitCount
            guard at + count <= bytes.count else { throw fail("unknown literal") }
            for offset in 0..<count where bytes[at + offset] != word.utf8Start[offset] { throw fail("unknown literal") }
            at += count
        }

        mutating func number() throws(Invalid) -> Double {
            let start = at
            if at < bytes.count, bytes[at] == UInt8(ascii: "-") { at += 1 }
            guard at < bytes.count, (0x30...0x39).contains(bytes[at]) else { throw fail("a value was expected") }
            if bytes[at] == 0x30 { at += 1 } else { while at < bytes.count, (0x30...0x39).contains(bytes[at]) { at += 1 } }
            if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
                at += 1
                guard at < bytes.count, (0x30...0x39).contains(bytes[at]) else { throw fail("a digit must follow '.'") }
                while at < bytes.count, (0x30...0x39).contains(bytes[at]) { at += 1 }
            }
            if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
                at += 1
                if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
                guard at < bytes.count, (0x30...0x39).contains(bytes[at]) else { throw fail("a digit must follow the exponent") }
                while at < bytes.count, (0x30...0x39).contains(bytes[at]) { at += 1 }
            }
            guard let value = Double(String(decoding: bytes[start..<at], as: UTF8.self)) else { throw fail("not a number") }
            return value
        }

        mutating func string() throws(Invalid) -> String {
            at += 1  // the opening quote
            var out: [UInt8] = []
            var plainStart = at
            while true {
                guard at < bytes.count else { throw fail("the string is not closed") }
                let byte = bytes[at]
                if byte == UInt8(ascii: "\"") {
                    out.append(contentsOf: bytes[plainStart..<at])
                    at += 1
                    guard let text = String(validating: out, as: UTF8.self) else { throw fail("the string is not UTF-8") }
                    return text
                }
                guard byte >= 0x20 else { throw fail("a control character in a string") }
                guard byte == UInt8(ascii: "\\") else { at += 1; continue }
                out.append(contentsOf: bytes[plainStart..<at])
                at += 1
                guard at < bytes.count else { throw fail("the escape is cut") }
                switch bytes[at] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(bytes[at])
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard at + 2 < bytes.count, bytes[at + 1] == UInt8(ascii: "\\"), bytes[at + 2] == UInt8(ascii: "u") else {
                            throw fail("a lone high surrogate")
                        }
                        at += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("a high surrogate without its low one") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw fail("a lone low surrogate")
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw fail("not a Unicode scalar") }
                    out.append(contentsOf: Array(String(Character(unicode)).utf8))
                default:
                    throw fail("an unknown escape")
                }
                at += 1
                plainStart = at
            }
        }

        /// Reads the 4 hex digits after `\u`, leaving `at` on the last one.
        mutating func hex4() throws(Invalid) -> UInt32 {
            guard at + 4 < bytes.count else { throw fail("the \\u escape is cut") }
            var value: UInt32 = 0
            for offset in 1...4 {
                let byte = bytes[at + offset]
                let digit: UInt32
                switch byte {
                case 0x30...0x39: digit = UInt32(byte - 0x30)
                case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
                default: throw fail("not a hex digit in \\u")
                }
                value = value << 4 | digit
            }
            at += 4
            return value
        }
    }
}
