import BalancerCore
import XCTest

/// Plays the proxy shell's part without sockets: it holds the client's unread bytes, asks a
/// real `Balancer` (backends n1 and n2) when the exchange asks the policy, keeps and sends body
/// parts as told, and writes every action down, so a test reads like the exchange's script.
private struct Shell {
    var exchange = ProxyExchange()
    var policy: Balancer
    var unread: [UInt8] = []
    /// Actions since the last look (`take()`).
    var actions: [String] = []
    /// Body parts kept for the connection to come or for a retry.
    var held: [[UInt8]] = []
    /// What each attempt's connection received: "<head>" then the body bytes.
    var wires: [String] = []
    /// The connect the exchange waits for.
    var connecting: Int?
    /// The connection made for it, when the shell holds one.
    var holdsConnection = false
    /// Connections handed back to the pool, closed, or abandoned, in order.
    var connectionEnds: [String] = []
    var closed = false
    var spliced = false
    var readPaused = false
    var leftover: [UInt8] = []
    /// `readClient` is on the stack (the real shell does not nest it either).
    var readingClient = false
    /// Backends found idle in the pool: `acquireConnection` to them completes at once.
    var pooled: Set<String> = []
    var now = Duration.seconds(100)

    init() throws {
        var policy = try Balancer(seed: 1)
        for id in ["n1", "n2"] { policy.addStatic(id: id, address: "\(id):8080", now: .zero) }
        for id in ["n1", "n2"] { for _ in 0..<2 { policy.onCheck(id: id, outcome: .success, now: .zero) } }
        for id in ["n1", "n2"] { policy.onCheck(id: id, outcome: .success, now: .seconds(10)) }
        self.policy = policy
    }

    /// Actions so far, forgotten.
    mutating func take() -> [String] {
        defer { actions = [] }
        return actions
    }

    // MARK: Events

    mutating func client(_ text: String) -> [String] {
        client(Array(text.utf8))
    }

    mutating func client(_ bytes: [UInt8]) -> [String] {
        unread += bytes
        readClient()
        return take()
    }

    mutating func connected() -> [String] {
        let serial = connecting!
        connecting = nil
        holdsConnection = true
        run(exchange.onBackendConnected(serial: serial))
        return take()
    }

    mutating func connectFailed() -> [String] {
        let serial = connecting!
        connecting = nil
        run(exchange.onConnectFailed(serial: serial, "connection refused"))
        return take()
    }

    mutating func answer(_ head: String) -> [String] {
        guard case .head(let parsed) = Array(head.utf8).withUnsafeBytes({ HTTP1.parseResponse($0, requestWasHEAD: false) }) else {
            preconditionFailure("not a whole answer head: \(head)")
        }
        run(exchange.onAnswerHead(parsed))
        return take()
    }

    mutating func answerBody() -> [String] {
        run(exchange.onAnswerBody())
        run(exchange.onBackendReadComplete())
        return take()
    }

    mutating func answerEnd() -> [String] {
        run(exchange.onAnswerEnd())
        return take()
    }

    mutating func backendFailed() -> [String] {
        run(exchange.onBackendFailed("connection reset"))
        return take()
    }

    mutating func clientClosed() -> [String] {
        run(exchange.onClientClosed())
        return take()
    }

    // MARK: The shell's part

    private mutating func readClient() {
        guard !readingClient else { return }
        readingClient = true
        defer { readingClient = false }
        while true {
            let action = unread.withUnsafeBytes { exchange.onClientBytes($0) }
            if case .none = action { return }
            run(action)
        }
    }

    private mutating func choose(excluding: [String]) -> ProxyExchange.Action {
        if excluding.isEmpty { policy.onRequestStarted(now: now) }
        guard let choice = policy.chooseForRequest(excluding: excluding, now: now) else { return exchange.onNoBackend() }
        return exchange.onBackendChosen(choice)
    }

    private mutating func endAttempt(_ ended: ProxyExchange.AttemptEnd) {
        switch ended.connection {
        case .release, .abandon:
            precondition(holdsConnection, "\(ended) with no connection held")
            connectionEnds.append("\(ended.backend): \(ended.connection)")
        case .lost:
            break
        }
        holdsConnection = false
        policy.onRequestFinished(id: ended.backend, outcome: ended.outcome, now: now)
    }

    private mutating func run(_ first: ProxyExchange.Action) {
        var next = first
        while true {
            let action = next
            next = .none
            if case .none = action { return }
            actions.append(action.description)
            switch action {
            case .none:
                return
            case .discardClientBytes:
                unread = []
            case .skipClientBytes(let count):
                unread.removeFirst(count)
            case .pauseReadingClient:
                readPaused = true
            case .startRequest(let head, _):
                unread.removeFirst(head.length)
                held = []
                next = choose(excluding: [])
            case .bodyPart(let count, let use):
                let part = Array(unread.prefix(count))
                unread.removeFirst(count)
                switch use {
                case .send(let keep):
                    precondition(holdsConnection, "sending a body part with no connection")
                    wires[wires.count - 1] += String(decoding: part, as: UTF8.self)
                    if keep { held.append(part) } else { held = [] }
                case .hold:
                    held.append(part)
                case .drop:
                    break
                }
            case .requestRead:
                break
            case .finishRequest(let resumeReading):
                held = []
                if resumeReading { readPaused = false }
            case .upgrade(let head):
                unread.removeFirst(head.length)
                leftover = unread  // goes to the node behind the head
                unread = []
            case .retry(let excluding, _, let ended):
                if let ended { endAttempt(ended) }
                next = choose(excluding: excluding)
            case .consultRetryPolicy(let question, let ended):
                if let ended { endAttempt(ended) }
                next = exchange.onRetryPolicy(
                    allows: policy.mayRetry(method: question.method, hasIdempotencyKey: question.hasIdempotencyKey, neverSent: question.neverSent, now: now))
            case .acquireConnection(let address, let serial, _):
                connecting = serial
                if pooled.contains(String(address.prefix { $0 != ":" })) {
                    connecting = nil
                    holdsConnection = true
                    next = exchange.onBackendConnected(serial: serial)
                }
            case .releaseConnection:
                holdsConnection = false
                connectionEnds.append("released unused")
            case .writeRequest(_, _, let keepParts):
                wires.append("<head>" + held.map { String(decoding: $0, as: UTF8.self) }.joined())
                if !keepParts { held = [] }
            case .forwardAnswerHead, .forwardAnswerBody, .flushClient:
                break
            case .endAnswer(let ended, let after):
                endAttempt(ended)
                if after == .keepAlive { readClient() } else { closed = true }
            case .respond(let refusal, let ended):
                if let ended { endAttempt(ended) }
                held = []
                if refusal.keepAlive { readClient() } else { closed = true }
            case .closeClient(let ended):
                if let ended { endAttempt(ended) }
                closed = true
            case .endAttempt(let ended):
                endAttempt(ended)
            case .closeSplice:
                spliced = false
            }
        }
    }
}

final class ProxyExchangeTests: XCTestCase {
    private let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"

    private func get(_ path: String = "/healthz", _ fields: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: front\r\n\(fields)\r\n"
    }

    /// Every attempt ended exactly once: the policy counts no request in flight.
    private func assertNothingInFlight(_ shell: Shell, file: StaticString = #filePath, line: UInt = #line) {
        let inFlight = shell.policy.all.map { "\($0.id): \($0.inFlight)" }
        XCTAssertEqual(inFlight, ["n1: 0", "n2: 0"], "every attempt's end reached the policy once", file: file, line: line)
    }

    func testASimpleGetGoesToABackendAndItsAnswerBackToTheClient() throws {
        var shell = try Shell()
        XCTAssertEqual(shell.client(get()), ["startRequest(GET)", "acquireConnection(n1:8080, serial: 1, mayJoin)", "requestRead"])
        XCTAssertEqual(shell.connected(), ["writeRequest(pipelinable, keepParts)"])
        XCTAssertEqual(shell.answer(ok), ["forwardAnswerHead(200, asItCame)"], "HTTP/1.1 kept alive, no Connection field: the head as it came")
        XCTAssertEqual(shell.answerBody(), ["forwardAnswerBody", "flushClient"])
        XCTAssertEqual(shell.answerEnd(), ["endAnswer(n1 ok, release, keepAlive)", "finishRequest"])
        XCTAssertEqual(shell.wires, ["<head>"])
        XCTAssertFalse(shell.closed, "the connection waits for the next request")
        XCTAssertEqual(shell.client(get()).first, "startRequest(GET)", "and the next request starts at once")
    }

    func testAPostBodyStreamsBehindItsHeadAndWaitsWhileTheConnectionIsMade() throws {
        var shell = try Shell()
        let head = "POST /v1/channels/sms/messages HTTP/1.1\r\nHost: front\r\nContent-Length: 11\r\n\r\n"
        XCTAssertEqual(shell.client(head + "hello"), ["startRequest(POST)", "acquireConnection(n1:8080, serial: 1)", "bodyPart(5, hold)"])
        XCTAssertEqual(shell.connected(), ["writeRequest(keepParts)"], "a POST has its connection to itself")
        XCTAssertEqual(shell.client(" world"), ["bodyPart(6, send+keep)", "requestRead"])
        XCTAssertEqual(shell.wires, ["<head>hello world"], "the node got the bytes held while connecting, then the rest")
        XCTAssertEqual(shell.answer("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"), ["forwardAnswerHead(202, asItCame)"])
        XCTAssertEqual(shell.answerEnd(), ["endAnswer(n1 ok, release, keepAlive)", "finishRequest"])
        assertNothingInFlight(shell)
    }

    func testAChunkedBodyIsForwardedAsItCameAcrossReads() throws {
        var shell = try Shell()
        shell.pooled = ["n1"]
        let head = "PUT /v1/agents/a1 HTTP/1.1\r\nHost: front\r\nTransfer-Encoding: chunked\r\n\r\n"
        XCTAssertEqual(shell.client(head + "5\r\nhel"), [
            "startRequest(PUT)", "acquireConnection(n1:8080, serial: 1)", "writeRequest(keepParts)", "bodyPart(6, send+keep)",
        ])
        XCTAssertEqual(shell.client("lo\r\n0\r\n\r\n"), ["bodyPart(9, send+keep)", "requestRead"])
        XCTAssertEqual(shell.wires, ["<head>5\r\nhello\r\n0\r\n\r\n"], "chunk framing goes through untouched")
    }

    func testPipelinedRequestsWaitUntilTheAnswerInFlightEnded() throws {
        var shell = try Shell()
        XCTAssertEqual(
            shell.client(get("/a") + get("/b")), ["startRequest(GET)", "acquireConnection(n1:8080, serial: 1, mayJoin)", "requestRead"],
            "the second request waits: one request at a time")
        XCTAssertEqual(shell.connected(), ["writeRequest(pipelinable, keepParts)"])
        XCTAssertEqual(shell.answer(ok), ["forwardAnswerHead(200, asItCame)"], "still waiting while the answer streams")
        XCTAssertEqual(
            shell.answerEnd(),
            ["endAnswer(n1 ok, release, keepAlive)", "finishRequest", "startRequest(GET)", "acquireConnection(n1:8080, serial: 2, mayJoin)", "requestRead"],
            "the answer ended: the pipelined request starts")
        XCTAssertEqual(shell.unread, [], "both requests were taken")
    }

    func testPipelinedBytesOverTheBoundPauseReadingUntilTheAnswerEnded() throws {
        var shell = try Shell()
        _ = shell.client(get("/a"))
        let padding = String(repeating: "x", count: ProxyExchange.pipelinedBytesMax)
        XCTAssertEqual(shell.client(get("/b", "X-Padding: \(padding)\r\n")), ["pauseReadingClient"])
        XCTAssertTrue(shell.readPaused)
        XCTAssertEqual(shell.client("more"), [], "paused once, not again")
        _ = shell.connected()
        _ = shell.answer(ok)
        let after = shell.answerEnd()
        XCTAssertEqual(Array(after.prefix(2)), ["endAnswer(n1 ok, release, keepAlive)", "finishRequest(resumeReading)"], "\(after)")
        XCTAssertFalse(shell.readPaused, "reading resumes with the next request")
    }

    func testAFailureBeforeAnyAnswerByteIsRetriedOnceOnAnotherBackendForMethodsSafeToRepeat() throws {
        for (method, fields) in [("GET", ""), ("HEAD", ""), ("PUT", ""), ("DELETE", ""), ("OPTIONS", ""), ("POST", "Idempotency-Key: k1\r\n")] {
            var shell = try Shell()
            let body = method == "GET" || method == "HEAD" ? "" : "{\"a\":1}"
            let head = "\(method) /v1/x HTTP/1.1\r\nHost: front\r\n\(fields)Content-Length: \(body.utf8.count)\r\n\r\n"
            _ = shell.client(head + body)
            _ = shell.connected()
            let keyed = fields.isEmpty ? "" : " keyed"
            XCTAssertEqual(
                Array(shell.backendFailed().prefix(3)),
                [
                    "consultRetryPolicy(\(method)\(keyed), n1 failed (connection reset), lost)", "retry(excluding: [\"n1\"], backend n1 failed: connection reset)",
                    "acquireConnection(n2:8080, serial: 2\(body.isEmpty && (method == "GET" || method == "HEAD") ? ", mayJoin" : ""))",
                ], "\(method): retried on n2")
            _ = shell.connected()
            XCTAssertEqual(shell.wires, ["<head>" + body, "<head>" + body], "\(method): the retry carries the whole body")
            XCTAssertEqual(shell.answer(ok), ["forwardAnswerHead(200, asItCame)"], "\(method)")
            XCTAssertEqual(shell.answerEnd(), ["endAnswer(n2 ok, release, keepAlive)", "finishRequest"], "\(method)")
            assertNothingInFlight(shell)
        }
    }

    func testAPostWithoutAnIdempotencyKeyIsNotRetriedAndGets502() throws {
        var shell = try Shell()
        _ = shell.client("POST /v1/x HTTP/1.1\r\nHost: front\r\nContent-Length: 2\r\n\r\nhi")
        _ = shell.connected()
        XCTAssertEqual(shell.backendFailed(), [
            "consultRetryPolicy(POST, n1 failed (connection reset), lost)", "respond(502: backend n1 failed: connection reset)", "finishRequest",
        ])
        XCTAssertEqual(shell.wires.count, 1, "no second node saw it")
        XCTAssertFalse(shell.closed, "a 502 keeps the client's connection")
    }

    func testARequestNoNodeSawIsRetriedWhateverItsMethod() throws {
        var shell = try Shell()
        _ = shell.client("POST /v1/x HTTP/1.1\r\nHost: front\r\nContent-Length: 2\r\n\r\nhi")
        XCTAssertEqual(shell.connectFailed(), [
            "consultRetryPolicy(POST neverSent, n1 failed (connect: connection refused), lost)",
            "retry(excluding: [\"n1\"], backend n1 unreachable: connection refused)", "acquireConnection(n2:8080, serial: 2)",
        ])
        _ = shell.connected()
        XCTAssertEqual(shell.wires, ["<head>hi"], "the first attempt wrote nothing; the second the whole request")
    }

    func testABodyOverTheRetryCopyIsNotRetried() throws {
        var shell = try Shell()
        shell.pooled = ["n1"]
        let length = ProxyExchange.retryBodyBytesMax + 1
        _ = shell.client("PUT /v1/x HTTP/1.1\r\nHost: front\r\nContent-Length: \(length)\r\n\r\n")
        XCTAssertEqual(shell.client([UInt8](repeating: 65, count: length - 1)), ["bodyPart(1048576, send+keep)"])
        XCTAssertEqual(shell.client([66]), ["bodyPart(1, send)", "requestRead"], "one byte over: the copy is dropped")
        XCTAssertEqual(shell.held.count, 0, "no copy held")
        XCTAssertEqual(
            shell.backendFailed(), ["respond(502: backend n1 failed: connection reset, n1 failed (connection reset), lost)", "finishRequest"],
            "not even the policy is asked")
        assertNothingInFlight(shell)
    }

    func testNoRetryOnceAnAnswerByteReachedTheClient() throws {
        var shell = try Shell()
        _ = shell.client(get())
        _ = shell.connected()
        _ = shell.answer(ok)
        XCTAssertEqual(shell.backendFailed(), ["closeClient(n1 failed (connection reset), lost)"], "a cut answer must look cut")
        XCTAssertTrue(shell.closed)
        XCTAssertEqual(shell.client(get()), ["discardClientBytes"], "nothing more is read")
        assertNothingInFlight(shell)
    }

    func testA503IsDiscardedAndRetriedOnAnotherBackend() throws {
        var shell = try Shell()
        _ = shell.client(get())
        _ = shell.connected()
        XCTAssertEqual(shell.answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\n"), ["consultRetryPolicy(GET)"], "the 503 is held back")
        XCTAssertEqual(shell.answerBody(), [], "its body is dropped, nothing flushed")
        XCTAssertEqual(shell.answerEnd(), [
            "retry(n1 failed (status 503), release, excluding: [\"n1\"], 503 from n1)",
            "acquireConnection(n2:8080, serial: 2, mayJoin)",
        ], "read to its end (its connection goes back), then retried without asking the budget again")
        _ = shell.connected()
        XCTAssertEqual(shell.answer(ok), ["forwardAnswerHead(200, asItCame)"], "the client sees only n2's answer")
        XCTAssertEqual(shell.answerEnd(), ["endAnswer(n2 ok, release, keepAlive)", "finishRequest"])
        XCTAssertEqual(shell.connectionEnds, ["n1: release", "n2: release"])
        XCTAssertEqual(shell.policy.backends["n1"]?.state, .ejected(reason: "status 503"), "the 503 ejected n1")
        XCTAssertEqual(shell.policy.retries, 1, "one retry, charged to the budget once")
        assertNothingInFlight(shell)
    }

    func testA503AboutTheClusterIsRetriedWithoutEjectingItsNode() throws {
        var shell = try Shell()
        _ = shell.client(get())
        _ = shell.connected()
        _ = shell.answer("HTTP/1.1 503 Service Unavailable\r\nX-Switchboard-Scope: cluster\r\nContent-Length: 0\r\n\r\n")
        XCTAssertEqual(shell.answerEnd().first, "retry(n1 ok, release, excluding: [\"n1\"], 503 from n1)", "no leader yet: the node is alive")
        XCTAssertEqual(shell.policy.backends["n1"]?.state, .healthy)
    }

    func testA503ThatMayNotBeRetriedGoesToTheClient() throws {
        var shell = try Shell()
        _ = shell.client("POST /v1/x HTTP/1.1\r\nHost: front\r\nContent-Length: 0\r\n\r\n")
        _ = shell.connected()
        XCTAssertEqual(
            shell.answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"),
            ["consultRetryPolicy(POST)", "forwardAnswerHead(503, asItCame)"], "an unkeyed POST: the 503 is the answer")
        XCTAssertEqual(shell.answerEnd(), ["endAnswer(n1 failed (status 503), release, keepAlive)", "finishRequest"])
        assertNothingInFlight(shell)
    }

    func testADeclaredBodyOverTheLimitGets413BeforeAnyByteIsRead() throws {
        var shell = try Shell()
        let length = ProxyExchange.requestBodyBytesMax + 1
        XCTAssertEqual(
            shell.client("POST /v1/x HTTP/1.1\r\nHost: front\r\nContent-Length: \(length)\r\n\r\nabc"),
            ["respond(413 close: request body of \(length) bytes is over \(ProxyExchange.requestBodyBytesMax))", "discardClientBytes"])
        XCTAssertTrue(shell.closed)
        XCTAssertEqual(shell.wires, [], "no node saw it")
        assertNothingInFlight(shell)
    }

    func testAChunkedBodyGrowingOverTheLimitGets413AndItsConnectionIsClosed() throws {
        var shell = try Shell()
        shell.pooled = ["n1"]
        _ = shell.client("POST /v1/x HTTP/1.1\r\nHost: front\r\nTransfer-Encoding: chunked\r\n\r\n\(String(32 << 20, radix: 16))\r\n")
        let piece = [UInt8](repeating: 65, count: 1 << 20)
        for _ in 0..<15 { _ = shell.client(piece) }
        XCTAssertEqual(shell.client(piece), [
            "respond(413 close: request body over \(ProxyExchange.requestBodyBytesMax) bytes, n1 ok, abandon+close)", "discardClientBytes",
        ], "the half-sent request's connection is closed, not counted against n1")
        XCTAssertEqual(shell.connectionEnds, ["n1: abandon+close"])
        assertNothingInFlight(shell)
    }

    func testNoBackendGets503AndTheConnectionGoesOn() throws {
        var shell = try Shell()
        shell.policy.onGossip(id: "n1", address: "n1:8080", verdict: .left, now: .seconds(100))
        shell.policy.onGossip(id: "n2", address: "n2:8080", verdict: .left, now: .seconds(100))
        XCTAssertEqual(shell.client(get() + get()), [
            "startRequest(GET)", "respond(503: no backend available)", "requestRead", "finishRequest",
            "startRequest(GET)", "respond(503: no backend available)", "requestRead", "finishRequest",
        ], "each pipelined request is answered in turn")
    }

    func testConnectionCloseAndHTTP10CloseAfterTheAnswer() throws {
        for (request, forwarding) in [(get("/", "Connection: close\r\n"), "close"), ("GET / HTTP/1.0\r\n\r\n", "close"), ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keepAlive")] {
            var shell = try Shell()
            _ = shell.client(request)
            _ = shell.connected()
            XCTAssertEqual(shell.answer(ok), ["forwardAnswerHead(200, \(forwarding))"], "\(request.debugDescription): the head is rewritten to say so")
            let end = shell.answerEnd()
            if forwarding == "close" {
                XCTAssertEqual(end, ["endAnswer(n1 ok, release, close)"], "\(request.debugDescription)")
                XCTAssertEqual(shell.client(get()), ["discardClientBytes"], "\(request.debugDescription): nothing more is read")
            } else {
                XCTAssertEqual(end, ["endAnswer(n1 ok, release, keepAlive)", "finishRequest"], "\(request.debugDescription): an HTTP/1.0 client that asked keeps it")
            }
        }
    }

    func testAnAnswerWithoutALengthEndsTheClientConnectionToo() throws {
        var shell = try Shell()
        _ = shell.client(get())
        _ = shell.connected()
        XCTAssertEqual(shell.answer("HTTP/1.1 200 OK\r\n\r\n"), ["forwardAnswerHead(200, close)"])
        XCTAssertEqual(shell.answerEnd(), ["endAnswer(n1 ok, release, close)"])
    }

    func testAnAnswerBeforeTheWholeRequestClosesBothConnections() throws {
        var shell = try Shell()
        shell.pooled = ["n1"]
        _ = shell.client("POST /v1/x HTTP/1.1\r\nHost: front\r\nContent-Length: 10\r\n\r\nhalf")
        XCTAssertEqual(shell.answer("HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"), ["forwardAnswerHead(413, asItCame)"])
        XCTAssertEqual(shell.answerEnd(), ["endAnswer(n1 ok, release+close, closeUnread)"], "the node's connection holds half a request")
    }

    func testAClientLeavingMidExchangeCostsTheNodeNothing() throws {
        var shell = try Shell()
        _ = shell.client("POST /v1/x HTTP/1.1\r\nHost: front\r\nContent-Length: 10\r\n\r\nhalf")
        _ = shell.connected()
        XCTAssertEqual(shell.clientClosed(), ["endAttempt(n1 ok, abandon+close)"], "half a request on the connection: closed")
        var pipelined = try Shell()
        _ = pipelined.client(get())
        _ = pipelined.connected()
        XCTAssertEqual(pipelined.clientClosed(), ["endAttempt(n1 ok, abandon)"], "a whole pipelined GET: its answer is read and dropped")
        assertNothingInFlight(pipelined)
    }

    func testAConnectThatCompletesAfterTheClientLeftIsGivenBack() throws {
        var shell = try Shell()
        _ = shell.client(get())
        XCTAssertEqual(shell.clientClosed(), ["endAttempt(n1 ok, lost)"], "the request counted on n1 ends with its client")
        XCTAssertEqual(shell.connected(), ["releaseConnection"])
        assertNothingInFlight(shell)
        XCTAssertEqual(shell.connectionEnds, ["released unused"])
    }

    func testAWebSocketUpgradeBecomesASplice() throws {
        var shell = try Shell()
        let upgrade = get("/v1/events", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
        XCTAssertEqual(shell.client(upgrade + "frame"), ["upgrade(GET)"], "the bytes behind the head stay with the shell, for the node")
        XCTAssertEqual(shell.leftover, Array("frame".utf8))
        shell.exchange.onUpgraded()
        XCTAssertEqual(shell.client("late"), ["discardClientBytes"], "spliced: the shell copies bytes itself, the exchange takes none")
        XCTAssertEqual(shell.clientClosed(), ["closeSplice"])
        XCTAssertEqual(shell.wires, [], "no pooled connection was used")
    }

    func testARefusedOrBadWebSocketUpgradeIsAnsweredAndClosed() throws {
        var shell = try Shell()
        _ = shell.client(get("/v1/events", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n"))
        XCTAssertEqual(shell.exchange.onUpgradeRefused(status: 401).description, "respond(401 close: the node refused the WebSocket upgrade with 401)")
        var noNode = try Shell()
        _ = noNode.client(get("/v1/events", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n"))
        XCTAssertEqual(noNode.exchange.onUpgradeFailed().description, "respond(503 close: no node took the WebSocket; retry)")
        var bad = try Shell()
        XCTAssertEqual(
            bad.client(get("/v1/events", "Upgrade: websocket\r\nConnection: Upgrade\r\n")),
            ["respond(400 close: WebSocket upgrade refused: it needs Sec-WebSocket-Key and Sec-WebSocket-Version)", "discardClientBytes"])
        var post = try Shell()
        XCTAssertEqual(
            post.client("POST /v1/events HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n"),
            ["respond(400 close: a WebSocket upgrade must be a GET without a body; got POST)", "discardClientBytes"])
    }

    func testMalformedAndOversizeHeadsAreRefusedAndTheRestIgnored() throws {
        var shell = try Shell()
        XCTAssertEqual(
            shell.client("POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            ["respond(400 close: malformed HTTP request: both Content-Length and Transfer-Encoding)", "discardClientBytes"])
        var large = try Shell()
        XCTAssertEqual(
            large.client(get("/", "X-Padding: \(String(repeating: "a", count: HTTP1.headBytesMax))\r\n")),
            ["respond(431 close: request headers over \(HTTP1.headBytesMax) bytes)", "discardClientBytes"])
    }

    func testExpectContinueIsAnsweredByTheBalancerAndTheCRLFAfterABodySkipped() throws {
        var shell = try Shell()
        shell.pooled = ["n1"]
        XCTAssertEqual(shell.client("POST /v1/x HTTP/1.1\r\nHost: front\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"), [
            "startRequest(POST, sayContinue)", "acquireConnection(n1:8080, serial: 1)", "writeRequest(keepParts)",
        ])
        XCTAssertEqual(shell.client("hi\r\n"), ["bodyPart(2, send+keep)", "requestRead"], "the CRLF waits with the next request's bytes")
        _ = shell.answer(ok)
        XCTAssertEqual(shell.answerEnd(), ["endAnswer(n1 ok, release, keepAlive)", "finishRequest", "skipClientBytes(2)"])
    }
}
