import ClusterTestKit
import XCTest

/// Seeded cluster simulations (2,000 seeds across cluster sizes). A failing seed is printed
/// with the command that replays it and its trace.
final class SimulationTests: XCTestCase {
    private func run(nodes: Int, seeds: ClosedRange<UInt64>) async {
        let summary = await SimulationRunner.run(seeds: Array(seeds), settings: SimulationSettings(nodes: nodes), parallelism: 2)
        for failure in summary.failures.prefix(3) {
            let replay = SimulationRunner.replay(seed: failure.seed, settings: SimulationSettings(nodes: nodes))
            XCTFail("""
                seed \(failure.seed), \(nodes) nodes: \(failure.failure ?? "")
                replay: swift run switchboard simulate --seed \(failure.seed) --nodes \(nodes)
                last trace lines:
                \(replay.trace.suffix(25).joined(separator: "\n"))
                """)
        }
        XCTAssertEqual(summary.seeds, seeds.count)
        XCTAssertGreaterThan(summary.acknowledgedWrites, 0, "the clients got writes acknowledged")
        XCTAssertGreaterThan(summary.servedReads, 0, "the clients got linearizable reads served")
        if nodes > 1 { XCTAssertGreaterThan(summary.crashes, 0, "faults were injected") }
    }

    func testOneNodeClusters() async { await run(nodes: 1, seeds: 1...200) }
    func testThreeNodeClusters() async { await run(nodes: 3, seeds: 1...700) }
    func testFiveNodeClusters() async { await run(nodes: 5, seeds: 1...800) }
    func testSevenNodeClusters() async { await run(nodes: 7, seeds: 1...300) }

    func testASeedReplaysTheSameRun() {
        let settings = SimulationSettings(nodes: 5)
        let first = SimulationRunner.replay(seed: 42, settings: settings)
        let second = SimulationRunner.replay(seed: 42, settings: settings)
        XCTAssertEqual(first.trace, second.trace, "the same seed must give the same trace")
        XCTAssertEqual(first.acknowledgedWrites, second.acknowledgedWrites)
        XCTAssertFalse(first.trace.isEmpty)
    }
}
