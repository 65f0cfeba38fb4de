/// The one clock every timer, deadline and core's `now` reads: monotonic (`ContinuousClock`), so a
/// wall-clock step (NTP, an operator) neither fires a timer early nor stalls one.
///
/// Wall time is read only where another process or a person reads the value: record timestamps,
/// a gossip packet's sent time checked by another member, certificate validity.
public enum Monotonic {
    public typealias Instant = ContinuousClock.Instant

    /// The origin of `now()`: the first read in this process.
    private static let origin = ContinuousClock.now

    /// Time since the process's origin, for cores that take `now` as a `Duration`.
    @inline(__always)
    public static func now() -> Duration { ContinuousClock.now - origin }

    /// `instant` on the scale of `now()`.
    public static func duration(of instant: Instant) -> Duration { instant - origin }

    /// The instant `duration` from now.
    public static func after(_ duration: Duration) -> Instant { ContinuousClock.now.advanced(by: duration) }
}
