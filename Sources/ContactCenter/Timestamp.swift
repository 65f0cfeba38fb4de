/// Milliseconds since the Unix epoch, UTC. Commands carry timestamps; apply never reads a clock.
public struct Timestamp: Sendable, Hashable, Comparable {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public func adding(milliseconds delta: Int64) -> Timestamp { Timestamp(milliseconds: milliseconds + delta) }

    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T19:57:46.123Z`.
    public var rfc3339: String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(26)
        writeRFC3339(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `rfc3339`'s UTF-8: JSON output writes it in place, without a `String` in between
    /// (a conversation renders three of these in every event).
    public func writeRFC3339(into bytes: inout [UInt8]) {
        let millisecondsPerDay: Int64 = 86_400_000
        var days = milliseconds / millisecondsPerDay
        var rest = milliseconds % millisecondsPerDay
        if rest < 0 { rest += millisecondsPerDay; days -= 1 }
        let (year, month, day) = Self.civil(fromDays: days)
        let hour = rest / 3_600_000, minute = rest / 60_000 % 60, second = rest / 1000 % 60, milli = rest % 1000
        func digits(_ value: Int64, _ width: Int) {
            var divisor: Int64 = 1
            for _ in 1..<width { divisor *= 10 }
            // Only a year past 9999 is wider than its field.
            guard value < divisor * 10 else { return bytes.append(contentsOf: String(value).utf8) }
            var remaining = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: remaining / divisor))
                remaining %= divisor
                divisor /= 10
            }
        }
        if year < 0 { bytes.append(UInt8(ascii: "-")) }  // not inside `digits`: "-0001", not "00-1"
        digits(abs(year), 4)
        bytes.append(UInt8(ascii: "-")); digits(month, 2)
        bytes.append(UInt8(ascii: "-")); digits(day, 2)
        bytes.append(UInt8(ascii: "T")); digits(hour, 2)
        bytes.append(UInt8(ascii: ":")); digits(minute, 2)
        bytes.append(UInt8(ascii: ":")); digits(second, 2)
        bytes.append(UInt8(ascii: ".")); digits(milli, 3)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil_from_days).
    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthPrime + 2) / 5 + 1
        let month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
