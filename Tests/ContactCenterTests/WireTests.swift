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

    @Test func crc32cSlicedMatchesTheBytewiseDefinitionAtEveryLengthAndSeed() {
        // The bitwise definition, one byte at a time: the sliced loop must agree at every length
        // (all tail sizes), and a checksum seeded with a prefix's equals the whole's.
        func reference(_ bytes: [UInt8], seed: UInt32) -> UInt32 {
            var crc = ~seed
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            }
            return ~crc
        }
        let bytes = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 7) }
        for length in 0...bytes.count {
            let prefix = Array(bytes[0..<length])
            for seed: UInt32 in [0, 0xDEAD_BEEF] {
                #expect(CRC32C.checksum(prefix, seed: seed) == reference(prefix, seed: seed), "length \(length), seed \(seed)")
            }
            let split = length / 3
            #expect(CRC32C.checksum(prefix[split...], seed: CRC32C.checksum(prefix[..<split])) == CRC32C.checksum(prefix), "length \(length)")
        }
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
