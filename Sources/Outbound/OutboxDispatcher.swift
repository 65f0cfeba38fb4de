import AsyncHTTPClient
import Channels
import ContactCenter
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import NodeRuntime
import Seeded
import ServiceLifecycle
import Synchronization

/// The leader's sender of replies: it reads the due outbox entries from its own applied state,
/// commits the start of each attempt, calls the provider, and commits the result. A follower
/// does nothing; a new leader finds the entries the old one left and carries on.
///
/// An attempt whose start committed and whose result did not (its leader died in between) is
/// attempted again: that is the one case a reply may reach the customer twice, counted in
/// `switchboard_outbox_possible_duplicates_total` and marked on the message by apply.
public final class OutboxDispatcher: Service, Sendable {
    public struct Configuration: Sendable {
        /// How often the leader looks for replies whose retry came due (a new reply wakes it at
        /// once).
        public var pollInterval: Duration = .milliseconds(100)
        /// Sends under way at once, in all and per inbox.
        public var concurrencyMax = 64
        public var concurrencyPerInboxMax = 8
        /// Sends started per second per inbox (WhatsApp's default business throughput is 80).
        public var ratePerInboxPerSecond = 50.0
        /// A provider that has not answered by then is a failed attempt, retried.
        public var sendTimeout: Duration = .seconds(10)
        public var retry = RetryPolicy()

        public init() {}
    }

    let node: Node
    let client: HTTPClient
    let configuration: Configuration
    let logger: Logger
    private let underWay = Mutex<UnderWay>(UnderWay())
    private let possibleDuplicates = Counter(label: "switchboard_outbox_possible_duplicates_total")
    private let sent = Counter(label: "switchboard_outbox_sends_total", dimensions: [("result", "sent")])
    private let retried = Counter(label: "switchboard_outbox_sends_total", dimensions: [("result", "retry")])
    private let failed = Counter(label: "switchboard_outbox_sends_total", dimensions: [("result", "failed")])

    struct UnderWay {
        var messages: Set<String> = []
        var perInbox: [String: Int] = [:]
        var buckets: [String: TokenBucket] = [:]
    }

    public init(node: Node, client: HTTPClient = .shared, configuration: Configuration = Configuration(), logger: Logger) {
        self.node = node
        self.client = client
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        // Woken by every commit that writes the outbox (a reply to send at once), and by a
        // ticker for retries that come due; wake-ups in between coalesce into one.
        let (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        node.state.onCommit { changes in
            if changes.outbox || changes.everything { wake.yield() }
        }
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    do {
                        try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.configuration.pollInterval) }
                    } catch {
                        break
                    }
                    wake.yield()
                }
                wake.finish()
            }
            for await _ in wakeups {
                guard !Task.isShuttingDownGracefully else { break }
                guard node.loop.status.role == .leader else { continue }
                let due: [OutboxEntry]
                do {
                    due = try await node.state.read { try $0.dueOutbox(now: self.node.now(), limit: self.configuration.concurrencyMax * 4) }
                } catch {
                    logger.error("cannot read the outbox", metadata: ["error": "\(error)"])
                    continue
                }
                for entry in due where claim(entry) {
                    group.addTask { await self.attempt(entry) }
                }
            }
            wake.finish()
            // Sends under way finish (each is bounded by `sendTimeout`) before the node stops,
            // so their results can still commit.
        }
    }

    /// Takes a slot for `entry` when it is not under way here and its inbox has room and rate.
    private func claim(_ entry: OutboxEntry) -> Bool {
        let now = ContinuousClock.now
        return underWay.withLock { state in
            guard !state.messages.contains(entry.messageId), state.messages.count < configuration.concurrencyMax,
                state.perInbox[entry.inboxId, default: 0] < configuration.concurrencyPerInboxMax
            else { return false }
            var bucket = state.buckets[entry.inboxId] ?? TokenBucket(perSecond: configuration.ratePerInboxPerSecond, now: now)
            guard bucket.take(now: now) else {
                state.buckets[entry.inboxId] = bucket
                return false
            }
            state.buckets[entry.inboxId] = bucket
            state.messages.insert(entry.messageId)
            state.perInbox[entry.inboxId, default: 0] += 1
            return true
        }
    }

    private func release(_ entry: OutboxEntry) {
        underWay.withLock { state in
            state.messages.remove(entry.messageId)
            state.perInbox[entry.inboxId, default: 1] -= 1
            if state.perInbox[entry.inboxId] == 0 { state.perInbox[entry.inboxId] = nil }
        }
    }

    private func attempt(_ entry: OutboxEntry) async {
        defer { release(entry) }
        let attempt = entry.attempts + 1
        let metadata: Logger.Metadata = ["message.id": "\(entry.messageId)", "inbox.id": "\(entry.inboxId)", "outbox.attempt": "\(attempt)"]
        do {
            let inbox = try await node.state.read { try $0.store.inbox(id: entry.inboxId) }
            guard try await commit(.outboxAttempt(messageId: entry.messageId, attempt: attempt)) else { return }
            if entry.inFlight {
                possibleDuplicates.increment()
                logger.warning("resuming a reply whose last attempt has no result: the customer may get it twice", metadata: metadata)
            }
            let answer: ProviderAnswer
            if let inbox, inbox.channel == .email {
                answer = await sendEmail(entry, inbox: inbox)
            } else if let inbox, let request = Self.request(for: entry, inbox: inbox) {
                answer = await send(request)
            } else {
                answer = .failed(reason: inbox == nil ? "inbox_deleted: the inbox was deleted" : "the inbox lacks a setting its provider needs")
            }
            let result: OutboxResult
            switch answer {
            case .sent(let id):
                sent.increment()
                result = .sent(providerId: id)
            case .retry(let reason) where attempt < configuration.retry.attemptsMax, .unknown(let reason) where attempt < configuration.retry.attemptsMax:
                retried.increment()
                let delay = configuration.retry.delay(afterAttempt: attempt, random: UInt64.random(in: 0...UInt64.max))
                let notBefore = Timestamp(milliseconds: node.now().milliseconds + delay.milliseconds)
                let retryMetadata = metadata.merging(["reason": "\(reason)", "retry.in_ms": "\(delay.milliseconds)"]) { $1 }
                if case .unknown = answer {
                    possibleDuplicates.increment()
                    result = .unknown(reason: reason, notBefore: notBefore)
                    logger.warning("a provider did not answer a send it may have taken: the retry may reach the customer twice", metadata: retryMetadata)
                } else {
                    result = .retry(reason: reason, notBefore: notBefore)
                    logger.info("a reply's send will be retried", metadata: retryMetadata)
                }
            case .retry(let reason), .unknown(let reason):
                failed.increment()
                result = .failed(reason: "gave up after \(attempt) attempts: \(reason)")
                logger.warning("a reply is dead-lettered", metadata: metadata.merging(["reason": "\(reason)"]) { $1 })
            case .failed(let reason):
                failed.increment()
                result = .failed(reason: reason)
                logger.warning("a provider refused a reply", metadata: metadata.merging(["reason": "\(reason)"]) { $1 })
            }
            _ = try await commit(.outboxResult(messageId: entry.messageId, attempt: attempt, result: result))
        } catch {
            // Leadership moved or the node stops: the entry stays as committed and the leader
            // carries on from there.
            logger.info("a reply's attempt did not commit", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        }
    }

    /// True when the command applied; false when apply refused it (another attempt is ahead).
    private func commit(_ command: Command) async throws -> Bool {
        let proposal = try await node.propose(command, actor: .system, idempotency: nil, readsBack: false)
        if case .rejected = proposal.outcome { return false }
        return true
    }

    static func request(for entry: OutboxEntry, inbox: Inbox) -> ProviderRequest? {
        let settings = inbox.settings
        switch inbox.channel {
        case .whatsapp:
            guard let base = settings["apiBase"], let phone = settings["phoneNumberId"], let token = settings["accessToken"] else { return nil }
            return WhatsAppSend.request(
                apiBase: base, phoneNumberId: phone, accessToken: token, to: entry.recipient, text: entry.text, templateJSON: entry.template)
        case .sms:
            guard let base = settings["apiBase"], let sid = settings["accountSid"], let token = settings["authToken"], let from = settings["from"]
            else { return nil }
            let callback = settings["webhookBase"].map { "\($0)/v1/inboxes/\(inbox.id)/webhook" }
            return TwilioSend.request(
                apiBase: base, accountSid: sid, authToken: token, from: from, to: entry.recipient, text: entry.text, statusCallback: callback)
        case .email, .webchat, .api:
            return nil
        }
    }

    /// An e-mail reply, threaded under the customer's newest e-mail in the conversation, through
    /// the inbox's SMTP relay. Its provider id is its `Message-ID`, the same on every attempt.
    private func sendEmail(_ entry: OutboxEntry, inbox: Inbox) async -> ProviderAnswer {
        let settings = inbox.settings
        guard let address = settings["address"], let host = settings["smtpHost"], let messageId = inbox.emailMessageId(of: entry.messageId) else {
            return .failed(reason: "the e-mail inbox names no SMTP relay")
        }
        let thread: EmailThread
        do {
            thread = try await node.state.read { reader in
                let page = try reader.messages(conversationId: entry.conversationId, before: nil, limit: 200)?.messages ?? []
                return EmailThread(page.reversed().first { $0.author == .customer && $0.attachments?.contains(#""kind":"email""#) == true })
            }
        } catch {
            return .retry(reason: "cannot read the conversation: \(error)")
        }
        let message = EmailMessage.render(
            from: address, fromName: inbox.name, to: entry.recipient, subject: thread.subject, text: entry.text, messageId: messageId,
            inReplyTo: thread.messageId, references: thread.references, date: Date(timeIntervalSince1970: Double(node.now().milliseconds) / 1000))
        let relay = SMTPRelay(
            host: host, port: settings["smtpPort"].flatMap { Int($0) } ?? 587, username: settings["smtpUsername"],
            password: settings["smtpPassword"], caFile: settings["smtpCaFile"], heloName: node.id)
        let answer = await SMTPClient.send(relay: relay, from: address, to: entry.recipient, message: message, timeout: configuration.sendTimeout)
        if case .sent = answer { return .sent(id: messageId) }
        return answer
    }

    private func send(_ provider: ProviderRequest) async -> ProviderAnswer {
        var request = HTTPClientRequest(url: provider.url)
        request.method = .POST
        for header in provider.headers { request.headers.add(name: header.name, value: header.value) }
        request.body = .bytes(ByteBuffer(bytes: provider.body))
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(Int64(configuration.sendTimeout.nanoseconds)))
            let body = try await response.body.collect(upTo: 1 << 20)
            let bytes = Array(body.readableBytesView)
            return provider.url.hasSuffix("/Messages.json")
                ? TwilioSend.answer(status: Int(response.status.code), body: bytes)
                : WhatsAppSend.answer(status: Int(response.status.code), body: bytes)
        } catch {
            return .unanswered("\(error)", written: Self.mayHaveBeenWritten(error))
        }
    }

    /// False only for errors that happen before a byte of the request leaves: the connection
    /// was never made. Anything later (a timeout, a reset, a closed connection) may come after
    /// the provider read the request.
    static func mayHaveBeenWritten(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return false }
        if let error = error as? HTTPClientError, error == .connectTimeout || error == .alreadyShutdown { return false }
        if let error = error as? ChannelError, case .connectTimeout = error { return false }
        if let error = error as? IOError, [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(error.errnoCode) { return false }
        return true
    }
}

/// Tokens refill at `perSecond`, at most one second's worth.
struct TokenBucket {
    let perSecond: Double
    var tokens: Double
    var updated: ContinuousClock.Instant

    init(perSecond: Double, now: ContinuousClock.Instant) {
        self.perSecond = perSecond
        tokens = perSecond
        updated = now
    }

    mutating func take(now: ContinuousClock.Instant) -> Bool {
        tokens = min(perSecond, tokens + perSecond * (now - updated).seconds)
        updated = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// What a reply threads under: the subject, `Message-ID` and `References` of the customer's
/// newest e-mail, as the webhook kept them with the message.
struct EmailThread: Sendable {
    var subject = ""
    var messageId: String?
    var references: [String] = []

    init(_ message: Message?) {
        guard let text = message?.attachments, let list = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]],
            let email = list.first(where: { $0["kind"] as? String == "email" })
        else { return }
        subject = email["subject"] as? String ?? ""
        messageId = email["messageId"] as? String
        references = email["references"] as? [String] ?? []
    }
}
