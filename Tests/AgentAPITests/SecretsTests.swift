import NodeRuntime
import XCTest

/// Ids are primary keys written in time order (so inserts land at the right edge of each B-tree).
final class SecretsTests: XCTestCase {
    func testIdsArePrefixedBase32TimeOrderedAndDistinct() throws {
        let alphabet = Set("0123456789abcdefghjkmnpqrstvwxyz")
        var seen = Set<String>()
        var previous = Secrets.id("ms")
        for _ in 0..<10_000 {
            let id = Secrets.id("ms")
            XCTAssertTrue(id.hasPrefix("ms_"), "id \(id) must start with its prefix")
            XCTAssertEqual(id.count, 23, "id \(id): prefix, '_', 10 time and 10 random characters")
            XCTAssertTrue(id.dropFirst(3).allSatisfy(alphabet.contains), "id \(id) must be Crockford-style base32")
            XCTAssertTrue(seen.insert(id).inserted, "id \(id) repeated")
            XCTAssertGreaterThanOrEqual(id.prefix(13), previous.prefix(13), "time part of \(id) must not go back from \(previous)")
            previous = id
        }
        let earlier = Secrets.id("cv")
        Thread.sleep(forTimeInterval: 0.002)
        let later = Secrets.id("cv")
        XCTAssertLessThan(earlier, later, "an id made 2 ms later must sort after")
    }

    /// Sessions are stored under this hash on every member; it must stay SHA-256, lowercase hex.
    func testTokenHashIsLowercaseHexSHA256AndComparesByValue() {
        XCTAssertEqual(Secrets.tokenHash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(Secrets.tokenHash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(Secrets.hex([0x00, 0x0f, 0xa0, 0xff]), "000fa0ff")
        XCTAssertEqual(Secrets.token().count, 64, "a token is 32 random bytes in hex")
        XCTAssertTrue(Secrets.constantTimeEquals("same-token", "same-token"))
        XCTAssertFalse(Secrets.constantTimeEquals("same-token", "same-tokeN"), "the last byte differs")
        XCTAssertFalse(Secrets.constantTimeEquals("Same-token", "same-token"), "the first byte differs")
        XCTAssertFalse(Secrets.constantTimeEquals("short", "short-er"), "lengths differ")
        XCTAssertFalse(Secrets.constantTimeEquals("é", "e\u{301}"), "compared as bytes, not as Unicode-equal strings")
    }
}
