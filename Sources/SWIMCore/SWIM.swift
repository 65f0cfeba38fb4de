import Seeded

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The SWIM failure detector and membership protocol with the Lifeguard refinements, as a pure
/// state machine: no sockets, no clock, no system randomness. Time comes in as `now` (any
/// monotonic origin, the same for every call), randomness from the seed.
///
/// Inputs: `onTick(now:)` every few milliseconds (the shell's timer; a tenth of the probe
/// interval is plenty), `onPacket(_:from:now:)` for each decoded datagram, `join`, `leave`,
/// `updateTags`. Each returns `[Directive]`: packets to send (best effort, in any order) and
/// changes of this node's view, which the shell publishes in the order given.
///
/// Deterministic: the same seed and inputs give the same outputs (dictionaries are walked in
/// key order wherever the order reaches an output).
///
/// Invariants (checked by the simulator at every step): this node never sees itself as other
/// than alive or left; an incarnation this node holds for a member never goes down; a member's
/// status at the same incarnation only moves alive -> suspect -> dead; every packet built fits
/// `gossipPacketBytesMax - sealBytesMax`.
public struct SWIM: Sendable {
    public let settings: SWIMSettings
    public private(set) var me: Member
    private var members: [MemberID: Member] = [:]
    /// SWIM §4.3: members are probed in a shuffled round-robin order.
    private var probeOrder: [MemberID] = []
    private var probeCursor = 0
    private var probe: Probe?
    private var nextProbeAt: Duration
    private var relays: [UInt32: Relay] = [:]
    private var suspicions: [MemberID: Suspicion] = [:]
    /// When each member's last packet reached us.
    private var lastHeard: [MemberID: Duration] = [:]
    private var broadcasts = Broadcasts()
    /// Lifeguard §IV.A local health multiplier: 0 is healthy.
    public private(set) var localHealth = 0
    private var sequence: UInt32 = 0
    private var rng: SplitMix64
    private var lastTick: Duration
    private var nextPushPullAt: Duration
    private var nextReconnectAt: Duration
    private var nextGossipAt: Duration
    private var seeds: [String] = []
    private var nextJoinAt: Duration?
    private var leaving = false
    private var out: [Directive] = []
    public private(set) var stats = Stats()

    /// Counters the shell exports as metrics.
    public struct Stats: Sendable, Hashable {
        public var probes = 0
        public var probesFailed = 0
        public var indirectProbes = 0
        public var suspicionsRaised = 0
        public var refutations = 0
        public var declaredDead = 0
        public var packetsSent = 0
        public var packetsReceived = 0
        public var packetsIgnored = 0
        public var updatesDropped = 0

        public init() {}
    }

    private struct Probe {
        var target: MemberID
        var sequence: UInt32
        var indirectAt: Duration
        var endAt: Duration
        var indirectSent = false
        var nacksExpected = 0
        var nacksReceived = 0
    }

    private struct Relay {
        var requester: String
        var requesterSequence: UInt32
        var nackAt: Duration
        var forgetAt: Duration
        var nackSent = false
    }

    /// Lifeguard §IV.B: a suspicion that shrinks from `longest` to `shortest` as independent
    /// members confirm it (`expected` confirmations reach the shortest).
    private struct Suspicion {
        var incarnation: Incarnation
        var startedAt: Duration
        var shortest: Duration
        var longest: Duration
        var expected: Int
        /// Who raised it; its later word is no confirmation.
        var origin: MemberID
        var confirmedBy: Set<MemberID>
        /// Whether the deadline was already pushed back once because the member spoke to us.
        var extended = false

        var deadline: Duration {
            guard expected > 0, !confirmedBy.isEmpty else { return startedAt + (expected > 0 ? longest : shortest) }
            let fraction = min(1, log(Double(confirmedBy.count + 1)) / log(Double(expected + 1)))
            let timeout = longest - (longest - shortest) * fraction
            return startedAt + max(shortest, timeout)
        }
    }

    public init(id: MemberID, address: String, metadata: Metadata, incarnation: Incarnation = 0, settings: SWIMSettings = SWIMSettings(), seed: UInt64, now: Duration) throws(GossipError) {
        try settings.validate()
        try metadata.validate()
        guard !id.isEmpty, id.utf8.count <= Member.idBytesMax else { throw .invalid("member id must be 1...\(Member.idBytesMax) bytes") }
        guard !address.isEmpty, address.utf8.count <= Metadata.addressBytesMax else { throw .invalid("gossip address '\(address)' is empty or too long") }
        self.settings = settings
        me = Member(id: id, address: address, status: .alive, incarnation: incarnation, metadata: metadata)
        rng = SplitMix64(seed: seed)
        lastTick = now
        nextProbeAt = now + settings.probeInterval
        nextPushPullAt = now + settings.pushPullInterval
        nextReconnectAt = now + settings.reconnectInterval
        nextGossipAt = now + settings.gossipInterval
    }

    // MARK: Views

    /// Every member this node knows, itself included, sorted by id.
    public var view: [Member] { ([me] + members.values).sorted { $0.id < $1.id } }

    public func member(_ id: MemberID) -> Member? { id == me.id ? me : members[id] }

    /// Alive and suspect members, this node included (SWIM's N).
    public var activeCount: Int { 1 + members.values.filter { $0.status.isActive }.count }

    public var broadcastsQueued: Int { broadcasts.count }

    // MARK: Inputs

    /// Starts (or restarts) joining through `seeds` (gossip addresses; this node's own address is
    /// skipped): a push-pull to each, repeated every `joinRetryInterval` until a member answers.
    public mutating func join(seeds: [String], now: Duration) -> [Directive] {
        self.seeds = seeds.filter { $0 != me.address }
        nextJoinAt = self.seeds.isEmpty ? nil : now
        tick(now)
        return drain()
    }

    public mutating func onTick(now: Duration) -> [Directive] {
        tick(now)
        return drain()
    }

    public mutating func onPacket(_ packet: Packet, from address: String, now: Duration) -> [Directive] {
        receive(packet, from: address, now: now)
        return drain()
    }

    /// Leaves gracefully: announces `left` at a higher incarnation to every active member. The
    /// shell sends what this returns, then stops.
    public mutating func leave(now: Duration) -> [Directive] {
        guard !leaving else { return [] }
        leaving = true
        me.incarnation += 1
        me.status = .left
        let update = Update.dead(id: me.id, incarnation: me.incarnation, from: me.id)
        for member in members.values.sorted(by: { $0.id < $1.id }) where member.status.isActive {
            emitSend(.gossip, to: member.address, leading: [update])
        }
        return drain()
    }

    /// Replaces this node's tags and announces them at a higher incarnation.
    public mutating func updateTags(_ tags: [String: String], now: Duration) throws(GossipError) -> [Directive] {
        var metadata = me.metadata
        metadata.tags = tags
        try metadata.validate()
        guard metadata != me.metadata else { return [] }
        me.metadata = metadata
        me.incarnation += 1
        enqueue(aliveUpdate(me))
        out.append(.changed(MemberChange(member: me, previous: .alive)))
        return drain()
    }

    // MARK: Time

    private mutating func tick(_ now: Duration) {
        defer { lastTick = max(lastTick, now) }
        if now - lastTick > settings.pauseThreshold {
            // This process was paused or starved: what timed out meanwhile says nothing about the
            // others. Drop the probe in flight, give suspicions the lost time back, and distrust
            // our own timing for a while (Lifeguard §IV.A).
            let gap = now - lastTick
            probe = nil
            relays = [:]
            for id in suspicions.keys { suspicions[id]!.startedAt += gap }
            raiseLocalHealth(by: 1)
            nextProbeAt = now
        }
        guard !leaving else { return }
        if let joinAt = nextJoinAt, now >= joinAt {
            if members.values.contains(where: { $0.status.isActive }) {
                nextJoinAt = nil
            } else {
                for seed in seeds { sendState(to: seed, replyWanted: true) }
                nextJoinAt = now + settings.joinRetryInterval
            }
        }
        advanceProbe(now)
        expireRelays(now)
        expireSuspicions(now)
        if now >= nextGossipAt {
            nextGossipAt = now + settings.gossipInterval
            for member in randomMembers(count: settings.gossipFanout, excluding: [], suspectsToo: true) where broadcasts.count > 0 {
                emitSend(.gossip, to: member.address, skipEmpty: true)
            }
        }
        if now >= nextPushPullAt {
            nextPushPullAt = now + settings.pushPullInterval
            if let peer = randomActive(excluding: []) { sendState(to: peer.address, replyWanted: true) }
        }
        if now >= nextReconnectAt {
            nextReconnectAt = now + settings.reconnectInterval
            let dead = members.values.filter { $0.status == .dead }.sorted { $0.id < $1.id }
            if !dead.isEmpty { sendState(to: dead[Int(rng.next() % UInt64(dead.count))].address, replyWanted: true) }
        }
    }

    private func scaled(_ duration: Duration) -> Duration { duration * (1 + localHealth) }

    private mutating func advanceProbe(_ now: Duration) {
        if var current = probe {
            if !current.indirectSent, now >= current.indirectAt {
                current.indirectSent = true
                if let target = members[current.target] {
                    let helpers = randomMembers(count: settings.indirectProbes, excluding: [target.id])
                    for helper in helpers {
                        emitSend(.pingRequest(sequence: current.sequence, target: target.id, targetAddress: target.address), to: helper.address)
                    }
                    current.nacksExpected = helpers.count
                    stats.indirectProbes += helpers.count
                    // A second direct ping with the same sequence: one lost datagram alone must not
                    // raise a suspicion (memberlist sends a TCP ping here).
                    emitSend(.ping(sequence: current.sequence, target: target.id), to: target.address)
                }
                probe = current
            }
            if now >= current.endAt {
                probe = nil
                probeFailed(current, now: now)
            }
        }
        guard probe == nil, now >= nextProbeAt else { return }
        nextProbeAt = now + scaled(settings.probeInterval)
        guard let target = nextProbeTarget() else { return }
        sequence &+= 1
        probe = Probe(target: target.id, sequence: sequence, indirectAt: now + scaled(settings.probeTimeout), endAt: now + scaled(settings.probeInterval))
        stats.probes += 1
        // Lifeguard §IV.C buddy system: a suspect hears of its suspicion first, so it refutes at once.
        let leading = target.status == .suspect ? [Update.suspect(id: target.id, incarnation: target.incarnation, from: me.id)] : []
        emitSend(.ping(sequence: sequence, target: target.id), to: target.address, leading: leading)
    }

    private mutating func probeFailed(_ failed: Probe, now: Duration) {
        stats.probesFailed += 1
        // Lifeguard §IV.A: a failed probe with silent helpers hints that we are the slow one.
        let missedNacks = failed.nacksExpected - failed.nacksReceived
        raiseLocalHealth(by: failed.nacksExpected > 0 ? max(0, missedNacks) : 1)
        guard let target = members[failed.target], target.status.isActive else { return }
        // Alive: raise a suspicion. Suspect already: our failed probe confirms it.
        apply(.suspect(id: target.id, incarnation: target.incarnation, from: me.id), now: now)
    }

    private mutating func expireRelays(_ now: Duration) {
        for (sequence, relay) in relays.sorted(by: { $0.key < $1.key }) {
            if now >= relay.forgetAt {
                relays[sequence] = nil
            } else if !relay.nackSent, now >= relay.nackAt {
                relays[sequence]!.nackSent = true
                emitSend(.nack(sequence: relay.requesterSequence), to: relay.requester)
            }
        }
    }

    private mutating func expireSuspicions(_ now: Duration) {
        for (id, suspicion) in suspicions.sorted(by: { $0.key < $1.key }) where now >= suspicion.deadline {
            suspicions[id] = nil
            guard var member = members[id], member.status == .suspect, member.incarnation == suspicion.incarnation else { continue }
            if !suspicion.extended, let heard = lastHeard[id], heard >= suspicion.startedAt {
                // It spoke to us while suspected, so its refutation is likely lost on the way: one
                // more window, and the suspicion straight to it (buddy system) so it refutes.
                var again = suspicion
                again.extended = true
                again.startedAt = now
                suspicions[id] = again
                emitSend(.gossip, to: member.address, leading: [.suspect(id: id, incarnation: member.incarnation, from: me.id)])
                continue
            }
            member.status = .dead
            stats.declaredDead += 1
            setMember(member, previous: .suspect)
            enqueue(.dead(id: id, incarnation: member.incarnation, from: me.id))
        }
    }

    // MARK: Packets

    private mutating func receive(_ packet: Packet, from address: String, now: Duration) {
        guard packet.from != me.id else { stats.packetsIgnored += 1; return }
        stats.packetsReceived += 1
        if members[packet.from] != nil { lastHeard[packet.from] = now }
        for update in packet.updates { apply(update, now: now) }
        if let sender = members[packet.from], !sender.status.isActive, !leaving {
            // A member we hold dead is talking: tell it, so it refutes with a higher incarnation.
            emitSend(.gossip, to: address, leading: [.dead(id: sender.id, incarnation: sender.incarnation, from: me.id)])
        }
        guard !leaving else { return }
        switch packet.message {
        case .ping(let sequence, let target):
            guard target == me.id else { stats.packetsIgnored += 1; return }
            emitSend(.ack(sequence: sequence), to: address)
        case .pingRequest(let sequence, let target, let targetAddress):
            guard target != me.id, relays.count < settings.relaysMax else { stats.packetsIgnored += 1; return }
            self.sequence &+= 1
            relays[self.sequence] = Relay(
                requester: address, requesterSequence: sequence, nackAt: now + scaled(settings.probeTimeout),
                forgetAt: now + scaled(settings.probeInterval))
            emitSend(.ping(sequence: self.sequence, target: target), to: targetAddress)
        case .ack(let sequence):
            if let relay = relays.removeValue(forKey: sequence) {
                emitSend(.ack(sequence: relay.requesterSequence), to: relay.requester)
            } else if let current = probe, current.sequence == sequence {
                probe = nil
                localHealth = max(0, localHealth - 1)
            }
        case .nack(let sequence):
            if probe?.sequence == sequence { probe!.nacksReceived += 1 }
        case .pushPull(let replyWanted, let remote):
            for member in remote { merge(member, from: packet.from, now: now) }
            if replyWanted { sendState(to: address, replyWanted: false) }
        case .gossip:
            break
        }
    }

    /// Push-pull merge: another member's full view, member by member. A member it holds dead is
    /// only suspected here (its view may be old); one that left is taken as left.
    private mutating func merge(_ member: Member, from sender: MemberID, now: Duration) {
        switch member.status {
        case .alive:
            apply(.alive(id: member.id, incarnation: member.incarnation, address: member.address, metadata: member.metadata), now: now)
        case .suspect, .dead:
            if members[member.id] == nil, member.id != me.id {
                // Learn the member first so the suspicion has something to hold.
                apply(.alive(id: member.id, incarnation: member.incarnation, address: member.address, metadata: member.metadata), now: now)
            }
            if member.id == me.id, member.status == .dead {
                apply(.dead(id: member.id, incarnation: member.incarnation, from: sender), now: now)
            } else {
                apply(.suspect(id: member.id, incarnation: member.incarnation, from: sender), now: now)
            }
        case .left:
            apply(.dead(id: member.id, incarnation: member.incarnation, from: member.id), now: now)
        }
    }

    // MARK: Updates (SWIM §4.2)

    private mutating func apply(_ update: Update, now: Duration) {
        if update.subject == me.id {
            applyAboutMe(update)
            return
        }
        switch update {
        case .alive(let id, let incarnation, let address, let metadata):
            if let known = members[id] {
                guard incarnation > known.incarnation else { return }
                var member = known
                member.incarnation = incarnation
                member.address = address
                member.metadata = metadata
                member.status = .alive
                suspicions[id] = nil
                setMember(member, previous: known.status)
            } else {
                guard makeRoom() else { stats.updatesDropped += 1; return }
                let member = Member(id: id, address: address, status: .alive, incarnation: incarnation, metadata: metadata)
                setMember(member, previous: nil)
                let slot = probeOrder.isEmpty ? 0 : Int(rng.next() % UInt64(probeOrder.count + 1))
                probeOrder.insert(id, at: slot)
                if slot < probeCursor { probeCursor += 1 }
            }
            enqueue(update)
        case .suspect(let id, let incarnation, let from):
            guard let known = members[id], incarnation >= known.incarnation, known.status.isActive else { return }
            if known.status == .suspect, incarnation == known.incarnation {
                // An independent confirmation shortens the suspicion (Lifeguard §IV.B) and is passed on.
                guard var suspicion = suspicions[id], from != suspicion.origin else { return }
                if suspicion.confirmedBy.insert(from).inserted {
                    suspicions[id] = suspicion
                    enqueue(update)
                }
                return
            }
            suspect(id, incarnation: incarnation, from: from, now: now)
        case .dead(let id, let incarnation, let from):
            guard let known = members[id], incarnation >= known.incarnation, known.status.isActive || (known.status == .dead && from == id) else { return }
            var member = known
            member.incarnation = incarnation
            member.status = from == id ? .left : .dead
            suspicions[id] = nil
            setMember(member, previous: known.status)
            enqueue(update)
        }
    }

    private mutating func applyAboutMe(_ update: Update) {
        guard !leaving else { return }
        switch update {
        case .alive(_, let incarnation, let address, let metadata):
            // An older life of ours, or someone's stale copy: out-bid it.
            guard incarnation > me.incarnation || (incarnation == me.incarnation && (address != me.address || metadata != me.metadata)) else { return }
            refute(above: incarnation)
        case .suspect(_, let incarnation, _), .dead(_, let incarnation, _):
            guard incarnation >= me.incarnation else {
                // Someone still holds an old suspicion: our refutation missed it. Say it again.
                if !broadcasts.contains(me.id) { enqueue(aliveUpdate(me)) }
                return
            }
            refute(above: incarnation)
            raiseLocalHealth(by: 1)
        }
    }

    private mutating func refute(above incarnation: Incarnation) {
        me.incarnation = incarnation + 1
        stats.refutations += 1
        enqueue(aliveUpdate(me))
    }

    private mutating func suspect(_ id: MemberID, incarnation: Incarnation, from: MemberID, now: Duration) {
        guard var member = members[id] else { return }
        let previous = member.status
        member.status = .suspect
        member.incarnation = incarnation
        stats.suspicionsRaised += from == me.id ? 1 : 0
        let n = Double(activeCount)
        let shortest = settings.probeInterval * (Double(settings.suspicionMultiplier) * max(1, log10(n)))
        let expected = activeCount - 2 < settings.suspicionMultiplier - 2 ? 0 : settings.suspicionMultiplier - 2
        suspicions[id] = Suspicion(
            incarnation: incarnation, startedAt: now, shortest: shortest, longest: shortest * settings.suspicionMaxMultiplier,
            expected: expected, origin: from, confirmedBy: [])
        setMember(member, previous: previous)
        enqueue(.suspect(id: id, incarnation: incarnation, from: from))
    }

    private mutating func setMember(_ member: Member, previous: MemberStatus?) {
        if let known = members[member.id] {
            precondition(member.incarnation >= known.incarnation, "incarnation of \(member.id) went back: \(member.incarnation) < \(known.incarnation)")
        }
        members[member.id] = member
        out.append(.changed(MemberChange(member: member, previous: previous)))
    }

    /// Frees a slot for a new member when the table is full by forgetting the oldest dead one.
    private mutating func makeRoom() -> Bool {
        guard members.count >= settings.membersMax - 1 else { return true }
        guard let gone = members.values.filter({ !$0.status.isActive }).min(by: { ($0.incarnation, $0.id) < ($1.incarnation, $1.id) }) else { return false }
        members[gone.id] = nil
        lastHeard[gone.id] = nil
        probeOrder.removeAll { $0 == gone.id }
        probeCursor = min(probeCursor, probeOrder.count)
        return true
    }

    private mutating func raiseLocalHealth(by amount: Int) {
        localHealth = min(settings.localHealthMax, localHealth + amount)
    }

    // MARK: Choosing members

    private mutating func nextProbeTarget() -> Member? {
        for _ in 0..<(probeOrder.count + 1) {
            if probeCursor >= probeOrder.count {
                probeOrder.removeAll { members[$0]?.status.isActive != true }
                probeOrder.shuffle(using: &rng)
                probeCursor = 0
                // Members that came back (alive again) rejoin the round here.
                for member in members.values.sorted(by: { $0.id < $1.id }) where member.status.isActive && !probeOrder.contains(member.id) {
                    probeOrder.append(member.id)
                }
                guard !probeOrder.isEmpty else { return nil }
            }
            let id = probeOrder[probeCursor]
            probeCursor += 1
            if let member = members[id], member.status.isActive { return member }
        }
        return nil
    }

    private mutating func randomMembers(count: Int, excluding: Set<MemberID>, suspectsToo: Bool = false) -> [Member] {
        var candidates = members.values.filter { (suspectsToo ? $0.status.isActive : $0.status == .alive) && !excluding.contains($0.id) }.sorted { $0.id < $1.id }
        candidates.shuffle(using: &rng)
        return Array(candidates.prefix(count))
    }

    private mutating func randomActive(excluding: Set<MemberID>) -> Member? {
        randomMembers(count: 1, excluding: excluding).first
    }

    // MARK: Output

    private func aliveUpdate(_ member: Member) -> Update {
        .alive(id: member.id, incarnation: member.incarnation, address: member.address, metadata: member.metadata)
    }

    private var retransmitLimit: Int {
        settings.retransmitMultiplier * Int(log10(Double(activeCount + 1)).rounded(.up))
    }

    private mutating func enqueue(_ update: Update) {
        stats.updatesDropped += broadcasts.add(update, bound: settings.broadcastsMax)
    }

    /// Sends `message` with `leading` updates first, then as many queued updates as fit.
    private mutating func emitSend(_ message: Message, to address: String, leading: [Update] = [], skipEmpty: Bool = false) {
        var budget = settings.packetBytesMax - SWIMCodec.size(from: me.id, message)
        var updates: [Update] = []
        for update in leading {
            let size = SWIMCodec.size(of: update)
            guard size <= budget else { break }
            budget -= size
            updates.append(update)
        }
        updates += broadcasts.take(budget: budget, limit: retransmitLimit, skipping: Set(updates))
        if skipEmpty, updates.isEmpty { return }
        stats.packetsSent += 1
        out.append(.send(Packet(from: me.id, message: message, updates: updates), to: address))
    }

    /// Sends this node's full view as push-pull chunks that each fit a packet.
    private mutating func sendState(to address: String, replyWanted: Bool) {
        let all = [me] + members.values.sorted { $0.id < $1.id }
        let empty = SWIMCodec.size(from: me.id, .pushPull(replyWanted: replyWanted, members: []))
        var chunk: [Member] = []
        var size = empty
        for member in all {
            let memberSize = SWIMCodec.size(of: member)
            if size + memberSize > settings.packetBytesMax, !chunk.isEmpty {
                emitStateChunk(chunk, to: address, replyWanted: replyWanted)
                chunk = []
                size = empty
            }
            chunk.append(member)
            size += memberSize
        }
        if !chunk.isEmpty { emitStateChunk(chunk, to: address, replyWanted: replyWanted) }
    }

    private mutating func emitStateChunk(_ chunk: [Member], to address: String, replyWanted: Bool) {
        stats.packetsSent += 1
        // Only the first chunk asks for a reply, so the other side answers once.
        out.append(.send(Packet(from: me.id, message: .pushPull(replyWanted: replyWanted && chunk.first?.id == me.id, members: chunk)), to: address))
    }

    private mutating func drain() -> [Directive] {
        defer { out = [] }
        return out
    }
}

/// Updates waiting to be piggybacked, one per member (newer news replaces older), sent the
/// least-sent first, each until it reached the retransmit limit. Each update's encoded size is
/// computed once, when it is queued.
struct Broadcasts: Sendable {
    private var entries: [MemberID: (update: Update, size: Int, sent: Int, order: UInt64)] = [:]
    private var nextOrder: UInt64 = 0

    var count: Int { entries.count }

    func contains(_ subject: MemberID) -> Bool { entries[subject] != nil }

    /// Queues `update`; returns how many updates were dropped to stay within `bound`.
    mutating func add(_ update: Update, bound: Int) -> Int {
        nextOrder += 1
        entries[update.subject] = (update, SWIMCodec.size(of: update), 0, nextOrder)
        var dropped = 0
        while entries.count > bound, let worst = entries.max(by: { ($0.value.sent, -Int64($0.value.order)) < ($1.value.sent, -Int64($1.value.order)) }) {
            entries[worst.key] = nil
            dropped += 1
        }
        return dropped
    }

    mutating func take(budget: Int, limit: Int, skipping: Set<Update>) -> [Update] {
        var budget = budget
        var taken: [Update] = []
        let ordered = entries.sorted { ($0.value.sent, $0.value.order) < ($1.value.sent, $1.value.order) }
        for (id, entry) in ordered {
            if skipping.contains(entry.update) { continue }
            guard entry.size <= budget else { continue }
            budget -= entry.size
            taken.append(entry.update)
            if entry.sent + 1 >= limit { entries[id] = nil } else { entries[id]!.sent += 1 }
            if budget < 24 { break }
        }
        return taken
    }
}
