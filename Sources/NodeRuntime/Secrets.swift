import ContactCenter
import Crypto
import Foundation
import Wire
import Synchronization
import _CryptoExtras

/// Fresh ids, bearer tokens and password hashes: everything random or slow is resolved here, on
/// the node that takes a request, before a command is proposed.
public enum Secrets {
    private static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz".utf8)

    /// A new opaque id such as `cv_01jd3k9x2m7q4w8e5r6t`: 50 bits of milliseconds since the
    /// epoch, then 50 random bits, in Crockford-style base32.
    ///
    /// Time first makes new ids sort after older ones, so inserts land at the right edge of each
    /// primary-key B-tree instead of on random pages: a commit rewrites a few pages, not one per
    /// row (measured: random ids made SQLite's WAL writes the biggest cost of apply).
    public static func id(_ prefix: String) -> String {
        let milliseconds = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        let random = idRandomness.next()
        // Bytes, then one String: every request takes up to three ids (1-2 % of a leader's CPU
        // when built a Character at a time).
        var bytes: [UInt8] = []
        bytes.reserveCapacity(prefix.utf8.count + 21)
        bytes.append(contentsOf: prefix.utf8)
        bytes.append(UInt8(ascii: "_"))
        for shift in stride(from: 45, through: 0, by: -5) { bytes.append(alphabet[Int((milliseconds >> UInt64(shift)) & 31)]) }
        for shift in stride(from: 45, through: 0, by: -5) { bytes.append(alphabet[Int((random >> UInt64(shift)) & 31)]) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Random words for ids, drawn `IDRandomness.wordsPerDraw` at a time from the kernel (glibc's
    /// `arc4random_buf` is `getrandom`): one system call per 32 ids instead of one per id, and
    /// every inbound message takes three.
    private static let idRandomness = IDRandomness()

    private final class IDRandomness: Sendable {
        static let wordsPerDraw = 32
        private let pool = Mutex<(words: [UInt64], used: Int)>(([UInt64](repeating: 0, count: wordsPerDraw), wordsPerDraw))

        func next() -> UInt64 {
            pool.withLock { pool in
                if pool.used == pool.words.count {
                    pool.words.withUnsafeMutableBytes { arc4random_buf($0.baseAddress!, $0.count) }
                    pool.used = 0
                }
                defer { pool.used += 1 }
                return pool.words[pool.used]
            }
        }
    }

    /// A bearer token: 256 random bits, hex.
    public static func token() -> String {
        hex(randomBytes(32))
    }

    /// `count` bytes from the system's secure generator.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in generator.next() as UInt8 }
    }

    /// SHA-256 of a token, hex: the only form in which tokens are stored or replicated.
    public static func tokenHash(_ token: String) -> String {
        var token = token
        // On every request: the token's own bytes, hashed and written as hex without copies.
        return token.withUTF8 { bytes in
            SHA256.hash(data: UnsafeRawBufferPointer(bytes)).withUnsafeBytes { digest in hex(digest) }
        }
    }

    /// Lowercase hex; on the request path (every token check).
    public static func hex(_ bytes: some Collection<UInt8>) -> String { Hex.encode(bytes) }

    /// Compares two strings in time independent of where they differ.
    public static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        guard lhs.utf8.count == rhs.utf8.count else { return false }
        return zip(lhs.utf8, rhs.utf8).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// Password hashes as OWASP's Password Storage Cheat Sheet recommends first: Argon2id with 19 MiB
/// of memory, 2 passes and 1 lane, stored in the PHC string format other libraries read
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`, unpadded base64). Hashes written before, by
/// PBKDF2 (`pbkdf2-sha256$<rounds>$<salt hex>$<hash hex>`, and `pbkdf2-sha512`), still verify;
/// `needsRehash` says when a login should store a fresh hash (another scheme, or less memory or
/// fewer passes than this node's cost).
public struct PasswordHasher: Sendable {
    /// Argon2id's cost.
    public struct Cost: Sendable, Equatable, CustomStringConvertible {
        public var memoryKiB: Int
        public var passes: Int
        public init(memoryKiB: Int, passes: Int) {
            self.memoryKiB = memoryKiB
            self.passes = passes
        }
        /// OWASP's first Argon2id setting: m = 19 MiB, t = 2, p = 1.
        public static let owasp = Cost(memoryKiB: 19_456, passes: 2)
        public var description: String { "Argon2id m=\(memoryKiB) KiB, t=\(passes), p=1" }
        var parameters: Argon2id.Parameters { Argon2id.Parameters(memoryKiB: memoryKiB, passes: passes, lanes: 1, tagLength: 32) }
        public var isValid: Bool { parameters.isValid }
    }

    /// PBKDF2 schemes of hashes written before Argon2id; verified, then upgraded at login.
    public enum LegacyScheme: String, Sendable, CaseIterable {
        case pbkdf2SHA256 = "pbkdf2-sha256"
        case pbkdf2SHA512 = "pbkdf2-sha512"

        var function: KDF.Insecure.PBKDF2.HashFunction { self == .pbkdf2SHA512 ? .sha512 : .sha256 }
        var outputBytes: Int { self == .pbkdf2SHA512 ? 64 : 32 }
    }

    /// Rounds a stored PBKDF2 hash may name; more is refused unread (a hash is data).
    public static let storedRoundsMax = 10_000_000
    public let cost: Cost

    public init(cost: Cost = .owasp) {
        precondition(cost.isValid, "invalid password hashing cost \(cost)")
        self.cost = cost
    }

    public struct HashingFailed: Error {}

    public func hash(_ password: String) throws -> String {
        let salt = Secrets.randomBytes(16)
        let tag = try Argon2id.hash(password: Array(password.utf8), salt: salt, parameters: cost.parameters)
        return Self.phc(cost: cost, salt: salt, tag: tag)
    }

    /// A well-formed hash of no password, for an unknown email: verifying against it costs what a
    /// real check costs (so timing does not reveal which emails exist) and never succeeds.
    public func decoy() -> String {
        Self.phc(cost: cost, salt: Secrets.randomBytes(16), tag: Secrets.randomBytes(32))
    }

    public func verify(_ password: String, against stored: String) -> Bool {
        if let parsed = Self.parseArgon2id(stored) {
            guard let tag = try? Argon2id.hash(password: Array(password.utf8), salt: parsed.salt, parameters: parsed.parameters) else {
                return false
            }
            return Secrets.constantTimeEquals(Self.hex(tag), Self.hex(parsed.tag))
        }
        guard let parsed = Self.parsePBKDF2(stored),
            let derived = Self.derive(password, salt: parsed.salt, scheme: parsed.scheme, rounds: parsed.rounds)
        else { return false }
        return Secrets.constantTimeEquals(derived, parsed.hash)
    }

    /// True when `stored` is readable but weaker than what this hasher writes: PBKDF2, or Argon2id
    /// with less memory or fewer passes. (A costlier hash is kept: lowering the cost never
    /// weakens stored hashes.) Unreadable hashes are not rehashed: they never verify.
    public func needsRehash(_ stored: String) -> Bool {
        if let parsed = Self.parseArgon2id(stored) {
            return parsed.parameters.memoryKiB < cost.memoryKiB || parsed.parameters.passes < cost.passes
        }
        return Self.parsePBKDF2(stored) != nil
    }

    /// A PBKDF2 hash as written before Argon2id: for tests and for importing agents from systems
    /// that store PBKDF2.
    public static func legacyHash(_ password: String, scheme: LegacyScheme, rounds: Int) throws -> String {
        let salt = Secrets.randomBytes(16)
        guard (1...storedRoundsMax).contains(rounds), let derived = derive(password, salt: salt, scheme: scheme, rounds: rounds) else {
            throw HashingFailed()
        }
        return "\(scheme.rawValue)$\(rounds)$\(hex(salt))$\(derived)"
    }

    private static func phc(cost: Cost, salt: [UInt8], tag: [UInt8]) -> String {
        "$argon2id$v=19$m=\(cost.memoryKiB),t=\(cost.passes),p=1$\(base64(salt))$\(base64(tag))"
    }

    private static func parseArgon2id(_ stored: String) -> (parameters: Argon2id.Parameters, salt: [UInt8], tag: [UInt8])? {
        guard stored.utf8.count <= Limits.passwordHashBytesMax else { return nil }
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0].isEmpty, parts[1] == "argon2id", parts[2] == "v=19" else { return nil }
        var values: [String: Int] = [:]
        for pair in parts[3].split(separator: ",", omittingEmptySubsequences: false) {
            let kv = pair.split(separator: "=", omittingEmptySubsequences: false)
            guard kv.count == 2, let value = Int(kv[1]), values[String(kv[0])] == nil else { return nil }
            values[String(kv[0])] = value
        }
        guard values.count == 3, let m = values["m"], let t = values["t"], let p = values["p"], let salt = unbase64(parts[4]),
            let tag = unbase64(parts[5]), (8...64).contains(salt.count), (4...64).contains(tag.count)
        else { return nil }
        let parameters = Argon2id.Parameters(memoryKiB: m, passes: t, lanes: p, tagLength: tag.count)
        guard parameters.isValid else { return nil }
        return (parameters, salt, tag)
    }

    private static func parsePBKDF2(_ stored: String) -> (scheme: LegacyScheme, rounds: Int, salt: [UInt8], hash: String)? {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, let scheme = LegacyScheme(rawValue: String(parts[0])), let rounds = Int(parts[1]),
            (1...storedRoundsMax).contains(rounds), let salt = bytes(fromHex: String(parts[2])), (1...64).contains(salt.count),
            parts[3].utf8.count == scheme.outputBytes * 2
        else { return nil }
        return (scheme, rounds, salt, String(parts[3]))
    }

    private static func derive(_ password: String, salt: [UInt8], scheme: LegacyScheme, rounds: Int) -> String? {
        guard
            let key = try? KDF.Insecure.PBKDF2.deriveKey(
                from: Array(password.utf8), salt: salt, using: scheme.function, outputByteCount: scheme.outputBytes, unsafeUncheckedRounds: rounds)
        else { return nil }
        return key.withUnsafeBytes { hex(Array($0)) }
    }

    private static func base64(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    private static func unbase64(_ text: Substring) -> [UInt8]? {
        guard !text.isEmpty, text.utf8.count <= 128, !text.contains("=") else { return nil }
        let padded = String(text) + String(repeating: "=", count: (4 - text.utf8.count % 4) % 4)
        return Data(base64Encoded: padded).map { Array($0) }
    }

    private static func hex(_ bytes: [UInt8]) -> String { Secrets.hex(bytes) }

    private static func bytes(fromHex text: String) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}
