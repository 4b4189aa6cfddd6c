// One TCP connection to Redis (TLS first in the pipeline for `rediss://`): RESP decoder + a handler
// that matches replies to pipelined commands in FIFO order. Commands may be sent from any thread;
// everything else runs on the connection's event loop.

import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import WavelaneProtocol

// MARK: - Pipeline pieces

/// ByteToMessageDecoder over `RESPParser`: one `RESPValue` per complete reply.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue
    var parser: RESPParser

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let value = try self.parser.parse(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(value))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try self.decode(context: context, buffer: &buffer)
    }
}

/// An encoded command on its way to the handler. `promise == nil`: no reply is matched to it (the
/// subscribe-family commands, whose confirmations arrive as pub/sub frames).
struct RedisRequest {
    var bytes: ByteBuffer
    var promise: EventLoopPromise<RESPValue>?
    var timeout: TimeAmount?
}

final class RedisCommandHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<RESPValue>
        var deadline: NIODeadline?
    }

    private let maxPending: Int
    private let defaultTimeout: TimeAmount?
    /// Subscriber mode: RESP2 arrays whose first element is a pub/sub kind are frames, not replies.
    let subscriberMode: Bool
    /// Out-of-band frames: RESP3 pushes, and pub/sub arrays in subscriber mode. On the event loop.
    var onPush: ((RESPValue) -> Void)?

    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var open = true
    /// `rediss://`: true until the first reply arrives. Failures before that are TLS handshake
    /// failures (an untrusted certificate; with TLS 1.3 also the server refusing our client
    /// certificate, which shows only after our side of the handshake is done), reported as
    /// `.connectionFailed` (retried like a refused connection), not as a lost connection.
    private var tlsConnecting: Bool
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    /// Why the connection ended (the first error seen), for state reports.
    private(set) var closeReason: String?
    /// `rediss://`: why the TLS connection could not be set up (see `tlsConnecting`). The connect
    /// path reads it: the channel may be gone (and the handshake commands fail with a plain
    /// "connection closed") before it gets to send them.
    private(set) var connectFailure: RedisError?
    private weak var context: ChannelHandlerContext?

    init(maxPending: Int, defaultTimeout: TimeAmount?, subscriberMode: Bool, tls: Bool = false) {
        self.maxPending = maxPending
        self.defaultTimeout = defaultTimeout
        self.subscriberMode = subscriberMode
        self.tlsConnecting = tls
    }

    var pendingCount: Int { self.pending.count }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelInactive(context: ChannelHandlerContext) {
        if self.tlsConnecting {
            let error = self.connectFailure ?? RedisError(.connectionFailed, "TLS handshake failed: the server closed the connection")
            if self.connectFailure == nil { self.connectFailure = error }
            if self.closeReason == nil { self.closeReason = error.message }
            self.failAll(error)
        } else {
            self.failAll(RedisError(.connectionClosed, self.closeReason ?? "connection closed"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let reason: RedisError
        if let resp = error as? RESPError {
            reason = RedisError(.protocolError, resp.description)
        } else if let decoder = error as? ByteToMessageDecoderError, case .dataReceivedInErrorState(let inner, _) = decoder,
            let resp = inner as? RESPError
        {
            reason = RedisError(.protocolError, resp.description)
        } else if self.tlsConnecting {
            reason = RedisError(.connectionFailed, "TLS handshake failed: \(RedisURL.describeTLS(error))")
            if self.connectFailure == nil { self.connectFailure = reason }
        } else {
            reason = RedisError(.connectionClosed, "connection error: \(RedisURL.describeTLS(error))")
        }
        if self.closeReason == nil { self.closeReason = reason.message }
        self.failAll(reason)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = Self.unwrapInboundIn(data)
        self.tlsConnecting = false
        if case .push = value {
            self.onPush?(value)
            return
        }
        if self.subscriberMode, case .array(let elements?) = value, let first = elements.first,
            case .bulkString(let kind?) = first, Self.isPubSubKind(kind)
        {
            self.onPush?(value)
            return
        }
        guard let head = self.pending.popFirst() else {
            // A reply nobody waits for: in subscriber mode an error for a subscribe-family command
            // (e.g. an ACL refusal); otherwise the stream is out of step, so drop the connection.
            if self.subscriberMode {
                // E.g. an ACL refusal, or +PONG when no subscription is left: the subscriber decides.
                self.onPush?(value)
                return
            }
            if self.closeReason == nil { self.closeReason = "unexpected reply with no command pending" }
            context.close(promise: nil)
            return
        }
        head.promise.succeed(value)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = Self.unwrapOutboundIn(data)
        guard self.open else {
            let error = RedisError(.connectionClosed, self.closeReason ?? "connection closed")
            request.promise?.fail(error)
            promise?.fail(error)
            return
        }
        if let reply = request.promise {
            if self.pending.count >= self.maxPending {
                reply.fail(RedisError(.tooManyPending, "more than \(self.maxPending) commands waiting for replies"))
                promise?.succeed(())
                return
            }
            let timeout = request.timeout ?? self.defaultTimeout
            let deadline = timeout.map { NIODeadline.now() + $0 }
            self.pending.append(Pending(promise: reply, deadline: deadline))
            if let deadline { self.armTimer(context: context, deadline: deadline) }
        }
        context.write(Self.wrapOutboundOut(request.bytes), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all { self.open = false }
        context.close(mode: mode, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.failAll(RedisError(.connectionClosed, self.closeReason ?? "connection closed"))
    }

    private func failAll(_ error: RedisError) {
        self.open = false
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = nil
        while let p = self.pending.popFirst() { p.promise.fail(error) }
    }

    /// One timer at a time, set for the earliest deadline among pending commands (commands may have
    /// different timeouts: the handshake uses the connect timeout).
    private func armTimer(context: ChannelHandlerContext, deadline: NIODeadline) {
        if self.timer != nil, let current = self.timerDeadline, current <= deadline { return }
        self.timer?.cancel()
        self.timerDeadline = deadline
        self.timer = context.eventLoop.scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.timerDeadline = nil
            let now = NIODeadline.now()
            var earliest: NIODeadline?
            for p in self.pending {
                guard let d = p.deadline else { continue }
                if d <= now {
                    let error =
                        self.tlsConnecting
                        ? RedisError(.connectionFailed, "no TLS handshake and reply within the connect timeout")
                        : RedisError(.timeout, "no reply from Redis within the command timeout")
                    if self.tlsConnecting, self.connectFailure == nil { self.connectFailure = error }
                    if self.closeReason == nil { self.closeReason = error.message }
                    self.failAll(error)
                    self.context?.close(promise: nil)
                    return
                }
                earliest = earliest.map { min($0, d) } ?? d
            }
            if let earliest, let context = self.context { self.armTimer(context: context, deadline: earliest) }
        }
    }

    static func isPubSubKind(_ kind: ByteBuffer) -> Bool {
        switch kind.readableBytes {
        case 4: return kind.readableBytesView.elementsEqual("pong".utf8)
        case 7: return kind.readableBytesView.elementsEqual("message".utf8)
        case 8: return kind.readableBytesView.elementsEqual("pmessage".utf8)
        case 9: return kind.readableBytesView.elementsEqual("subscribe".utf8)
        case 10: return kind.readableBytesView.elementsEqual("psubscribe".utf8)
        case 11: return kind.readableBytesView.elementsEqual("unsubscribe".utf8) || kind.readableBytesView.elementsEqual("smessage".utf8)
        case 12: return kind.readableBytesView.elementsEqual("punsubscribe".utf8)
        default: return false
        }
    }
}

// MARK: - Connection

/// The command handler of each channel a connect attempt creates (several with happy eyeballs),
/// by channel. Used on the connecting event loop only.
private final class HandlerBox: @unchecked Sendable {
    var byChannel: [ObjectIdentifier: RedisCommandHandler] = [:]
}

public final class RedisConnection: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// TCP connect timeout (also bounds the AUTH/SELECT handshake).
        public var connectTimeout: TimeAmount = .seconds(2)
        /// A command without a reply for this long fails with `.timeout` and closes the connection
        /// (replies are ordered, so a lost reply poisons the connection). nil: wait forever.
        public var commandTimeout: TimeAmount? = .seconds(5)
        /// Commands in flight (sent, reply not yet received) beyond this fail with `.tooManyPending`.
        public var maxPendingCommands = 16_384
        /// Limits for replies.
        public var parser = RESPParser(maxBulkLength: 64 * 1024 * 1024, maxAggregateCount: 1 << 20, maxDepth: 16)

        public init() {}
    }

    public let url: RedisURL
    public let eventLoop: EventLoop
    let channel: Channel
    let handler: RedisCommandHandler

    private init(url: RedisURL, channel: Channel, handler: RedisCommandHandler) {
        self.url = url
        self.eventLoop = channel.eventLoop
        self.channel = channel
        self.handler = handler
    }

    /// Connects (over TLS for `rediss://`), then authenticates (AUTH [user] password, when the URL
    /// has a password), checks the server answers (PING, which also detects a password the URL
    /// lacks) and selects the database (SELECT, when not 0). Fails with a `RedisError`:
    /// `.tlsConfiguration` (the URL's TLS files cannot be used), `.connectionFailed` (also for a
    /// failed TLS handshake, e.g. an untrusted certificate), `.authenticationFailed`, `.selectFailed`,
    /// `.timeout`, ... Builds the TLS context for this one connection; reconnecting clients build it
    /// once.
    public static func connect(to url: RedisURL, on eventLoop: EventLoop, configuration: Configuration = .init()) -> EventLoopFuture<RedisConnection> {
        let tlsContext: NIOSSLContext?
        do {
            tlsContext = try url.makeTLSContext()
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return self.connect(to: url, on: eventLoop, configuration: configuration, tlsContext: tlsContext, subscriberMode: false, onPush: nil)
    }

    /// `tlsContext`: from `url.makeTLSContext()` (nil for `redis://`); TLS is used when it is set.
    static func connect(
        to url: RedisURL, on eventLoop: EventLoop, configuration: Configuration, tlsContext: NIOSSLContext?, subscriberMode: Bool,
        onPush: ((RESPValue) -> Void)?
    ) -> EventLoopFuture<RedisConnection> {
        let serverHostname = url.tlsServerHostname
        let handlers = HandlerBox()
        let parser = configuration.parser
        let maxPending = configuration.maxPendingCommands
        let timeout = configuration.commandTimeout
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = RedisCommandHandler(
                        maxPending: maxPending, defaultTimeout: timeout, subscriberMode: subscriberMode, tls: tlsContext != nil)
                    handler.onPush = onPush
                    handlers.byChannel[ObjectIdentifier(channel)] = handler
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: serverHostname))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder(parser: parser)))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        return bootstrap.connect(host: url.host, port: url.port)
            .flatMapErrorThrowing { error in
                throw RedisError(.connectionFailed, "cannot connect to \(url.host):\(url.port): \(ServerCore.describe(error))")
            }
            .flatMapThrowing { channel in
                // Not looked up in the pipeline: a failed TLS handshake may have emptied it already.
                guard let handler = handlers.byChannel[ObjectIdentifier(channel)] else {
                    channel.close(promise: nil)
                    throw RedisError(.connectionFailed, "cannot connect to \(url.host):\(url.port): no Redis handler in the pipeline")
                }
                handlers.byChannel.removeAll()
                return RedisConnection(url: url, channel: channel, handler: handler)
            }
            .flatMap { connection in
                connection.handshake(timeout: configuration.connectTimeout).map { connection }.flatMapError { error in
                    connection.channel.close(promise: nil)
                    if let failure = connection.handler.connectFailure {  // the TLS handshake failed
                        return eventLoop.makeFailedFuture(RedisError(.connectionFailed, "cannot connect to \(url.host):\(url.port): \(failure.message)"))
                    }
                    return eventLoop.makeFailedFuture(error)
                }
            }
    }

    private func handshake(timeout: TimeAmount) -> EventLoopFuture<Void> {
        let url = self.url
        var steps: [(command: [RESPArgument], kind: RedisError.Kind, what: String)] = []
        if let password = url.password {
            var auth: [RESPArgument] = ["AUTH"]
            if let user = url.username { auth.append(.string(user)) }
            auth.append(.string(password))
            steps.append((auth, .authenticationFailed, "AUTH failed"))
        }
        steps.append((["PING"], .authenticationFailed, "PING failed"))
        if url.database != 0 {
            steps.append((["SELECT", .string(String(url.database))], .selectFailed, "SELECT \(url.database) failed"))
        }
        var future = self.eventLoop.makeSucceededVoidFuture()
        for step in steps {
            future = future.flatMap {
                self.send(step.command, timeout: timeout).flatMapThrowing { reply in
                    if let message = reply.errorMessage {
                        var text = "\(step.what): \(message)"
                        if message.hasPrefix("NOAUTH") { text += " (put the password in the URL: redis://:password@host:port/db)" }
                        throw RedisError(step.kind, text)
                    }
                }
            }
        }
        return future
    }

    /// True while the TCP connection is up.
    public var isConnected: Bool { self.channel.isActive }

    /// Completes when the connection has closed (for any reason).
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }

    /// Why the connection closed (only meaningful after `closeFuture` completed); read on the loop.
    var closeReason: String { self.handler.closeReason ?? "connection closed by the server" }

    /// Sends one command (pipelined behind any in flight); the future completes, on the connection's
    /// event loop, with the reply — an error reply (`-ERR ...`) is a *successful* `.error` value. Fails
    /// with `.connectionClosed`, `.tooManyPending` or `.timeout`. Callable from any thread.
    public func send(_ command: [RESPArgument]) -> EventLoopFuture<RESPValue> {
        self.send(command, timeout: nil)
    }

    public func send(_ command: [String]) -> EventLoopFuture<RESPValue> {
        var bytes = self.channel.allocator.buffer(capacity: 16 + command.reduce(0) { $0 + $1.utf8.count + 16 })
        RESPEncoder.command(command, into: &bytes)
        return self.send(encoded: bytes, timeout: nil)
    }

    func send(_ command: [RESPArgument], timeout: TimeAmount?) -> EventLoopFuture<RESPValue> {
        var bytes = self.channel.allocator.buffer(capacity: 64)
        RESPEncoder.command(command, into: &bytes)
        return self.send(encoded: bytes, timeout: timeout)
    }

    private func send(encoded bytes: ByteBuffer, timeout: TimeAmount?) -> EventLoopFuture<RESPValue> {
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        self.channel.writeAndFlush(RedisRequest(bytes: bytes, promise: promise, timeout: timeout)).whenFailure { error in
            promise.fail(Self.map(error))
        }
        return promise.futureResult
    }

    /// Writes a command whose answer is not matched to it (SUBSCRIBE and friends).
    func sendWithoutReply(_ command: [RESPArgument]) {
        var bytes = self.channel.allocator.buffer(capacity: 64)
        RESPEncoder.command(command, into: &bytes)
        self.channel.writeAndFlush(RedisRequest(bytes: bytes, promise: nil, timeout: nil), promise: nil)
    }

    /// PUBLISH; the future holds how many subscribers (over all Redis clients) received it.
    public func publish(channel: String, payload: ByteBuffer) -> EventLoopFuture<Int> {
        self.send(["PUBLISH", .string(channel), .bytes(payload)]).flatMapThrowing { try Self.integerReply($0, "PUBLISH") }
    }

    public func close() -> EventLoopFuture<Void> {
        self.channel.close().flatMapErrorThrowing { error in
            if let e = error as? ChannelError, e == .alreadyClosed { return }
            // Redis closes TLS connections without a close_notify of its own: closed all the same.
            if let e = error as? NIOSSLError, case .uncleanShutdown = e { return }
            throw error
        }
    }

    static func integerReply(_ reply: RESPValue, _ command: String) throws -> Int {
        if let n = reply.integer { return Int(n) }
        if let message = reply.errorMessage { throw RedisError(.serverError, "\(command): \(message)") }
        throw RedisError(.protocolError, "\(command): unexpected reply \(reply)")
    }

    static func map(_ error: Error) -> Error {
        if error is RedisError { return error }
        if let e = error as? ChannelError, e == .ioOnClosedChannel || e == .alreadyClosed || e == .eof {
            return RedisError(.connectionClosed, "connection closed")
        }
        return RedisError(.connectionClosed, "write failed: \(ServerCore.describe(error))")
    }
}
