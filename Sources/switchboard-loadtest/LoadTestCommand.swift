import ArgumentParser
import Foundation
import LoadTestCore

/// `switchboard-loadtest`: wiring only. The run is `Run`; the verdict LoadTestCore's.
@main
struct LoadTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-loadtest",
        abstract: "Certify a Switchboard cluster: agents and customers at load, then a verdict on availability and integrity.",
        discussion: """
            Agents are a closed population: each is created, logs in, opens the events WebSocket,
            goes available, and on every conversation.assigned reads the conversation, replies
            after a think time and resolves after --exchanges replies. A dropped socket
            reconnects through the target with its last cursor. Customers are an open arrival
            process posting webchat messages with unique externalIds, and following up once.

            Every request's latency is measured from its intended send time (no coordinated
            omission). After the run, every acknowledged message is looked up on every node:
            lost or duplicated ones, double assignments, capacity overruns and event-stream
            gaps are integrity violations.

            Exit status: 0 every threshold passed, 99 a threshold failed, 1 an integrity
            violation, 2 a usage error.

              switchboard cluster up
              switchboard-loadtest --target http://127.0.0.1:8080 --admin-token TOKEN \\
                --agents 200 --ramp 10s --duration 60s --arrival-rate 20/s \\
                --threshold 'availability>=0.999' --threshold 'p99<250ms' --json run.json
            """)

    @Option(help: "The balancer's (or a node's) URL.")
    var target: String

    @Option(help: "The cluster's admin token (or SWITCHBOARD_ADMIN_TOKEN).")
    var adminToken: String?

    @Option(help: "Agents, a closed population.")
    var agents = 50

    @Option(help: "Time over which the agents log in, evenly spread (e.g. 30s).")
    var ramp = "10s"

    @Option(help: "Length of the measured run after the ramp (e.g. 60s, 10m).")
    var duration = "60s"

    @Option(help: "Customers' new conversations per second (e.g. 20/s, 600/m).")
    var arrivalRate = "5/s"

    @Option(help: "Arrival process: constant or poisson.")
    var arrival = "poisson"

    @Option(help: "An agent's think time before each reply (e.g. 2s).")
    var think = "1s"

    @Option(help: "Replies an agent sends before it resolves a conversation.")
    var exchanges = 2

    @Option(help: "Conversations an agent holds at once (its capacity).")
    var capacity = 3

    @Option(help: "Seed of the arrival process and the customers' choices (a run can be repeated).")
    var seed: UInt64 = 1

    @Option(help: "A pass/fail rule, repeatable: availability>=0.999, p99<250ms, assignment_p99<2s, lost==0, ...")
    var threshold: [String] = []

    @Option(help: "Write the JSON summary here.")
    var json: String?

    func validate() throws {
        guard let url = URL(string: target), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw ValidationError("--target must be a URL such as http://127.0.0.1:8080, got '\(target)'")
        }
        guard (1...100_000).contains(agents) else { throw ValidationError("--agents must be 1...100000") }
        guard (1...100).contains(exchanges) else { throw ValidationError("--exchanges must be 1...100") }
        guard (1...1000).contains(capacity) else { throw ValidationError("--capacity must be 1...1000") }
        guard Arrivals.Kind(rawValue: arrival) != nil else { throw ValidationError("--arrival must be constant or poisson") }
        do {
            _ = try parseDuration(ramp, option: "--ramp")
            guard try parseDuration(duration, option: "--duration") > .zero else { throw ValidationError("--duration must be over 0") }
            _ = try parseDuration(think, option: "--think")
            _ = try Arrivals.parseRate(arrivalRate)
            for rule in threshold { _ = try Threshold(rule) }
        } catch let error as LoadTestError {
            throw ValidationError(error.description)
        }
        guard token != nil else { throw ValidationError("give --admin-token (or set SWITCHBOARD_ADMIN_TOKEN): the run creates its agents") }
    }

    var token: String? { adminToken ?? ProcessInfo.processInfo.environment["SWITCHBOARD_ADMIN_TOKEN"] }

    func run() async throws {
        let settings = Run.Settings(
            target: target.hasSuffix("/") ? String(target.dropLast()) : target, adminToken: token!, agents: agents,
            ramp: try parseDuration(ramp, option: "--ramp"), duration: try parseDuration(duration, option: "--duration"),
            arrivals: try Arrivals(rate: try Arrivals.parseRate(arrivalRate), kind: Arrivals.Kind(rawValue: arrival)!, seed: seed),
            think: try parseDuration(think, option: "--think"), exchanges: exchanges, capacity: capacity, seed: seed)
        var summary = try await Run(settings: settings).execute()
        summary.evaluate(try threshold.map { try Threshold($0) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(summary)
        if let json {
            do {
                try data.write(to: URL(fileURLWithPath: json))
            } catch {
                throw ValidationError("cannot write --json \(json): \(error)")
            }
        }
        print(String(decoding: data, as: UTF8.self))
        for result in summary.thresholds {
            print("threshold \(result.expression): \(result.value) \(result.passed ? "passed" : "FAILED")")
        }
        if summary.integrity.violations > 0 { print("INTEGRITY VIOLATED: \(summary.integrity)") }
        print(summary.exitCode == 0 ? "PASSED" : "FAILED (exit \(summary.exitCode))")
        if summary.exitCode != 0 { throw ExitCode(summary.exitCode) }
    }

    /// Usage errors exit with 2 (the argument parser's default is 64).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
