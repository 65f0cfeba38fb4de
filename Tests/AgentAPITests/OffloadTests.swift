import Dispatch
@testable import NodeRuntime
import XCTest

final class OffloadTests: XCTestCase {
    /// Password hashing has a bounded queue: past `queuedMax`, work is refused as overloaded.
    func testWorkPastTheQueueBoundIsRefused() async throws {
        let offload = Offload(label: "test.offload", lanes: 1, queuedMax: 1)
        let gate = DispatchSemaphore(value: 0)
        async let first: Int = offload.run { gate.wait(); return 1 }
        try await Task.sleep(for: .milliseconds(50))
        do {
            _ = try await offload.run { 2 }
            XCTFail("a second job beyond queuedMax 1 was accepted")
        } catch let error as NodeError {
            XCTAssertEqual(error, .overloaded("more than 1 password checks are waiting"))
        }
        gate.signal()
        let result = try await first
        XCTAssertEqual(result, 1)
        let afterwards = try await offload.run { 3 }
        XCTAssertEqual(afterwards, 3, "capacity is given back when work finishes")
    }
}
