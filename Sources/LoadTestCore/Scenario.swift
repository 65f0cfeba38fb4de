/// `--scenario FILE`: a named run kept in `loadtest/`, one `--flag value` per line, `#`
/// comments. Its flags take the place of `--scenario FILE` on the command line, so a flag
/// given after it wins (the last value of an option counts).
public enum Scenario {
    public static func expand(_ arguments: [String], read: (String) -> String?) throws(LoadTestError) -> [String] {
        guard let at = arguments.firstIndex(where: { $0 == "--scenario" || $0.hasPrefix("--scenario=") }) else { return arguments }
        var rest = arguments
        let path: String
        if arguments[at] == "--scenario" {
            guard at + 1 < arguments.count else { throw .usage("--scenario needs a file") }
            path = arguments[at + 1]
            rest.removeSubrange(at...(at + 1))
        } else {
            path = String(arguments[at].dropFirst("--scenario=".count))
            rest.remove(at: at)
        }
        guard let text = read(path) else { throw .usage("--scenario \(path): cannot read the file") }
        var flags: [String] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed()
            let text = String(line)
            if text.isEmpty || text.hasPrefix("#") { continue }
            guard text.hasPrefix("--") else { throw .usage("\(path):\(number + 1): expected '--flag value', got '\(text)'") }
            let parts = text.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts[0] != "--scenario" else { throw .usage("\(path):\(number + 1): a scenario cannot include another") }
            flags.append(parts[0])
            if parts.count == 2 { flags.append(String(parts[1].drop { $0 == " " })) }
        }
        rest.insert(contentsOf: flags, at: at)
        return rest
    }
}
