import Channels
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import ServerTLS
import Synchronization

/// Where an e-mail inbox's replies are relayed: an SMTP server (RFC 5321) reached on `port`,
/// upgraded with STARTTLS whenever the server offers it (RFC 3207), with AUTH PLAIN (RFC 4954)
/// when a username is set, only ever over TLS.
public struct SMTPRelay: Sendable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    /// A PEM file of CA certificates to trust instead of the system's (a private relay).
    public var caFile: String?
    /// What this side calls itself in EHLO.
    public var heloName: String

    public init(host: String, port: Int, username: String?, password: String?, caFile: String?, heloName: String) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.caFile = caFile
        self.heloName = heloName
    }
}

/// One message through one SMTP session, written by hand: no package in the ecosystem's set
/// speaks SMTP (see DESIGN.md). A 4xx reply or a lost connection is worth another attempt, a 5xx
/// is not.
public enum SMTPClient {
    /// Longest reply line read, and most lines in one reply.
    static let lineBytesMax = 4096
    static let replyLinesMax = 100

    public static func send(relay: SMTPRelay, from: String, to: String, message: String, timeout: Duration) async -> ProviderAnswer {
        // Set once the message's final "." is written: from then on, no answer may mean the
        // relay took it.
        let dataSent = Flag()
        do {
            return try await withThrowingTaskGroup(of: ProviderAnswer.self) { group in
                group.addTask { try await session(relay: relay, from: from, to: to, message: message, dataSent: dataSent) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return .unanswered("the SMTP relay did not finish within \(timeout)", written: dataSent.isSet)
                }
                let first = try await group.next() ?? .retry(reason: "no SMTP session")
                group.cancelAll()
                return first
            }
        } catch let failure as SMTPFailure {
            return failure.answer
        } catch {
            return .unanswered("\(error)", written: dataSent.isSet)
        }
    }

    /// A flag shared between the session and its deadline.
    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        var isSet: Bool { value.load(ordering: .acquiring) }
        func set() { value.store(true, ordering: .releasing) }
    }

    struct SMTPFailure: Error {
        let answer: ProviderAnswer
    }

    private static func session(relay: SMTPRelay, from: String, to: String, message: String, dataSent: Flag) async throws -> ProviderAnswer {
        // Bounded: a relay that sends more lines than a reply holds before they are read is
        // refused, not buffered.
        let (stream, continuation) = AsyncThrowingStream<String, any Error>.makeStream(bufferingPolicy: .bufferingOldest(replyLinesMax))
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LineReader(lines: continuation)) }
            }
            .connect(host: relay.host, port: relay.port).get()
        defer { channel.close(promise: nil) }
        var lines = stream.makeAsyncIterator()

        func reply(_ expected: ClosedRange<Int>, after command: String) async throws -> [String] {
            var texts: [String] = []
            while true {
                guard let line = try await lines.next() else {
                    throw SMTPFailure(answer: .unanswered("the SMTP relay closed the connection after \(command)", written: dataSent.isSet))
                }
                guard line.utf8.count >= 3, let code = Int(line.prefix(3)), texts.count < replyLinesMax else {
                    throw SMTPFailure(answer: .retry(reason: "the SMTP relay answered \(command) with '\(line.prefix(100))'"))
                }
                texts.append(String(line.dropFirst(4)))
                if line.count == 3 || line.dropFirst(3).first == " " {
                    guard expected.contains(code) else {
                        let reason = "SMTP \(code) after \(command): \(texts.joined(separator: " ").prefix(300))"
                        throw SMTPFailure(answer: code >= 500 ? .failed(reason: reason) : .retry(reason: reason))
                    }
                    return texts
                }
            }
        }
        func write(_ text: String) async throws {
            try await channel.writeAndFlush(channel.allocator.buffer(string: text)).get()
        }

        _ = try await reply(220...220, after: "connecting")
        try await write("EHLO \(relay.heloName)\r\n")
        var capabilities = try await reply(250...250, after: "EHLO").map { $0.uppercased() }
        var secured = false
        if capabilities.contains(where: { $0.hasPrefix("STARTTLS") }) {
            try await write("STARTTLS\r\n")
            _ = try await reply(220...220, after: "STARTTLS")
            let configuration = try relay.caFile.map(ClientTrust.configuration(trustingCA:)) ?? TLSConfiguration.makeClientConfiguration()
            let context = try NIOSSLContext(configuration: configuration)
            let handler = try NIOSSLClientHandler(context: context, serverHostname: ClientTrust.serverName(for: relay.host))
            try await channel.pipeline.addHandler(handler, position: .first).get()
            try await write("EHLO \(relay.heloName)\r\n")
            capabilities = try await reply(250...250, after: "EHLO over TLS").map { $0.uppercased() }
            secured = true
        }
        if let username = relay.username {
            guard secured else {
                return .failed(reason: "the SMTP relay offers no STARTTLS: the credentials are not sent in clear")
            }
            guard capabilities.contains(where: { $0.hasPrefix("AUTH") && $0.contains("PLAIN") }) else {
                return .failed(reason: "the SMTP relay does not take AUTH PLAIN")
            }
            let token = Data(([0] + Array(username.utf8) + [0] + Array((relay.password ?? "").utf8))).base64EncodedString()
            try await write("AUTH PLAIN \(token)\r\n")
            _ = try await reply(235...235, after: "AUTH")
        }
        try await write("MAIL FROM:<\(from)>\r\n")
        _ = try await reply(250...250, after: "MAIL FROM")
        try await write("RCPT TO:<\(to)>\r\n")
        _ = try await reply(250...251, after: "RCPT TO")
        try await write("DATA\r\n")
        _ = try await reply(354...354, after: "DATA")
        dataSent.set()
        try await write(dotStuffed(message) + ".\r\n")
        let accepted = try await reply(250...250, after: "the message")
        try? await write("QUIT\r\n")
        return .sent(id: accepted.first.map { String($0.prefix(200)) } ?? "250")
    }

    /// RFC 5321 §4.5.2: a line that starts with "." gets another; the text ends with CRLF.
    static func dotStuffed(_ message: String) -> String {
        var out = message.replacingOccurrences(of: "\r\n.", with: "\r\n..")
        if out.hasPrefix(".") { out = "." + out }
        if !out.hasSuffix("\r\n") { out += "\r\n" }
        return out
    }
}

/// Splits what the relay sends into lines (CRLF or LF), each at most `lineBytesMax`.
private final class LineReader: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let lines: AsyncThrowingStream<String, any Error>.Continuation
    var pending: [UInt8] = []

    init(lines: AsyncThrowingStream<String, any Error>.Continuation) { self.lines = lines }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        pending.append(contentsOf: buffer.readableBytesView)
        while let end = pending.firstIndex(of: 10) {
            var line = pending[..<end]
            if line.last == 13 { line = line.dropLast() }
            if case .dropped = lines.yield(String(decoding: line, as: UTF8.self)) {
                lines.finish(throwing: SMTPClient.SMTPFailure(answer: .retry(reason: "the SMTP relay sent more than \(SMTPClient.replyLinesMax) lines unasked")))
                context.close(promise: nil)
                return
            }
            pending.removeSubrange(...end)
        }
        if pending.count > SMTPClient.lineBytesMax {
            lines.finish(throwing: SMTPClient.SMTPFailure(answer: .retry(reason: "the SMTP relay sent a line over \(SMTPClient.lineBytesMax) bytes")))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        lines.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        lines.finish(throwing: error)
        context.close(promise: nil)
    }
}
