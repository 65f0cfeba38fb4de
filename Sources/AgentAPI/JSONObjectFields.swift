/// A JSON object read in one pass over its bytes, keeping only its top-level members' kinds and
/// the text of its string members: what the channel webhook needs from a body, at a fraction of
/// `JSONDecoder`'s cost (it was 4 % of a loaded leader's CPU, on the busiest write path).
///
/// The whole document is checked against RFC 8259 (nested values are validated and skipped),
/// with Foundation's one leniency, a trailing comma in an object or array, so it accepts what
/// `JSONDecoder` accepted here before; strings must be valid UTF-8 and their `\u` escapes must
/// pair surrogates. A repeated key keeps its last value. Nesting is bounded.
struct JSONObjectFields {
    enum Value: Equatable {
        case string(String)
        case null
        /// Any other JSON value, by its kind ("number", "boolean", "object", "array").
        case other(String)
    }

    struct Invalid: Error, Equatable {
        /// Byte offset where the document stopped being JSON.
        let offset: Int
    }

    /// Arrays and objects nested deeper than this are refused.
    static let depthMax = 64

    private(set) var members: [String: Value] = [:]

    init(_ bytes: UnsafeRawBufferPointer) throws(Invalid) {
        var reader = Reader(bytes: bytes)
        reader.skipSpace()
        guard reader.take(UInt8(ascii: "{")) else { throw Invalid(offset: reader.offset) }
        reader.skipSpace()
        if !reader.take(UInt8(ascii: "}")) {
            var first = true
            repeat {
                reader.skipSpace()
                if !first, reader.peek == UInt8(ascii: "}") { break }  // a trailing comma
                first = false
                guard reader.peek == UInt8(ascii: "\"") else { throw Invalid(offset: reader.offset) }
                let key = try reader.string()
                reader.skipSpace()
                guard reader.take(UInt8(ascii: ":")) else { throw Invalid(offset: reader.offset) }
                reader.skipSpace()
                members[key] = try reader.value(depth: 1)
                reader.skipSpace()
            } while reader.take(UInt8(ascii: ","))
            guard reader.take(UInt8(ascii: "}")) else { throw Invalid(offset: reader.offset) }
        }
        reader.skipSpace()
        guard reader.atEnd else { throw Invalid(offset: reader.offset) }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var atEnd: Bool { offset >= bytes.count }
        var peek: UInt8? { atEnd ? nil : bytes[offset] }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            offset += 1
            return true
        }

        mutating func skipSpace() {
            while let byte = peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { offset += 1 }
        }

        /// A value; the caller keeps a string's text only at the top level.
        mutating func value(depth: Int) throws(Invalid) -> Value {
            guard let byte = peek else { throw Invalid(offset: offset) }
            switch byte {
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                try container(depth: depth)
                return .other(byte == UInt8(ascii: "{") ? "object" : "array")
            case UInt8(ascii: "t"): try literal("true"); return .other("boolean")
            case UInt8(ascii: "f"): try literal("false"); return .other("boolean")
            case UInt8(ascii: "n"): try literal("null"); return .null
            default: try number(); return .other("number")
            }
        }

        /// A nested object or array, validated and skipped.
        mutating func container(depth: Int) throws(Invalid) {
            guard depth < JSONObjectFields.depthMax else { throw Invalid(offset: offset) }
            let isObject = take(UInt8(ascii: "{"))
            if !isObject { offset += 1 }  // "["
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            skipSpace()
            if take(close) { return }
            var first = true
            repeat {
                skipSpace()
                if !first, peek == close { break }  // a trailing comma
                first = false
                if isObject {
                    guard peek == UInt8(ascii: "\"") else { throw Invalid(offset: offset) }
                    _ = try string()
                    skipSpace()
                    guard take(UInt8(ascii: ":")) else { throw Invalid(offset: offset) }
                    skipSpace()
                }
                _ = try value(depth: depth + 1)
                skipSpace()
            } while take(UInt8(ascii: ","))
            guard take(close) else { throw Invalid(offset: offset) }
        }

        mutating func literal(_ word: StaticString) throws(Invalid) {
            let count = word.utf8CodeUnitCount
            guard bytes.count - offset >= count else { throw Invalid(offset: offset) }
            for position in 0..<count where bytes[offset + position] != word.utf8Start[position] {
                throw Invalid(offset: offset + position)
            }
            offset += count
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and within a Double's range as
        /// Foundation requires (`-0.5E522` is refused by both): checked only for a number with an
        /// exponent or over 15 digits, the only ones that can overflow.
        mutating func number() throws(Invalid) {
            let start = offset
            _ = take(UInt8(ascii: "-"))
            if !take(UInt8(ascii: "0")) { try digits() }
            if take(UInt8(ascii: ".")) { try digits() }
            var exponent = false
            if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
                exponent = true
                if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
                try digits()
            }
            if exponent || offset - start > 15 {
                guard Double(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self))?.isFinite == true else {
                    throw Invalid(offset: start)
                }
            }
        }

        /// One or more decimal digits.
        mutating func digits() throws(Invalid) {
            let start = offset
            while let byte = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { offset += 1 }
            guard offset > start else { throw Invalid(offset: offset) }
        }

        /// A string starting at its opening quote; its text, escapes resolved.
        mutating func string() throws(Invalid) -> String {
            offset += 1  // the opening quote
            let start = offset
            // Fast path: no escape before the closing quote, so the text is the bytes themselves.
            while let byte = peek, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\"), byte >= 0x20 { offset += 1 }
            if peek == UInt8(ascii: "\"") {
                offset += 1
                return try text(UnsafeRawBufferPointer(rebasing: bytes[start..<offset - 1]), at: start)
            }
            var out = Array(bytes[start..<offset])
            while true {
                guard let byte = peek, byte >= 0x20 else { throw Invalid(offset: offset) }
                offset += 1
                switch byte {
                case UInt8(ascii: "\""):
                    guard let text = out.withUnsafeBytes({ try? text($0, at: start) }) else { throw Invalid(offset: start) }
                    return text
                case UInt8(ascii: "\\"):
                    try escape(into: &out)
                default:
                    out.append(byte)
                }
            }
        }

        /// The escape after a backslash, appended as UTF-8.
        mutating func escape(into out: inout [UInt8]) throws(Invalid) {
            guard let byte = peek else { throw Invalid(offset: offset) }
            offset += 1
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(byte)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var value = try hex4()
                if (0xD800..<0xDC00).contains(value) {
                    // A high surrogate must be followed by an escaped low one.
                    guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")) else { throw Invalid(offset: offset) }
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw Invalid(offset: offset) }
                    value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(value) {
                    throw Invalid(offset: offset)
                }
                UTF8.encode(Unicode.Scalar(value)!) { out.append($0) }
            default:
                throw Invalid(offset: offset - 1)
            }
        }

        mutating func hex4() throws(Invalid) -> UInt32 {
            guard bytes.count - offset >= 4 else { throw Invalid(offset: offset) }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[offset]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw Invalid(offset: offset)
                }
                value = value << 4 | UInt32(digit)
                offset += 1
            }
            return value
        }

        /// The bytes as a String, refused unless they are valid UTF-8. ASCII skips the generic
        /// validator, which looks up type metadata at run time on every call.
        func text(_ buffer: UnsafeRawBufferPointer, at start: Int) throws(Invalid) -> String {
            if !buffer.contains(where: { $0 >= 0x80 }) { return String(decoding: buffer, as: UTF8.self) }
            guard let text = String(validating: buffer, as: UTF8.self) else { throw Invalid(offset: start) }
            return text
        }
    }
}

extension JSONObjectFields {
    /// A required string member; a missing, null or non-string member is the same 400 the
    /// `Decodable` bodies give.
    func string(_ key: String) throws -> String {
        switch members[key] {
        case .string(let text): return text
        case nil: throw APIError.malformed("missing field '\(key)'", field: key)
        case .null: throw APIError.malformed("null where String is required", field: key)
        case .other: throw APIError.malformed("wrong type: expected String", field: key)
        }
    }

    /// An optional string member: absent or null is nil.
    func optionalString(_ key: String) throws -> String? {
        switch members[key] {
        case .string(let text): return text
        case nil, .null: return nil
        case .other: throw APIError.malformed("wrong type: expected String", field: key)
        }
    }
}
