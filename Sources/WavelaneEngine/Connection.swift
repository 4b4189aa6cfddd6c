import NIOCore
import NIOWebSocket
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One upgraded WebSocket connection: the channel handler at the tail of its pipeline.
///
/// Threading: every mutable property is touched only on `eventLoop`. Other threads (Python's)
/// find a connection through the registry and hop onto its loop with `eventLoop.execute`.
final class Connection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    enum State {
        case open
        /// We sent a close frame and wait for the peer's.
        case closing
        case closed
    }

    let id: UInt64
    let user: String?
    let eventLoop: EventLoop
    let shard: Shard
    private let server: ServerCore
    private let connectPayload: ByteBuffer
    /// permessage-deflate parameters, when negotiated.
    let deflate: PerMessageDeflate.Parameters?
    /// True when this connection takes the publication compressed once for everybody (no context
    /// takeover, 15-bit window: what browsers negotiate).
    let sharesCompressedPublications: Bool
    private var ownDeflater: Deflater?
    private var ownInflater: Inflater?

    private var context: ChannelHandlerContext?
    private var assembler: MessageAssembler
    /// What this connection adds to `server.partialBytes` (its assembler's fragments).
    private var partialBytes = 0
    private(set) var state = State.open
    /// Topic-keyed state compares names as UTF-8 bytes (`ByteString`), never Unicode equivalence.
    private(set) var subscriptions = Set<ByteString>()
    /// How many of `subscriptions` are glob patterns (each holds one reference in `server.globBudget`).
    private var globCount = 0
    var lastActivity: NIODeadline
    /// Inbound rate limit (Policies.swift); nil when none is configured.
    private lazy var inboundLimiter = InboundLimiter(self.server.config.policies, now: self.lastActivity)
    var lastPing: NIODeadline
    var dirty = false
    private var closeCode: UInt16?
    private var closeReason = ""
    private var closeTimer: Scheduled<Void>?
    var unwritableSince: NIODeadline?
    /// Messages waiting while the socket cannot take more (bounded, by priority).
    private var sendQueue: SendQueue
    /// Drops not yet reported to the application (reported by the shard's sweep).
    private var unreportedDrops = SendQueue.Dropped()
    /// Set by a graceful stop: close with this once the send queue is empty.
    private var closeWhenDrained: (code: UInt16, reason: String)?

    // Multi-instance mode (docs/delivery.md).
    /// Topics whose `subscribed` reply waits for the stream position from Redis: publications that
    /// arrive meanwhile are held here, then merged with the recovered history by offset.
    private var pendingPositions: [ByteString: [Publication]] = [:]
    /// After a positioned subscribe: publications of the topic at or below this position were
    /// already sent (or predate the subscription) and are skipped. Cleared by the next one above.
    private var floors: [ByteString: StreamPosition] = [:]
    /// Options of subscribe requests waiting for the application's approval, per topic (bounded
    /// by max_subscriptions: requests beyond it are refused before they get here).
    private var approvalRecover: [ByteString: StreamPosition] = [:]
    private var approvalPresence = Set<ByteString>()
    private var approvalHistory: [ByteString: Int] = [:]
    /// Presence: the `info` the application set, and the topics this connection watches.
    private var presenceInfo: [UInt8]?
    private var watchedPresence = Set<ByteString>()
    /// Most publications held for one topic while its position is fetched.
    private static let pendingLimit = 100_000

    /// The HTTP phase's state: what this connection holds (slot, admission counts) is given back
    /// through it at teardown.
    private let handshake: HandshakeState?

    /// The token's `exp` (Unix seconds; nil: none). Once exp + jwt_leeway has passed the shard's
    /// sweep closes the connection with 4001; a `refresh` with a new token moves (or clears) it.
    private(set) var tokenExpiry: Double?
    /// Refresh attempts (each costs a signature check on this loop): a burst, then one per 5 s.
    private var refreshBudget: TokenBucket?
    static let refreshBurst = 5.0
    static let refreshRate = 0.2

    init(id: UInt64, user: String?, connectPayload: ByteBuffer, deflate: PerMessageDeflate.Parameters?,
         shard: Shard, server: ServerCore, handshake: HandshakeState? = nil, tokenExpiry: Double? = nil) {
        self.handshake = handshake
        self.tokenExpiry = tokenExpiry
        self.id = id
        self.user = user
        self.connectPayload = connectPayload
        self.deflate = deflate
        self.sharesCompressedPublications = deflate.map { $0.serverNoContextTakeover && $0.serverWindowBits == 15 } ?? false
        self.shard = shard
        self.eventLoop = shard.eventLoop
        self.server = server
        self.assembler = MessageAssembler(maxMessageSize: server.config.maxMessageSize, compression: deflate != nil)
        self.sendQueue = SendQueue(maxBytes: server.config.maxSendQueue)
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
            self.sendReady(context: context)
        }
        self.push(InboundEvent(kind: .connect, conn: self.id, payload: self.connectPayload), context: context)
        self.flushEvents(context: context)
    }

    private func sendReady(context: ChannelHandlerContext) {
        let ready = ServerMessage.ready(
            conn: self.id, user: self.user, server: "wavelane/\(wavelaneVersion)",
            heartbeat: self.server.config.pingInterval, epoch: self.server.epoch,
            maxMessageSize: self.server.config.maxMessageSize, exp: self.tokenExpiry)
        self.writeFrame(FrameEncoder.frame(opcode: .text, bytes: ready, allocator: context.channel.allocator))
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
        self.state = .closed
        self.closeTimer?.cancel()
        self.closeTimer = nil
        for topic in self.subscriptions {
            self.shard.removeSubscription(self.id, topic.string)
            if Topic.isPattern(topic.string) { self.server.globBudget.release(topic) }
        }
        if self.server.config.presence {
            for topic in self.subscriptions where !Topic.isPattern(topic.string) { self.server.presenceLeave(topic: topic.string, conn: self.id) }
        }
        self.subscriptions.removeAll()
        self.globCount = 0
        for topic in self.watchedPresence { self.shard.unwatchPresence(self.id, topic.string) }
        self.watchedPresence.removeAll()
        self.pendingPositions.removeAll()
        self.floors.removeAll()
        self.assembler.discardData()
        self.accountPartial()
        if let user = self.user { self.server.delivery.release(user: user) }
        self.shard.connections[self.id] = nil
        self.server.registry.remove(self)
        if self.sharesCompressedPublications { self.server.sharedDeflateConnections.wrappingSubtract(1, ordering: .relaxed) }
        self.ownDeflater = nil
        self.ownInflater = nil
        self.server.sendQueueBytes.wrappingSubtract(self.sendQueue.bytes, ordering: .relaxed)
        self.sendQueue.removeAll()
        self.outBuffer = nil
        self.server.stats.add(.connectionsClosed)
        var reason = context.channel.allocator.buffer(capacity: self.closeReason.utf8.count)
        reason.writeString(self.closeReason)
        let code = UInt32(self.closeCode ?? CloseCode.abnormal)
        self.handshake?.releaseHolds(self.server.stats)
        // Messages of the last read burst first, then the disconnect. Never refused: the queue's
        // bound is enforced by pausing reads.
        self.pendingEvents.append(InboundEvent(kind: .disconnect, code: code, conn: self.id, payload: reason))
        self.server.queue.push(contentsOf: self.pendingEvents, from: nil)
        self.pendingEvents.removeAll()
        self.context = nil
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        self.lastActivity = .now()
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
        let action = self.assembler.receive(frame)
        if self.partialBytes != 0 || !frame.fin { self.accountPartial() }
        switch action {
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
                case .tooBig: self.fail(code: CloseCode.messageTooBig, reason: "message too big", context: context)
                case .corrupt: self.fail(code: CloseCode.invalidPayload, reason: "bad compressed data", context: context)
                }
                return
            }
            if kind == .text && !payload.withUnsafeReadableBytes({ UTF8Validator.isValid($0) }) {
                self.server.stats.add(.protocolErrors)
                self.fail(code: CloseCode.invalidPayload, reason: "invalid UTF-8 in text message", context: context)
                return
            }
            self.received(kind, payload, context: context)
        case .message(let kind, let payload):
            guard self.state == .open else { return }
            self.received(kind, payload, context: context)
        case .ping(let payload):

            guard self.state == .open else { return }
            self.writeFrame(FrameEncoder.frame(opcode: .pong, payload: payload, allocator: context.channel.allocator))
        case .close(let code, let reason):
            self.peerClosed(code: code, reason: reason, context: context)
        case .fail(let code, let reason):
            self.server.stats.add(.protocolErrors)
            self.fail(code: code, reason: reason, context: context)
        }
    }

    /// Brings this connection's share of `server.partialBytes` to what its assembler holds.
    private func accountPartial() {
        let held = self.assembler.bufferedBytes
        guard held != self.partialBytes else { return }
        self.server.partialBytes.wrappingAdd(held - self.partialBytes, ordering: .relaxed)
        self.partialBytes = held
    }

    private func received(_ kind: MessageAssembler.MessageKind, _ payload: ByteBuffer, context: ChannelHandlerContext) {
        self.server.stats.add(.messagesIn)
        self.server.stats.add(.bytesIn, payload.readableBytes)
        // Every message counts against the rate limit, control messages included (`lastActivity` is now).
        if let verdict = self.inboundLimiter?.admit(size: payload.readableBytes, now: self.lastActivity), verdict != .pass {
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
            self.handle(control)
        } else {
            self.push(InboundEvent(kind: kind == .text ? .text : .binary, conn: self.id, payload: payload), context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let wsError = error as? NIOWebSocketError {
            self.server.stats.add(.protocolErrors)
            switch wsError {
            case .invalidFrameLength:
                self.fail(code: CloseCode.messageTooBig, reason: "frame too big", context: context)
            default:
                self.fail(code: CloseCode.protocolError, reason: "bad control frame", context: context)
            }
            return
        }
        // I/O errors (reset by peer and the like): the connection is gone.
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.unwritableSince = nil
            self.drainSendQueue(context: context)
        } else if self.unwritableSince == nil {
            self.unwritableSince = .now()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Moves queued messages to the socket, highest priority first, while it takes them.
    private func drainSendQueue(context: ChannelHandlerContext) {
        var wrote = false
        let before = self.sendQueue.bytes
        defer { self.server.sendQueueBytes.wrappingSubtract(before - self.sendQueue.bytes, ordering: .relaxed) }
        while context.channel.isWritable, let item = self.sendQueue.dequeue() {
            self.write(item.frame, context: context)
            wrote = true
        }
        if wrote {
            self.spill(context)
            context.flush()
        }
        if self.sendQueue.isEmpty, let close = self.closeWhenDrained {
            self.closeWhenDrained = nil
            self.initiateClose(code: close.code, reason: close.reason)
        }
    }

    /// Events of the current read burst, handed to the queue together at `channelReadComplete`:
    /// one lock and at most one wake-up of Python per burst instead of one per message.
    private var pendingEvents: [InboundEvent] = []

    private func push(_ event: InboundEvent, context: ChannelHandlerContext) {
        self.pendingEvents.append(event)
    }

    private func flushEvents(context: ChannelHandlerContext) {
        guard !self.pendingEvents.isEmpty else { return }
        let pause = self.server.queue.push(contentsOf: self.pendingEvents, from: context.channel)
        self.pendingEvents.removeAll(keepingCapacity: self.pendingEvents.count <= 64)
        if pause {
            self.server.stats.add(.backpressurePauses)
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.flushEvents(context: context)
        context.fireChannelReadComplete()
    }

    // MARK: control messages

    private func handle(_ control: ClientControl) {
        switch control {
        case .ping(let id):
            self.sendJSON(ServerMessage.pong(id: id))
        case .invalid(let message, let id):
            self.sendJSON(ServerMessage.error(code: "bad_request", message: message, id: id))
        case .unsubscribe(let topics, let id):
            self.unsubscribe(topics, ack: .some(id))
        case .presence(let topic, let id):
            self.answerPresence(topic: topic, id: id)
        case .refresh(let token, let id):
            self.refresh(token: token, id: id)
        case .rpc(let method, let params, let id):
            var body: [UInt8] = Array(#"{"method":"#.utf8)
            JSONWriter.appendString(method, to: &body)
            body.append(contentsOf: #","params":"#.utf8)
            (params ?? .null).write(into: &body)
            body.append(contentsOf: #","id":"#.utf8)
            id.write(into: &body)
            body.append(UInt8(ascii: "}"))
            guard let context = self.context else { return }
            var payload = context.channel.allocator.buffer(capacity: body.count)
            payload.writeBytes(body)
            self.push(InboundEvent(kind: .rpc, conn: self.id, payload: payload), context: context)
        case .subscribe(let topics, let id, let options):
            guard self.server.config.clientSubscriptions else {
                self.sendJSON(ServerMessage.error(code: "forbidden", message: "clients may not subscribe on this server", id: id))
                return
            }
            for topic in topics {
                if let problem = Topic.validate(topic, maxLength: self.server.config.maxTopicLength, allowWildcards: true) {
                    self.sendJSON(ServerMessage.error(code: "invalid_topic", message: problem.message, id: id))
                    return
                }
            }
            // Deny by default (docs/security.md): a request is decided as a whole. Unless every
            // topic is the client's own or covered by client_topics, the whole request goes to the
            // application (subscribe_approval) or is refused, and nothing of it is subscribed.
            let access = self.server.config.topicAccess
            let needsApproval = topics.contains { !access.grants($0, sub: self.user) }
            if needsApproval && !self.server.config.subscribeApproval {
                let refused = topics.first { !access.grants($0, sub: self.user) } ?? ""
                self.sendJSON(ServerMessage.error(
                    code: "forbidden", message: "not allowed to subscribe to \"\(refused)\"", id: id))
                return
            }
            let requested = Set(topics.map { ByteString($0) })
            let new = requested.subtracting(self.subscriptions)
            if self.subscriptions.count + new.count > self.server.config.maxSubscriptions {
                self.sendJSON(ServerMessage.error(
                    code: "too_many_subscriptions",
                    message: "at most \(self.server.config.maxSubscriptions) subscriptions per connection", id: id))
                return
            }
            let newGlobs = new.filter { Topic.isPattern($0.string) }
            if self.globCount + newGlobs.count > self.server.config.maxGlobsPerConnection {
                self.sendJSON(ServerMessage.error(
                    code: "too_many_subscriptions",
                    message: "at most \(self.server.config.maxGlobsPerConnection) glob subscriptions per connection", id: id))
                return
            }
            guard needsApproval else {
                self.subscribe(topics, ack: .some(id), options: options, fromClient: true)
                return
            }
            if !newGlobs.isEmpty && !self.server.globBudget.fits(Array(newGlobs)) {
                self.sendJSON(Self.globBudgetError(self.server.config.maxGlobs, id: id))
                return
            }
            var body: [UInt8] = Array(#"{"topics":["#.utf8)
            var first = true
            for t in topics where !Topic.isPattern(t) {
                if !first { body.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.appendString(t, to: &body)
            }
            body.append(contentsOf: #"],"patterns":["#.utf8)
            first = true
            for t in topics where Topic.isPattern(t) {
                if !first { body.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.appendString(t, to: &body)
            }
            body.append(contentsOf: #"],"id":"#.utf8)
            (id ?? .null).write(into: &body)
            body.append(UInt8(ascii: "}"))
            guard let context = self.context else { return }
            var payload = context.channel.allocator.buffer(capacity: body.count)
            payload.writeBytes(body)
            for (topic, position) in options.recover where self.approvalRecover.count < self.server.config.maxSubscriptions {
                self.approvalRecover[ByteString(topic)] = position
            }
            if options.presence {
                for topic in topics where self.approvalPresence.count < self.server.config.maxSubscriptions {
                    self.approvalPresence.insert(ByteString(topic))
                }
            }
            if options.history > 0 {
                for topic in topics where !Topic.isPattern(topic) && self.approvalHistory.count < self.server.config.maxSubscriptions {
                    self.approvalHistory[ByteString(topic)] = options.history
                }
            }
            self.push(InboundEvent(kind: .subscribeRequest, conn: self.id, payload: payload), context: context)
            return
        }
    }

    private static func globBudgetError(_ limit: Int, id: JSONValue?) -> [UInt8] {
        ServerMessage.error(code: "too_many_subscriptions",
                            message: "the server holds its maximum of \(limit) glob patterns", id: id)
    }

    /// Adds subscriptions. `ack`: nil = no reply; .some(id) = reply `subscribed` with that id (nil: no
    /// id field). `options` (recovery, presence events) come from the client's request; for a request
    /// the application approved, those the client sent with it are used. `fromClient`: the client's
    /// own request, bound by `max_globs` (the application's subscriptions are not refused).
    func subscribe(_ topics: [String], ack: JSONValue??, options: SubscribeOptions? = nil, fromClient: Bool = false) {
        guard self.state == .open else { return }
        var newGlobs = Set<ByteString>()
        for t in topics where Topic.isPattern(t) {
            let key = ByteString(t)
            if !self.subscriptions.contains(key) { newGlobs.insert(key) }
        }
        if !newGlobs.isEmpty && !self.server.globBudget.acquire(Array(newGlobs), force: !fromClient) {
            if let ack { self.sendJSON(Self.globBudgetError(self.server.config.maxGlobs, id: ack)) }
            return
        }
        var options = options ?? SubscribeOptions()
        if ack != nil && (!self.approvalRecover.isEmpty || !self.approvalPresence.isEmpty || !self.approvalHistory.isEmpty) {
            // An approved request: the client's own options for these topics apply.
            for topic in topics {
                if let n = self.approvalHistory.removeValue(forKey: ByteString(topic)) { options.history = max(options.history, n) }
                if let position = self.approvalRecover.removeValue(forKey: ByteString(topic)), options.recover[topic] == nil {
                    options.recover[topic] = position
                }
                if self.approvalPresence.remove(ByteString(topic)) != nil { options.presence = true }
            }
        }
        let presence = self.server.config.presence
        for topic in topics where self.subscriptions.insert(ByteString(topic)).inserted {
            if Topic.isPattern(topic) { self.globCount += 1 }
            self.shard.addSubscription(self.id, topic)
            if presence && !Topic.isPattern(topic) {
                self.server.presenceJoin(topic: topic, conn: self.id, member: self.memberJSON()) {
                    self.eventLoop.execute { self.presenceRefused(topic) }
                }
            }
        }
        if options.presence && presence {
            for topic in topics where !Topic.isPattern(topic) && self.watchedPresence.insert(ByteString(topic)).inserted {
                self.shard.watchPresence(self.id, topic)
            }
        }
        guard let ack else { return }
        // Multi-instance mode: `subscribed` means routed, i.e. Redis has confirmed this instance's
        // subscriptions, so whatever is published after the reply arrives (the topics with a
        // position wait for that inside `position`).
        let positioned = topics.filter { !Topic.isPattern($0) }
        let history = self.server.config.historySize > 0 && !positioned.isEmpty
        if history {  // hold their publications from now on, until the positions are known
            for topic in positioned where self.pendingPositions[ByteString(topic)] == nil { self.pendingPositions[ByteString(topic)] = [] }
        }
        let waitFor = history ? topics.filter { Topic.isPattern($0) } : topics
        self.server.delivery.whenRouted(waitFor, on: self.eventLoop) { [options] in
            self.answerSubscribe(topics, positioned: positioned, history: history, ack: ack, options: options)
        }
    }

    private func answerSubscribe(_ topics: [String], positioned: [String], history: Bool, ack: JSONValue?,
                                 options: SubscribeOptions) {
        guard self.state == .open else { return }
        // Positions (and recovery) come with the history: history_size > 0.
        guard history else {
            if !options.recover.isEmpty {
                var outcome = SubscribeOutcome()
                for topic in topics where options.recover[topic] != nil {
                    outcome.recovered.append((topic, false))
                    outcome.errors.append((topic, Topic.isPattern(topic) ? "a glob subscription has no position" : "history is off on this server"))
                }
                self.sendJSON(ServerMessage.subscribed(topics: topics, id: ack, outcome: outcome))
            } else {
                self.sendJSON(ServerMessage.ack("subscribed", topics: topics, id: ack))
            }
            return
        }
        var requests: [EventLoopFuture<Positioned>] = []
        for topic in positioned {
            if self.pendingPositions[ByteString(topic)] == nil { self.pendingPositions[ByteString(topic)] = [] }
            let first = self.server.position(topic: topic, since: options.recover[topic], on: self.eventLoop)
            let backlog = UInt64(options.history)
            guard backlog > 0, options.recover[topic] == nil else {
                requests.append(first.map { Positioned(reply: $0, backlogFrom: nil) })
                continue
            }
            // Backlog: read the position, then "recover" from `backlog` publications before it. The
            // publications that arrive meanwhile are held and merged by offset, as for a recovery.
            requests.append(first.flatMap { reply -> EventLoopFuture<Positioned> in
                guard reply.position.offset > 0 else {
                    return first.eventLoop.makeSucceededFuture(Positioned(reply: reply, backlogFrom: nil))
                }
                let from = StreamPosition(epoch: reply.position.epoch,
                                          offset: reply.position.offset > backlog ? reply.position.offset - backlog : 0)
                return self.server.position(topic: topic, since: from, on: self.eventLoop).map { second in
                    guard case .recovered = second.recovery else { return Positioned(reply: reply, backlogFrom: nil) }
                    return Positioned(reply: second, backlogFrom: from)
                }.recover { _ in Positioned(reply: reply, backlogFrom: nil) }
            })
        }
        EventLoopFuture.whenAllComplete(requests, on: self.eventLoop).whenSuccess { results in
            self.completeSubscribe(topics: topics, positioned: positioned, results: results, ack: ack, options: options)
        }
    }

    /// Sends the `subscribed` reply with positions, then per topic the recovered publications and
    /// those that arrived meanwhile, by offset, without gap or duplicate.
    private func completeSubscribe(topics: [String], positioned: [String], results: [Result<Positioned, Error>],
                                   ack: JSONValue?, options: SubscribeOptions) {
        guard self.state == .open else { return }
        var outcome = SubscribeOutcome()
        for (topic, result) in zip(positioned, results) {
            switch result {
            case .success(let positioned):
                let reply = positioned.reply
                outcome.positions.append((topic, reply.position))
                guard positioned.backlogFrom == nil else { break }  // a backlog is not a recovery to report
                switch reply.recovery {
                case .none: break
                case .recovered: outcome.recovered.append((topic, true))
                case .failed(let reason):
                    outcome.recovered.append((topic, false))
                    outcome.errors.append((topic, reason))
                }
            case .failure(let error):
                if options.recover[topic] != nil {
                    outcome.recovered.append((topic, false))
                    outcome.errors.append((topic, "redis unavailable: \((error as? RedisError)?.message ?? "\(error)")"))
                }
            }
        }
        self.sendJSON(ServerMessage.subscribed(topics: topics, id: ack, outcome: outcome))
        for (topic, result) in zip(positioned, results) where self.subscriptions.contains(ByteString(topic)) {  // not unsubscribed meanwhile
            let key = ByteString(topic)
            let held = self.pendingPositions.removeValue(forKey: key) ?? []
            self.floors[key] = nil  // an earlier subscribe's floor must not hide what is sent now
            guard case .success(let positioned) = result else {
                for publication in held { self.writePublication(publication) }
                continue
            }
            let reply = positioned.reply
            var last = reply.position
            if case .recovered(let publications) = reply.recovery, let since = positioned.backlogFrom ?? options.recover[topic] {
                // The stream's own epoch: a client's epoch read while the topic had no stream names it too.
                last = StreamPosition(epoch: reply.position.epoch, offset: since.offset)
                for publication in publications where publication.offset > last.offset {
                    self.writePublication(publication)
                    last.offset = publication.offset
                }
            }
            for publication in held {
                if publication.offset != 0, publication.epoch ?? last.epoch == last.epoch {
                    if publication.offset <= last.offset { continue }
                    last.offset = publication.offset
                }
                self.writePublication(publication)
            }
            self.floors[key] = last
        }
    }

    /// A topic's position reply, and where its backlog starts when the client asked for one.
    struct Positioned {
        var reply: PositionReply
        var backlogFrom: StreamPosition?
    }

    func unsubscribe(_ topics: [String], ack: JSONValue??) {
        guard self.state == .open else { return }
        for topic in topics where self.subscriptions.remove(ByteString(topic)) != nil {
            let key = ByteString(topic)
            self.shard.removeSubscription(self.id, topic)
            if Topic.isPattern(topic) {
                self.globCount -= 1
                self.server.globBudget.release(key)
            }
            self.pendingPositions[key] = nil
            self.floors[key] = nil
            if self.server.config.presence && !Topic.isPattern(topic) { self.server.presenceLeave(topic: topic, conn: self.id) }
            if self.watchedPresence.remove(key) != nil { self.shard.unwatchPresence(self.id, topic) }
        }
        if let ack { self.sendJSON(ServerMessage.ack("unsubscribed", topics: topics, id: ack)) }
    }

    // MARK: token expiry

    /// A client's new token: verified like the handshake's (same verifier, keys, issuer, audience,
    /// leeway) and for the same `sub`. Success moves the expiry and tells the application; a failure
    /// leaves the old expiry in place.
    private func refresh(token: String, id: JSONValue?) {
        guard let verifier = self.server.verifier else {
            self.sendJSON(ServerMessage.error(code: "unauthorized", message: "this server does not use tokens", id: id))
            return
        }
        let now = NIODeadline.now()
        if self.refreshBudget == nil {
            self.refreshBudget = TokenBucket(rate: Self.refreshRate, capacity: Self.refreshBurst, now: now)
        }
        guard self.refreshBudget!.take(1, now: now) else {
            self.sendJSON(ServerMessage.error(code: "rate_limited", message: "too many refresh attempts; slow down", id: id))
            return
        }
        switch verifier.verify(token, now: Int64(time(nil))) {
        case .success(let verified) where verified.subject == self.user:
            self.tokenExpiry = verified.claims["exp"]?.doubleValue
            self.sendJSON(ServerMessage.refreshed(exp: self.tokenExpiry, id: id))
            guard let context = self.context else { return }
            var body: [UInt8] = Array(#"{"claims":"#.utf8)
            body.append(contentsOf: verified.claimsJSON.utf8)
            body.append(UInt8(ascii: "}"))
            var payload = context.channel.allocator.buffer(capacity: body.count)
            payload.writeBytes(body)
            self.push(InboundEvent(kind: .refresh, conn: self.id, payload: payload), context: context)
        case .success:
            self.sendJSON(ServerMessage.error(code: "unauthorized", message: "the token is for another user", id: id))
        case .failure(let error):
            self.sendJSON(ServerMessage.error(code: "unauthorized", message: error.reason, id: id))
        }
    }

    /// Closes the connection with 4001 once its token's exp + `leeway` is before `now` (Unix
    /// seconds). Called by the shard's sweep.
    func checkExpiry(now: Double, leeway: Double) {
        guard let exp = self.tokenExpiry, self.state == .open, now > exp + leeway else { return }
        self.server.logger.debug("closing connection: token expired", metadata: ["conn": "\(self.id)"])
        self.initiateClose(code: CloseCode.tokenExpired, reason: "token expired")
    }

    // MARK: presence

    private func memberJSON() -> [UInt8] {
        ServerMessage.member(user: self.user, conn: self.id, node: self.server.node, info: self.presenceInfo)
    }

    /// The topic's presence was full: subscribed, but not a member. Told once per refusal.
    private func presenceRefused(_ topic: String) {
        guard self.state == .open, self.subscriptions.contains(ByteString(topic)) else { return }
        let limit = self.server.config.maxPresenceMembers
        let message = "presence of \(topic) is full (max_presence_members \(limit)): subscribed without presence"
        var out: [UInt8] = Array(#"{"type":"error","code":"presence_full","topic":"#.utf8)
        JSONWriter.appendString(topic, to: &out)
        out.append(contentsOf: #","message":"#.utf8)
        JSONWriter.appendString(message, to: &out)
        out.append(UInt8(ascii: "}"))
        self.sendJSON(out)
    }

    func setPresenceInfo(_ info: [UInt8]) {
        self.presenceInfo = info
        guard self.state == .open, self.server.config.presence else { return }
        let member = self.memberJSON()
        for topic in self.subscriptions where !Topic.isPattern(topic.string) {
            self.server.presenceJoin(topic: topic.string, conn: self.id, member: member)
        }
    }

    private func answerPresence(topic: String, id: JSONValue?) {
        guard self.server.config.presence else {
            self.sendJSON(ServerMessage.error(code: "presence_off", message: "presence is not enabled on this server", id: id))
            return
        }
        guard self.subscriptions.contains(ByteString(topic)) else {
            self.sendJSON(ServerMessage.error(code: "not_subscribed", message: "subscribe to a topic to see who is there", id: id))
            return
        }
        self.server.presenceMembers(topic: topic, on: self.eventLoop).hop(to: self.eventLoop).whenComplete { result in
            switch result {
            case .success(let members):
                self.sendJSON(ServerMessage.presence(topic: topic, members: members, id: id))
            case .failure(let error):
                self.sendJSON(ServerMessage.error(code: "unavailable", message: "presence: \((error as? RedisError)?.message ?? "\(error)")", id: id))
            }
        }
    }

    func sendJSON(_ bytes: [UInt8]) {
        guard let context = self.context else { return }
        self.writeFrame(FrameEncoder.frame(opcode: .text, bytes: bytes, allocator: context.channel.allocator))
    }

    // MARK: outbound

    /// Queues one complete frame (header included). While the socket takes data it goes straight to
    /// the channel (flushed once per event-loop tick by the shard); otherwise into the bounded
    /// priority send queue, where a full queue drops the lowest priorities first and a message
    /// with a coalescing `key` replaces the queued one with the same key.
    func writeFrame(_ frame: ByteBuffer, priority: Priority = .normal, key: String? = nil) {
        guard self.state == .open, let context = self.context else { return }
        if self.sendQueue.isEmpty && context.channel.isWritable && self.closeWhenDrained == nil {
            self.write(frame, context: context)
            if !self.dirty {
                self.dirty = true
                self.shard.markDirty(self)
            }
            return
        }
        let before = self.sendQueue.bytes
        defer { self.server.sendQueueBytes.wrappingAdd(self.sendQueue.bytes - before, ordering: .relaxed) }
        switch self.sendQueue.enqueue(frame, priority: priority, key: key) {
        case .coalesced:
            self.server.stats.add(.coalesced)
        case .queued(let dropped):
            self.noteDropped(dropped)
        case .overflow(let dropped):
            self.noteDropped(dropped)
            self.closeSlowConsumer()
        }
    }

    /// Small frames written in one tick are copied into one buffer and handed to the channel
    /// once (at flush, or when it reaches `coalesceLimit`): a 100-byte copy costs far less than
    /// NIO's per-write bookkeeping, which dominated fan-out profiles. Larger frames go out as the
    /// shared buffer itself (no copy), after whatever was coalesced before them.
    private var outBuffer: ByteBuffer?
    private static let coalesceMaxFrame = 1024
    private static let coalesceLimit = 64 * 1024

    private func write(_ frame: ByteBuffer, context: ChannelHandlerContext) {
        let size = frame.readableBytes
        self.shard.framesOut += 1
        self.shard.bytesOut += size
        if size <= Self.coalesceMaxFrame {
            if self.outBuffer == nil { self.outBuffer = context.channel.allocator.buffer(capacity: 4096) }
            var frame = frame
            self.outBuffer!.writeBuffer(&frame)
            if self.outBuffer!.readableBytes >= Self.coalesceLimit { self.spill(context) }
        } else {
            self.spill(context)
            context.write(self.wrapOutboundOut(frame), promise: nil)
        }
    }

    /// Hands the coalesced small frames to the channel (not flushed).
    private func spill(_ context: ChannelHandlerContext) {
        guard let buffer = self.outBuffer else { return }
        self.outBuffer = nil
        context.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    private func noteDropped(_ dropped: SendQueue.Dropped) {
        guard !dropped.isEmpty else { return }
        self.unreportedDrops.merge(dropped)
        let stats = self.server.stats
        stats.add(.droppedBytes, dropped.bytes)
        stats.add(.droppedHigh, dropped.byPriority[Int(Priority.high.rawValue)])
        stats.add(.droppedNormal, dropped.byPriority[Int(Priority.normal.rawValue)])
        stats.add(.droppedLow, dropped.byPriority[Int(Priority.low.rawValue)])
        stats.add(.droppedBackground, dropped.byPriority[Int(Priority.background.rawValue)])
    }

    /// Reports drops since the last report as one `dropped` event (called by the shard's sweep, so a
    /// storm of drops costs at most one event per connection per sweep).
    func reportDrops() {
        guard !self.unreportedDrops.isEmpty, let context = self.context else { return }
        let d = self.unreportedDrops
        self.unreportedDrops = SendQueue.Dropped()
        var body = #"{"count":\#(d.count),"bytes":\#(d.bytes),"priority":{"#
        var first = true
        for p in Priority.allCases where d.byPriority[Int(p.rawValue)] > 0 {
            body += (first ? "" : ",") + "\"\(p.name)\":\(d.byPriority[Int(p.rawValue)])"
            first = false
        }
        body += "}}"
        var payload = context.channel.allocator.buffer(capacity: body.utf8.count)
        payload.writeString(body)
        self.server.queue.push(InboundEvent(kind: .dropped, code: UInt32(clamping: d.count), conn: self.id, payload: payload), from: nil)
    }

    /// Graceful stop: close with `code` once everything queued has been handed to the socket.
    func closeAfterDrain(code: UInt16, reason: String) {
        guard self.state == .open, let context = self.context else { return }
        if self.sendQueue.isEmpty {
            self.initiateClose(code: code, reason: reason)
        } else {
            self.closeWhenDrained = (code, reason)
            if context.channel.isWritable { self.drainSendQueue(context: context) }
        }
    }

    /// Queues one application message (send / send_user), compressed when negotiated and large enough.
    func writeMessage(opcode: WebSocketOpcode, payload: ByteBuffer, priority: Priority, key: String?) {
        guard self.state == .open, let context = self.context else { return }
        if self.deflate != nil, payload.readableBytes >= self.server.config.compression.minSize {
            self.writeFrame(self.compressedFrame(opcode: opcode, body: payload, allocator: context.channel.allocator),
                            priority: priority, key: key)
        } else {
            self.writeFrame(FrameEncoder.frame(opcode: opcode, payload: payload, allocator: context.channel.allocator),
                            priority: priority, key: key)
        }
    }

    /// Queues a topic publication: the shared plain frame, the shared compressed frame, or (for
    /// unusual deflate parameters) a frame compressed for this connection.
    func writePublication(_ publication: Publication) {
        if !self.pendingPositions.isEmpty, self.pendingPositions[ByteString(publication.topic)] != nil {
            let key = ByteString(publication.topic)
            if self.pendingPositions[key]!.count < Self.pendingLimit {
                self.pendingPositions[key]!.append(publication)
            }
            return
        }
        if !self.floors.isEmpty, let floor = self.floors[ByteString(publication.topic)], publication.offset != 0 {
            // Single-instance publications carry no epoch: the floor's is theirs.
            if (publication.epoch ?? floor.epoch) == floor.epoch && publication.offset <= floor.offset { return }
            self.floors[ByteString(publication.topic)] = nil
        }
        guard self.deflate != nil, publication.body.readableBytes >= self.server.config.compression.minSize else {
            self.writeFrame(publication.frame, priority: publication.priority, key: publication.key)
            return
        }
        if self.sharesCompressedPublications, let compressed = publication.compressedFrame {
            self.writeFrame(compressed, priority: publication.priority, key: publication.key)
        } else if let context = self.context {
            self.writeFrame(self.compressedFrame(opcode: publication.opcode, body: publication.body,
                                                 allocator: context.channel.allocator),
                            priority: publication.priority, key: publication.key)
        }
    }

    private func compressedFrame(opcode: WebSocketOpcode, body: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        let deflater = self.ownDeflater ?? self.shard.deflater(windowBits: self.deflate?.serverWindowBits ?? 15)
        let compressed = body.withUnsafeReadableBytes { deflater.compress($0) }
        var frame = allocator.buffer(capacity: FrameEncoder.headerSize(payloadLength: compressed.count) + compressed.count)
        FrameEncoder.writeHeader(opcode: opcode, payloadLength: compressed.count, rsv1: true, into: &frame)
        frame.writeBytes(compressed)
        return frame
    }

    func flush() {
        self.dirty = false
        guard let context = self.context else { return }
        self.spill(context)
        context.flush()
    }

    /// Sends a WebSocket ping (heartbeat).
    func sendPing(now: NIODeadline) {
        guard self.state == .open, let context = self.context else { return }
        self.lastPing = now
        self.writeFrame(FrameEncoder.frame(opcode: .ping, bytes: EmptyCollection<UInt8>(), allocator: context.channel.allocator))
    }

    // MARK: closing

    /// Starts the close handshake (server side): close frame now, TCP close when the peer answers or
    /// after close_timeout.
    func initiateClose(code: UInt16, reason: String) {
        guard self.state == .open, let context = self.context else { return }
        self.closeCode = code
        self.closeReason = reason
        self.spill(context)
        context.write(self.wrapOutboundOut(FrameEncoder.close(code: code, reason: reason, allocator: context.channel.allocator)), promise: nil)
        context.flush()
        self.state = .closing
        let channel = context.channel
        self.closeTimer = self.eventLoop.scheduleTask(in: .nanoseconds(Int64(self.server.config.closeTimeout * 1e9))) {
            channel.close(promise: nil)
        }
    }

    /// Closes the TCP connection at once (the close frame is attempted but not awaited).
    func abort(code: UInt16, reason: String) {
        guard let context = self.context, self.state != .closed else { return }
        if self.state == .open {
            self.closeCode = code
            self.closeReason = reason
            self.spill(context)
            context.write(self.wrapOutboundOut(FrameEncoder.close(code: code, reason: reason, allocator: context.channel.allocator)), promise: nil)
            context.flush()
        }
        self.state = .closed
        context.close(promise: nil)
    }

    private func closeSlowConsumer() {
        self.server.stats.add(.slowConsumerCloses)
        self.server.logger.warning("closing slow consumer", metadata: [
            "conn": "\(self.id)", "queued_bytes": "\(self.sendQueue.bytes)",
        ])
        self.abort(code: CloseCode.policyViolation, reason: "slow consumer")
    }

    func checkSlowConsumer(now: NIODeadline) {
        if let since = self.unwritableSince,
           now - since > .nanoseconds(Int64(self.server.config.slowConsumerTimeout * 1e9)) {
            self.closeSlowConsumer()
        }
    }

    private func peerClosed(code: UInt16?, reason: String, context: ChannelHandlerContext) {
        switch self.state {
        case .open:
            self.closeCode = code ?? CloseCode.noStatus
            self.closeReason = reason
            self.state = .closed
            let echo = code.map { FrameEncoder.close(code: $0, reason: "", allocator: context.channel.allocator) }
                ?? FrameEncoder.emptyClose(allocator: context.channel.allocator)
            self.spill(context)
            context.writeAndFlush(self.wrapOutboundOut(echo)).whenComplete { _ in context.close(promise: nil) }
        case .closing:
            self.state = .closed
            context.close(promise: nil)
        case .closed:
            break
        }
    }

    private func fail(code: UInt16, reason: String, context: ChannelHandlerContext) {
        guard self.state != .closed else { return }
        self.server.logger.debug("closing on protocol error", metadata: [
            "conn": "\(self.id)", "code": "\(code)", "reason": "\(reason)",
        ])
        let wasOpen = self.state == .open
        self.state = .closed
        if wasOpen {
            self.closeCode = code
            self.closeReason = reason
            let frame = FrameEncoder.close(code: code, reason: reason, allocator: context.channel.allocator)
            self.spill(context)
            context.writeAndFlush(self.wrapOutboundOut(frame)).whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }
}
