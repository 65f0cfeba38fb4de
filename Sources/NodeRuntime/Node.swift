import ContactCenter
import Foundation
import Logging
import Storage

/// Settings of one node; defaults suit a single machine.
public struct NodeConfiguration: Sendable {
    public var id: String
    /// Holds `log/commands.log`, `state.sqlite` and `LOCK`.
    public var dataDirectory: String
    /// The API's `host:port`, as shown in `/v1/cluster`.
    public var apiAddress: String?
    /// SHA-256 (hex) of the admin token.
    public var adminTokenHash: String
    /// SHA-256 (hex) of the channel webhook token, if one is set.
    public var channelTokenHash: String?
    public var passwordRounds: Int = PasswordHasher.productionRounds
    /// How long a session token stays valid after login.
    public var sessionLifetime: Duration = .seconds(12 * 3600)
    /// Events (and idempotency records) older than this many log entries are trimmed.
    public var eventsWindowEntries: Int64 = 200_000
    /// How long a read may wait for `minIndex` or a linearizable barrier.
    public var readWaitMax: Duration = .seconds(5)

    public init(id: String, dataDirectory: String, adminTokenHash: String, channelTokenHash: String? = nil) {
        self.id = id
        self.dataDirectory = dataDirectory
        self.adminTokenHash = adminTokenHash
        self.channelTokenHash = channelTokenHash
    }
}

public enum NodeStartError: Error, CustomStringConvertible {
    case dataDirectory(String, reason: String)
    case locked(String)

    public var description: String {
        switch self {
        case .dataDirectory(let path, let reason): "cannot use data directory \(path): \(reason)"
        case .locked(let path): "data directory \(path) is in use by another switchboard process (\(path)/LOCK is held)"
        }
    }
}

/// A running node: the command log, the state database, the pipeline between them and the
/// event hub. Requests turn into commands here; everything non-deterministic is resolved here.
public final class Node: Sendable {
    public let configuration: NodeConfiguration
    public let state: StateDatabase
    public let hub: EventHub
    public let passwords: PasswordHasher
    let pipeline: CommandPipeline
    /// Password hashing: two at a time, at most `kdfQueuedMax` waiting.
    private let kdf = Offload(label: "switchboard.kdf", lanes: 2, queuedMax: Node.kdfQueuedMax)
    public static let kdfQueuedMax = 256
    private let lockDescriptor: Int32
    let logger: Logger

    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let directory = configuration.dataDirectory
        do {
            try FileManager.default.createDirectory(atPath: directory + "/log", withIntermediateDirectories: true)
        } catch {
            throw NodeStartError.dataDirectory(directory, reason: "\(error)")
        }
        lockDescriptor = open(directory + "/LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lockDescriptor >= 0 else { throw NodeStartError.dataDirectory(directory, reason: "cannot open LOCK") }
        guard flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(lockDescriptor)
            throw NodeStartError.locked(directory)
        }
        let log = try CommandLog(path: directory + "/log/commands.log")
        state = try StateDatabase(path: directory + "/state.sqlite")
        let hub = EventHub()
        self.hub = hub
        passwords = PasswordHasher(rounds: configuration.passwordRounds)
        pipeline = CommandPipeline(log: log, state: state, logger: logger) { events in hub.publish(events) }
        try pipeline.start()
        logger.info(
            "node started",
            metadata: ["node.id": "\(configuration.id)", "node.data": "\(directory)", "raft.applied_index": "\(pipeline.appliedIndex)"])
    }

    deinit { close(lockDescriptor) }

    public var id: String { configuration.id }
    public var appliedIndex: Int64 { pipeline.appliedIndex }
    public var lastIndex: Int64 { pipeline.lastIndex }
    public var logSizeBytes: Int64 { pipeline.logSizeBytes }
    /// Non-nil once the node can no longer apply (log or database failure).
    public var failureReason: String? { pipeline.failureReason }

    /// The node's clock reading, carried by commands. Apply never reads a clock itself.
    public func now() -> Timestamp {
        Timestamp(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
    }

    /// Proposes `command` and returns once it is durable and applied on this node.
    public func propose(_ command: Command, actor: Actor, idempotencyKey: String? = nil) async throws -> Proposal {
        let envelope = CommandEnvelope(at: now(), actor: actor, idempotencyKey: idempotencyKey, command: command)
        return try await pipeline.submit(envelope.encoded())
    }

    /// Waits until `index` is applied here, at most `readWaitMax`.
    public func waitApplied(_ index: Int64) async throws {
        try await pipeline.waiters.wait(for: index, timeout: configuration.readWaitMax)
    }

    /// A linearizable read point: every write acknowledged before this call is applied when it
    /// returns. On one node, that is every entry already in the log.
    @discardableResult
    public func linearizableBarrier() async throws -> Int64 {
        let index = pipeline.lastIndex
        try await waitApplied(index)
        return index
    }

    public func hashPassword(_ password: String) async throws -> String {
        let passwords = self.passwords
        return try await kdf.run { passwords.hash(password) }
    }

    public func verifyPassword(_ password: String, against stored: String) async throws -> Bool {
        let passwords = self.passwords
        return try await kdf.run { passwords.verify(password, against: stored) }
    }

    /// Finishes queued proposals, closes the log and releases the data directory. Idempotent.
    public func shutdown() {
        pipeline.stop()
        flock(lockDescriptor, LOCK_UN)
        logger.info("node stopped", metadata: ["node.id": "\(configuration.id)", "raft.applied_index": "\(pipeline.appliedIndex)"])
    }
}
