/// Settings of the failure detector, grouped as the papers group them; the defaults suit a LAN
/// (or one machine), where a round trip takes well under a millisecond: a dead member is known
/// everywhere in about a second. `validate()` checks them before a core starts.
public struct SWIMSettings: Sendable, Hashable {
    // MARK: Probing (SWIM §3.1)

    /// One member is probed every interval (stretched by the local health multiplier).
    public var probeInterval: Duration = .milliseconds(200)
    /// How long a direct ping waits for its ack before indirect probes start (stretched too).
    public var probeTimeout: Duration = .milliseconds(80)
    /// Members asked to ping the target on our behalf when the direct ping goes unanswered.
    public var indirectProbes = 3

    // MARK: Suspicion (SWIM §4.2, Lifeguard §IV.B)

    /// The shortest suspicion lasts `suspicionMultiplier * max(1, log10(N)) * probeInterval`.
    public var suspicionMultiplier = 4
    /// An unconfirmed suspicion lasts this many times the shortest one; each independent
    /// confirmation shrinks it (logarithmically) towards the shortest.
    public var suspicionMaxMultiplier = 3

    // MARK: Local health (Lifeguard §IV.A)

    /// The local health multiplier goes from 0 (healthy) up to this; timeouts are multiplied by
    /// (1 + multiplier), so a node that is itself slow waits longer before blaming others.
    public var localHealthMax = 8
    /// A gap between two ticks longer than this means the node itself was paused or starved:
    /// its probe in flight is dropped without blaming the target.
    public var pauseThreshold: Duration = .seconds(1)

    // MARK: Dissemination (SWIM §4.1)

    /// Besides riding on probes, queued updates are sent every `gossipInterval` to
    /// `gossipFanout` random members (memberlist's gossip timer): news of a death or a refutation
    /// reaches everyone in a few hundred milliseconds instead of a probe round.
    public var gossipInterval: Duration = .milliseconds(100)
    public var gossipFanout = 3
    /// Each update is sent `retransmitMultiplier * ceil(log10(N + 1))` times.
    public var retransmitMultiplier = 6
    /// Whole datagram, including the seal the shell adds (`sealBytesMax`).
    public var gossipPacketBytesMax = 1400
    /// Updates waiting to be piggybacked; past it, the most-sent ones are dropped first.
    public var broadcastsMax = 1024
    /// Full-state exchange with one random member every interval (repairs missed updates).
    public var pushPullInterval: Duration = .seconds(15)
    /// A push-pull to one random dead member this often, so that the two sides of a healed
    /// partition find each other again (nobody probes the dead).
    public var reconnectInterval: Duration = .seconds(2)
    /// A node that knows no other member retries its seeds this often.
    public var joinRetryInterval: Duration = .seconds(1)

    // MARK: Bounds

    /// Members this node keeps; past it, new members are refused (the oldest dead are dropped first).
    public var membersMax = 1024
    /// Indirect probes this node runs for others at once.
    public var relaysMax = 256

    /// Bytes the shell adds around an encoded packet (version, key id, nonce, tag and the
    /// replay header: 57 today); the core keeps
    /// `gossipPacketBytesMax - sealBytesMax` for the packet itself.
    public static let sealBytesMax = 64

    public init() {}

    public func validate() throws(GossipError) {
        guard probeInterval > .zero, probeTimeout > .zero else { throw .invalid("probeInterval and probeTimeout must be positive") }
        guard probeTimeout < probeInterval else {
            throw .invalid("probeTimeout (\(probeTimeout)) must be shorter than probeInterval (\(probeInterval))")
        }
        guard gossipInterval > .zero, gossipFanout >= 0 else { throw .invalid("gossipInterval must be positive and gossipFanout at least 0") }
        guard indirectProbes >= 0 else { throw .invalid("indirectProbes must be at least 0, got \(indirectProbes)") }
        guard suspicionMultiplier >= 1, suspicionMaxMultiplier >= 1 else {
            throw .invalid("suspicionMultiplier and suspicionMaxMultiplier must be at least 1")
        }
        guard localHealthMax >= 0 else { throw .invalid("localHealthMax must be at least 0") }
        guard retransmitMultiplier >= 1 else { throw .invalid("retransmitMultiplier must be at least 1") }
        guard gossipPacketBytesMax >= 512, gossipPacketBytesMax <= 65_000 else {
            throw .invalid("gossipPacketBytesMax must be in 512...65000, got \(gossipPacketBytesMax)")
        }
        guard broadcastsMax >= 1, membersMax >= 2, relaysMax >= 1 else { throw .invalid("queue bounds must be positive") }
        guard pushPullInterval > .zero, joinRetryInterval > .zero, reconnectInterval > .zero, pauseThreshold > probeInterval else {
            throw .invalid("pushPullInterval, reconnectInterval and joinRetryInterval must be positive and pauseThreshold longer than probeInterval")
        }
    }

    /// The budget the core fills with one encoded packet.
    var packetBytesMax: Int { gossipPacketBytesMax - Self.sealBytesMax }
}
