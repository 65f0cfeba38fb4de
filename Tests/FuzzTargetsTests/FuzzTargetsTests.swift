import Foundation
import FuzzTargets
import XCTest

/// Every decoder over its seeds, the committed corpus (inputs libFuzzer found interesting or
/// that once broke a decoder: `Tests/FuzzTargetsTests/corpus/<target>/`), and seeded
/// mutations. A decoder that traps stops this process with the target's name; the mutations
/// are the same every run unless SWITCHBOARD_FUZZ_SEED says otherwise, so a failure repeats.
final class FuzzTargetsTests: XCTestCase {
    static let mutationsPerTarget = 20_000
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("corpus")

    func testEveryDecoderSurvivesItsCorpusAndSeededMutations() throws {
        let seed = ProcessInfo.processInfo.environment["SWITCHBOARD_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5B0A_2D
        print("fuzz seed \(seed) (SWITCHBOARD_FUZZ_SEED=\(seed) repeats this run)")
        for (index, target) in FuzzTargets.all.enumerated() {
            let seeds = target.seeds()
            XCTAssertFalse(seeds.isEmpty, "\(target.name) has seeds")
            let corpus = try Self.corpusFiles(target.name)
            var inputs = seeds + corpus
            for input in inputs { target.run(input) }
            var mutator = Mutator(seed: seed &+ UInt64(index))
            for round in 0..<Self.mutationsPerTarget {
                // Inputs taken in turn (a golden-ratio stride), so every seed and corpus file is mutated.
                let input = mutator.mutate(inputs[Int(truncatingIfNeeded: UInt64(round) &* 0x9E37_79B9 % UInt64(inputs.count))])
                target.run(input)
                if round % 64 == 0 { inputs.append(input) }  // mutations of mutations, bounded
            }
            print("\(target.name): \(seeds.count) seeds, \(corpus.count) corpus files, \(Self.mutationsPerTarget) mutations, no trap")
        }
    }

    /// The seeds decode to themselves: the round-trip property holds where it must.
    func testEverySeedDecodes() {
        for target in FuzzTargets.all {
            for seed in target.seeds() { target.run(seed) }
        }
    }

    static func corpusFiles(_ name: String) throws -> [[UInt8]] {
        let directory = corpus.appendingPathComponent(name)
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return [] }
        return try files.sorted().map { Array(try Data(contentsOf: directory.appendingPathComponent($0))) }
    }
}
