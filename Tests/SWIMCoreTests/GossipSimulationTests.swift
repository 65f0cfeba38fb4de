import ClusterTestKit
import SWIMCore
import XCTest

/// Seeded simulations of whole clusters: every failure message carries the seed; replay it by
/// running the same test with that seed.
final class GossipSimulationTests: XCTestCase {
    private func converged(_ options: GossipSimulation.Options) throws -> GossipSimulation {
        var simulation = try GossipSimulation(options)
        let joined = try simulation.run(until: .seconds(30)) { $0.converged() }
        XCTAssertTrue(joined, "seed \(options.seed): \(options.members) members did not converge after joining within 30 s")
        return simulation
    }

    /// SWIM §5 with Lifeguard: a crashed member is dead in every view within a bound, for 3 to 100 members.
    func testCrashedMemberIsDeclaredDeadByEveryoneWithinBound() throws {
        for (members, seeds, loss) in [(3, 1...10, 0.0), (5, 1...20, 0.01), (20, 1...4, 0.05), (100, 1...1, 0.05)] as [(Int, ClosedRange<UInt64>, Double)] {
            var worst: Duration = .zero
            for seed in seeds {
                var options = GossipSimulation.Options(members: members, seed: seed)
                options.loss = loss
                var simulation = try converged(options)
                let victim = Int(seed % UInt64(members))
                simulation.crash(victim)
                let crashedAt = simulation.now
                let detected = try simulation.run(until: .seconds(10)) { $0.everyoneSeesDead(victim) }
                XCTAssertTrue(detected, "seed \(seed): \(members) members, \(loss * 100) % loss: m\(victim + 1) not dead everywhere 10 s after its crash")
                worst = max(worst, simulation.now - crashedAt)
                let false_ = simulation.falseDeaths(since: .zero, running: Set((0..<members).filter { $0 != victim }))
                XCTAssertTrue(false_.isEmpty, "seed \(seed): live members declared dead: \(false_)")
            }
            XCTAssertLessThanOrEqual(worst, .seconds(3), "\(members) members: worst detection \(worst) over seeds \(seeds)")
        }
    }

    /// A lossy (20 %) but connected network never gets a live member declared dead.
    func testLossyNetworkNeverDeclaresALiveMemberDead() throws {
        for seed in UInt64(1)...4 {
            var options = GossipSimulation.Options(members: 10, seed: seed)
            options.loss = 0.2
            options.duplication = 0.05
            options.delayMax = .milliseconds(10)
            var simulation = try converged(options)
            let since = simulation.now
            try simulation.run(for: .seconds(120))
            let false_ = simulation.falseDeaths(since: since, running: Set(0..<10))
            XCTAssertTrue(false_.isEmpty, "seed \(seed): 20 % loss: live members declared dead: \(false_.prefix(5))")
            let deadSeen = (0..<10).flatMap { observer in simulation.cores[observer]!.view.filter { $0.status == .dead }.map { "m\(observer + 1) sees \($0.id) dead" } }
            XCTAssertTrue(deadSeen.isEmpty, "seed \(seed): after 120 s of 20 % loss: \(deadSeen)")
        }
    }

    /// Lifeguard: a CPU-starved member (it runs once every 200 ms, a probe interval) is neither declared dead nor
    /// gets the healthy ones declared dead.
    func testStarvedMemberCausesNoFalseDeaths() throws {
        for seed in UInt64(1)...4 {
            var options = GossipSimulation.Options(members: 8, seed: seed)
            options.loss = 0.02
            var simulation = try converged(options)
            let since = simulation.now
            simulation.starve(Int(seed % 8), period: .milliseconds(200))
            try simulation.run(for: .seconds(120))
            let false_ = simulation.falseDeaths(since: since, running: Set(0..<8))
            XCTAssertTrue(false_.isEmpty, "seed \(seed): a starved member caused false deaths: \(false_.prefix(5))")
        }
    }

    /// After a partition heals, both sides find each other again and every view is the same.
    func testViewsConvergeAfterAPartitionHeals() throws {
        for seed in UInt64(1)...5 {
            var options = GossipSimulation.Options(members: 6, seed: seed)
            options.loss = 0.02
            var simulation = try converged(options)
            simulation.partition([[0, 1, 2], [3, 4, 5]])
            let split = try simulation.run(until: .seconds(10)) { sim in (3..<6).allSatisfy { sim.cores[0]?.member(GossipSimulation.id($0))?.status == .dead } }
            XCTAssertTrue(split, "seed \(seed): the far side was not declared dead during the partition")
            simulation.heal()
            let healedAt = simulation.now
            let merged = try simulation.run(until: .seconds(20)) { $0.converged() }
            XCTAssertTrue(merged, "seed \(seed): views did not converge within 20 s of the partition healing")
            XCTAssertLessThan(simulation.now - healedAt, .seconds(10), "seed \(seed): convergence took \(simulation.now - healedAt)")
        }
    }

    /// Random faults (crashes, restarts, partitions, leaves) with the invariants checked at every
    /// step; then calm: every view converges.
    func testRandomFaultsKeepInvariantsAndConverge() throws {
        for seed in UInt64(1)...4 {
            var options = GossipSimulation.Options(members: 7, seed: seed)
            options.loss = Double(seed % 4) * 0.05
            options.duplication = 0.02
            options.delayMax = .milliseconds(Int64(1 + seed % 20))
            var simulation = try converged(options)
            var draw = seed
            func next(_ bound: Int) -> Int { draw = draw &* 6364136223846793005 &+ 1442695040888963407; return Int((draw >> 33) % UInt64(bound)) }
            for _ in 0..<8 {
                let member = next(7)
                switch next(4) {
                case 0: simulation.crash(member)
                case 1: if simulation.cores[member] == nil { try simulation.start(member) }
                case 2: simulation.partition([Array(0..<3), Array(3..<7)])
                default: simulation.heal()
                }
                try simulation.run(for: .milliseconds(500 + 500 * next(6)))
            }
            simulation.heal()
            for member in 0..<7 where simulation.cores[member] == nil { try simulation.start(member) }
            let settled = try simulation.run(until: .seconds(30)) { $0.converged() }
            XCTAssertTrue(settled, "seed \(seed): views did not converge within 30 s of the faults ending")
        }
    }

    /// Messages and bytes per member per second stay flat as the cluster grows (the figure in
    /// BENCHMARKS.md comes from `switchboard simulate --gossip`).
    func testTrafficPerMemberIsFlatAsTheClusterGrows() throws {
        var perMember: [Int: Double] = [:]
        for members in [5, 20, 50] {
            var simulation = try converged(GossipSimulation.Options(members: members, seed: 3))
            let before = simulation.traffic.map(\.packets).reduce(0, +)
            try simulation.run(for: .seconds(10))
            let packets = simulation.traffic.map(\.packets).reduce(0, +) - before
            perMember[members] = Double(packets) / Double(members) / 10
        }
        let rates = perMember.sorted { $0.key < $1.key }.map(\.value)
        XCTAssertLessThan(rates.max()! / rates.min()!, 1.5, "packets per member per second must stay flat: \(perMember)")
    }
}
