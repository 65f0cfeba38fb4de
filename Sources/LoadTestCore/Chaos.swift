/// A fault schedule (`--chaos`), one rule per flag:
///
///     kill leader every 60s restart after 5s
///     kill random every 90s                      (stays down)
///     pause random for 3s every 45s
///     restart all rolling every 120s
///     kill n2 every 30s restart after 10s
///
/// Targets: `leader`, `follower`, `random`, a node id, or `all rolling` (restart only). The
/// first fault comes one period into the run, then one every period.
public struct ChaosRule: Sendable, Equatable, CustomStringConvertible {
    public enum Target: Sendable, Equatable {
        case leader, follower, random, all
        case node(String)
    }

    public enum Action: Sendable, Equatable {
        /// `kill -9`; started again on its data after `restartAfter` when given.
        case kill(restartAfter: Duration?)
        /// SIGSTOP, then SIGCONT after the duration.
        case pause(Duration)
        /// SIGTERM (a leader hands over), then started again; `all rolling` does one node at a
        /// time, waiting for each to be ready.
        case restart
    }

    public let text: String
    public let action: Action
    public let target: Target
    public let every: Duration

    public var description: String { text }

    public init(_ text: String) throws(LoadTestError) {
        self.text = text
        let words = text.lowercased().split(separator: " ").map(String.init)
        func fail(_ why: String) -> LoadTestError {
            .usage("--chaos '\(text)': \(why); write rules like 'kill leader every 60s restart after 5s', 'pause random for 3s every 45s', 'restart all rolling every 120s'")
        }
        func duration(after keyword: [String]) throws(LoadTestError) -> Duration? {
            guard let at = (0..<words.count).first(where: { Array(words[$0..<min(words.count, $0 + keyword.count)]) == keyword }) else { return nil }
            guard at + keyword.count < words.count else { throw fail("'\(keyword.joined(separator: " "))' needs a duration") }
            return try parseDuration(words[at + keyword.count], option: "--chaos")
        }
        guard words.count >= 4, let every = try duration(after: ["every"]), every >= .seconds(1) else {
            throw fail("it needs 'every <duration>' of at least 1s")
        }
        self.every = every
        let targetWord = words[1]
        switch targetWord {
        case "leader": target = .leader
        case "follower": target = .follower
        case "random": target = .random
        case "all": target = .all
        default:
            guard targetWord.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else { throw fail("'\(targetWord)' is not a target") }
            target = .node(targetWord)
        }
        switch words[0] {
        case "kill":
            guard target != .all else { throw fail("kill takes one node at a time") }
            action = .kill(restartAfter: try duration(after: ["restart", "after"]))
        case "pause":
            guard target != .all else { throw fail("pause takes one node at a time") }
            guard let length = try duration(after: ["for"]) else { throw fail("pause needs 'for <duration>'") }
            guard length < every else { throw fail("the pause must be shorter than its period") }
            action = .pause(length)
        case "restart":
            guard target != .all || words.contains("rolling") else { throw fail("restarting all nodes at once loses the quorum: say 'all rolling'") }
            action = .restart
        default:
            throw fail("'\(words[0])' is not an action (kill, pause, restart)")
        }
        if case .kill(let restart?) = action, restart >= every { throw fail("the restart must come before the next kill") }
    }

    /// When this rule fires during a run of `length`: one period in, then every period.
    public func times(within length: Duration) -> [Duration] {
        var times: [Duration] = []
        var at = every
        while at < length, times.count < 100_000 {
            times.append(at)
            at += every
        }
        return times
    }
}
