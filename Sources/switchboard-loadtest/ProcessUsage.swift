import Foundation

/// CPU and memory of one process, read from `/proc` (Linux): what limits a run, shown on the
/// progress log every 10 s and summed up at the end for the spawned nodes and the balancer.
struct ProcessUsage: Sendable {
    /// CPU seconds (user + system) used so far.
    var cpuSeconds: Double
    /// Resident memory, bytes.
    var residentBytes: Int

    /// Clock ticks per second of `/proc/PID/stat`'s times.
    private static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// Nil when the process is gone or `/proc` cannot be read.
    init?(pid: pid_t) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        cpuSeconds = (user + system) / Self.ticksPerSecond
        let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        guard let kilobytes = rss?.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
        residentBytes = kilobytes * 1024
    }
}

/// Samples a set of named processes; keeps each one's peak memory and the CPU share between
/// two samples.
struct UsageSampler {
    struct Line {
        var name: String
        var cpuShare: Double  // of one core, since the previous sample
        var residentBytes: Int
    }

    private var previous: [String: (pid: pid_t, cpu: Double, at: ContinuousClock.Instant)] = [:]
    private var peakResident: [String: Int] = [:]
    private var firstResident: [String: Int] = [:]
    /// The most sessions seen in a sample where every process was up, and memory then.
    private var peakSessions = 0
    private var residentAtPeak: [String: Int] = [:]

    /// Samples `processes`; with `sessions` held now, out of `expected` processes (a sample
    /// missing a killed node does not count toward the memory per session).
    mutating func sample(_ processes: [(name: String, pid: pid_t)], sessions: Int, expected: Int) -> [Line] {
        let lines = sample(processes)
        if lines.count == expected, sessions >= peakSessions {
            peakSessions = sessions
            for line in lines { residentAtPeak[line.name] = line.residentBytes }
        }
        return lines
    }

    /// Memory per session: growth since the first sample (before any session) to the sample
    /// with the most sessions, for each group of process names. A node restarted by a fault
    /// starts small again, so each group's peak is given too.
    func memoryPerSession(_ groups: [(label: String, names: [String])]) -> [String] {
        guard peakSessions > 0 else { return [] }
        return groups.map { label, names in
            let before = names.reduce(0) { $0 + (firstResident[$1] ?? 0) }
            let atPeak = names.reduce(0) { $0 + (residentAtPeak[$1] ?? 0) }
            let peak = names.reduce(0) { $0 + (peakResident[$1] ?? 0) }
            let perSession = Double(atPeak - before) / Double(peakSessions)
            return "memory: \(label) \(before >> 20) MiB before the sessions, \(atPeak >> 20) MiB holding \(peakSessions) (peak \(peak >> 20) MiB): about \(Int(perSession / 1024)) KiB per session"
        }
    }

    mutating func sample(_ processes: [(name: String, pid: pid_t)]) -> [Line] {
        let now = ContinuousClock.now
        var lines: [Line] = []
        for (name, pid) in processes {
            guard let usage = ProcessUsage(pid: pid) else { continue }
            var share = 0.0
            if let last = previous[name], last.pid == pid {
                let seconds = (now - last.at) / .seconds(1)
                if seconds > 0 { share = (usage.cpuSeconds - last.cpu) / seconds }
            }
            previous[name] = (pid, usage.cpuSeconds, now)
            if firstResident[name] == nil { firstResident[name] = usage.residentBytes }
            peakResident[name] = max(peakResident[name] ?? 0, usage.residentBytes)
            lines.append(Line(name: name, cpuShare: share, residentBytes: usage.residentBytes))
        }
        return lines
    }

    static func describe(_ lines: [Line]) -> String {
        lines.map { "\($0.name) cpu \(Int(($0.cpuShare * 100).rounded()))% rss \($0.residentBytes >> 20) MiB" }.joined(separator: " · ")
    }
}
