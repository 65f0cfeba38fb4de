import Testing
import Wire

/// The byte codec's bounds: lengths are checked before allocation, garbage is an error.
@Suite struct WireTests {
    @Test func lengthBeyondTheBoundIsRefusedBeforeAllocating() {
        var writer = ByteWriter()
        writer.write(UInt32(ByteReader.fieldBytesMax + 1))
        var reader = ByteReader(writer.bytes)
        #expect(throws: WireError.tooLarge(what: "string", size: ByteReader.fieldBytesMax + 1, max: ByteReader.fieldBytesMax)) {
            try reader.readString()
        }
    }

    @Test func truncatedStringSaysHowMuchWasMissing() {
        var writer = ByteWriter()
        writer.write("hello")
        var reader = ByteReader(Array(writer.bytes.dropLast(2)))
        #expect(throws: WireError.truncated(needed: 5, remaining: 3)) { try reader.readString() }
    }

    @Test func invalidUTF8AndBooleansAreErrors() {
        var reader = ByteReader([0, 0, 0, 2, 0xC3, 0x28])
        #expect(throws: WireError.invalid("string is not UTF-8")) { try reader.readString() }
        var boolean = ByteReader([7])
        #expect(throws: WireError.invalid("boolean byte 7")) { try boolean.readBool() }
    }

    @Test func crc32cMatchesTheStandardCheckValue() {
        // RFC 3720 / iSCSI check value for "123456789".
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test(arguments: [Int64.min, -1, 0, 1, Int64.max])
    func integersRoundTrip(value: Int64) throws {
        var writer = ByteWriter()
        writer.write(value)
        var reader = ByteReader(writer.bytes)
        #expect(try reader.readInt64() == value)
        #expect(reader.isAtEnd)
    }
}
