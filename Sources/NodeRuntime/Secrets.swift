import Crypto
import Foundation
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
        var generator = SystemRandomNumberGenerator()
        return hex((0..<32).map { _ in generator.next() as UInt8 })
    }

    /// SHA-256 of a token, hex: the only form in which tokens are stored or replicated.
    public static func tokenHash(_ token: String) -> String {
        var token = token
        // On every request: the token's own bytes, hashed and written as hex without copies.
        return token.withUTF8 { bytes in
            SHA256.hash(data: UnsafeRawBufferPointer(bytes)).withUnsafeBytes { digest in hex(digest) }
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Lowercase hex; on the request path (every token check), so no `String(format:)`.
    public static func hex(_ bytes: some Collection<UInt8>) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            for (position, byte) in bytes.enumerated() {
                out[2 * position] = hexDigits[Int(byte >> 4)]
                out[2 * position + 1] = hexDigits[Int(byte & 0x0F)]
            }
            return bytes.count * 2
        }
    }

    /// Compares two strings in time independent of where they differ.
    public static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        guard lhs.utf8.count == rhs.utf8.count else { return false }
        return zip(lhs.utf8, rhs.utf8).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// Password hashes as the OWASP Password Storage Cheat Sheet asks of PBKDF2: HMAC-SHA512 with
/// 210,000 iterations (the cheapest of its PBKDF2 and scrypt settings on a CPU with SHA
/// extensions: about 1.7 times HMAC-SHA256 at 210,000, where HMAC-SHA256 would need 600,000).
/// Stored as `<scheme>$<rounds>$<salt hex>$<hash hex>`, so scheme and cost travel with each hash:
/// `needsRehash` says when a login should store a fresh one (an older scheme, or fewer rounds than
/// this node's), and `verify` still reads `pbkdf2-sha256` hashes written before.
public struct PasswordHasher: Sendable {
    public enum Scheme: String, Sendable, CaseIterable {
        case pbkdf2SHA512 = "pbkdf2-sha512"
        /// Written before OWASP's SHA-512 setting was adopted; verified, then upgraded at login.
        case pbkdf2SHA256 = "pbkdf2-sha256"

        var function: KDF.Insecure.PBKDF2.HashFunction { self == .pbkdf2SHA512 ? .sha512 : .sha256 }
        var outputBytes: Int { self == .pbkdf2SHA512 ? 64 : 32 }
    }

    /// OWASP's iteration count for PBKDF2-HMAC-SHA512.
    public static let productionRounds = 210_000
    /// Rounds a stored hash may name; more is refused unread (a hash is data, and data can lie).
    public static let storedRoundsMax = 10_000_000
    public let scheme: Scheme
    public let rounds: Int

    public init(rounds: Int = PasswordHasher.productionRounds, scheme: Scheme = .pbkdf2SHA512) {
        precondition(rounds >= 1, "PBKDF2 rounds must be positive, got \(rounds)")
        self.rounds = rounds
        self.scheme = scheme
    }

    public struct HashingFailed: Error {}

    public func hash(_ password: String) throws -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in generator.next() as UInt8 }
        guard let derived = Self.derive(password, salt: salt, scheme: scheme, rounds: rounds) else { throw HashingFailed() }
        return "\(scheme.rawValue)$\(rounds)$\(Self.hex(salt))$\(derived)"
    }

    /// A well-formed hash of no password, for an unknown email: verifying against it costs what a
    /// real check costs (so timing does not reveal which emails exist) and never succeeds.
    public func decoy() -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in generator.next() as UInt8 }
        let hash = (0..<scheme.outputBytes).map { _ in generator.next() as UInt8 }
        return "\(scheme.rawValue)$\(rounds)$\(Self.hex(salt))$\(Self.hex(hash))"
    }

    public func verify(_ password: String, against stored: String) -> Bool {
        guard let parsed = Self.parse(stored), let derived = Self.derive(password, salt: parsed.salt, scheme: parsed.scheme, rounds: parsed.rounds)
        else { return false }
        return Secrets.constantTimeEquals(derived, parsed.hash)
    }

    /// True when `stored` is readable but weaker than what this hasher writes: another scheme or
    /// fewer rounds. (A hash with more rounds than configured is kept: lowering the cost never
    /// weakens stored hashes.) Unreadable hashes are not rehashed: they never verify.
    public func needsRehash(_ stored: String) -> Bool {
        guard let parsed = Self.parse(stored) else { return false }
        return parsed.scheme != scheme || parsed.rounds < rounds
    }

    private static func parse(_ stored: String) -> (scheme: Scheme, rounds: Int, salt: [UInt8], hash: String)? {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, let scheme = Scheme(rawValue: String(parts[0])), let rounds = Int(parts[1]),
            (1...storedRoundsMax).contains(rounds), let salt = bytes(fromHex: String(parts[2])), (1...64).contains(salt.count),
            parts[3].utf8.count == scheme.outputBytes * 2
        else { return nil }
        return (scheme, rounds, salt, String(parts[3]))
    }

    private static func derive(_ password: String, salt: [UInt8], scheme: Scheme, rounds: Int) -> String? {
        // `unsafeUncheckedRounds` lets tests and load runs use few rounds; production uses
        // `productionRounds`.
        guard
            let key = try? KDF.Insecure.PBKDF2.deriveKey(
                from: Array(password.utf8), salt: salt, using: scheme.function, outputByteCount: scheme.outputBytes, unsafeUncheckedRounds: rounds)
        else { return nil }
        return key.withUnsafeBytes { hex(Array($0)) }
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
