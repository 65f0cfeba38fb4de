import SWIMShell
import XCTest

/// The balancer's keyring holds the gossip key alone: it talks gossip with the members and
/// holds nothing that opens the peer link.
final class KeyringTests: XCTestCase {
    func testAnObserverWithTheGossipKeyTalksGossipWithMembersHoldingTheSecret() throws {
        let member = try Keyring(primary: "cluster secret 42")
        let gossipKey = Keyring.gossipKey(fromSecret: "cluster secret 42")
        let observer = try Keyring(gossipKey: gossipKey)
        XCTAssertEqual(gossipKey.count, 64)
        XCTAssertFalse(gossipKey.contains("cluster secret"), "the key is derived, not the secret")
        XCTAssertEqual(try observer.open(member.seal([1, 2, 3])).get(), [1, 2, 3], "the observer reads the members' gossip")
        XCTAssertEqual(try member.open(observer.seal([4, 5])).get(), [4, 5], "and the members read its")
        let stranger = try Keyring(gossipKey: Keyring.gossipKey(fromSecret: "another cluster"))
        XCTAssertEqual(stranger.open(member.seal([1])), .failure(.unknownKey), "another cluster's key opens nothing")
    }

    func testAGossipKeyThatIsNotSixtyFourHexDigitsIsRefused() {
        XCTAssertThrowsError(try Keyring(gossipKey: "cluster secret 42"))
        XCTAssertThrowsError(try Keyring(gossipKey: String(repeating: "g", count: 64)))
        XCTAssertThrowsError(try Keyring(gossipKey: Keyring.gossipKey(fromSecret: "s"), previousGossipKeys: ["short"]))
    }
}
