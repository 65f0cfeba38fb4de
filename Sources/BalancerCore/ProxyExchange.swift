/// One client connection of the balancer as a pure state machine: which request is in flight,
/// how far its body was read, which backend is answering it, whether it may be sent again,
/// and when the connection goes on, closes, or becomes a WebSocket splice. No sockets and no
/// bytes are held here: the proxy shell frames nothing itself but hands the client's unread
/// bytes to `onClientBytes`, tells what happened on the backend side (`onBackendConnected`,
/// `onAnswerHead`, `onBackendFailed`, ...), and carries out the `Action` each event returns.
///
/// One request at a time: the bytes of a pipelined next request stay unread (with the shell)
/// until the answer in flight ended. Events that cannot happen in the current state stop the
/// process (`preconditionFailure` naming the state and the event): a shell that breaks the
/// contract must not go on forwarding bytes to the wrong place.
///
/// Per event: no closure, no heap allocation of its own (the head's fields come from the
/// parser; the backend ids are the policy's strings); failures build their messages.
public struct ProxyExchange: Sendable {
    /// Largest request body the balancer forwards; a larger one gets 413.
    public static let requestBodyBytesMax = 16 << 20
    /// Bodies up to this size are kept while they stream, so the request can be sent again.
    public static let retryBodyBytesMax = 1 << 20
    /// Bytes of pipelined requests held while an answer is in flight; past it the client is
    /// not read until the answer ended.
    public static let pipelinedBytesMax = HTTP1.headBytesMax
    /// Backends one request is sent to at most: the first, and one retry elsewhere.
    public static let attemptsMax = 2

    enum State: Sendable {
        /// No request in flight: the next bytes start one.
        case idle
        case exchanging(ClientSide, BackendSide)
        /// A WebSocket upgrade went to a node; its answer decides.
        case upgrading
        /// A WebSocket: the shell copies bytes both ways.
        case spliced
        /// Nothing more is read or answered: the connection closes (or closed).
        case closed
    }

    /// How far the request in flight was read from the client.
    enum ClientSide: Sendable {
        case body(HTTP1.BodyFramer)
        /// Read whole. `paused`: pipelined bytes behind it passed `pipelinedBytesMax` and the
        /// shell stopped reading the client.
        case read(paused: Bool)
    }

    /// Where the answer to the request in flight stands.
    enum BackendSide: Sendable {
        /// The shell asks the policy for a backend (`onBackendChosen`, `onNoBackend`).
        case choosing
        /// A connection to `tried.last` is being made; `serial` names it among the connects of
        /// this client connection.
        case connecting(serial: Int)
        /// The request went out on a connection; no answer yet.
        case sent
        /// The answer's head went to the client; its body follows. `keepAlive`: the answer's
        /// framing lets the client connection go on (its body does not end with the close).
        case relaying(keepAlive: Bool, failedStatus: Int?)
        /// A 503 read to its end and dropped, to be retried.
        case discarding(failedStatus: Int?)
        /// The shell asks the policy whether the request may be sent again (`onRetryPolicy`).
        case deciding(Deciding)
        /// The client has its whole answer (the node's, or the balancer's own); the request is
        /// finished once it was read whole.
        case answered
    }

    enum Deciding: Sendable {
        /// The attempt failed: retry elsewhere, or answer 502 with `reason`.
        case retry(reason: String)
        /// A 503 came: discard it and retry, or forward it (`head` as `forwarding` says).
        case answer503(HTTP1.ResponseHead, HeadForwarding, keepAlive: Bool, failedStatus: Int?)
    }

    /// What the request's head said, for as long as it is in flight.
    struct Request: Sendable {
        var method = ""
        var hasIdempotencyKey = false
        var isHEAD = false
        /// A bodiless GET or HEAD: it may share a connection with others (HTTP/1.1 pipelining).
        var pipelinable = false
        /// The client's own wish (the forwarded head always says keep-alive).
        var keepAlive = true
        var isHTTP11 = true
        var bodyBytes = 0

        /// Every body byte so far is kept by the shell, so the request can be sent again.
        var bodyKeptWhole: Bool { bodyBytes <= ProxyExchange.retryBodyBytesMax }
    }

    private var state = State.idle
    private var request = Request()
    /// The backends the request in flight went to, in order (the last is the current one).
    /// Kept across requests for its capacity.
    public private(set) var tried: [String] = []
    /// Numbers the connects, so the answer to a connect no longer wanted is told apart.
    private var connectSerial = 0

    public init() {
        tried.reserveCapacity(Self.attemptsMax)
    }

    // MARK: Actions

    /// What the shell does after an event. Each is carried out at once and in full; an action
    /// that asks a question (`startRequest`, `retry`: a backend; `consultRetryPolicy`) is
    /// answered with the matching event, whose action comes next. Every attempt on a backend
    /// ends with exactly one `AttemptEnd`, carried by the action that ends it: the shell
    /// reports its outcome to the policy and lets its connection go as said, before anything
    /// else in that action.
    public enum Action: Sendable, CustomStringConvertible {
        case none

        // The client's bytes (answers to `onClientBytes`).
        /// Drop every unread byte: nothing more is read (a refusal, an upgrade, a close).
        case discardClientBytes
        /// Drop `count` bytes before the next head (the CRLF a client may send after a body).
        case skipClientBytes(Int)
        /// Stop reading the client until `finishRequest(resumeReading: true)`.
        case pauseReadingClient
        /// A request begins: take the head's `length` bytes, forward them rewritten as the head
        /// says, answer `100 Continue` when `sayContinue`, then choose a backend excluding none
        /// (`onBackendChosen`, `onNoBackend`).
        case startRequest(HTTP1.RequestHead, sayContinue: Bool)
        /// Take `count` body bytes and use them as `BodyPartUse` says.
        case bodyPart(Int, BodyPartUse)
        /// The request was read whole (the client's time ends; the backend's runs).
        case requestRead
        /// The request was read and answered: the connection waits for the next one (its bytes
        /// may already be here: then its time runs from now). Forget the body parts kept.
        case finishRequest(resumeReading: Bool)
        /// A WebSocket upgrade: take the head's bytes, send it to a node with the bytes behind
        /// it, and tell how it went (`onUpgraded`, `onUpgradeRefused`, `onUpgradeFailed`).
        case upgrade(HTTP1.RequestHead)

        // Questions for the policy.
        /// Choose another backend, none of `excluding` (after `reason`).
        case retry(excluding: [String], reason: String, ended: AttemptEnd?)
        /// Ask the policy whether this request may be sent again (`onRetryPolicy`).
        case consultRetryPolicy(RetryQuestion, ended: AttemptEnd?)

        // The backend side.
        /// Get a connection to `address`: one a pipelinable request was written to in this round
        /// (only when `mayJoin`), an idle one, or a new one; then `onBackendConnected(serial:)`
        /// or `onConnectFailed(serial:_:)`.
        case acquireConnection(address: String, serial: Int, mayJoin: Bool)
        /// The connection just acquired is no longer wanted: give it back to the pool.
        case releaseConnection
        /// Write the forwarded head and every body part kept to the connection just acquired
        /// (whose answer has no body when `isHEAD`; offered to the round's other pipelinable
        /// requests when `pipelinable`); forget the parts unless `keepParts`.
        case writeRequest(isHEAD: Bool, pipelinable: Bool, keepParts: Bool)
        /// Write the answer's head (the bytes at hand) to the client as `HeadForwarding` says.
        case forwardAnswerHead(HTTP1.ResponseHead, HeadForwarding)
        /// Write the answer's body bytes at hand to the client.
        case forwardAnswerBody
        /// Flush what was written to the client.
        case flushClient
        /// The answer ended; then the client connection goes on as `ClientAfterAnswer` says.
        case endAnswer(AttemptEnd, ClientAfterAnswer)

        // The balancer's own answers and closes.
        /// Answer from the balancer itself; forget the body parts kept. With `keepAlive`, read
        /// on (the rest of the body is dropped, then the request finishes); else close after it.
        case respond(Refusal, ended: AttemptEnd?)
        /// Close the client connection: an answer was under way and must look cut.
        case closeClient(ended: AttemptEnd?)
        /// The client went away: end the attempt, nothing else.
        case endAttempt(AttemptEnd)
        /// Close the node's side of a WebSocket splice.
        case closeSplice

        public var description: String {
            switch self {
            case .none: "none"
            case .discardClientBytes: "discardClientBytes"
            case .skipClientBytes(let count): "skipClientBytes(\(count))"
            case .pauseReadingClient: "pauseReadingClient"
            case .startRequest(let head, let sayContinue): "startRequest(\(head.method)\(sayContinue ? ", sayContinue" : ""))"
            case .bodyPart(let count, let use): "bodyPart(\(count), \(use))"
            case .requestRead: "requestRead"
            case .finishRequest(let resumeReading): "finishRequest\(resumeReading ? "(resumeReading)" : "")"
            case .upgrade(let head): "upgrade(\(head.method))"
            case .retry(let excluding, let reason, let ended): "retry(\(ended.map { "\($0), " } ?? "")excluding: \(excluding), \(reason))"
            case .consultRetryPolicy(let question, let ended): "consultRetryPolicy(\(question)\(ended.map { ", \($0)" } ?? ""))"
            case .acquireConnection(let address, let serial, let mayJoin): "acquireConnection(\(address), serial: \(serial)\(mayJoin ? ", mayJoin" : ""))"
            case .releaseConnection: "releaseConnection"
            case .writeRequest(let isHEAD, let pipelinable, let keepParts):
                "writeRequest(" + [isHEAD ? "isHEAD" : nil, pipelinable ? "pipelinable" : nil, keepParts ? "keepParts" : nil].compactMap { $0 }.joined(separator: ", ") + ")"
            case .forwardAnswerHead(let head, let forwarding): "forwardAnswerHead(\(head.status), \(forwarding))"
            case .forwardAnswerBody: "forwardAnswerBody"
            case .flushClient: "flushClient"
            case .endAnswer(let ended, let after): "endAnswer(\(ended), \(after))"
            case .respond(let refusal, let ended): "respond(\(refusal)\(ended.map { ", \($0)" } ?? ""))"
            case .closeClient(let ended): "closeClient\(ended.map { "(\($0))" } ?? "")"
            case .endAttempt(let ended): "endAttempt(\(ended))"
            case .closeSplice: "closeSplice"
            }
        }
    }

    /// What becomes of a body part.
    public enum BodyPartUse: Sendable, Equatable, CustomStringConvertible {
        /// Write it to the backend now; keep a copy for a retry when `keep` (else forget every
        /// copy kept: the body outgrew `retryBodyBytesMax`).
        case send(keep: Bool)
        /// Keep it for the connection to come (being made, or after a 503 being discarded).
        case hold
        /// The balancer answered already: nothing more goes to a backend.
        case drop

        public var description: String {
            switch self {
            case .send(let keep): keep ? "send+keep" : "send"
            case .hold: "hold"
            case .drop: "drop"
            }
        }
    }

    /// How the answer's head goes to the client.
    public enum HeadForwarding: Sendable, Equatable, CustomStringConvertible {
        /// The node's bytes untouched: an HTTP/1.1 client keeping its connection, and the node
        /// sent no `Connection` field (keep-alive is HTTP/1.1's default).
        case asItCame
        /// `HTTP1.forwardedResponse`, which says `keepAlive` in its `Connection` field.
        case rewritten(keepAlive: Bool)

        public var description: String {
            switch self {
            case .asItCame: "asItCame"
            case .rewritten(let keepAlive): keepAlive ? "keepAlive" : "close"
            }
        }
    }

    /// What the client connection does once an answer ended.
    public enum ClientAfterAnswer: Sendable, Equatable, CustomStringConvertible {
        /// Flush, and read on: the request finishes (`finishRequest`) and the next one may start.
        case keepAlive
        /// Flush, then close; the request was read and answered (the client's guard hears so).
        case close
        /// Flush, then close: the node answered before the request was read whole.
        case closeUnread

        public var description: String {
            switch self {
            case .keepAlive: "keepAlive"
            case .close: "close"
            case .closeUnread: "closeUnread"
            }
        }
    }

    /// The end of one attempt on a backend: `outcome` goes to the policy
    /// (`Balancer.onRequestFinished`) for `backend`, and the connection goes as said.
    public struct AttemptEnd: Sendable, Equatable, CustomStringConvertible {
        public var backend: String
        public var outcome: Outcome
        public var connection: ConnectionEnd

        public var description: String {
            "\(backend) \(outcome.failureReason.map { "failed (\($0))" } ?? "ok"), \(connection)"
        }
    }

    public enum ConnectionEnd: Sendable, Equatable, CustomStringConvertible {
        /// Its answer ended: give it back to the pool, which closes it unless `reusable` (a
        /// node that answered before the whole request reached it holds half a request).
        case release(reusable: Bool)
        /// The answer is no longer wanted: leave the request on the connection (its answer is
        /// read and dropped, so those pipelined behind stay matched), and close the connection
        /// when `close` (a request that is not pipelined may have left half a body on it).
        case abandon(close: Bool)
        /// The connection failed, or was never made.
        case lost

        public var description: String {
            switch self {
            case .release(let reusable): reusable ? "release" : "release+close"
            case .abandon(let close): close ? "abandon+close" : "abandon"
            case .lost: "lost"
            }
        }
    }

    /// What the policy needs to know to allow a retry (`Balancer.mayRetry`).
    public struct RetryQuestion: Sendable, Equatable, CustomStringConvertible {
        public var method: String
        public var hasIdempotencyKey: Bool
        /// No connection was made: no node saw a byte of it, so any method may go elsewhere.
        public var neverSent: Bool

        public var description: String {
            "\(method)\(hasIdempotencyKey ? " keyed" : "")\(neverSent ? " neverSent" : "")"
        }
    }

    /// An answer from the balancer itself (a JSON error body; `Retry-After` on a 503).
    public struct Refusal: Sendable, Equatable, CustomStringConvertible {
        public var status: Int
        public var message: String
        /// The client connection goes on after it.
        public var keepAlive: Bool

        public var description: String { "\(status)\(keepAlive ? "" : " close"): \(message)" }
    }

    // MARK: Client events

    /// The client's unread bytes (all of them, from the first not yet taken). Returns what to do
    /// with a prefix of them, or with the request in flight; call again after carrying it out,
    /// until `.none` (also with no bytes: a request may finish or be read whole without one).
    public mutating func onClientBytes(_ bytes: UnsafeRawBufferPointer) -> Action {
        switch state {
        case .closed, .upgrading, .spliced:
            return bytes.isEmpty ? .none : .discardClientBytes
        case .idle:
            return readHead(bytes)
        case .exchanging(.body(var framer), let side):
            if framer.isDone {
                state = .exchanging(.read(paused: false), side)
                return .requestRead
            }
            guard !bytes.isEmpty else { return .none }
            let used: Int
            do {
                used = try framer.consume(bytes)
            } catch {
                return refuse(400, "\(error)", close: true)
            }
            precondition(used > 0, "a body framer not done took none of \(bytes.count) bytes")
            state = .exchanging(.body(framer), side)
            return bodyPart(used, side)
        case .exchanging(.read(let paused), let side):
            if case .answered = side {
                state = .idle
                return .finishRequest(resumeReading: paused)
            }
            // A pipelined request: it waits for the answer in flight.
            if !paused, bytes.count > Self.pipelinedBytesMax {
                state = .exchanging(.read(paused: true), side)
                return .pauseReadingClient
            }
            return .none
        }
    }

    private mutating func readHead(_ bytes: UnsafeRawBufferPointer) -> Action {
        // A client may send a CRLF after a body (RFC 9112 section 2.2): skip it.
        var skipped = 0
        while skipped < bytes.count, bytes[skipped] == 13 || bytes[skipped] == 10 { skipped += 1 }
        if skipped > 0 { return .skipClientBytes(skipped) }
        guard !bytes.isEmpty else { return .none }
        switch HTTP1.parseRequest(bytes) {
        case .incomplete:
            return .none  // the client's guard times out a head that never ends
        case .tooLarge:
            return refuseAtHead(431, "request headers over \(HTTP1.headBytesMax) bytes")
        case .invalid(let reason):
            return refuseAtHead(400, "malformed HTTP request: \(reason)")
        case .head(let head):
            return start(head)
        }
    }

    private mutating func start(_ head: HTTP1.RequestHead) -> Action {
        if case .length(let length) = head.body, length > Self.requestBodyBytesMax {
            return refuseAtHead(413, "request body of \(length) bytes is over \(Self.requestBodyBytesMax)")
        }
        if head.webSocketUpgrade {
            guard head.isWebSocketHandshake else {
                return refuseAtHead(400, "a WebSocket upgrade must be a GET without a body; got \(head.method)")
            }
            guard head.hasWebSocketKeyAndVersion else {
                return refuseAtHead(400, "WebSocket upgrade refused: it needs Sec-WebSocket-Key and Sec-WebSocket-Version")
            }
            state = .upgrading
            return .upgrade(head)
        }
        let isGET = head.method == "GET"
        let isHEAD = head.method == "HEAD"
        request = Request(
            method: head.method, hasIdempotencyKey: head.hasIdempotencyKey, isHEAD: isHEAD,
            pipelinable: (isGET || isHEAD) && !head.expectContinue && head.body == .length(0),
            keepAlive: head.keepAlive, isHTTP11: head.version.minor == 1)
        tried.removeAll(keepingCapacity: true)
        state = .exchanging(.body(HTTP1.BodyFramer(head.body)), .choosing)
        // The balancer streams the body itself: it says `100 Continue` at once (a client that
        // asked waits for it) and the node is not asked.
        return .startRequest(head, sayContinue: head.expectContinue)
    }

    private mutating func bodyPart(_ count: Int, _ side: BackendSide) -> Action {
        if case .answered = side { return .bodyPart(count, .drop) }
        request.bodyBytes += count
        guard request.bodyBytes <= Self.requestBodyBytesMax else {
            return refuse(413, "request body over \(Self.requestBodyBytesMax) bytes", close: true)
        }
        switch side {
        case .choosing, .connecting, .deciding:
            return .bodyPart(count, .hold)
        case .sent, .relaying:
            return .bodyPart(count, .send(keep: request.bodyKeptWhole))
        case .discarding:
            // Without the whole body kept there is no retry, and nothing more to send.
            return .bodyPart(count, request.bodyKeptWhole ? .hold : .drop)
        case .answered:
            preconditionFailure("bodyPart: answered was handled above")
        }
    }

    /// The client's connection closed (or its handler went away).
    public mutating func onClientClosed() -> Action {
        let action: Action
        switch state {
        case .exchanging(_, let side):
            action = abandoned(side).map { .endAttempt($0) } ?? .none
        case .spliced:
            action = .closeSplice
        case .idle, .upgrading, .closed:
            // An upgrade under way finds the state closed when it completes.
            action = .none
        }
        state = .closed
        return action
    }

    // MARK: Policy answers

    /// The policy chose `choice` for the request (after `startRequest` or `retry`).
    public mutating func onBackendChosen(_ choice: Balancer.Choice) -> Action {
        switch state {
        case .exchanging(let client, .choosing):
            tried.append(choice.backend)
            connectSerial += 1
            state = .exchanging(client, .connecting(serial: connectSerial))
            return .acquireConnection(address: choice.address, serial: connectSerial, mayJoin: request.pipelinable)
        case .closed:
            // The client went away while the shell asked (a failed `100 Continue`): the choice
            // counted a request on the backend, which ends here.
            return .endAttempt(AttemptEnd(backend: choice.backend, outcome: .success, connection: .lost))
        default:
            preconditionFailure("onBackendChosen(\(choice.backend)) in \(state)")
        }
    }

    /// No backend is left for the request: 503.
    public mutating func onNoBackend() -> Action {
        switch state {
        case .exchanging(_, .choosing):
            return refuse(503, "no backend available", close: false)
        case .closed:
            return .none
        default:
            preconditionFailure("onNoBackend in \(state)")
        }
    }

    /// The policy's answer to `consultRetryPolicy`.
    public mutating func onRetryPolicy(allows: Bool) -> Action {
        switch state {
        case .exchanging(let client, .deciding(.retry(let reason))):
            guard allows else { return refuse(502, reason, close: false) }
            state = .exchanging(client, .choosing)
            return .retry(excluding: tried, reason: reason, ended: nil)
        case .exchanging(let client, .deciding(.answer503(let head, let forwarding, let keepAlive, let failedStatus))):
            if allows {
                state = .exchanging(client, .discarding(failedStatus: failedStatus))  // read it to its end, then retry
                return .none
            }
            state = .exchanging(client, .relaying(keepAlive: keepAlive, failedStatus: failedStatus))
            return .forwardAnswerHead(head, forwarding)
        case .closed:
            return .none
        default:
            preconditionFailure("onRetryPolicy(allows: \(allows)) in \(state)")
        }
    }

    // MARK: Backend events

    /// The connect numbered `serial` (`acquireConnection`) gave a connection.
    public mutating func onBackendConnected(serial: Int) -> Action {
        switch state {
        case .exchanging(let client, .connecting(let current)) where current == serial:
            state = .exchanging(client, .sent)
            return .writeRequest(isHEAD: request.isHEAD, pipelinable: request.pipelinable, keepParts: request.bodyKeptWhole)
        case .closed:
            return .releaseConnection  // the client went away, or was refused, meanwhile
        default:
            preconditionFailure("onBackendConnected(serial: \(serial)) in \(state)")
        }
    }

    /// The connect numbered `serial` failed: no node saw a byte of the request, so any method
    /// may go elsewhere.
    public mutating func onConnectFailed(serial: Int, _ error: String) -> Action {
        switch state {
        case .exchanging(let client, .connecting(let current)) where current == serial:
            let ended = AttemptEnd(backend: backend, outcome: .unreachable("connect: \(error)"), connection: .lost)
            return retryOrFail(client, "backend \(ended.backend) unreachable: \(error)", neverSent: true, ended)
        case .closed:
            return .none
        default:
            preconditionFailure("onConnectFailed(serial: \(serial)) in \(state)")
        }
    }

    /// The answer's head. A 5xx counts against the node, unless the node says it is about the
    /// cluster (no leader yet): ejecting a live node for an election only crowds the others.
    public mutating func onAnswerHead(_ head: HTTP1.ResponseHead) -> Action {
        guard case .exchanging(let client, .sent) = state else { preconditionFailure("onAnswerHead(\(head.status)) in \(state)") }
        let failedStatus = head.status >= 500 && !head.aboutTheCluster ? head.status : nil
        // An answer that ends with its connection ends the client's too.
        let answerKeepAlive = head.body != .untilClose
        let keepAlive = request.keepAlive && answerKeepAlive
        let forwarding: HeadForwarding = keepAlive && request.isHTTP11 && !head.hasConnectionFields ? .asItCame : .rewritten(keepAlive: keepAlive)
        if head.status == 503, mayRetry {
            state = .exchanging(client, .deciding(.answer503(head, forwarding, keepAlive: answerKeepAlive, failedStatus: failedStatus)))
            return .consultRetryPolicy(question(neverSent: false), ended: nil)
        }
        state = .exchanging(client, .relaying(keepAlive: answerKeepAlive, failedStatus: failedStatus))
        return .forwardAnswerHead(head, forwarding)
    }

    /// Bytes of the answer's body.
    public func onAnswerBody() -> Action {
        switch state {
        case .exchanging(_, .relaying): .forwardAnswerBody
        case .exchanging(_, .discarding): .none
        default: preconditionFailure("onAnswerBody in \(state)")
        }
    }

    /// The end of one read from the backend: a good moment to flush what went to the client.
    public func onBackendReadComplete() -> Action {
        if case .exchanging(_, .relaying) = state { return .flushClient }
        return .none
    }

    /// The answer ended.
    public mutating func onAnswerEnd() -> Action {
        guard case .exchanging(let client, let side) = state else { preconditionFailure("onAnswerEnd in \(state)") }
        let requestRead: Bool
        if case .read = client { requestRead = true } else { requestRead = false }
        switch side {
        case .relaying(let answerKeepAlive, let failedStatus):
            let ended = AttemptEnd(backend: backend, outcome: Self.outcome(failedStatus), connection: .release(reusable: requestRead))
            // The client's connection goes on only if it asked to, its request was read whole,
            // and the answer's framing allows.
            guard requestRead else {
                state = .closed
                return .endAnswer(ended, .closeUnread)
            }
            guard request.keepAlive && answerKeepAlive else {
                state = .closed
                return .endAnswer(ended, .close)
            }
            state = .exchanging(client, .answered)
            return .endAnswer(ended, .keepAlive)
        case .discarding(let failedStatus):
            // The policy allowed this retry at the 503's head (and charged its budget then).
            let ended = AttemptEnd(backend: self.backend, outcome: Self.outcome(failedStatus), connection: .release(reusable: requestRead))
            state = .exchanging(client, .choosing)
            return .retry(excluding: tried, reason: "503 from \(ended.backend)", ended: ended)
        default:
            preconditionFailure("onAnswerEnd in \(state)")
        }
    }

    /// The connection failed (reset, closed, no answer in time, an answer that is not HTTP/1.1).
    public mutating func onBackendFailed(_ error: String) -> Action {
        guard case .exchanging(let client, let side) = state else { preconditionFailure("onBackendFailed(\(error)) in \(state)") }
        let id = backend
        let ended = AttemptEnd(backend: id, outcome: .failure(error), connection: .lost)
        switch side {
        case .relaying:
            state = .closed
            return .closeClient(ended: ended)  // the answer was cut: the client must see it fail
        case .sent, .discarding:
            return retryOrFail(client, "backend \(id) failed: \(error)", neverSent: false, ended)
        default:
            preconditionFailure("onBackendFailed(\(error)) in \(state)")
        }
    }

    // MARK: WebSocket events

    /// The node answered the upgrade with `101` and the client is still there: splice.
    public mutating func onUpgraded() {
        guard case .upgrading = state else { preconditionFailure("onUpgraded in \(state)") }
        state = .spliced
    }

    /// The node refused the upgrade with `status` (4xx): the client gets that status.
    public mutating func onUpgradeRefused(status: Int) -> Action {
        upgradeFailed(Refusal(status: status, message: "the node refused the WebSocket upgrade with \(status)", keepAlive: false))
    }

    /// No node took the upgrade (unreachable, silent, 5xx, or none left): 503.
    public mutating func onUpgradeFailed() -> Action {
        upgradeFailed(Refusal(status: 503, message: "no node took the WebSocket; retry", keepAlive: false))
    }

    private mutating func upgradeFailed(_ refusal: Refusal) -> Action {
        switch state {
        case .upgrading:
            state = .closed
            return .respond(refusal, ended: nil)
        case .closed:
            return .none
        default:
            preconditionFailure("upgrade refused (\(refusal)) in \(state)")
        }
    }

    // MARK: Helpers

    /// One retry, of a request whose body was kept whole (the policy decides the rest: a safe
    /// method, a keyed POST, or a request no node saw; within the retry budget).
    private var mayRetry: Bool { tried.count < Self.attemptsMax && request.bodyKeptWhole }

    private func question(neverSent: Bool) -> RetryQuestion {
        RetryQuestion(method: request.method, hasIdempotencyKey: request.hasIdempotencyKey, neverSent: neverSent)
    }

    /// Asks the policy for a retry when one may be allowed, else answers 502.
    private mutating func retryOrFail(_ client: ClientSide, _ reason: String, neverSent: Bool, _ ended: AttemptEnd) -> Action {
        guard mayRetry else { return refuse(502, reason, close: false, ended: ended) }
        state = .exchanging(client, .deciding(.retry(reason: reason)))
        return .consultRetryPolicy(question(neverSent: neverSent), ended: ended)
    }

    /// Answers the request in flight from the balancer. With `close`, the connection closes
    /// after the answer and nothing more is read; else (and if the client keeps its
    /// connection) the rest of the body is read and dropped. An answer under way is cut instead.
    private mutating func refuse(_ status: Int, _ message: String, close: Bool, ended: AttemptEnd? = nil) -> Action {
        guard case .exchanging(let client, let side) = state else { preconditionFailure("refuse(\(status)) in \(state)") }
        let ended = ended ?? abandoned(side)
        if case .relaying = side {
            state = .closed
            return .closeClient(ended: ended)
        }
        let keepAlive = !close && request.keepAlive
        state = keepAlive ? .exchanging(client, .answered) : .closed
        return .respond(Refusal(status: status, message: message, keepAlive: keepAlive), ended: ended)
    }

    /// A refusal of a head: nothing was forwarded, nothing more is read.
    private mutating func refuseAtHead(_ status: Int, _ message: String) -> Action {
        state = .closed
        return .respond(Refusal(status: status, message: message, keepAlive: false), ended: nil)
    }

    /// The end of the attempt in flight when the client left, or was refused, mid-exchange:
    /// that does not count against the backend. A pipelined request was written whole, so its
    /// connection goes on for the requests behind it; any other may have left half a request
    /// on its connection, which is closed. A connect under way ends here too (the connection
    /// it brings is given back unused); nil when no attempt is under way.
    private func abandoned(_ side: BackendSide) -> AttemptEnd? {
        switch side {
        case .sent, .relaying, .discarding:
            AttemptEnd(backend: backend, outcome: .success, connection: .abandon(close: !request.pipelinable))
        case .connecting:
            AttemptEnd(backend: backend, outcome: .success, connection: .lost)
        case .choosing, .deciding, .answered:
            nil
        }
    }

    /// The backend of the attempt in flight.
    private var backend: String {
        guard let backend = tried.last else { preconditionFailure("an attempt in \(state) with no backend tried") }
        return backend
    }

    private static func outcome(_ failedStatus: Int?) -> Outcome {
        guard let failedStatus else { return .success }
        return .failure("status \(failedStatus)")
    }
}
