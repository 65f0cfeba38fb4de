/// Replay protection for gossip, inside the encryption: every sealed packet starts with
/// `boot (8) | sequence (8) | sent at (8, ms since 1970)`, big-endian. A sender picks a random
/// boot id when it starts and numbers its packets 1, 2, 3...; a receiver keeps, per boot id,
/// the highest sequence seen and a window of the 64 before it (the sliding window of IPsec,
/// RFC 4303 §3.4.3), so a packet is taken once. A packet whose sent time is more than
/// `ageMax` away from the receiver's clock is dropped as stale: that bounds what a receiver
/// that restarted (and forgot its windows) can be fed again to packets of the last two
/// minutes, which SWIM's incarnation numbers already make harmless.
///
/// Pure: the caller passes `now`; every bound is named.
public struct ReplayGuard: Sendable {
    public static let headerBytes = 24
    /// Sequences behind the highest one that are still taken (once each).
    public static let windowPackets: UInt64 = 64
    /// A packet sent further than this from the receiver's clock, either way, is stale. Members'
    /// clocks must agree within it (NTP does far better); drops are counted and logged.
    public static let ageMaxMillis: Int64 = 120_000
    /// Boot ids remembered at most; those idle past `ageMaxMillis` go first.
    public static let sendersMax = 4096

    public enum Verdict: Equatable, Sendable {
        case fresh
        /// Seen before, or behind the window.
        case replayed
        /// Sent too long ago or too far ahead by the receiver's clock.
        case stale
    }

    struct Window {
        var highest: UInt64
        /// Bit i: `highest - i` was seen (bit 0 is `highest` itself).
        var seen: UInt64
        var lastMillis: Int64
    }

    private var windows: [UInt64: Window] = [:]

    public init() {}

    public var sendersKnown: Int { windows.count }

    /// Takes or refuses a packet's header; a refused one changes nothing.
    public mutating func admit(boot: UInt64, sequence: UInt64, sentAtMillis: Int64, nowMillis: Int64) -> Verdict {
        let (difference, overflow) = nowMillis.subtractingReportingOverflow(sentAtMillis)
        guard !overflow, difference.magnitude <= UInt64(Self.ageMaxMillis) else { return .stale }
        guard var window = windows[boot] else {
            if windows.count >= Self.sendersMax { forgetIdle(nowMillis: nowMillis) }
            windows[boot] = Window(highest: sequence, seen: 1, lastMillis: nowMillis)
            return .fresh
        }
        if sequence > window.highest {
            let shift = sequence - window.highest
            window.seen = shift >= 64 ? 1 : (window.seen << shift) | 1
            window.highest = sequence
        } else {
            let behind = window.highest - sequence
            guard behind < Self.windowPackets, window.seen & (1 << behind) == 0 else { return .replayed }
            window.seen |= 1 << behind
        }
        window.lastMillis = nowMillis
        windows[boot] = window
        return .fresh
    }

    /// Forgets boots idle past `ageMaxMillis` (their packets are stale by now); if none is,
    /// the longest idle one.
    private mutating func forgetIdle(nowMillis: Int64) {
        let before = windows.count
        windows = windows.filter { nowMillis - $0.value.lastMillis <= Self.ageMaxMillis }
        if windows.count == before, let oldest = windows.min(by: { $0.value.lastMillis < $1.value.lastMillis }) {
            windows[oldest.key] = nil
        }
    }

    /// The header a sender puts first in a packet's plaintext.
    public static func header(boot: UInt64, sequence: UInt64, sentAtMillis: Int64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerBytes)
        for value in [boot, sequence, UInt64(bitPattern: sentAtMillis)] {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        }
        return bytes
    }

    /// The header of an opened packet and where the packet itself starts; nil when too short.
    public static func parse(_ plain: [UInt8]) -> (boot: UInt64, sequence: UInt64, sentAtMillis: Int64)? {
        guard plain.count >= headerBytes else { return nil }
        func read(_ offset: Int) -> UInt64 { plain[offset..<offset + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        return (read(0), read(8), Int64(bitPattern: read(16)))
    }
}
