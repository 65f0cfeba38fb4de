import Logging
import NIOCore

/// The largest frame the decoder accepts: `PeerLink.handshakeFrameBytesMax` until the peer has
/// proved it holds the secret, `PeerLink.frameBytesMax` after. Shared by a connection's decoder
/// and its session handler, on the channel's event loop only.
final class PeerFrameLimit {
    var bytesMax = PeerLink.handshakeFrameBytesMax
}

/// `[u32 length][u8 type][body]` frames, at most `limit.bytesMax` each: an unauthenticated
/// peer that announces a larger frame is cut off before its body is buffered.
struct PeerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = PeerFrame
    let limit: PeerFrameLimit

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard Int(length) <= limit.bytesMax, length >= 1 else { throw PeerLinkError.frameTooLarge(bytes: Int(length), max: limit.bytesMax) }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let type = buffer.readInteger(as: UInt8.self), let body = buffer.readBytes(length: Int(length) - 1) else {
            throw PeerLinkError.protocolViolation("short frame")
        }
        context.fireChannelRead(wrapInboundOut(PeerFrame(type: type, body: body)))
        return .continue
    }
}

struct PeerFrame {
    static let hello: UInt8 = 1, proof: UInt8 = 2, data: UInt8 = 3, identity: UInt8 = 4
    var type: UInt8
    var body: [UInt8]

    func encoded(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(body.count + 1))
        buffer.writeInteger(type)
        buffer.writeBytes(body)
    }
}

/// One TCP connection between two members: handshake, then sealed data frames both ways.
/// Confined to its channel's event loop. Payloads sent before the handshake completes wait in a
/// bounded queue (`pendingPayloadsMax`); past it they are dropped (Raft retransmits).
final class PeerSessionHandler: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = ByteBuffer

    static let pendingPayloadsMax = 1024

    var handshake: PeerHandshake
    let expectedPeer: String?
    let events: PeerLinkEvents
    let limit: PeerFrameLimit
    /// Called once, when the peer proves itself or the connection closes before it does (an
    /// inbound connection's slot among the unauthenticated ones).
    var settle: (() -> Void)?
    var deadline: Scheduled<Void>?
    /// After authentication: keepalives out, and the check that the peer is still heard.
    var keepalive: Scheduled<Void>?
    var lastReadAt = ContinuousClock.now
    var lastWriteAt = ContinuousClock.now
    var pending: [[UInt8]] = []
    var context: ChannelHandlerContext?

    init(handshake: PeerHandshake, expectedPeer: String?, events: PeerLinkEvents, limit: PeerFrameLimit, settle: (() -> Void)? = nil) {
        self.handshake = handshake
        self.expectedPeer = expectedPeer
        self.events = events
        self.limit = limit
        self.settle = settle
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        deadline?.cancel()
        keepalive?.cancel()
        settled()
    }

    private func settled() {
        let settle = self.settle
        self.settle = nil
        settle?()
    }

    func channelActive(context: ChannelHandlerContext) {
        // A peer that has not proved itself within the deadline is cut off.
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: PeerLink.handshakeTimeout) { [self] in
            guard !handshake.isAuthenticated, let context = self.context else { return }
            errorCaught(context: context, error: PeerLinkError.protocolViolation("no handshake within \(PeerLink.handshakeTimeout)"))
        }
        var body = ByteBuffer()
        body.writeInteger(UInt16(handshake.localId.utf8.count))
        body.writeString(handshake.localId)
        body.writeBytes(handshake.hello.nonce)
        body.writeInteger(PeerLink.protocolVersion)
        write(PeerFrame(type: PeerFrame.hello, body: Array(buffer: body)), context: context)
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastReadAt = ContinuousClock.now
        do {
            switch frame.type {
            case PeerFrame.hello:
                var body = ByteBuffer(bytes: frame.body)
                guard let idLength = body.readInteger(as: UInt16.self), let id = body.readString(length: Int(idLength)),
                      let nonce = body.readBytes(length: PeerHandshake.nonceBytes)
                else { throw PeerLinkError.protocolViolation("malformed hello") }
                // The hello's version, then fields a later version may add (ignored here). A
                // member speaks the lowest version both announce; this one speaks only its own.
                guard let version = body.readInteger(as: UInt8.self), version >= PeerLink.protocolVersion else {
                    throw PeerLinkError.protocolViolation(
                        "'\(id)' speaks an older peer link (version 1, frames in clear); this member speaks \(PeerLink.protocolVersion): upgrade it")
                }
                if let expectedPeer, expectedPeer != id { throw PeerLinkError.protocolViolation("expected '\(expectedPeer)', '\(id)' answered") }
                let proof = try handshake.onHello(id: id, nonce: nonce)
                write(PeerFrame(type: PeerFrame.proof, body: proof), context: context)
                if let statement = try handshake.identityStatement() {
                    write(PeerFrame(type: PeerFrame.identity, body: statement), context: context)
                }
                context.flush()
            case PeerFrame.proof:
                try handshake.onProof(frame.body)
                if handshake.isAuthenticated { authenticated(context: context) }
            case PeerFrame.identity:
                try handshake.onIdentity(frame.body)
                authenticated(context: context)
            case PeerFrame.data where handshake.awaitsIdentity:
                throw PeerLinkError.identityRefused(
                    "'\(handshake.peerId ?? "?")' proved the cluster secret but sent no member certificate; with --peer-ca every member needs --peer-cert and --peer-key")
            case PeerFrame.data:
                let payload = try handshake.open(frame.body)
                // An empty payload is a keepalive: it only proves the peer is there.
                if !payload.isEmpty { events.received(payload, handshake.peerId ?? "?") }
            default:
                throw PeerLinkError.protocolViolation("unknown frame type \(frame.type)")
            }
        } catch {
            errorCaught(context: context, error: error)
        }
    }

    /// The peer proved itself: the handshake deadline ends, frames may be as large as data
    /// frames, and what waited goes out.
    private func authenticated(context: ChannelHandlerContext) {
        deadline?.cancel()
        scheduleKeepalive(on: context.eventLoop)
        limit.bytesMax = PeerLink.frameBytesMax
        settled()
        events.authenticated(handshake.peerId ?? "?")
        for payload in pending { sendNow(payload, context: context) }
        pending.removeAll()
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        events.failed(error, handshake.peerId ?? expectedPeer, handshake.isAuthenticated)
        context.close(promise: nil)
    }

    /// Sends (or queues until authenticated) one payload. Returns false when it was dropped.
    @discardableResult
    func send(_ payload: [UInt8]) -> Bool {
        guard let context else { return false }
        guard handshake.isAuthenticated else {
            guard pending.count < Self.pendingPayloadsMax else { return false }
            pending.append(payload)
            return true
        }
        sendNow(payload, context: context)
        context.flush()
        return true
    }

    private func sendNow(_ payload: [UInt8], context: ChannelHandlerContext) {
        do {
            write(PeerFrame(type: PeerFrame.data, body: try handshake.seal(payload)), context: context)
        } catch {
            errorCaught(context: context, error: error)
        }
    }

    /// Every `keepaliveInterval`: a sealed empty frame when nothing else went out, and the
    /// connection closed when nothing came in for `silenceMax`. A partition drops packets
    /// without a reset; TCP alone would keep the connection for minutes and retransmit with
    /// growing backoff after the network heals (7-9 s measured), so the link closes it and
    /// reconnects instead.
    private func scheduleKeepalive(on eventLoop: EventLoop) {
        keepalive = eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(PeerLink.keepaliveInterval)) { [self] in
            guard let context = self.context else { return }
            let now = ContinuousClock.now
            if now - lastReadAt > PeerLink.silenceMax {
                errorCaught(context: context, error: PeerLinkError.protocolViolation("nothing heard for \(PeerLink.silenceMax)"))
                return
            }
            if now - lastWriteAt >= PeerLink.keepaliveInterval {
                sendNow([], context: context)
                context.flush()
            }
            scheduleKeepalive(on: context.eventLoop)
        }
    }

    private func write(_ frame: PeerFrame, context: ChannelHandlerContext) {
        lastWriteAt = ContinuousClock.now
        var buffer = context.channel.allocator.buffer(capacity: frame.body.count + 5)
        frame.encoded(into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
    }
}

/// What a session reports to its `PeerLink`.
struct PeerLinkEvents: Sendable {
    var authenticated: @Sendable (String) -> Void
    var received: @Sendable ([UInt8], String) -> Void
    /// The error, the peer's id when known, and whether it had proved itself.
    var failed: @Sendable (Error, String?, Bool) -> Void
}
