import ContactCenter
import Hummingbird
import Logging
import NodeRuntime
import Storage

/// The HTTP API of one node (API.md). Handlers turn requests into commands (resolving ids,
/// times and hashes here), propose them, and render what apply did.
public struct API: Sendable {
    let node: Node
    let logger: Logger
    /// A hash of a random password at the node's rounds, so failed logins for unknown emails
    /// take as long as for known ones.
    let decoyPasswordHash: String
    let sessions = SessionCache()
    /// Inboxes as webhooks read them (at most a second old).
    let inboxes = InboxCache()
    let typing = TypingCoalescer()
    /// Web chat visitors' writes per client address: anyone may write in, so a token bucket per
    /// address (`webChatWritesPerSecondPerAddress`, with its burst) bounds what one address can
    /// make the cluster store.
    let webChatGuard = LoginGuard(perSecond: API.webChatWritesPerSecondPerAddress)
    static let webChatWritesPerSecondPerAddress = 5.0
    let loginGuard: LoginGuard
    /// Rendered conversations, dropped by apply as it writes them (see `ConversationViews`).
    let conversationViews = ConversationViews()

    /// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). When a node
    /// dies, a third of the cluster's event sockets reconnect at once through the balancer; at
    /// Hummingbird's default (256) the queue overflowed, SYNs were dropped and each retried after
    /// the kernel's one-second SYN timeout, which the balancer took for a dead node.
    public static let listenBacklog = 4096

    public init(node: Node, logger: Logger) {
        self.node = node
        self.logger = logger
        decoyPasswordHash = node.passwords.decoy()
        loginGuard = LoginGuard(perSecond: node.configuration.loginsPerSecondPerAddress)
        node.state.onCommit { [conversationViews, sessions] changes in
            conversationViews.invalidate(changes)
            sessions.evict(tokenHashes: changes.endedSessions)
        }
    }

    /// Honours `?consistency=` and `?minIndex=` before a read.
    func readBarrier(_ request: Request) async throws {
        let query = request.uri.queryParameters
        if let raw = query.get("minIndex") {
            guard let index = Int64(raw), index >= 0 else { throw APIError.malformed("minIndex must be a non-negative integer", field: "minIndex") }
            if index > node.appliedIndex, UInt64(index) > node.loop.status.commitIndex {
                // Past what this node knows committed. A client learns only committed indexes
                // (X-Switchboard-Index), so ask the leader once (ReadIndex): past its commit the
                // client asked for the impossible, a 400, not a wait that ends in a 503.
                try await node.linearizableBarrier()
                guard node.appliedIndex >= index else {
                    throw APIError(
                        .badRequest, "min_index_ahead",
                        "minIndex \(index) is past the cluster's commit index \(node.appliedIndex); pass an X-Switchboard-Index this cluster returned",
                        field: "minIndex")
                }
            }
            try await node.waitApplied(index)
        }
        switch query.get("consistency") ?? "linearizable" {
        case "linearizable": try await node.linearizableBarrier()
        case "local": break
        case let other: throw APIError.malformed("consistency must be linearizable or local, got '\(other)'", field: "consistency")
        }
    }

    /// `?limit=` (default 50, max 500) and `?cursor=`.
    func pagination(_ request: Request) throws -> (limit: Int, cursor: String?) {
        let query = request.uri.queryParameters
        var limit = 50
        if let raw = query.get("limit") {
            guard let value = Int(raw), (1...500).contains(value) else { throw APIError.malformed("limit must be 1...500", field: "limit") }
            limit = value
        }
        return (limit, query.get("cursor"))
    }

    /// Proposes a client's command and answers it (`Answer`): the recorded answer when the
    /// request carried an idempotency key (the first answer again on a retry, marked
    /// `Idempotent-Replayed: true`), else the entity as this node now holds it.
    func answer(_ command: Command, as principal: Principal, context: APIRequestContext) async throws -> Response {
        let proposal = try await propose(command, as: principal, context: context)
        if let recorded = try Self.settled(proposal) { return recorded }
        let outcome = proposal.outcome
        guard let answer = try await read({ try Answer.render(command, outcome, store: $0.store) }) else { throw APIError.from(outcome) }
        return Self.response(answer, replayed: false)
    }

    /// Proposes and returns what apply did. `readsBack: false` for a handler that answers from the
    /// outcome alone (see `Node.propose`).
    func propose(_ command: Command, as principal: Principal, context: APIRequestContext, readsBack: Bool = true) async throws -> Proposal {
        try await node.propose(command, actor: principal.actor, idempotency: context.idempotency, readsBack: readsBack)
    }

    /// The answer recorded under an idempotency key, if the proposal has one; a rejection
    /// without a key is thrown as its HTTP error.
    static func settled(_ proposal: Proposal) throws -> Response? {
        switch proposal.outcome {
        case .answered(let answer): return response(answer, replayed: proposal.replayed)
        case .rejected(let error): throw APIError(error)
        default: return nil
        }
    }

    static func response(_ answer: RecordedAnswer, replayed: Bool) -> Response {
        var headers: HTTPFields = [:]
        if !answer.body.isEmpty { headers[.contentType] = "application/json; charset=utf-8" }
        if let etag = answer.etag { headers[.eTag] = "\"\(etag)\"" }
        if replayed { headers[.idempotentReplayed] = "true" }
        return Response(
            status: HTTPResponse.Status(code: answer.status), headers: headers,
            body: answer.body.isEmpty ? ResponseBody() : ResponseBody(byteBuffer: ByteBuffer(string: answer.body)))
    }

    func read<T: Sendable>(_ body: @Sendable @escaping (StateReader) throws -> T) async throws -> T {
        try await node.state.read(body)
    }

    /// `read`, and when it finds nothing, once more after a read barrier: what another node
    /// committed a moment ago (a webhook's inbox, a reply a visitor's socket showed) may not
    /// have reached this one yet. A miss costs the barrier, a hit nothing.
    func readCaughtUp<T: Sendable>(_ body: @Sendable @escaping (StateReader) throws -> T?) async throws -> T? {
        if let found = try await read(body) { return found }
        try await node.linearizableBarrier()
        return try await read(body)
    }

    static func page(_ items: [JSONValue], nextCursor: String?) -> JSONValue {
        .object(["items": .array(items), "nextCursor": .optional(nextCursor)])
    }

    static func etag(_ version: Int64) -> HTTPFields { [.eTag: "\"\(version)\""] }

    /// Builds the router with every route of API.md and the middleware that stamps headers,
    /// renders errors and counts requests.
    public func router(metrics: APIMetrics) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: WebChatCORSMiddleware())
        router.add(middleware: APIMiddleware(node: node, metrics: metrics, logger: logger))
        addHealthRoutes(to: router, metrics: metrics)
        addAgentRoutes(to: router)
        addDirectoryRoutes(to: router)
        addInboxRoutes(to: router)
        addWebChatRoutes(to: router)
        addConsoleRoutes(to: router)
        addConversationRoutes(to: router)
        addEventRoutes(to: router, metrics: metrics)
        return router
    }
}
