/// A JSON value with a deterministic serializer: object keys are written sorted, so the same
/// value always yields the same bytes on every node (events are stored as this text).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
    /// An object whose members are already in ascending key order, written as they come: the
    /// shapes apply renders for every event (`Render`) skip building, hashing and sorting a
    /// dictionary. Made by `members(_:)`, which checks the order in debug builds.
    case sortedObject([Member])
    /// A string holding the timestamp in RFC 3339, written without an intermediate `String`.
    case time(Timestamp)
    /// JSON text this process rendered before (an attachment list kept with its message),
    /// written as it is.
    case raw(String)

    public struct Member: Sendable, Equatable {
        public let key: String
        public let value: JSONValue

        public init(_ key: String, _ value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    public static func int(_ value: Int) -> JSONValue { .int(Int64(value)) }

    public static func optional(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }

    public static func timestamp(_ value: Timestamp?) -> JSONValue { value.map(JSONValue.time) ?? .null }

    /// An object written in the order given, which must be ascending by key (byte order, as
    /// `.object` sorts), so both forms give the same bytes.
    public static func members(_ members: KeyValuePairs<String, JSONValue>) -> JSONValue {
        self.members(members.map { Member($0.key, $0.value) })
    }

    public static func members(_ members: [Member]) -> JSONValue {
        assert(zip(members, members.dropFirst()).allSatisfy { $0.key < $1.key }, "keys out of order: \(members.map(\.key))")
        return .sortedObject(members)
    }

    public static func strings(_ values: [String]) -> JSONValue { .array(values.map(JSONValue.string)) }

    /// The serialized text, compact, keys sorted.
    public var serialized: String {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the UTF-8 of the serialized text. Bytes, not `String` appends: apply renders an
    /// event or two for every command on every member, and this is most of what rendering costs.
    public func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .int(let value): out.append(contentsOf: String(value).utf8)  // a small string: no allocation
        case .string(let value): Self.writeString(value, into: &out)
        case .time(let value):
            out.append(UInt8(ascii: "\""))
            value.writeRFC3339(into: &out)
            out.append(UInt8(ascii: "\""))
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (position, value) in values.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                value.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members): Self.writeObject(members.sorted(by: { $0.key < $1.key }), into: &out)
        case .sortedObject(let members): Self.writeObject(members.lazy.map { (key: $0.key, value: $0.value) }, into: &out)
        case .raw(let text): out.append(contentsOf: text.utf8)
        }
    }

    private static func writeObject(_ members: some Sequence<(key: String, value: JSONValue)>, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        for member in members {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            writeString(member.key, into: &out)
            out.append(UInt8(ascii: ":"))
            member.value.write(into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A JSON string: the quote, the backslash and the control characters escaped, everything else (UTF-8
    /// included) as it is. Runs that need no escape (nearly all text) are copied whole.
    private static func writeString(_ value: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { bytes in
            var runStart = 0
            for (position, byte) in bytes.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<position]))
                runStart = position + 1
                out.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(byte)
                case UInt8(ascii: "\n"): out.append(UInt8(ascii: "n"))
                case UInt8(ascii: "\r"): out.append(UInt8(ascii: "r"))
                case UInt8(ascii: "\t"): out.append(UInt8(ascii: "t"))
                default:
                    out.append(contentsOf: "u00".utf8)
                    out.append(hexDigits[Int(byte >> 4)])
                    out.append(hexDigits[Int(byte & 0x0F)])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }
}
