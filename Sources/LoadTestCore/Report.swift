/// The self-contained HTML report (`--report FILE`): the verdict, the figures, and charts over
/// time of requests per second, latency percentiles, availability and connected sessions, with
/// the fault windows shaded. Inline SVG and CSS only: it opens anywhere, offline.
public enum Report {
    public static func html(_ summary: Summary, timeline: [Recorder.Second], title: String) -> String {
        let windows = faultWindows(summary.faults, end: Double(max(timeline.count, 1)))
        let charts = [
            chart(
                "Requests per second", unit: "req/s", timeline: timeline, windows: windows,
                series: [("ok", "#2b8a3e", { Double($0.ok) }), ("failed", "#c92a2a", { Double($0.failed) })]),
            chart(
                "Latency (from the intended send time)", unit: "ms", timeline: timeline, windows: windows,
                series: [("p50", "#1c7ed6", { $0.p50Ms }), ("p99", "#e8590c", { $0.p99Ms })]),
            chart(
                "Availability per second", unit: "%", timeline: timeline, windows: windows,
                series: [("availability", "#2b8a3e", { $0.ok + $0.failed == 0 ? 100 : 100 * Double($0.ok) / Double($0.ok + $0.failed) })],
                floor: nil),
            chart(
                "Connected agent sessions", unit: "sessions", timeline: timeline, windows: windows,
                series: [("sessions", "#5f3dc4", { Double($0.sessions) })]),
        ]
        let verdict = summary.passed ? "PASSED" : "FAILED"
        var rows = ""
        func row(_ name: String, _ value: String) { rows += "<tr><th>\(escape(name))</th><td>\(escape(value))</td></tr>\n" }
        row("agents", "\(summary.agents)")
        row("duration", "\(fmt(summary.durationSeconds)) s")
        row("requests", "\(summary.requests.total) (ok \(summary.requests.ok), failed \(summary.requests.failed)); shed with Retry-After \(summary.requests.shed)")
        row("availability", String(format4(summary.availability * 100)) + " %")
        row("latency ms", "p50 \(fmt(summary.latencyMs.p50)), p90 \(fmt(summary.latencyMs.p90)), p99 \(fmt(summary.latencyMs.p99)), p99.9 \(fmt(summary.latencyMs.p999)), max \(fmt(summary.latencyMs.max))")
        row("assignment ms", "p50 \(fmt(summary.assignmentLatencyMs.p50)), p99 \(fmt(summary.assignmentLatencyMs.p99))")
        row(
            "sessions",
            "peak \(summary.sessions.peak), every agent in at \(summary.sessions.allConnectedAtSeconds.map { "\($0) s" } ?? "never"), drops \(summary.sessions.drops), reconnect p50 \(fmt(summary.sessions.reconnectMsP50)) ms, p99 \(fmt(summary.sessions.reconnectMsP99)) ms; moved by the balancer \(summary.sessions.moves), reconnect p99 \(fmt(summary.sessions.movedReconnectMsP99)) ms")
        row("elections", summary.terms.elections.map { "\($0) (term \(summary.terms.atStart ?? 0) to \(summary.terms.atEnd ?? 0))" } ?? "unknown")
        let integrity = summary.integrity
        row(
            "integrity",
            "lost \(integrity.lostMessages), duplicated \(integrity.duplicateMessages), double assignments \(integrity.doubleAssignments), capacity violations \(integrity.capacityViolations), event gaps \(integrity.eventGaps)")
        if integrity.repliesChecked > 0 {
            row(
                "replies",
                "\(integrity.repliesChecked) checked at the provider: lost \(integrity.lostReplies), duplicated \(integrity.duplicateReplies.explained) explained and \(integrity.duplicateReplies.unexplained) unexplained, misdirected \(integrity.misdirectedReplies)")
        }
        var thresholds = ""
        for result in summary.thresholds {
            thresholds += "<li class=\"\(result.passed ? "ok" : "bad")\">\(escape(result.expression)): \(fmt(result.value)) \(result.passed ? "passed" : "FAILED")</li>\n"
        }
        var faults = ""
        for fault in summary.faults { faults += "<li>\(fmt(fault.atSeconds)) s: \(escape(fault.kind)) \(escape(fault.node ?? ""))</li>\n" }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>
            body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #212529; }
            h1 { font-size: 1.4em; } .ok { color: #2b8a3e; } .bad { color: #c92a2a; font-weight: bold; }
            table { border-collapse: collapse; } th, td { text-align: left; padding: 2px 12px 2px 0; vertical-align: top; }
            svg { background: #fff; border: 1px solid #dee2e6; margin: 0.5em 0 1.5em; } .legend span { margin-right: 1em; }
            </style></head><body>
            <h1>\(escape(title)): <span class="\(summary.passed ? "ok" : "bad")">\(verdict)</span></h1>
            <table>\(rows)</table>
            <h2>Thresholds</h2><ul>\(thresholds.isEmpty ? "<li>none given</li>" : thresholds)</ul>
            <h2>Faults</h2><ul>\(faults.isEmpty ? "<li>none</li>" : faults)</ul>
            <p>Shaded: a node down or paused (from the fault to its restart or resume).</p>
            \(charts.joined(separator: "\n"))
            </body></html>
            """
    }

    /// (from, to) seconds during which a node was down or paused.
    public static func faultWindows(_ faults: [Summary.Fault], end: Double) -> [(Double, Double)] {
        var open: [String: Double] = [:]
        var windows: [(Double, Double)] = []
        for fault in faults.sorted(by: { $0.atSeconds < $1.atSeconds }) where fault.atSeconds >= 0 {
            let node = fault.node ?? ""
            switch fault.kind {
            case "kill", "pause":
                open[node] = fault.atSeconds
            case "restart", "resume":
                if let from = open.removeValue(forKey: node) { windows.append((from, fault.atSeconds)) }
            default:
                break
            }
        }
        for (_, from) in open { windows.append((from, end)) }
        return windows.sorted { $0.0 < $1.0 }
    }

    static func chart(
        _ title: String, unit: String, timeline: [Recorder.Second], windows: [(Double, Double)],
        series: [(String, String, (Recorder.Second) -> Double)], floor: Double? = 0
    ) -> String {
        let width = 940.0
        let height = 200.0
        let left = 50.0
        let bottom = 20.0
        let seconds = Double(max(timeline.count - 1, 1))
        let values = series.flatMap { (_, _, value) in timeline.map(value) }
        let top = max(values.max() ?? 1, 1e-9) * 1.05
        let low = floor ?? max(0, (values.min() ?? 0) - (top - (values.min() ?? 0)) * 0.05)
        let x = { (second: Double) in left + (width - left - 10) * second / seconds }
        let y = { (value: Double) in (height - bottom) - (height - bottom - 10) * (value - low) / max(top - low, 1e-9) }
        var svg = "<h3>\(escape(title))</h3>\n<div class=\"legend\">"
        for (name, color, _) in series { svg += "<span style=\"color:\(color)\">&#9632; \(escape(name))</span>" }
        svg += "</div>\n<svg width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\">\n"
        for (from, to) in windows {
            svg += "<rect x=\"\(fmt(x(from)))\" y=\"0\" width=\"\(fmt(max(1, x(to) - x(from))))\" height=\"\(fmt(height - bottom))\" fill=\"#ffe3e3\"/>\n"
        }
        for tick in 0...4 {
            let value = low + (top - low) * Double(tick) / 4
            svg += "<line x1=\"\(fmt(left))\" x2=\"\(fmt(width - 10))\" y1=\"\(fmt(y(value)))\" y2=\"\(fmt(y(value)))\" stroke=\"#f1f3f5\"/>"
            svg += "<text x=\"4\" y=\"\(fmt(y(value) + 4))\" font-size=\"10\">\(fmt(value))</text>\n"
        }
        let step = max(1, Int(seconds / 10))
        for second in stride(from: 0, through: Int(seconds), by: step) {
            svg += "<text x=\"\(fmt(x(Double(second)) - 6))\" y=\"\(fmt(height - 5))\" font-size=\"10\">\(second)s</text>\n"
        }
        for (_, color, value) in series {
            let points = timeline.enumerated().map { "\(fmt(x(Double($0.offset)))),\(fmt(y(value($0.element))))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
        }
        svg += "<text x=\"\(fmt(width - 80))\" y=\"14\" font-size=\"10\">\(escape(unit))</text></svg>"
        return svg
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }

    /// Up to two decimals, no trailing zeros.
    static func fmt(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let rounded = (value * 100).rounded() / 100
        if rounded == rounded.rounded() { return String(Int(rounded)) }
        return String(rounded)
    }

    static func format4(_ value: Double) -> String {
        String((value * 10_000).rounded() / 10_000)
    }
}
