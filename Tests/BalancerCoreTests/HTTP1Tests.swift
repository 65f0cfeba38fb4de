import BalancerCore
import RaftCore
import Seeded
import XCTest

final class HTTP1Tests: XCTestCase {
    private func request(_ text: String) -> HTTP1.Parsed<HTTP1.RequestHead> {
        Array(text.utf8).withUnsafeBytes { HTTP1.parseRequest($0) }
    }

    private func head(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> HTTP1.RequestHead {
        guard case .head(let head) = request(text) else {
            XCTFail("expected a complete head in \(text.debugDescription), got \(request(text))", file: file, line: line)
            throw CancellationError()
        }
        return head
    }

    private func invalid(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        guard case .invalid = request(text) else {
            XCTFail("\(text.debugDescription) must be refused, got \(request(text))", file: file, line: line)
            return
        }
    }

    private func response(_ text: String, head: Bool = false) -> HTTP1.Parsed<HTTP1.ResponseHead> {
        Array(text.utf8).withUnsafeBytes { HTTP1.parseResponse($0, requestWasHEAD: head) }
    }

    /// Feeds `bytes` to a framer in pieces of `split` bytes; returns the bytes it took and
    /// whether the body ended.
    private func frame(_ length: HTTP1.BodyLength, _ bytes: [UInt8], split: Int) throws -> (used: Int, done: Bool) {
        var framer = HTTP1.BodyFramer(length)
        var used = 0
        var offset = 0
        while offset < bytes.count && !framer.isDone {
            let piece = Array(bytes[offset..<min(offset + split, bytes.count)])
            let took = try piece.withUnsafeBytes { buffer throws(HTTP1.BodyFramer.Failure) in try framer.consume(buffer) }
            used += took
            if took < piece.count { break }
            offset += piece.count
        }
        return (used, framer.isDone)
    }

    func testARequestHeadIsCompleteOnlyWithItsBlankLineWhereverTheReadsSplitIt() throws {
        let text = "POST /v1/channels/sms/messages HTTP/1.1\r\nHost: front\r\nContent-Length: 5\r\nIdempotency-Key: k1\r\n\r\nhello"
        let bytes = Array(text.utf8)
        let headLength = text.utf8.count - 5
        for cut in 0..<headLength {
            guard case .incomplete = Array(bytes[0..<cut]).withUnsafeBytes({ HTTP1.parseRequest($0) }) else {
                XCTFail("the first \(cut) of \(headLength) head bytes are not a whole head")
                return
            }
        }
        let whole = try head(text)
        XCTAssertEqual(whole.length, headLength, "the head ends after its blank line")
        XCTAssertEqual(whole.method, "POST")
        XCTAssertEqual(whole.body, .length(5))
        XCTAssertTrue(whole.keepAlive, "HTTP/1.1 keeps the connection by default")
        XCTAssertTrue(whole.hasIdempotencyKey)
        XCTAssertFalse(whole.needsRewrite, "nothing in this head is replaced")
    }

    func testAProvidersSignedWebhookIsRepeatableAndNothingElseBecauseOfASignature() throws {
        XCTAssertTrue(try head("POST /v1/inboxes/ib_1/webhook HTTP/1.1\r\nX-Hub-Signature-256: sha256=ab\r\nContent-Length: 0\r\n\r\n").hasIdempotencyKey,
                      "Meta's webhook: the node stores a wamid once")
        XCTAssertTrue(try head("POST /v1/inboxes/ib_1/webhook?x=1 HTTP/1.1\r\nx-twilio-signature: abc=\r\nContent-Length: 0\r\n\r\n").hasIdempotencyKey,
                      "Twilio's, with a query")
        XCTAssertFalse(try head("POST /v1/agents HTTP/1.1\r\nX-Hub-Signature-256: sha256=ab\r\nContent-Length: 0\r\n\r\n").hasIdempotencyKey,
                       "a signature on another path buys no retry")
        XCTAssertFalse(try head("POST /v1/inboxes/ib_1/webhook HTTP/1.1\r\nContent-Length: 0\r\n\r\n").hasIdempotencyKey,
                       "an unsigned webhook (the e-mail and api inboxes') is not repeated")
    }

    func testConnectionAndUpgradeFieldsAreRead() throws {
        XCTAssertFalse(try head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keepAlive, "Connection: close ends the connection")
        XCTAssertFalse(try head("GET / HTTP/1.0\r\n\r\n").keepAlive, "HTTP/1.0 closes by default")
        XCTAssertTrue(try head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keepAlive, "HTTP/1.0 keeps alive when asked")
        let upgrade = try head(
            "GET /v1/events HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 13\r\n\r\n")
        XCTAssertTrue(upgrade.webSocketUpgrade && upgrade.hasWebSocketKeyAndVersion, "a WebSocket upgrade with key and version")
        XCTAssertTrue(upgrade.isWebSocketHandshake)
        // RFC 6455 §4.1: only a GET without a body opens a WebSocket.
        let post = try head("POST /v1/events HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 13\r\n\r\n")
        XCTAssertTrue(post.webSocketUpgrade)
        XCTAssertFalse(post.isWebSocketHandshake, "a POST asking to upgrade is not a WebSocket")
        let withBody = try head("GET /v1/events HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n")
        XCTAssertFalse(withBody.isWebSocketHandshake, "an upgrade with a body is not a WebSocket")
        XCTAssertTrue(try head("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expectContinue)
        XCTAssertEqual(try head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").body, .chunked)
    }

    /// The cases where two parsers could disagree on where a request ends are refused.
    func testAmbiguousOrMalformedRequestsAreRefused() {
        invalid("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
        invalid("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        invalid("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
        invalid("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
        invalid("POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n")
        invalid("GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n")
        invalid("GET / HTTP/1.1\nHost: a\r\n\r\n")
        invalid("GET / HTTP/2.0\r\n\r\n")
        invalid("GET  HTTP/1.1\r\n\r\n")
        invalid("G(T / HTTP/1.1\r\n\r\n")
        invalid("GET / HTTP/1.1\r\n: empty name\r\n\r\n")
        XCTAssertNoThrow(try head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), "repeated equal lengths are one length")
    }

    func testAHeadOverTheLimitIsTooLarge() {
        let padding = String(repeating: "a", count: HTTP1.headBytesMax)
        guard case .tooLarge = request("GET / HTTP/1.1\r\nX-Padding: \(padding)") else {
            XCTFail("a head that is not over after \(HTTP1.headBytesMax) bytes is too large")
            return
        }
        let fields = (0...HTTP1.fieldsMax).map { "X-\($0): 1\r\n" }.joined()
        guard case .tooLarge = request("GET / HTTP/1.1\r\n\(fields)\r\n") else {
            XCTFail("over \(HTTP1.fieldsMax) fields is too large")
            return
        }
    }

    func testTheForwardedRequestReplacesHopByHopFieldsAndExtendsTheForwardedChain() throws {
        let text = "POST /x HTTP/1.0\r\nHost: front\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        let parsed = try head(text)
        XCTAssertTrue(parsed.needsRewrite)
        let forwarded = Array(text.utf8).withUnsafeBytes { HTTP1.forwardedRequest(parsed, $0, client: "127.0.0.9") }
        XCTAssertEqual(
            String(decoding: forwarded, as: UTF8.self),
            "POST /x HTTP/1.1\r\nHost: front\r\nContent-Length: 2\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.9\r\nConnection: keep-alive\r\n\r\n")
    }

    /// The proxy skips the rewrite when `needsRewrite` is false, sending the client's head
    /// without its blank line and then its own lines: that must be the rewrite's own result.
    func testAHeadThatNeedsNoRewriteForwardsAsTheRewriteWould() throws {
        let text = "GET /healthz HTTP/1.1\r\nHost: front\r\nAccept: */*\r\n\r\n"
        let parsed = try head(text)
        XCTAssertFalse(parsed.needsRewrite)
        let rewritten = Array(text.utf8).withUnsafeBytes { HTTP1.forwardedRequest(parsed, $0, client: "127.0.0.9") }
        let fast = Array(text.utf8.dropLast(2)) + Array("X-Forwarded-For: 127.0.0.9\r\nConnection: keep-alive\r\n\r\n".utf8)
        XCTAssertEqual(String(decoding: fast, as: UTF8.self), String(decoding: rewritten, as: UTF8.self))
    }

    func testAnUpgradeIsForwardedWithItsConnectionFields() throws {
        let text = "GET /v1/events HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
        let parsed = try head(text)
        let forwarded = Array(text.utf8).withUnsafeBytes { HTTP1.forwardedUpgrade(parsed, $0, client: "127.0.0.9") }
        XCTAssertEqual(
            String(decoding: forwarded, as: UTF8.self),
            "GET /v1/events HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.9\r\n\r\n")
    }

    func testAResponseSaysHowItsBodyEnds() {
        func body(_ text: String, head: Bool = false) -> (HTTP1.BodyLength, Bool)? {
            guard case .head(let parsed) = response(text, head: head) else { return nil }
            return (parsed.body, parsed.keepAlive)
        }
        XCTAssertEqual(body("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")?.0, .length(11))
        XCTAssertEqual(body("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", head: true)?.0, .length(0), "an answer to HEAD has no body")
        XCTAssertEqual(body("HTTP/1.1 204 No Content\r\nContent-Length: 11\r\n\r\n")?.0, .length(0))
        XCTAssertEqual(body("HTTP/1.1 304 Not Modified\r\n\r\n")?.0, .length(0))
        XCTAssertEqual(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?.0, .chunked)
        let untilClose = body("HTTP/1.1 200 OK\r\n\r\n")
        XCTAssertEqual(untilClose?.0, .untilClose, "no length: the body runs to the close")
        XCTAssertEqual(untilClose?.1, false, "and the connection cannot be reused")
        XCTAssertEqual(body("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?.1, false)
        XCTAssertEqual(body("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")?.0, .length(0), "a status line without a reason")
        guard case .invalid = response("HTTP/1.1 20 OK\r\n\r\n") else { return XCTFail("a two-digit status is not HTTP") }
        guard case .invalid = response("SSH-2.0-OpenSSH\r\n\r\n") else { return XCTFail("not an HTTP answer") }
    }

    /// A node's 503 during an election says it is about the cluster; only then is a live node
    /// spared ejection. Any other 5xx, or the field on a 2xx, counts as it always did.
    func testA503AboutTheClusterIsToldApart() {
        func aboutTheCluster(_ text: String) -> Bool? {
            guard case .head(let parsed) = response(text) else { return nil }
            return parsed.aboutTheCluster
        }
        XCTAssertEqual(aboutTheCluster("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nX-Switchboard-Scope: cluster\r\nContent-Length: 0\r\n\r\n"), true)
        XCTAssertEqual(aboutTheCluster("HTTP/1.1 503 Service Unavailable\r\nx-switchboard-scope: CLUSTER\r\nContent-Length: 0\r\n\r\n"), true)
        XCTAssertEqual(aboutTheCluster("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"), false, "a plain 503 is the node's own")
        XCTAssertEqual(aboutTheCluster("HTTP/1.1 503 Service Unavailable\r\nX-Switchboard-Scope: node\r\nContent-Length: 0\r\n\r\n"), false)
        XCTAssertEqual(aboutTheCluster("HTTP/1.1 200 OK\r\nX-Switchboard-Scope: cluster\r\nContent-Length: 0\r\n\r\n"), false, "only a 5xx can be excused")
    }

    func testTheForwardedResponseCarriesTheBalancersConnectionDecision() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nServer: n1\r\n\r\n"
        guard case .head(let parsed) = response(text) else { return XCTFail("a valid answer") }
        XCTAssertTrue(parsed.hasConnectionFields)
        let forwarded = Array(text.utf8).withUnsafeBytes { HTTP1.forwardedResponse(parsed, $0, keepAlive: false) }
        XCTAssertEqual(String(decoding: forwarded, as: UTF8.self), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nServer: n1\r\nConnection: close\r\n\r\n")
    }

    func testAFixedLengthBodyStopsWhereTheNextRequestStarts() throws {
        let bytes = Array("hello".utf8) + Array("GET / HTTP/1.1\r\n\r\n".utf8)
        for split in [1, 2, 5, 100] {
            let (used, done) = try frame(.length(5), bytes, split: split)
            XCTAssertEqual(used, 5, "split \(split): the body is 5 bytes")
            XCTAssertTrue(done)
        }
    }

    /// Seeded: random data cut into random chunks (with extensions and trailers now and then),
    /// followed by the next message and fed in random pieces, always ends exactly after the
    /// last chunk's trailer section.
    func testChunkedBodiesEndExactlyWhereverTheReadsSplitThem() throws {
        var random = SplitMix64(seed: 42)
        for trial in 0..<300 {
            var encoded: [UInt8] = []
            for _ in 0..<Int.random(in: 0...5, using: &random) {
                let size = Int.random(in: 1...300, using: &random)
                let hex = String(size, radix: 16, uppercase: Bool.random(using: &random))
                encoded += Array(hex.utf8)
                if Bool.random(using: &random) { encoded += Array(";name=value".utf8) }
                encoded += [13, 10] + (0..<size).map { _ in UInt8.random(in: 0...255, using: &random) } + [13, 10]
            }
            encoded += Array("0\r\n".utf8)
            if Bool.random(using: &random) { encoded += Array("Trailer-Field: x\r\n".utf8) }
            encoded += [13, 10]
            let next = Array("GET / HTTP/1.1\r\n\r\n".utf8)
            let split = Int.random(in: 1...64, using: &random)
            let (used, done) = try frame(.chunked, encoded + next, split: split)
            XCTAssertTrue(done, "trial \(trial) (seed 42): the chunked body ended")
            XCTAssertEqual(used, encoded.count, "trial \(trial) (seed 42), pieces of \(split): the body is exactly its encoding")
        }
    }

    func testMalformedChunkedBodiesAreRefused() {
        for bad in ["zz\r\n", "5\r\nhelloXX", "\r\n", "5\nhello\r\n", "0\r\nTrailer\n", String(repeating: "1", count: 16) + "\r\n"] {
            XCTAssertThrowsError(try frame(.chunked, Array(bad.utf8), split: 3), "\(bad.debugDescription) is not a chunked body")
        }
    }
}
