@testable import AgentAPI
import XCTest

/// Logins are refused before any hashing when one address storms or an account is guessed at.
final class LoginGuardTests: XCTestCase {
    func testAnAddressPastItsBurstIsThrottledAndEarnsLoginsBack() {
        let guardian = LoginGuard()
        for number in 0..<LoginGuard.addressBurstMax {
            XCTAssertNil(guardian.admit(address: "10.9.9.9", account: "a\(number)@x.io", now: 100), "login \(number) of the burst refused")
        }
        XCTAssertEqual(guardian.admit(address: "10.9.9.9", account: "late@x.io", now: 100), .addressThrottled(retryAfterSeconds: 1))
        XCTAssertNil(guardian.admit(address: "10.9.9.8", account: "other@x.io", now: 100), "another address shares the bucket")
        XCTAssertNil(guardian.admit(address: "10.9.9.9", account: "late@x.io", now: 100 + 2 / LoginGuard.addressRefillPerSecond), "a login earned back after its refill time")
    }

    func testFailuresInARowLockTheAccountAndASuccessClearsThem() {
        let guardian = LoginGuard()
        for _ in 1..<LoginGuard.failuresBeforeLock { guardian.record(account: "ana@x.io", succeeded: false, now: 10) }
        guardian.record(account: "ana@x.io", succeeded: true, now: 10)
        for _ in 1..<LoginGuard.failuresBeforeLock { guardian.record(account: "ana@x.io", succeeded: false, now: 11) }
        XCTAssertNil(guardian.admit(address: "a", account: "ana@x.io", now: 11), "a success between failures reset the count")
        guardian.record(account: "ana@x.io", succeeded: false, now: 11)
        XCTAssertEqual(guardian.admit(address: "a", account: "ana@x.io", now: 12), .accountLocked(retryAfterSeconds: Int(LoginGuard.lockSeconds) - 1))
        XCTAssertNil(guardian.admit(address: "a", account: "ana@x.io", now: 11 + LoginGuard.lockSeconds + 0.1), "the lock outlived lockSeconds")
    }
}
