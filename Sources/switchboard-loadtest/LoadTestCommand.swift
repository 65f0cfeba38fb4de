import ArgumentParser
import Foundation
import ClusterFile
import LoadTestCore

/// `switchboard-loadtest`: wiring only. The run is `Run`; the verdict LoadTestCore's.
@main
struct LoadTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-loadtest",
        abstract: "Certify a Switchboard cluster: agents and customers at load, then a verdict on availability and integrity.",
        discussion: """
            Agents are a closed population: each is created, logs in, opens the events WebSocket, \
            goes available, and on every conversation.assigned reads the conversation, replies \
            after a think time and resolves after --exchanges replies. A dropped socket \
            reconnects through the target with its last cursor. Customers are an open arrival \
            process posting webchat messages with unique externalIds, and following up once; \
            with --channels whatsapp,sms they write through a provider simulator's signed \
            webhooks instead, and every agent reply must reach that simulator exactly once.

            Every request's latency is measured from its intended send time (no coordinated \
            omission). After the run, every acknowledged message is looked up on every node: \
            lost or duplicated ones, double assignments, capacity overruns and event-stream \
            gaps are integrity violations.

            Exit status: 0 every threshold passed, 99 a threshold failed, 1 an integrity \
            violation, 2 a usage error.

              switchboard cluster up
              SWITCHBOARD_ADMIN_TOKEN=local-admin switchboard-loadtest --target http://127.0.0.1:8080 \\
                --agents 200 --ramp 10s --duration 60s --arrival-rate 20/s \\
                --threshold 'availability>=0.999' --threshold 'p99<250ms' --json run.json
            """)

    @Option(help: "The balancer's (or a node's) URL of a running cluster.")
    var target: String?

    @Option(help: "PEM file of the CA to trust for an https --target (with --spawn of a cluster file with tls = true, its local CA).")
    var caFile: String?

    @Option(help: "A file holding the cluster's admin token (or SWITCHBOARD_ADMIN_TOKEN; never on the command line); with --spawn it comes from the cluster file.")
    var adminTokenFile: String?

    @Option(help: "Start the cluster of this file (nodes and balancer) for the run, and stop it after; needed for --chaos.")
    var spawn: String?

    @Option(help: "The switchboard executable --spawn runs (default: the one beside this program).")
    var switchboard: String?

    @Option(help: "A fault rule, repeatable (needs --spawn): 'kill leader every 60s restart after 5s', 'pause random for 3s every 45s', 'restart all rolling every 120s'.")
    var chaos: [String] = []

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

    @Option(
        help: ArgumentHelp(
            "Customers write on these provider channels instead of the generic webchat endpoint: whatsapp, sms, or both (whatsapp,sms).",
            discussion: "The run serves the WhatsApp Cloud API and Twilio on loopback (a provider simulator), creates one inbox per provider pointed at it, posts each customer's messages to the inbox's webhook signed as Meta and Twilio sign them, and posts the providers' status callbacks. After the run every acknowledged agent reply must have reached the simulator exactly once, for its customer (lost_replies, duplicate_replies, unexplained_duplicates)."
        ))
    var channels: String?

    @Option(help: "Share of sends the provider simulator refuses with a 503 without taking them (e.g. 1%): the cluster must retry.")
    var providerErrors = "0%"

    @Option(help: "Share of sends the provider simulator takes and never answers (e.g. 0.1%): the cluster's send times out, it retries and must mark the reply possibleDuplicate.")
    var providerTimeouts = "0%"

    @Option(help: "Time the provider simulator takes to answer each send (e.g. 50ms).")
    var providerDelay = "0ms"

    @Option(help: "Seed of the arrival process and the customers' choices (a run can be repeated).")
    var seed: UInt64 = 1

    @Option(help: "A pass/fail rule, repeatable: availability>=0.999, p99<250ms, assignment_p99<2s, lost==0, ...")
    var threshold: [String] = []

    @Option(help: "Write the JSON summary here.")
    var json: String?

    @Option(help: "Write a self-contained HTML report here (charts over time, fault windows shaded).")
    var report: String?

    @Option(help: "Read flags from this file first (one '--flag value' per line, # comments); flags given after it win. See loadtest/*.scenario.")
    var scenario: String?

    func validate() throws {
        guard (target == nil) != (spawn == nil) else {
            throw ValidationError("give --target URL (a running cluster) or --spawn FILE (start one), not both and not neither")
        }
        if let target {
            guard let url = URL(string: target), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw ValidationError("--target must be an http or https URL such as http://127.0.0.1:8080, got '\(target)'")
            }
            if url.scheme == "https", caFile == nil {
                throw ValidationError("an https --target needs --ca-file: the PEM certificate of the CA its certificate comes from (a cluster with tls = true keeps it in <data>/tls/ca.pem)")
            }
            if let adminTokenFile, (try? String(contentsOfFile: adminTokenFile, encoding: .utf8)) == nil {
                throw ValidationError("--admin-token-file: cannot read \(adminTokenFile)")
            }
            guard token != nil else { throw ValidationError("give --admin-token-file (or set SWITCHBOARD_ADMIN_TOKEN): the run creates its agents") }
        }
        guard chaos.isEmpty || spawn != nil else { throw ValidationError("--chaos acts on processes: it needs --spawn FILE") }
        if let spawn, !FileManager.default.fileExists(atPath: spawn) { throw ValidationError("--spawn \(spawn): no such file") }
        if spawn != nil, !FileManager.default.isExecutableFile(atPath: switchboardPath) {
            throw ValidationError("no switchboard executable at \(switchboardPath); build it (swift build -c release) or give --switchboard PATH")
        }
        guard (1...100_000).contains(agents) else { throw ValidationError("--agents must be 1...100000") }
        guard (1...100).contains(exchanges) else { throw ValidationError("--exchanges must be 1...100") }
        guard (1...1000).contains(capacity) else { throw ValidationError("--capacity must be 1...1000") }
        guard Arrivals.Kind(rawValue: arrival) != nil else { throw ValidationError("--arrival must be constant or poisson") }
        let options = try parsed()
        guard options.duration > .zero else { throw ValidationError("--duration must be over 0") }
        guard options.providerFaults.errors + options.providerFaults.timeouts < 1 else {
            throw ValidationError("--provider-errors and --provider-timeouts together must leave some sends to succeed")
        }
        if options.channels.isEmpty, providerErrors != "0%" || providerTimeouts != "0%" || providerDelay != "0ms" {
            throw ValidationError("--provider-errors, --provider-timeouts and --provider-delay shape the provider simulator: they need --channels")
        }
    }

    /// The text options as values; a usage error names the option at fault.
    struct Parsed {
        var ramp, duration, think: Duration
        var arrivals: Arrivals
        var thresholds: [Threshold]
        var chaos: [ChaosRule]
        var channels: [ProviderSimulator.Provider]
        var providerFaults: ProviderSimulator.Faults
    }

    func parsed() throws -> Parsed {
        do {
            return Parsed(
                ramp: try parseDuration(ramp, option: "--ramp"), duration: try parseDuration(duration, option: "--duration"),
                think: try parseDuration(think, option: "--think"),
                arrivals: try Arrivals(rate: try Arrivals.parseRate(arrivalRate), kind: Arrivals.Kind(rawValue: arrival)!, seed: seed),
                thresholds: try threshold.map { try Threshold($0) }, chaos: try chaos.map { try ChaosRule($0) },
                channels: try parsedChannels(),
                providerFaults: ProviderSimulator.Faults(
                    errors: try parseShare(providerErrors, option: "--provider-errors"),
                    timeouts: try parseShare(providerTimeouts, option: "--provider-timeouts"),
                    delay: try parseDuration(providerDelay, option: "--provider-delay")))
        } catch let error as LoadTestError {
            throw ValidationError(error.description)
        }
    }

    func parsedChannels() throws(LoadTestError) -> [ProviderSimulator.Provider] {
        guard let channels else { return [] }
        var providers: [ProviderSimulator.Provider] = []
        for name in channels.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) {
            switch name {
            case "whatsapp": providers.append(.whatsApp)
            case "sms", "twilio": providers.append(.twilio)
            default: throw .usage("--channels takes whatsapp, sms or both (whatsapp,sms); '\(name)' is neither")
            }
        }
        guard !providers.isEmpty else { throw .usage("--channels names no channel; give whatsapp, sms or whatsapp,sms") }
        return Array(Set(providers)).sorted { $0.rawValue > $1.rawValue }
    }

    /// `--switchboard`, or the `switchboard` beside this executable.
    var switchboardPath: String {
        switchboard ?? URL(fileURLWithPath: LocalCluster.currentExecutable).deletingLastPathComponent().appendingPathComponent("switchboard").path
    }

    var token: String? {
        if let adminTokenFile {
            let token = (try? String(contentsOfFile: adminTokenFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            return token?.isEmpty == false ? token : nil
        }
        return ProcessInfo.processInfo.environment["SWITCHBOARD_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    func run() async throws {
        // Each agent holds a WebSocket and shares HTTP connections: about two descriptors each.
        let needed = agents * 2 + 512
        let limit = OpenFiles.raiseToHardLimit()
        guard limit >= needed else {
            throw ValidationError(
                "\(agents) agents need about \(needed) open files and this process may open \(limit); allow more with `ulimit -n \(needed)` (hard limit: /etc/security/limits.conf or the container's nofile)")
        }
        let log = logLine
        var spawned: Spawned?
        if let spawn {
            let cluster = try Spawned(file: spawn, switchboard: switchboardPath, log: log)
            log("starting the cluster of \(spawn) with \(switchboardPath)")
            try await cluster.up()
            spawned = cluster
        }
        let base = spawned?.target ?? target!
        let options = try parsed()
        let settings = Run.Settings(
            target: base.hasSuffix("/") ? String(base.dropLast()) : base, caFile: spawned?.cluster.caCertificatePath ?? caFile,
            adminToken: spawned?.cluster.adminToken ?? token!, agents: agents,
            ramp: options.ramp, duration: options.duration, arrivals: options.arrivals, think: options.think, exchanges: exchanges,
            capacity: capacity, seed: seed, channels: options.channels, providerFaults: options.providerFaults)
        let run = try Run(settings: settings, spawned: spawned, chaos: options.chaos)
        var summary: Summary
        do {
            summary = try await run.execute()
        } catch {
            await spawned?.down()
            throw error
        }
        if let spawned {
            log("stopping the spawned cluster")
            await spawned.down()
        }
        summary.evaluate(options.thresholds)
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
        if let report {
            let html = Report.html(summary, timeline: run.recorder.timeline, title: "switchboard-loadtest: \(agents) agents, \(duration)")
            do {
                try html.write(toFile: report, atomically: true, encoding: .utf8)
            } catch {
                throw ValidationError("cannot write --report \(report): \(error)")
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
            let arguments: [String]
            do {
                arguments = try Scenario.expand(Array(CommandLine.arguments.dropFirst())) { try? String(contentsOfFile: $0, encoding: .utf8) }
            } catch {
                throw ValidationError(error.description)
            }
            var command = try parseAsRoot(arguments)
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
