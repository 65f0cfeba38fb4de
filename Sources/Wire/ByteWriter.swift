/// Appends fixed-width big-endian integers, length-prefixed strings and byte blobs.
///
/// Every multi-byte value is big-endian; strings carry a `UInt32` length prefix.
/// The writer never fails: bounds are enforced by the reader on the other side.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ value: UInt8) { bytes.append(value) }

    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func write(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    public mutating func write(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    public mutating func write(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    public mutating func write(_ value: Int64) { write(UInt64(bitPattern: value)) }

    /// Writes an `Int` as a signed 64-bit value.
    public mutating func write(_ value: Int) { write(Int64(value)) }

    public mutating func write(_ value: String) {
        let utf8 = Array(value.utf8)
        write(UInt32(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    public mutating func write(_ value: String?) {
        guard let value else { write(false); return }
        write(true)
        write(value)
    }

    public mutating func write(_ value: Int64?) {
        guard let value else { write(false); return }
        write(true)
        write(value)
    }

    public mutating func write(_ values: [String]) {
        write(UInt32(values.count))
        for value in values { write(value) }
    }

    /// Writes a string map sorted by key, so equal maps encode to equal bytes.
    public mutating func write(_ map: [String: String]) {
        write(UInt32(map.count))
        for key in map.keys.sorted() {
            write(key)
            write(map[key]!)
        }
    }

    /// Writes a map whose values may be nil (a nil value means "delete this key").
    public mutating func write(_ map: [String: String?]) {
        write(UInt32(map.count))
        for key in map.keys.sorted() {
            write(key)
            write(map[key]!)
        }
    }
}

extension ByteWriter {
    /// Appends bytes with no length prefix (the caller framed them).
    public mutating func writeRaw(_ value: [UInt8]) { bytes.append(contentsOf: value) }
}
