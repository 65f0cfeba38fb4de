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
}
