import NIOCore
import NIOWebSocket
import WavelaneProtocol

/// One upgraded WebSocket connection: the channel handler at the tail of its pipeline. It decides
/// nothing itself: pure values decide and it performs their answers —
/// - `ConnectionStateMachine` (WavelaneProtocol): the lifecycle and the close handshake;
/// - `Outbox` (WavelaneProtocol): coalescing, the priority send queue, drops, slow consumers;
/// - `SubscriptionSession` (Connection/SubscriptionSession.swift): subscriptions, approvals,
///   positions and the merge of recovered with live publications.
/// The rest lives beside it in Connection/: control messages (Connection+Control.swift),
/// subscribing (Connection+Subscribe.swift), outbound messages (Connection+Outbound.swift) and
/// closing (Connection+Close.swift).
///
/// Threading: every mutable property is touched only on `eventLoop`. Other threads (Python's)
/// find a connection through the registry and hop onto its loop with `shard.execute`.
final class Connection: ChannelInboundHandler, Hashable, @unchecked Sendable {
    /// Identity (connection ids are unique per server): connections are kept in sets, e.g. the
    /// shard's `TopicIndex`.
    static func == (a: Connection, b: Connection) -> Bool { a === b }
    func hash(into hasher: inout Hasher) { hasher.combine(self.id) }

    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let id: UInt64
    let user: String?
    /// The shard's loop (not stored here: one field less per connection).
    var eventLoop: EventLoop { self.shard.eventLoop }
    let shard: Shard
    let server: ServerCore
    /// The connect event's payload until `handlerAdded` queues it; not kept for the connection's life.
    private(set) var connectPayload: ByteBuffer?
    /// permessage-deflate parameters, when negotiated.
    let deflate: PerMessageDeflate.Parameters?
    /// True when this connection takes the publication compressed once for everybody (no context
    /// takeover, 15-bit window: what browsers negotiate).
    let sharesCompressedPublications: Bool
    var ownDeflater: Deflater?
    private var ownInflater: Inflater?

    var context: ChannelHandlerContext?
    /// Inbound bytes to frames (no handler of its own: frames come straight here).
    private var frames: FrameReader
    private var assembler: MessageAssembler
    /// What this connection adds to `server.partialBytes` (its assembler's fragments).
    private var partialBytes = 0
    /// The lifecycle and close handshake.
    var machine = ConnectionStateMachine()
    var state: ConnectionStateMachine.State { self.machine.state }
    /// Subscriptions, approvals, positions.
    var session = SubscriptionSession()
    /// Coalescing buffer, send queue, drop accounting.
    var outbox: Outbox
    var lastActivity: NIODeadline
    /// Inbound rate limit (Policies.swift); nil when none is configured. Made at the first message,
    /// in a box: a connection that never sends keeps a pointer here, not the ~115-byte limiter.
    private lazy var inboundLimiter = InboundLimiter(self.server.config.policies, now: self.lastActivity).map(InboundLimiterBox.init)
    var lastPing: NIODeadline
    var dirty = false
    var unwritableSince: NIODeadline? { self.outbox.unwritableSince }
    /// Events of the current read burst, handed to the queue together at `channelReadComplete`:
    /// one lock and at most one wake-up of Python per burst instead of one per message.
    private(set) var pendingEvents: [InboundEvent] = []
    /// messages_in / bytes_in of the current read burst, added to the shared counters once per
    /// burst (`commitInboundCounters`) instead of two atomic adds per message; committed before
    /// the burst's events reach the queue and before any reply, so a reader who saw either sees them.
    private var uncountedMessages = 0
    private var uncountedBytes = 0

    /// The connection slot and admission counts the handshake took, given back at teardown.
    private(set) var holds: ConnectionHolds

    /// The token's `exp` (Unix seconds; nil: none). Once exp + jwt_leeway has passed the shard's
    /// sweep closes the connection with 4001; a `refresh` with a new token moves (or clears) it.
    var tokenExpiry: Double?
    static let refreshBurst = 5.0
    static let refreshRate = 0.2

    /// What only some connections ever set, in one box made when the first of it is set: an idle
    /// connection keeps a nil pointer here instead of ~70 bytes.
    private final class Occasional {
        var closeTimer: Scheduled<Void>?
        var presenceInfo: [UInt8]?
        var refreshBudget: TokenBucket?
    }

    private var occasional: Occasional?

    /// The box, made if `make` and not there yet.
    private func occasional(making make: Bool) -> Occasional? {
        if make && self.occasional == nil { self.occasional = Occasional() }
        return self.occasional
    }

    /// Closes the TCP connection when the peer does not answer our close frame in time.
    var closeTimer: Scheduled<Void>? {
        get { self.occasional?.closeTimer }
        set { self.occasional(making: newValue != nil)?.closeTimer = newValue }
    }

    /// Presence: the `info` the application set.
    var presenceInfo: [UInt8]? {
        get { self.occasional?.presenceInfo }
        set { self.occasional(making: newValue != nil)?.presenceInfo = newValue }
    }

    /// Refresh attempts (each costs a signature check on this loop): a burst, then one per 5 s.
    var refreshBudget: TokenBucket? {
        get { self.occasional?.refreshBudget }
        set { self.occasional(making: newValue != nil)?.refreshBudget = newValue }
    }

    init(id: UInt64, user: String?, connectPayload: ByteBuffer, deflate: PerMessageDeflate.Parameters?,
         shard: Shard, server: ServerCore, holds: ConnectionHolds = ConnectionHolds(), tokenExpiry: Double? = nil) {
        self.holds = holds
        self.tokenExpiry = tokenExpiry
        self.id = id
        self.user = user
        self.connectPayload = connectPayload
        self.deflate = deflate
        self.sharesCompressedPublications = deflate.map { $0.serverNoContextTakeover && $0.serverWindowBits == 15 } ?? false
        self.shard = shard
        self.server = server
        self.frames = FrameReader(maxFrameSize: server.config.maxFrameSize)
        self.assembler = MessageAssembler(maxMessageSize: server.config.maxMessageSize, compression: deflate != nil)
        self.outbox = Outbox(maxQueuedBytes: server.config.maxSendQueue)
        if let deflate {
            let policy = server.config.compression
            if !deflate.serverNoContextTakeover {
                self.ownDeflater = Deflater(level: policy.level, windowBits: deflate.serverWindowBits,
                                            memLevel: policy.memLevel, contextTakeover: true)
            }
            if !deflate.clientNoContextTakeover {
                self.ownInflater = Inflater(contextTakeover: true)
            }
        }
        let now = NIODeadline.now()
        self.lastActivity = now
        self.lastPing = now
    }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.shard.connections[self.id] = self
        self.server.registry.add(self)
        self.server.stats.add(.connectionsAccepted)
        if self.sharesCompressedPublications { self.server.sharedDeflateConnections.wrappingAdd(1, ordering: .relaxed) }
        if let user = self.user { self.server.delivery.need(user: user) }
        if self.server.config.readyMessage {
            self.sendJSON(ServerMessage.ready(
                conn: self.id, user: self.user, server: "wavelane/\(wavelaneVersion)",
                heartbeat: self.server.config.pingInterval, epoch: self.server.epoch,
                maxMessageSize: self.server.config.maxMessageSize, exp: self.tokenExpiry))
        }
        // Straight to the queue, not through `pendingEvents`: a connection that never sends
        // anything then never allocates that array.
        if let payload = self.connectPayload {
            self.connectPayload = nil
            let (pause, wake) = self.server.queue.pushDeferringWake(
                contentsOf: CollectionOfOne(InboundEvent(kind: .connect, conn: self.id, payload: payload)), from: context.channel)
            self.queued(pause: pause, wake: wake, urgent: InboundEvent.Kind.connect.isUrgent, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.teardown(context: context)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.teardown(context: context)
    }

    private func teardown(context: ChannelHandlerContext) {
        guard self.context != nil else { return }
        let (closeCode, closeReason) = self.machine.closed()
        self.closeTimer?.cancel()
        self.closeTimer = nil
        let held = self.session.removeAll()
        for topic in held.subscriptions {
            self.shard.removeSubscription(self, topic.string)
            if Topic.isPattern(topic.string) { self.server.globBudget.release(topic) }
        }
        if self.server.config.presence {
            for topic in held.subscriptions where !Topic.isPattern(topic.string) { self.server.presenceLeave(topic: topic.string, conn: self.id) }
        }
        for topic in held.watched { self.shard.unwatchPresence(self.id, topic.string) }
        self.frames.stop()
        self.assembler.discardData()
        self.accountPartial()
        if let user = self.user { self.server.delivery.release(user: user) }
        self.shard.connections[self.id] = nil
        self.server.registry.remove(self)
        if self.sharesCompressedPublications { self.server.sharedDeflateConnections.wrappingSubtract(1, ordering: .relaxed) }
        self.ownDeflater = nil
        self.ownInflater = nil
        self.shard.queuedBytesChanged(by: -self.outbox.removeAll())
        self.commitInboundCounters()
        self.server.stats.add(.connectionsClosed)
        var reason = context.channel.allocator.buffer(capacity: closeReason.utf8.count)
        reason.writeString(closeReason)
        self.releaseHolds()
        // Messages of the last read burst first, then the disconnect. Never refused: the queue's
        // bound is enforced by pausing reads.
        let urgent = self.pendingEvents.contains { $0.kind.isUrgent }  // messages of the last burst wait with it
        self.pendingEvents.append(InboundEvent(kind: .disconnect, code: UInt32(closeCode), conn: self.id, payload: reason))
        let (_, wake) = self.server.queue.pushDeferringWake(moving: &self.pendingEvents, from: nil)
        if wake { self.shard.scheduleConsumerWake(urgent: urgent) }
        self.context = nil
    }

    /// Gives back the connection slot and the admission counts (idempotent): at teardown, before
    /// the disconnect event is queued, so a client that saw the disconnect can reconnect at once.
    func releaseHolds() {
        self.holds.release(self.server.stats)
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.frames.failed else {
            // After a framing error the rest of the stream cannot be read: more bytes end the connection.
            if self.context != nil { context.close(promise: nil) }
            return
        }
        self.frames.receive(self.unwrapInboundIn(data), buffers: &self.shard.payloadBuffers, allocator: context.channel.allocator)
        self.lastActivity = .now()
        do throws(FrameReader.Error) {
            // A frame that closes the channel ends the loop (`teardown` stops the reader).
            while let frame = try self.frames.next() { self.received(frame, context: context) }
        } catch {
            self.server.stats.add(.protocolErrors)
            switch error {
            case .frameTooLong: self.fail(code: CloseCode.messageTooBig, reason: "frame too big")
            case .fragmentedControlFrame, .controlFrameTooLong: self.fail(code: CloseCode.protocolError, reason: "bad control frame")
            }
        }
        self.frames.endRead(buffers: &self.shard.payloadBuffers, allocator: context.channel.allocator)
    }

    /// One frame of the client's.
    private func received(_ frame: consuming ClientFrame, context: ChannelHandlerContext) {
        if !frame.fin && (frame.opcode == .text || frame.opcode == .binary || frame.opcode == .continuation)
            && self.assembler.bufferedBytes + frame.length <= self.server.config.maxMessageSize  // else 1009, below
            && self.server.partialBytes.load(ordering: .relaxed) + frame.length > self.server.config.maxPartialBytes {
            // The fragments every connection holds would go beyond `max_partial_bytes`.
            self.assembler.discardData()
            self.accountPartial()
            guard self.state == .open else { return }
            self.server.stats.add(.partialBudgetCloses)
            self.initiateClose(code: CloseCode.tryAgainLater, reason: "server busy: too many partly received messages")
            return
        }
        let fin = frame.fin
        let action = self.assembler.receive(frame)
        if self.partialBytes != 0 || !fin { self.accountPartial() }
        switch consume action {
        case .none, .pong:
            break
        case .compressedMessage(let kind, let compressed):
            guard self.state == .open else { return }
            let inflater = self.ownInflater ?? self.shard.inflater
            let payload: ByteBuffer
            do {
                payload = try inflater.decompress(compressed, limit: self.server.config.maxMessageSize,
                                                  allocator: context.channel.allocator)
            } catch {
                self.server.stats.add(.protocolErrors)
                switch error {
                case .tooBig: self.fail(code: CloseCode.messageTooBig, reason: "message too big")
                case .corrupt: self.fail(code: CloseCode.invalidPayload, reason: "bad compressed data")
                }
                return
            }
            if kind == .text && !payload.withUnsafeReadableBytes({ UTF8Validator.isValid($0) }) {
                self.server.stats.add(.protocolErrors)
                self.fail(code: CloseCode.invalidPayload, reason: "invalid UTF-8 in text message")
                return
            }
            self.received(kind, payload)
        case .message(let kind, let payload):
            guard self.state == .open else { return }
            self.received(kind, payload)
        case .ping(let payload):
            guard self.state == .open else { return }
            self.writeFrame(FrameEncoder.frame(opcode: .pong, payload: payload, allocator: context.channel.allocator))
        case .close(let code, let reason):
            self.perform(self.machine.receivedClose(code: code, reason: reason))
        case .fail(let code, let reason):
            self.server.stats.add(.protocolErrors)
            self.fail(code: code, reason: reason)
        }
    }

    /// Brings this connection's share of `server.partialBytes` to what its assembler holds.
    private func accountPartial() {
        let held = self.assembler.bufferedBytes
        guard held != self.partialBytes else { return }
        self.server.partialBytes.wrappingAdd(held - self.partialBytes, ordering: .relaxed)
        self.partialBytes = held
    }

    private func received(_ kind: MessageAssembler.MessageKind, _ payload: consuming ByteBuffer) {
        self.uncountedMessages += 1
        self.uncountedBytes += payload.readableBytes
        // Every message counts against the rate limit, control messages included (`lastActivity` is now).
        if let verdict = self.inboundLimiter?.limiter.admit(size: payload.readableBytes, now: self.lastActivity), verdict != .pass {
            self.commitInboundCounters()
            self.server.stats.add(.rateLimited)
            switch verdict {
            case .refuse(reply: true): self.sendJSON(InboundLimiter.errorReply)
            case .close:
                self.server.stats.add(.rateLimitCloses)
                // A close handshake, not an abort: closing with unread input would reset the TCP
                // connection and the client would lose the close frame. Its further messages are
                // discarded unread; close_timeout bounds the wait.
                self.initiateClose(code: CloseCode.policyViolation, reason: "rate limit exceeded")
            default: break
            }
            return
        }
        if kind == .text, self.server.config.controlMessages,
           let control = payload.withUnsafeReadableBytes({ ClientControl.parse($0) }) {
            self.commitInboundCounters()
            self.handle(control)
        } else {
            self.push(InboundEvent(kind: kind == .text ? .text : .binary, conn: self.id, payload: payload))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // I/O errors (reset by peer and the like): the connection is gone.
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        self.outbox.writabilityChanged(writable: writable, now: .now())
        if writable { self.drainSendQueue(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Moves queued messages to the socket, highest priority first, while it takes them.
    func drainSendQueue(context: ChannelHandlerContext) {
        var wrote = false
        let before = self.outbox.queuedBytes
        defer { self.shard.queuedBytesChanged(by: self.outbox.queuedBytes - before) }
        // Writability only changes when a buffer is handed to the channel: ask once per batch.
        while !self.outbox.isQueueEmpty && context.channel.isWritable {
            let (writes, frames, bytes) = self.outbox.writeQueued()
            self.shard.framesOut += frames
            self.shard.bytesOut += bytes
            self.perform(writes, context: context)
            wrote = true
        }
        if wrote {
            self.spill(context)
            context.flush()
        }
        if self.outbox.isQueueEmpty { self.perform(self.machine.queueDrained()) }
    }

    /// An event for the application, handed over with the rest of this read burst.
    func push(_ event: consuming InboundEvent) {
        // The batch's storage went to the queue with the last burst: start with room for a burst.
        if self.pendingEvents.capacity == 0 { self.pendingEvents.reserveCapacity(16) }
        self.pendingEvents.append(event)
    }

    private func commitInboundCounters() {
        guard self.uncountedMessages > 0 else { return }
        self.server.stats.add(.messagesIn, self.uncountedMessages)
        self.server.stats.add(.bytesIn, self.uncountedBytes)
        self.uncountedMessages = 0
        self.uncountedBytes = 0
    }

    private func flushEvents(context: ChannelHandlerContext) {
        self.commitInboundCounters()
        guard !self.pendingEvents.isEmpty else { return }
        // The array goes to the queue as it is (an idle connection keeps none).
        let (pause, wake) = self.server.queue.pushDeferringWake(moving: &self.pendingEvents, from: context.channel)
        self.queued(pause: pause, wake: wake, urgent: true, context: context)  // messages, requests: all urgent
    }

    /// After events were queued for the application: the consumer is woken once at the end of
    /// the tick (`urgent`) or soon after (connection lifecycle only), and reads pause when the
    /// queue is full.
    private func queued(pause: Bool, wake: Bool, urgent: Bool, context: ChannelHandlerContext) {
        if wake { self.shard.scheduleConsumerWake(urgent: urgent) }
        if pause {
            self.server.stats.add(.backpressurePauses)
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.flushEvents(context: context)
        context.fireChannelReadComplete()
    }
}
