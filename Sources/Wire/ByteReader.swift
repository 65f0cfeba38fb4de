/// Why a byte sequence could not be decoded. Decoding never traps on bad input.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(needed: Int, remaining: Int)
    case tooLarge(what: String, size: Int, max: Int)
    case invalid(String)

    public var description: String {
        switch self {
        case .truncated(let needed, let remaining): "truncated: needed \(needed) bytes, \(remaining) remaining"
        case .tooLarge(let what, let size, let max): "\(what) of \(size) exceeds the bound \(max)"
        case .invalid(let reason): "invalid: \(reason)"
        }
    }
}

/// Reads what `ByteWriter` wrote, checking every length against the remaining bytes and a bound.
public struct ByteReader: Sendable {
    /// Longest string or blob one field may hold.
    public static let fieldBytesMax = 1 << 20
    /// Most elements an encoded array or map may hold.
    public static let collectionCountMax = 10_000

    private let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset == bytes.count }

    private mutating func take(_ count: Int) throws(WireError) -> ArraySlice<UInt8> {
        guard count <= remaining else { throw .truncated(needed: count, remaining: remaining) }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func readUInt8() throws(WireError) -> UInt8 { try take(1).first! }

    public mutating func readBool() throws(WireError) -> Bool {
        switch try readUInt8() {
        case 0: return false
        case 1: return true
        case let other: throw .invalid("boolean byte \(other)")
        }
    }

    public mutating func readUInt16() throws(WireError) -> UInt16 {
        try take(2).reduce(0) { $0 << 8 | UInt16($1) }
    }

    public mutating func readUInt32() throws(WireError) -> UInt32 {
        try take(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    public mutating func readUInt64() throws(WireError) -> UInt64 {
        try take(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    public mutating func readInt64() throws(WireError) -> Int64 { Int64(bitPattern: try readUInt64()) }

    /// Largest term, index, round or incarnation a peer may send (2^62). Real values are far
    /// below it; bounding them here keeps every `+ 1`, sum and conversion to `Int64` done on
    /// them afterwards from overflowing, whatever a peer sends.
    public static let counterMax: UInt64 = 1 << 62

    /// A term, index, round or incarnation: at most `counterMax`, else the frame is malformed.
    public mutating func readCounter(_ what: String) throws(WireError) -> UInt64 {
        let value = try readUInt64()
        guard value <= Self.counterMax else { throw .invalid("\(what) \(value) exceeds \(Self.counterMax)") }
        return value
    }

    public mutating func readInt() throws(WireError) -> Int { Int(try readInt64()) }

    private mutating func readLength(_ what: String, max: Int) throws(WireError) -> Int {
        let length = Int(try readUInt32())
        guard length <= max else { throw .tooLarge(what: what, size: length, max: max) }
        return length
    }

    /// Reads `count` raw bytes (a length the caller framed and bounded).
    public mutating func readBytes(_ count: Int) throws(WireError) -> [UInt8] { Array(try take(count)) }

    public mutating func readString() throws(WireError) -> String {
        let raw = try take(try readLength("string", max: Self.fieldBytesMax))
        guard let string = String(validating: raw, as: UTF8.self) else { throw .invalid("string is not UTF-8") }
        return string
    }

    public mutating func readOptionalString() throws(WireError) -> String? {
        try readBool() ? try readString() : nil
    }

    public mutating func readOptionalInt64() throws(WireError) -> Int64? {
        try readBool() ? try readInt64() : nil
    }

    public mutating func readStrings() throws(WireError) -> [String] {
        let count = try readLength("array", max: Self.collectionCountMax)
        var values: [String] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try readString()) }
        return values
    }

    public mutating func readStringMap() throws(WireError) -> [String: String] {
        let count = try readLength("map", max: Self.collectionCountMax)
        var map: [String: String] = [:]
        for _ in 0..<count {
            let key = try readString()
            map[key] = try readString()
        }
        return map
    }

    public mutating func readOptionalStringMap() throws(WireError) -> [String: String?] {
        let count = try readLength("map", max: Self.collectionCountMax)
        var map: [String: String?] = [:]
        for _ in 0..<count {
            let key = try readString()
            map[key] = .some(try readOptionalString())
        }
        return map
    }

    /// Throws unless every byte was consumed: trailing garbage means a codec mismatch.
    public func expectEnd() throws(WireError) {
        guard isAtEnd else { throw .invalid("\(remaining) trailing bytes") }
    }
}
