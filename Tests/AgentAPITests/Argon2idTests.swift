@testable import NodeRuntime
import XCTest

/// Argon2id and BLAKE2b are written here (no package has Argon2): they must give exactly what
/// RFC 9106, RFC 7693 and the reference implementation give.
final class Argon2idTests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// Expected values from Python's hashlib.blake2b: empty input, one block, exactly one full
    /// block, one byte past it, several blocks, short outputs.
    func testBlake2bMatchesRFC7693() {
        let cases: [([UInt8], Int, String)] = [
            ([], 64, "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce"),
            (Array("abc".utf8), 64, "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"),
            (Array("abc".utf8), 32, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"),
            (Array(0..<128), 64, "2319e3789c47e2daa5fe807f61bec2a1a6537fa03f19ff32e87eecbfd64b7e0e8ccff439ac333b040f19b0c4ddd11a61e24ac1fe0f10a039806c5dcc0da3d115"),
            (Array(0..<129), 17, "78d432c02a5cae961c0b893036402457c5"),
            (Array(0...255) + Array(0...255), 64, "c59ab1095ca4579525338b6b74689ff234bc3fe9765fe26dfb04ddceaee0ab84dfd8967594cb261fcd88687f4454d80f718116c1b3c32f9f7e169357468cbe67"),
        ]
        for (input, length, expected) in cases {
            XCTAssertEqual(hex(Blake2b.hash(input, length: length)), expected, "BLAKE2b-\(length * 8) of \(input.count) bytes")
        }
    }

    /// RFC 9106 section 5.3: Argon2id, 32 KiB, 3 passes, 4 lanes, with secret and associated data.
    func testTheRFC9106TestVector() throws {
        let tag = try Argon2id.hash(
            password: [UInt8](repeating: 1, count: 32), salt: [UInt8](repeating: 2, count: 16), secret: [UInt8](repeating: 3, count: 8),
            associatedData: [UInt8](repeating: 4, count: 12), parameters: Argon2id.Parameters(memoryKiB: 32, passes: 3, lanes: 4, tagLength: 32))
        XCTAssertEqual(hex(tag), "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659")
    }

    /// Outputs of the reference implementation (argon2-cffi's hash_secret_raw, type ID,
    /// version 19), one lane, including OWASP's setting and the cheapest one.
    func testTheReferenceImplementationsOutputs() throws {
        let cases: [(String, String, Int, Int, String)] = [
            ("correct horse", "saltsaltsaltsalt", 64, 2, "e6374c2335a815bcd23a5ea4df06a2f6e5377fc2c3f879865d0828d6e84740f2"),
            ("", "0123456789abcdef", 8, 1, "d440eba67886df93d643dcb8a69b02af68c16d284cd6f68659553e245bf9efc0"),
            ("password", "somesaltsomesalt", 19_456, 2, "2b5dc4054886ec957ef59c73b661c54dd6fb274590b278f657c6d96aac8fa6d1"),
        ]
        for (password, salt, memory, passes, expected) in cases {
            let tag = try Argon2id.hash(
                password: Array(password.utf8), salt: Array(salt.utf8), parameters: Argon2id.Parameters(memoryKiB: memory, passes: passes))
            XCTAssertEqual(hex(tag), expected, "m=\(memory) t=\(passes) password '\(password)'")
        }
    }

    func testParametersOutOfBoundsThrow() {
        for parameters in [
            Argon2id.Parameters(memoryKiB: 7, passes: 1), Argon2id.Parameters(memoryKiB: 8, passes: 0),
            Argon2id.Parameters(memoryKiB: Argon2id.Parameters.memoryKiBMax + 1, passes: 1), Argon2id.Parameters(memoryKiB: 64, passes: 1, lanes: 0),
            Argon2id.Parameters(memoryKiB: 64, passes: 1, lanes: 17), Argon2id.Parameters(memoryKiB: 64, passes: 1, tagLength: 65),
        ] {
            XCTAssertThrowsError(try Argon2id.hash(password: [], salt: Array("saltsalt".utf8), parameters: parameters), "\(parameters)")
        }
        XCTAssertThrowsError(try Argon2id.hash(password: [], salt: Array("short".utf8), parameters: .init(memoryKiB: 8, passes: 1)), "a 5-byte salt")
    }
}
