/// HTTP/1.1 message framing for the proxy (RFC 9112), pure: where a head ends, what it says
/// about its body and connection, and where a body ends, over bytes as they arrive. The proxy
/// forwards the bytes themselves; only heads are rewritten (`X-Forwarded-For`, `Connection`).
///
/// Strict where a lenient reading would let two parsers disagree about where a message ends
/// (request smuggling): a request with both `Content-Length` and `Transfer-Encoding`, a
/// transfer coding other than `chunked`, conflicting lengths, whitespace before a colon, a
/// folded header line or a bare LF is refused.
public enum HTTP1 {
    /// Largest request or response head (start line and fields); a larger request head gets 431.
    public static let headBytesMax = 64 * 1024
    /// Most header fields in one head.
    public static let fieldsMax = 256
    /// Longest chunk-size line (size, extensions) and trailer section of a chunked body.
    public static let chunkLineBytesMax = 4096

    /// How a message's body is delimited.
    public enum BodyLength: Equatable, Sendable {
        case length(Int)
        case chunked
        /// A response with neither: its body runs until the connection closes.
        case untilClose
    }

    /// One header field, as byte offsets into the head.
    public struct Field: Equatable, Sendable {
        public var line: Range<Int>  // the whole line, with its CRLF
        public var name: Range<Int>
        public var value: Range<Int>  // without surrounding whitespace
    }

    public struct RequestHead: Sendable {
        /// Bytes of the head, through the blank line.
        public var length: Int
        public var method: String
        /// The request line up to (not including) its version: `GET /path `.
        public var lineBeforeVersion: Range<Int>
        public var version: (major: UInt8, minor: UInt8)
        public var fields: [Field]
        public var body: BodyLength
        /// The client's wish: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `keep-alive`.
        public var keepAlive: Bool
        /// The head asks for `Upgrade: websocket` (see `isWebSocketHandshake`).
        public var webSocketUpgrade: Bool
        public var expectContinue: Bool
        public var hasIdempotencyKey: Bool
        public var hasWebSocketKeyAndVersion: Bool
        /// Offsets of `X-Forwarded-For` values, in order.
        public var forwardedFor: [Range<Int>]
        /// The head must be rewritten before it is forwarded (`forwardedRequest`): it is not
        /// HTTP/1.1 or has a field the balancer replaces. Otherwise the head as it came, minus
        /// its blank line, plus `X-Forwarded-For` and `Connection` lines, is the same head.
        public var needsRewrite: Bool

        /// A WebSocket opening handshake as RFC 6455 §4.1 allows it: `Upgrade: websocket` on a GET
        /// without a body. Any other request asking to upgrade is refused, never handed a socket.
        public var isWebSocketHandshake: Bool { webSocketUpgrade && method == "GET" && body == .length(0) }
    }

    public struct ResponseHead: Sendable {
        public var length: Int
        public var status: Int
        /// The status line without its CRLF.
        public var statusLine: Range<Int>
        public var fields: [Field]
        public var body: BodyLength
        public var keepAlive: Bool
        /// The head has `Connection` or `Keep-Alive` fields (which `forwardedResponse` replaces).
        public var hasConnectionFields: Bool
        /// `X-Switchboard-Scope: cluster`: the node says this answer (a 503 while a leader is
        /// elected) is about the cluster, not about itself; it is alive and is not ejected.
        public var aboutTheCluster = false
    }

    public enum Parsed<Head> {
        case incomplete
        case head(Head)
        case invalid(String)
        /// The head is over `headBytesMax` (or has over `fieldsMax` fields).
        case tooLarge

        /// The same outcome for another kind of head (`.head` has none: it is `.incomplete`).
        fileprivate func withoutHead<Other>() -> Parsed<Other> {
            switch self {
            case .incomplete, .head: .incomplete
            case .invalid(let reason): .invalid(reason)
            case .tooLarge: .tooLarge
            }
        }
    }

    // MARK: Heads

    public static func parseRequest(_ bytes: UnsafeRawBufferPointer) -> Parsed<RequestHead> {
        let split = splitLines(bytes)
        guard case .head(let lines) = split else { return split.withoutHead() }
        // Request line: method SP target SP HTTP/x.y
        let line = lines.start
        guard let firstSpace = index(of: space, in: bytes, line), firstSpace > line.lowerBound,
            let lastSpace = lastIndex(of: space, in: bytes, line), lastSpace > firstSpace + 1
        else { return .invalid("malformed request line") }
        for i in line.lowerBound..<firstSpace where !isToken(bytes[i]) { return .invalid("malformed method") }
        for i in (firstSpace + 1)..<lastSpace where bytes[i] <= space || bytes[i] == 0x7F { return .invalid("malformed request target") }
        guard let version = parseVersion(bytes, (lastSpace + 1)..<line.upperBound), version.major == 1 else {
            return .invalid("unsupported HTTP version")
        }
        let method = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[line.lowerBound..<firstSpace]), as: UTF8.self)
        var head = RequestHead(
            length: lines.length, method: method, lineBeforeVersion: line.lowerBound..<(lastSpace + 1), version: version,
            fields: lines.fields, body: .length(0), keepAlive: version.minor >= 1, webSocketUpgrade: false,
            expectContinue: false, hasIdempotencyKey: false, hasWebSocketKeyAndVersion: false, forwardedFor: [],
            needsRewrite: version.minor != 1)
        var contentLength: Int?
        var chunked = false
        var webSocketKey = false
        var webSocketVersion = false
        var providerSigned = false
        for field in lines.fields {
            let name = field.name, value = field.value
            if equalsLowercase(bytes, name, "content-length") {
                guard let length = nextContentLength(bytes, value, after: contentLength) else {
                    return .invalid("malformed or conflicting Content-Length")
                }
                contentLength = length
            } else if equalsLowercase(bytes, name, "transfer-encoding") {
                guard !chunked, equalsLowercase(bytes, value, "chunked") else {
                    return .invalid("unsupported Transfer-Encoding (only chunked)")
                }
                chunked = true
            } else if equalsLowercase(bytes, name, "connection") {
                head.needsRewrite = true
                head.keepAlive = keepAlive(after: bytes, connection: value, minor: version.minor, before: head.keepAlive)
            } else if equalsLowercase(bytes, name, "keep-alive") || equalsLowercase(bytes, name, "proxy-connection") {
                head.needsRewrite = true
            } else if equalsLowercase(bytes, name, "upgrade") {
                forEachToken(bytes, value) { token in
                    if equalsLowercase(bytes, token, "websocket") { head.webSocketUpgrade = true }
                }
            } else if equalsLowercase(bytes, name, "expect") {
                head.needsRewrite = true
                if equalsLowercase(bytes, value, "100-continue") { head.expectContinue = true }
            } else if equalsLowercase(bytes, name, "idempotency-key") {
                head.hasIdempotencyKey = true
            } else if equalsLowercase(bytes, name, "x-hub-signature-256") || equalsLowercase(bytes, name, "x-twilio-signature") {
                providerSigned = true
            } else if equalsLowercase(bytes, name, "x-forwarded-for") {
                head.needsRewrite = true
                if !value.isEmpty { head.forwardedFor.append(value) }
            } else if equalsLowercase(bytes, name, "sec-websocket-key") {
                webSocketKey = true
            } else if equalsLowercase(bytes, name, "sec-websocket-version") {
                webSocketVersion = true
            }
        }
        if chunked && contentLength != nil { return .invalid("both Content-Length and Transfer-Encoding") }
        head.body = chunked ? .chunked : .length(contentLength ?? 0)
        head.hasWebSocketKeyAndVersion = webSocketKey && webSocketVersion
        // A provider's signed webhook may be repeated like a keyed request: the node stores each
        // provider message once by the provider's id and moves a delivery status forward only
        // (Meta and Twilio send a failed webhook again themselves).
        if providerSigned, pathEnds(bytes, (firstSpace + 1)..<lastSpace, with: "/webhook") { head.hasIdempotencyKey = true }
        return .head(head)
    }

    /// Whether the request target's path (before any `?`) ends with `suffix`.
    static func pathEnds(_ bytes: UnsafeRawBufferPointer, _ target: Range<Int>, with suffix: StaticString) -> Bool {
        var end = target.upperBound
        for i in target where bytes[i] == UInt8(ascii: "?") {
            end = i
            break
        }
        let count = suffix.utf8CodeUnitCount
        guard end - target.lowerBound >= count else { return false }
        return suffix.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[end - count + $0] == expected[$0] }
        }
    }

    /// A backend's answer head. `requestWasHEAD` decides whether a body follows (HEAD: none).
    public static func parseResponse(_ bytes: UnsafeRawBufferPointer, requestWasHEAD: Bool) -> Parsed<ResponseHead> {
        let split = splitLines(bytes)
        guard case .head(let lines) = split else { return split.withoutHead() }
        let line = lines.start
        guard line.count >= 12, let version = parseVersion(bytes, line.lowerBound..<(line.lowerBound + 8)), version.major == 1,
            bytes[line.lowerBound + 8] == space, let status = parseLength(bytes, (line.lowerBound + 9)..<(line.lowerBound + 12)),
            (100...999).contains(status), line.count == 12 || bytes[line.lowerBound + 12] == space
        else { return .invalid("malformed status line") }
        var head = ResponseHead(
            length: lines.length, status: status, statusLine: line, fields: lines.fields, body: .untilClose, keepAlive: version.minor >= 1,
            hasConnectionFields: false)
        var contentLength: Int?
        var chunked = false
        for field in lines.fields {
            if equalsLowercase(bytes, field.name, "content-length") {
                guard let length = nextContentLength(bytes, field.value, after: contentLength) else {
                    return .invalid("malformed or conflicting Content-Length")
                }
                contentLength = length
            } else if equalsLowercase(bytes, field.name, "transfer-encoding") {
                // The last coding decides: chunked, or else the body runs to the close.
                chunked = false
                forEachToken(bytes, field.value) { token in chunked = equalsLowercase(bytes, token, "chunked") }
            } else if equalsLowercase(bytes, field.name, "keep-alive") {
                head.hasConnectionFields = true
            } else if equalsLowercase(bytes, field.name, "connection") {
                head.hasConnectionFields = true
                head.keepAlive = keepAlive(after: bytes, connection: field.value, minor: version.minor, before: head.keepAlive)
            } else if status >= 500, equalsLowercase(bytes, field.name, "x-switchboard-scope") {
                head.aboutTheCluster = equalsLowercase(bytes, field.value, "cluster")
            }
        }
        if requestWasHEAD || (100..<200).contains(status) || status == 204 || status == 304 {
            head.body = .length(0)
        } else if chunked {
            head.body = .chunked
        } else if let contentLength {
            head.body = .length(contentLength)
        } else {
            head.body = .untilClose
            head.keepAlive = false
        }
        return .head(head)
    }

    /// A `Content-Length` value, when it is well formed and equal to any earlier one.
    private static func nextContentLength(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>, after earlier: Int?) -> Int? {
        guard let length = parseLength(bytes, value), earlier == nil || earlier == length else { return nil }
        return length
    }

    /// Keep-alive after a `Connection` field: `close` ends it, `keep-alive` asks for it in
    /// HTTP/1.0 (1.1 keeps alive by default).
    private static func keepAlive(after bytes: UnsafeRawBufferPointer, connection value: Range<Int>, minor: UInt8, before: Bool) -> Bool {
        var keepAlive = before
        forEachToken(bytes, value) { token in
            if equalsLowercase(bytes, token, "close") { keepAlive = false }
            if equalsLowercase(bytes, token, "keep-alive") && minor == 0 { keepAlive = true }
        }
        return keepAlive
    }

    // MARK: Rewriting heads

    /// The head the node receives: the request line with version 1.1, the client's fields
    /// except the hop-by-hop ones (`Connection`, `Keep-Alive`, `Expect`, `Proxy-Connection`)
    /// and `X-Forwarded-For`, which comes last with `client` appended; `Connection: keep-alive`.
    public static func forwardedRequest(_ head: RequestHead, _ bytes: UnsafeRawBufferPointer, client: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(head.length + client.utf8.count + 64)
        out.append(contentsOf: bytes[head.lineBeforeVersion])
        out.append(contentsOf: "HTTP/1.1\r\n".utf8)
        for field in head.fields {
            let name = field.name
            if equalsLowercase(bytes, name, "connection") || equalsLowercase(bytes, name, "keep-alive")
                || equalsLowercase(bytes, name, "expect") || equalsLowercase(bytes, name, "proxy-connection")
                || equalsLowercase(bytes, name, "x-forwarded-for")
            {
                continue
            }
            out.append(contentsOf: bytes[field.line])
        }
        appendForwardedFor(&out, head, bytes, client: client)
        out.append(contentsOf: "Connection: keep-alive\r\n\r\n".utf8)
        return out
    }

    /// The head a node receives for a WebSocket upgrade: the client's as it came (the
    /// `Connection: Upgrade` and `Upgrade` fields stay), with `X-Forwarded-For` last.
    public static func forwardedUpgrade(_ head: RequestHead, _ bytes: UnsafeRawBufferPointer, client: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(head.length + client.utf8.count + 32)
        out.append(contentsOf: bytes[head.lineBeforeVersion])
        out.append(contentsOf: "HTTP/1.1\r\n".utf8)
        for field in head.fields where !equalsLowercase(bytes, field.name, "x-forwarded-for") {
            out.append(contentsOf: bytes[field.line])
        }
        appendForwardedFor(&out, head, bytes, client: client)
        out.append(contentsOf: "\r\n".utf8)
        return out
    }

    private static func appendForwardedFor(_ out: inout [UInt8], _ head: RequestHead, _ bytes: UnsafeRawBufferPointer, client: String) {
        out.append(contentsOf: "X-Forwarded-For: ".utf8)
        for value in head.forwardedFor {
            out.append(contentsOf: bytes[value])
            out.append(contentsOf: ", ".utf8)
        }
        out.append(contentsOf: client.utf8)
        out.append(contentsOf: "\r\n".utf8)
    }

    /// The head the client receives: the node's, with its own `Connection` fields replaced by
    /// the balancer's decision for the client connection.
    public static func forwardedResponse(_ head: ResponseHead, _ bytes: UnsafeRawBufferPointer, keepAlive: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(head.length + 24)
        out.append(contentsOf: bytes[head.statusLine])
        out.append(contentsOf: "\r\n".utf8)
        for field in head.fields {
            if equalsLowercase(bytes, field.name, "connection") || equalsLowercase(bytes, field.name, "keep-alive") { continue }
            out.append(contentsOf: bytes[field.line])
        }
        out.append(contentsOf: keepAlive ? "Connection: keep-alive\r\n\r\n".utf8 : "Connection: close\r\n\r\n".utf8)
        return out
    }

    /// The value of the first field named `name` (lowercase), as text.
    public static func fieldValue(_ fields: [Field], _ bytes: UnsafeRawBufferPointer, _ name: StaticString) -> String? {
        fields.first { equalsLowercase(bytes, $0.name, name) }.map {
            String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0.value]), as: UTF8.self)
        }
    }

    // MARK: Bodies

    /// Where a body ends, fed the bytes after the head as they arrive; it never needs bytes
    /// twice (a chunk-size line split across reads is carried in a small state).
    public struct BodyFramer: Sendable {
        public enum Failure: Error, Equatable, CustomStringConvertible {
            case malformedChunk(String)
            public var description: String {
                switch self { case .malformedChunk(let reason): "malformed chunked body: \(reason)" }
            }
        }

        private enum State: Sendable {
            case fixed(remaining: Int)
            case chunkSize(value: Int, digits: Int, inExtension: Bool, lineBytes: Int, sawCR: Bool)
            case chunkData(remaining: Int)
            case chunkDataEnd(sawCR: Bool)
            /// After the last chunk: trailer lines until an empty one.
            case trailer(lineBytes: Int, sawCR: Bool, totalBytes: Int)
            case untilClose
            case done
        }

        private var state: State

        public init(_ length: BodyLength) {
            switch length {
            case .length(let count): state = count == 0 ? .done : .fixed(remaining: count)
            case .chunked: state = .chunkSize(value: 0, digits: 0, inExtension: false, lineBytes: 0, sawCR: false)
            case .untilClose: state = .untilClose
            }
        }

        /// The body runs until the connection closes (a response with no length).
        public var endsAtClose: Bool {
            if case .untilClose = state { return true }
            return false
        }

        public var isDone: Bool {
            if case .done = state { return true }
            return false
        }

        /// Consumes body bytes from the front of `bytes`; returns how many belong to the body
        /// (the rest is the next message). `isDone` tells whether the body ended.
        public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
            var i = 0
            let n = bytes.count
            while i < n {
                switch state {
                case .done:
                    return i
                case .untilClose:
                    return n
                case .fixed(let remaining):
                    let take = min(remaining, n - i)
                    i += take
                    state = remaining == take ? .done : .fixed(remaining: remaining - take)
                case .chunkData(let remaining):
                    let take = min(remaining, n - i)
                    i += take
                    state = remaining == take ? .chunkDataEnd(sawCR: false) : .chunkData(remaining: remaining - take)
                case .chunkDataEnd(let sawCR):
                    let byte = bytes[i]
                    i += 1
                    if !sawCR {
                        guard byte == cr else { throw .malformedChunk("chunk data not followed by CRLF") }
                        state = .chunkDataEnd(sawCR: true)
                    } else {
                        guard byte == lf else { throw .malformedChunk("chunk data not followed by CRLF") }
                        state = .chunkSize(value: 0, digits: 0, inExtension: false, lineBytes: 0, sawCR: false)
                    }
                case .chunkSize(var value, var digits, var inExtension, var lineBytes, let sawCR):
                    let byte = bytes[i]
                    i += 1
                    lineBytes += 1
                    guard lineBytes <= HTTP1.chunkLineBytesMax else { throw .malformedChunk("chunk-size line too long") }
                    if sawCR {
                        guard byte == lf else { throw .malformedChunk("bare CR in chunk-size line") }
                        guard digits > 0 else { throw .malformedChunk("no chunk size") }
                        state = value == 0 ? .trailer(lineBytes: 0, sawCR: false, totalBytes: 0) : .chunkData(remaining: value)
                        continue
                    }
                    if byte == cr {
                        state = .chunkSize(value: value, digits: digits, inExtension: inExtension, lineBytes: lineBytes, sawCR: true)
                        continue
                    }
                    if inExtension {
                        guard byte != lf else { throw .malformedChunk("bare LF in chunk-size line") }
                    } else if let digit = hexValue(byte) {
                        digits += 1
                        guard digits <= 15 else { throw .malformedChunk("chunk size too large") }
                        value = value << 4 | digit
                    } else if byte == UInt8(ascii: ";") || byte == space || byte == tab {
                        guard digits > 0 else { throw .malformedChunk("no chunk size") }
                        inExtension = true
                    } else {
                        throw .malformedChunk("bad character in chunk size")
                    }
                    state = .chunkSize(value: value, digits: digits, inExtension: inExtension, lineBytes: lineBytes, sawCR: false)
                case .trailer(var lineBytes, let sawCR, var totalBytes):
                    let byte = bytes[i]
                    i += 1
                    totalBytes += 1
                    guard totalBytes <= HTTP1.chunkLineBytesMax else { throw .malformedChunk("trailer section too long") }
                    if sawCR {
                        guard byte == lf else { throw .malformedChunk("bare CR in trailer") }
                        state = lineBytes == 0 ? .done : .trailer(lineBytes: 0, sawCR: false, totalBytes: totalBytes)
                    } else if byte == cr {
                        state = .trailer(lineBytes: lineBytes, sawCR: true, totalBytes: totalBytes)
                    } else {
                        guard byte != lf else { throw .malformedChunk("bare LF in trailer") }
                        lineBytes += 1
                        state = .trailer(lineBytes: lineBytes, sawCR: false, totalBytes: totalBytes)
                    }
                }
            }
            return i
        }
    }

    // MARK: Lines

    private struct Lines {
        var start: Range<Int>  // the start line, without CRLF
        var fields: [Field]
        var length: Int
    }

    private static func splitLines(_ bytes: UnsafeRawBufferPointer) -> Parsed<Lines> {
        let limit = min(bytes.count, headBytesMax)
        var lineStart = 0
        var start: Range<Int>?
        var fields: [Field] = []
        var i = 0
        while i < limit {
            guard let newline = index(of: lf, in: bytes, i..<limit) else { break }
            guard newline > lineStart, bytes[newline - 1] == cr else { return .invalid("line not ended by CRLF") }
            let contentEnd = newline - 1
            if contentEnd == lineStart {
                // The blank line.
                guard let start else { return .invalid("empty start line") }
                return .head(Lines(start: start, fields: fields, length: newline + 1))
            }
            if start == nil {
                start = lineStart..<contentEnd
            } else {
                guard bytes[lineStart] != space && bytes[lineStart] != tab else { return .invalid("folded header line") }
                guard let colon = index(of: UInt8(ascii: ":"), in: bytes, lineStart..<contentEnd), colon > lineStart else {
                    return .invalid("header line without a name")
                }
                for j in lineStart..<colon where !isToken(bytes[j]) { return .invalid("malformed header name") }
                var valueStart = colon + 1
                var valueEnd = contentEnd
                while valueStart < valueEnd && (bytes[valueStart] == space || bytes[valueStart] == tab) { valueStart += 1 }
                while valueEnd > valueStart && (bytes[valueEnd - 1] == space || bytes[valueEnd - 1] == tab) { valueEnd -= 1 }
                for j in valueStart..<valueEnd where bytes[j] == 0 || bytes[j] == cr { return .invalid("malformed header value") }
                guard fields.count < fieldsMax else { return .tooLarge }
                fields.append(Field(line: lineStart..<(newline + 1), name: lineStart..<colon, value: valueStart..<valueEnd))
            }
            lineStart = newline + 1
            i = lineStart
        }
        return bytes.count >= headBytesMax ? .tooLarge : .incomplete
    }

    // MARK: Bytes

    static let cr = UInt8(ascii: "\r")
    static let lf = UInt8(ascii: "\n")
    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")

    private static func index(of byte: UInt8, in bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        var i = range.lowerBound
        while i < range.upperBound {
            if bytes[i] == byte { return i }
            i += 1
        }
        return nil
    }

    private static func lastIndex(of byte: UInt8, in bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        var i = range.upperBound
        while i > range.lowerBound {
            i -= 1
            if bytes[i] == byte { return i }
        }
        return nil
    }

    /// RFC 9110 token characters.
    private static func isToken(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default: false
        }
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// `HTTP/1.x` in exactly those 8 bytes.
    private static func parseVersion(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> (major: UInt8, minor: UInt8)? {
        guard range.count == 8 else { return nil }
        let b = range.lowerBound
        guard bytes[b] == UInt8(ascii: "H"), bytes[b + 1] == UInt8(ascii: "T"), bytes[b + 2] == UInt8(ascii: "T"),
            bytes[b + 3] == UInt8(ascii: "P"), bytes[b + 4] == UInt8(ascii: "/"), bytes[b + 6] == UInt8(ascii: "."),
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[b + 5]), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[b + 7])
        else { return nil }
        return (bytes[b + 5] - UInt8(ascii: "0"), bytes[b + 7] - UInt8(ascii: "0"))
    }

    /// Decimal digits only, at most 15 of them.
    private static func parseLength(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= 15 else { return nil }
        var value = 0
        for i in range {
            let byte = bytes[i]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// ASCII case-insensitive comparison with a lowercase literal.
    static func equalsLowercase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString) -> Bool {
        guard range.count == lowercase.utf8CodeUnitCount else { return false }
        let literal = lowercase.utf8Start
        var i = 0
        for j in range {
            var byte = bytes[j]
            if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte |= 0x20 }
            if byte != literal[i] { return false }
            i += 1
        }
        return true
    }

    /// Calls `body` with each comma-separated token of a field value, trimmed.
    private static func forEachToken(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        var start = range.lowerBound
        while start <= range.upperBound {
            var end = start
            while end < range.upperBound && bytes[end] != UInt8(ascii: ",") { end += 1 }
            var a = start, b = end
            while a < b && (bytes[a] == space || bytes[a] == tab) { a += 1 }
            while b > a && (bytes[b - 1] == space || bytes[b - 1] == tab) { b -= 1 }
            if a < b { body(a..<b) }
            start = end + 1
        }
    }
}
