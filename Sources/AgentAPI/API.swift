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
    /// Rendered conversations, dropped by apply as it writes them (see `ConversationViews`).
    let conversationViews = ConversationViews()

    public init(node: Node, logger: Logger) {
        self.node = node
        self.logger = logger
        decoyPasswordHash = node.passwords.hash(Secrets.token())
        node.state.onCommit { [conversationViews] changes in conversationViews.invalidate(changes) }
    }

    /// Honours `?consistency=` and `?minIndex=` before a read.
    func readBarrier(_ request: Request) async throws {
        let query = request.uri.queryParameters
        if let raw = query.get("minIndex") {
            guard let index = Int64(raw), index >= 0 else { throw APIError.malformed("minIndex must be a non-negative integer", field: "minIndex") }
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

    /// Proposes and returns the outcome, turning a rejection into its HTTP error.
    /// `readsBack: false` for a handler that answers from the outcome alone (see `Node.propose`).
    func propose(_ command: Command, as principal: Principal, request: Request, readsBack: Bool = true) async throws -> Outcome {
        let proposal = try await node.propose(
            command, actor: principal.actor, idempotencyKey: try request.idempotencyKey(), readsBack: readsBack)
        if case .rejected(let error) = proposal.outcome { throw APIError(error) }
        return proposal.outcome
    }

    func read<T: Sendable>(_ body: @Sendable @escaping (StateReader) throws -> T) async throws -> T {
        try await node.state.read(body)
    }

    static func page(_ items: [JSONValue], nextCursor: String?) -> JSONValue {
        .object(["items": .array(items), "nextCursor": .optional(nextCursor)])
    }

    static func etag(_ version: Int64) -> HTTPFields { [.eTag: "\"\(version)\""] }

    /// Builds the router with every route of API.md and the middleware that stamps headers,
    /// renders errors and counts requests.
    public func router(metrics: APIMetrics) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: APIMiddleware(node: node, metrics: metrics, logger: logger))
        addHealthRoutes(to: router, metrics: metrics)
        addAgentRoutes(to: router)
        addDirectoryRoutes(to: router)
        addConversationRoutes(to: router)
        addEventRoutes(to: router, metrics: metrics)
        return router
    }
}
