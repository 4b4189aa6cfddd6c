import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Logging
import Synchronization
import WavelaneAuth
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public let wavelaneVersion = "0.1.0"

/// `start()` failed (the port is in use, the host does not resolve, ...).
public struct StartError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { self.message }
}

/// A call from the application had a bad argument.
public struct ArgumentError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { self.message }
    public init(_ message: String) { self.message = message }
}

/// The engine: owns the event loops, the listening socket, the connection registry and the inbound
/// queue. Its methods are thread-safe; Python calls them through the C ABI from any thread.
public final class ServerCore: DeliveryHost, @unchecked Sendable {
    public let config: EngineConfiguration
    let verifier: JWTVerifier?
    private let tlsContext: NIOSSLContext?
    public let queue: EventQueue
    public let stats = EngineStats()
    let metrics = MetricsExporter()
    /// Per-IP and per-user admission state (Policies.swift).
    let admission: Admission
    /// Failed handshakes per IP (Policies.swift).
    let failedHandshakes: FailedHandshakes
    /// Engine log records, taken by the bindings for Python's `logging`.
    public let logSink = LogSink()
    let logger: Logger
    let registry = ConnectionRegistry()
    let offsets = TopicOffsets()
    /// Distinct glob patterns held by clients (`max_globs`).
    let globBudget: GlobBudget
    /// How publications, messages and presence travel (Delivery/): chosen at `start()`, Redis with
    /// a `redis_url`, else local. Set once `init` is done, never nil afterwards.
    private(set) var delivery: (any Delivery)!
    /// Bytes of fragmented inbound messages being assembled, all connections together (bounded by
    /// `max_partial_bytes`); changed only when a connection's fragments grow or are released.
    let partialBytes = Atomic<Int>(0)
    private(set) var epoch = ServerCore.makeEpoch()
    private let allocator = ByteBufferAllocator()

    private struct Route {
        var contentType: String
        var body: [UInt8]
    }

    private let lifecycleLock = NIOLock()
    private var group: MultiThreadedEventLoopGroup?
    private var listener: Channel?
    /// With `admin_port`: the plain-HTTP listener for /metrics and /health.
    private var adminListener: Channel?
    private var boundPort = 0
    private let shardsBox = NIOLockedValueBox<[Shard]>([])
    private let routes = NIOLockedValueBox<[String: Route]>([:])
    private let acceptingFlag = Atomic<Bool>(false)
    private let connectionCounter = Atomic<UInt64>(0)
    /// Bytes waiting in all connections' send queues (messages held back from slow consumers).
    let sendQueueBytes = Atomic<Int>(0)
    /// Connections that take the shared compressed publication frame.
    let sharedDeflateConnections = Atomic<Int>(0)
    /// Compresses publications once for all sharing connections; used under `offsets.lock`.
    private lazy var publicationDeflater = Deflater(
        level: self.config.compression.level, windowBits: 15, memLevel: self.config.compression.memLevel,
        contextTakeover: false)

    public init(configuration: EngineConfiguration) throws(ConfigurationError) {
        self.config = configuration
        if let jwt = configuration.jwt {
            do {
                self.verifier = try JWTVerifier(jwt)
            } catch {
                let key = configuration.jwt?.publicKeysPEM.isEmpty == false ? "jwt_public_key" : "jwt_secret"
                throw ConfigurationError(key, error.message)
            }
        } else {
            self.verifier = nil
        }
        self.tlsContext = try Self.makeTLSContext(configuration)
        self.admission = Admission(policy: configuration.policies)
        self.failedHandshakes = FailedHandshakes(policy: configuration.policies)
        let sink = self.logSink
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        self.logger = Logger(label: "wavelane", factory: { _ in SinkLogHandler(sink: sink, logLevel: level) })
        self.queue = EventQueue(capacity: configuration.inboundQueueSize)
        self.globBudget = GlobBudget(limit: configuration.maxGlobs)
        self.delivery = LocalDelivery(host: self)
    }

    private static func makeTLSContext(_ config: EngineConfiguration) throws(ConfigurationError) -> NIOSSLContext? {
        guard let certPath = config.tlsCertificatePath, let keyPath = config.tlsKeyPath else { return nil }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certPath)
        } catch {
            throw ConfigurationError("tls_cert", "cannot read a PEM certificate from \(certPath): \(error)")
        }
        guard !chain.isEmpty else { throw ConfigurationError("tls_cert", "no certificate in \(certPath)") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw ConfigurationError("tls_key", "cannot read a PEM private key from \(keyPath): \(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        if let caPath = config.tlsClientCAPath {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caPath))
            } catch {
                throw ConfigurationError("tls_client_ca", "cannot read PEM certificates from \(caPath): \(error)")
            }
            tls.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigurationError("tls_key", "the certificate and key do not make a TLS context: \(error)")
        }
    }

    deinit {
        self.stop(timeout: 0)
    }

    var accepting: Bool { self.acceptingFlag.load(ordering: .relaxed) }

    public var isRunning: Bool { self.lifecycleLock.withLock { self.group != nil } }

    public var port: Int { self.lifecycleLock.withLock { self.boundPort } }

    // MARK: routes

    /// Serves `body` at GET `path`. Routes may be added at any time.
    public func addRoute(path: String, contentType: String, body: [UInt8]) {
        self.routes.withLockedValue { $0[path] = Route(contentType: contentType, body: body) }
    }

    func route(_ path: String) -> (contentType: String, body: [UInt8])? {
        self.routes.withLockedValue { $0[path].map { ($0.contentType, $0.body) } }
    }

    // MARK: lifecycle

    /// SO_REUSEPORT (NIO has no name for it).
    private static let reusePortOption = ChannelOptions.Types.SocketOption(
        level: NIOBSDSocket.OptionLevel.socket, name: NIOBSDSocket.Option(rawValue: SO_REUSEPORT))

    public func start() throws(StartError) {
        self.lifecycleLock.lock()
        defer { self.lifecycleLock.unlock() }
        do {
            guard self.group == nil else { throw StartError(message: "server is already running") }
            let threads = self.config.threads == 0 ? System.coreCount : self.config.threads
            let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
            var shards: [Shard] = []
            for (i, loop) in group.makeIterator().enumerated() {
                shards.append(Shard(index: i, eventLoop: loop, server: self))
            }
            self.shardsBox.withLockedValue { $0 = shards }
            self.queue.setOpen(true)
            self.epoch = Self.makeEpoch()
            let localHistory = self.config.redisURL == nil && self.config.historySize > 0
            self.offsets.reset(epoch: self.epoch, history: localHistory
                ? (self.config.historySize, self.config.historyMaxBytes, self.config.historyTTL) : nil)
            if let url = self.config.redisURL {
                do {
                    let redis = try RedisDelivery(host: self, url: url, eventLoop: group.next())
                    self.delivery = redis
                    redis.start()
                } catch {
                    self.shardsBox.withLockedValue { $0 = [] }
                    try? group.syncShutdownGracefully()
                    self.queue.setOpen(false)
                    throw StartError(message: "redis_url: \(error.message)")
                }
            } else {
                self.delivery = LocalDelivery(host: self)
            }
            self.acceptingFlag.store(true, ordering: .relaxed)

            let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 64 * 1024, high: 256 * 1024)
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 4096)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(Self.reusePortOption, value: self.config.reusePort ? 1 : 0)
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(ChannelOptions.writeBufferWaterMark, value: waterMark)
                .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 4)
                .childChannelInitializer { [unowned self] channel in self.initializeChild(channel) }
            var bound: Channel? = nil
            var address = "\(self.config.host):\(self.config.port)"
            do {
                if self.config.listen {  // else publisher only: the delivery, no listener
                    let listener = try bootstrap.bind(host: self.config.host, port: self.config.port).wait()
                    bound = listener
                    if let adminPort = self.config.adminPort {
                        address = "\(self.config.adminHost):\(adminPort) (admin_host, admin_port)"
                        self.adminListener = try ServerBootstrap(group: group)
                            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                            .childChannelInitializer { [unowned self] channel in self.initializeAdminChild(channel) }
                            .bind(host: self.config.adminHost, port: adminPort).wait()
                    }
                    self.listener = listener
                    self.boundPort = listener.localAddress?.port ?? self.config.port
                }
            } catch {
                try? bound?.close().wait()
                self.acceptingFlag.store(false, ordering: .relaxed)
                self.shardsBox.withLockedValue { $0 = [] }
                self.delivery.stop(timeout: .zero)
                self.delivery = LocalDelivery(host: self)
                try? group.syncShutdownGracefully()
                self.queue.setOpen(false)
                let message = "cannot listen on \(address): \(Self.describe(error))"
                self.logger.error("\(message)")
                throw StartError(message: message)
            }
            self.group = group
            for shard in shards {
                shard.eventLoop.execute { shard.startSweeping() }
            }
            if let jwt = self.config.jwt {
                for (i, secret) in jwt.secrets.enumerated() where secret.count < Self.minimumSecretLength {
                    // RFC 7518 §3.2: an HS256 key shorter than the hash (32 bytes) can be brute-forced offline
                    // from any one token.
                    self.logger.warning("\(i == 0 ? "jwt_secret" : "jwt_previous_secret") is shorter than \(Self.minimumSecretLength) bytes: tokens signed with it can be brute-forced offline; use a random secret of at least 32 bytes", metadata: [
                        "bytes": "\(secret.count)",
                    ])
                }
            }
            self.logger.info(self.config.listen ? "listening" : "publisher only (listen=false)", metadata: [
                "host": "\(self.config.host)", "port": "\(self.boundPort)", "threads": "\(threads)",
                "tls": "\(self.tlsContext != nil)",
            ])
        }
    }

    /// Stops accepting, closes every connection with 1001 (waiting up to `timeout` seconds for the
    /// close handshakes), then joins the event-loop threads. Idempotent; `start()` may follow.
    public func stop(timeout: Double) {
        let taken: (MultiThreadedEventLoopGroup, Channel?, Channel?, [Shard])? = self.lifecycleLock.withLock {
            guard let group = self.group else { return nil }
            self.acceptingFlag.store(false, ordering: .relaxed)
            let result = (group, self.listener, self.adminListener, self.shardsBox.withLockedValue { $0 })
            self.group = nil
            self.listener = nil
            self.adminListener = nil
            self.boundPort = 0
            return result
        }
        guard let (group, listener, adminListener, shards) = taken else { return }
        try? listener?.close().wait()
        try? adminListener?.close().wait()
        for shard in shards {
            shard.eventLoop.execute {
                for connection in shard.connections.values {
                    connection.initiateClose(code: CloseCode.goingAway, reason: "server shutting down")
                }
            }
        }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(max(0, timeout) * 1e9))
        while self.registry.count > 0 && NIODeadline.now() < deadline { usleep(2000) }
        for shard in shards {
            try? shard.eventLoop.submit {
                shard.stopSweeping()
                for connection in shard.connections.values {
                    connection.abort(code: CloseCode.goingAway, reason: "server shutting down")
                }
            }.wait()
        }
        let closeDeadline = NIODeadline.now() + .seconds(1)
        while self.registry.count > 0 && NIODeadline.now() < closeDeadline { usleep(1000) }
        let delivery: any Delivery = self.lifecycleLock.withLock { self.delivery }
        delivery.stop(timeout: .seconds(1))
        self.lifecycleLock.withLock { self.delivery = LocalDelivery(host: self) }
        try? group.syncShutdownGracefully()
        self.shardsBox.withLockedValue { $0 = [] }
        self.logger.info("stopped")
        self.queue.setOpen(false)
        self.queue.wake()
    }

    /// Graceful drain: new upgrades get HTTP 503, every connection is closed with 1001 once its
    /// queued messages have been handed to the socket, and after at most `timeout` seconds (or
    /// as soon as every connection is gone) the server stops.
    public func drainAndStop(timeout: Double) {
        let shards: [Shard]? = self.lifecycleLock.withLock {
            guard self.group != nil else { return nil }
            self.acceptingFlag.store(false, ordering: .relaxed)
            return self.shardsBox.withLockedValue { $0 }
        }
        guard let shards else { return }
        for shard in shards {
            shard.eventLoop.execute {
                for connection in shard.connections.values {
                    connection.closeAfterDrain(code: CloseCode.goingAway, reason: "server shutting down")
                }
            }
        }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(max(0, timeout) * 1e9))
        while self.registry.count > 0 && NIODeadline.now() < deadline { usleep(2000) }
        self.stop(timeout: 0)
    }

    private func initializeChild(_ channel: Channel) -> EventLoopFuture<Void> {
        let state = HandshakeState()
        let upgrader = WebSocketUpgrader(server: self, state: state)
        let httpHandler = HTTPHandler(server: self, state: state)
        do {
            let sync = channel.pipeline.syncOperations
            if let tlsContext = self.tlsContext {
                try sync.addHandler(NIOSSLServerHandler(context: tlsContext))
            }
            try sync.configureHTTPServerPipeline(
                withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                    // The upgrade is happening: plain-HTTP handling leaves the pipeline.
                    context.pipeline.syncOperations.removeHandler(httpHandler, promise: nil)
                }),
                withErrorHandling: true)
            try sync.addHandler(httpHandler)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        let stats = self.stats
        state.timeout = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(self.config.handshakeTimeout * 1e9))) {
            if !state.upgraded {
                stats.add(.handshakeTimeouts)
                channel.close(promise: nil)
            }
        }
        channel.closeFuture.whenComplete { _ in
            state.timeout?.cancel()
            state.timeout = nil
            state.releaseHolds(stats)
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    /// A connection to the admin listener: plain HTTP, /metrics and /health only, no upgrade.
    private func initializeAdminChild(_ channel: Channel) -> EventLoopFuture<Void> {
        do {
            let sync = channel.pipeline.syncOperations
            try sync.configureHTTPServerPipeline(withErrorHandling: true)
            try sync.addHandler(HTTPHandler(server: self, state: HandshakeState(), admin: true))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        // An idle admin client does not hold a socket for ever.
        let timeout = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(self.config.handshakeTimeout * 1e9))) {
            channel.close(promise: nil)
        }
        channel.closeFuture.whenComplete { _ in timeout.cancel() }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    func shard(for loop: EventLoop) -> Shard? {
        self.shardsBox.withLockedValue { shards in shards.first { $0.eventLoop === loop } }
    }

    func nextConnectionID(on loop: EventLoop) -> UInt64 {
        self.connectionCounter.wrappingAdd(1, ordering: .relaxed).newValue
    }

    // MARK: application calls

    /// Publishes to every subscriber of `topic` on every loop; returns the publication's offset. In
    /// multi-instance mode the publication goes through Redis (which assigns the offset, so 0 is
    /// returned) and reaches the subscribers of every instance.
    public func publish(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer,
                        priority: Priority = .normal, key: String? = nil) throws(ArgumentError) -> UInt64 {
        if let problem = Topic.validate(topic, maxLength: self.config.maxTopicLength, allowWildcards: false) {
            throw ArgumentError("topic: \(problem.message)")
        }
        if kind == .text && !UTF8Validator.isValid(payload) { throw ArgumentError("data: text is not valid UTF-8") }
        if kind == .json {
            do { _ = try JSONParser.parse(payload, maxDepth: 512) } catch { throw ArgumentError("data: not valid JSON: \(error.message)") }
        }
        let shards = self.shardsBox.withLockedValue { $0 }
        guard !shards.isEmpty else { throw ArgumentError("server is not running") }
        self.stats.add(.publications)
        let started = NIODeadline.now()
        defer { self.metrics.publishSeconds.recordNanoseconds((NIODeadline.now() - started).nanoseconds) }
        return self.delivery.publish(topic: topic, kind: kind, payload: payload, priority: priority, key: key)
    }

    /// Single instance: numbers the publication, records it in the history, hands it to every loop.
    func deliverNumbered(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> UInt64 {
        let shards = self.shardsBox.withLockedValue { $0 }
        return self.offsets.lock.withLock {
            let offset = self.offsets.nextLocked(topic)
            let publication = self.makePublicationLocked(topic: topic, offset: offset, epoch: nil, kind: kind, payload: payload,
                                                         priority: priority, key: key)
            self.offsets.recordLocked(publication)
            for shard in shards {
                shard.eventLoop.execute { shard.deliver(topic: topic, publication: publication) }
            }
            return offset
        }
    }

    /// Encodes a publication once: the frame, and the shared compressed frame when any connection
    /// takes it. Call with `offsets.lock` held (it guards the shared compressor).
    private func makePublicationLocked(topic: String, offset: UInt64, epoch: String?, kind: PayloadKind,
                                       payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> Publication {
        let frame = TopicEnvelope.frame(topic: topic, offset: offset, kind: kind, payload: payload, allocator: self.allocator)
        let bodyLength = FrameEncoder.payloadLength(ofFrameSize: frame.readableBytes)
        let body = frame.getSlice(at: frame.readerIndex + frame.readableBytes - bodyLength, length: bodyLength)!
        let opcode: WebSocketOpcode = kind == .binary ? .binary : .text
        var compressed: ByteBuffer? = nil
        if self.config.compression.enabled, bodyLength >= self.config.compression.minSize,
           self.sharedDeflateConnections.load(ordering: .relaxed) > 0 {
            let bytes = body.withUnsafeReadableBytes { self.publicationDeflater.compress($0) }
            var buffer = self.allocator.buffer(capacity: FrameEncoder.headerSize(payloadLength: bytes.count) + bytes.count)
            FrameEncoder.writeHeader(opcode: opcode, payloadLength: bytes.count, rsv1: true, into: &buffer)
            buffer.writeBytes(bytes)
            compressed = buffer
        }
        return Publication(topic: topic, offset: offset, epoch: epoch, frame: frame, body: body, opcode: opcode,
                           compressedFrame: compressed, priority: priority, key: key)
    }

    /// An encoded publication for a message from the cluster stream or a topic's history.
    func makePublication(topic: String, message: ClusterMessage) -> Publication {
        message.payload.withUnsafeReadableBytes { payload in
            self.offsets.lock.withLock {
                self.makePublicationLocked(topic: topic, offset: message.offset, epoch: message.epoch, kind: message.kind,
                                           payload: payload, priority: message.priority, key: message.key)
            }
        }
    }

    /// Multi-instance mode: a publication arrived from Redis; hand it to every loop (in order: the
    /// Redis delivery calls this for one message after the other).
    func deliver(topic: String, message: ClusterMessage) {
        let publication = self.makePublication(topic: topic, message: message)
        for shard in self.shardsBox.withLockedValue({ $0 }) {
            shard.eventLoop.execute { shard.deliver(topic: topic, publication: publication) }
        }
    }

    /// Multi-instance mode with Redis down: this instance's subscribers only, outside the sequence.
    func deliverLocally(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) {
        let shards = self.shardsBox.withLockedValue { $0 }
        self.offsets.lock.withLock {
            let publication = self.makePublicationLocked(topic: topic, offset: 0, epoch: nil, kind: kind, payload: payload,
                                                         priority: priority, key: key)
            for shard in shards {
                shard.eventLoop.execute { shard.deliver(topic: topic, publication: publication) }
            }
        }
    }

    /// A `cluster` event for the application.
    func pushClusterEvent(_ payload: ByteBuffer) {
        self.queue.push(contentsOf: [InboundEvent(kind: .cluster, conn: 0, payload: payload)], from: nil)
    }

    /// Multi-instance mode: a join/leave event (JSON text) for the watchers of `topic`.
    func deliverPresenceEvent(topic: String, event: ByteBuffer) {
        let frame = event.withUnsafeReadableBytes { FrameEncoder.frame(opcode: .text, payload: $0, allocator: self.allocator) }
        for shard in self.shardsBox.withLockedValue({ $0 }) {
            shard.eventLoop.execute { shard.deliverPresence(topic: topic, frame: frame) }
        }
    }

    /// Sends one frame to one connection. Returns false when the connection is unknown or closed.
    public func send(conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool,
                     priority: Priority = .normal, key: String? = nil, node: String? = nil) throws(ArgumentError) -> Bool {
        if !binary && !UTF8Validator.isValid(payload) { throw ArgumentError("data: text is not valid UTF-8") }
        if let node, node != self.node {
            // A connection of another instance (its `node` as in presence members).
            return try self.delivery.send(node: node, conn: conn, payload: payload, binary: binary, priority: priority, key: key)
        }
        return self.sendLocally(conn: conn, payload: payload, binary: binary, priority: priority, key: key)
    }

    /// One frame to one of this instance's connections; false when it is unknown or closed.
    func sendLocally(conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Bool {
        guard let connection = self.registry.connection(conn) else { return false }
        let opcode: WebSocketOpcode = binary ? .binary : .text
        if connection.deflate != nil && payload.count >= self.config.compression.minSize {
            var body = self.allocator.buffer(capacity: payload.count)
            body.writeBytes(payload)
            connection.eventLoop.execute { connection.writeMessage(opcode: opcode, payload: body, priority: priority, key: key) }
        } else {
            let frame = FrameEncoder.frame(opcode: opcode, payload: payload, allocator: self.allocator)
            connection.eventLoop.execute { connection.writeFrame(frame, priority: priority, key: key) }
        }
        return true
    }

    /// Sends one frame to every connection of `user`; returns how many of this instance's
    /// connections it was queued for. In multi-instance mode it goes through Redis and also reaches
    /// the user's connections on the other instances.
    public func sendUser(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool,
                         priority: Priority = .normal, key: String? = nil) throws(ArgumentError) -> Int {
        if !binary && !UTF8Validator.isValid(payload) { throw ArgumentError("data: text is not valid UTF-8") }
        return self.delivery.sendUser(user, payload: payload, binary: binary, priority: priority, key: key)
    }

    func connectionCount(ofUser user: String) -> Int {
        self.registry.connections(ofUser: user).count
    }

    @discardableResult
    func sendUserLocally(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Int {
        let connections = self.registry.connections(ofUser: user)
        guard !connections.isEmpty else { return 0 }
        let opcode: WebSocketOpcode = binary ? .binary : .text
        let frame = FrameEncoder.frame(opcode: opcode, payload: payload, allocator: self.allocator)
        let body = frame.getSlice(at: frame.readerIndex + frame.readableBytes - payload.count, length: payload.count)!
        let compressible = payload.count >= self.config.compression.minSize
        for connection in connections {
            if connection.deflate != nil && compressible {
                connection.eventLoop.execute { connection.writeMessage(opcode: opcode, payload: body, priority: priority, key: key) }
            } else {
                connection.eventLoop.execute { connection.writeFrame(frame, priority: priority, key: key) }
            }
        }
        return connections.count
    }

    /// Subscribes a connection server-side; `ack` (when given) is sent back as the `id` of a `subscribed` reply.
    public func subscribe(conn: UInt64, topics: [String], ack: JSONValue??) throws(ArgumentError) -> Bool {
        try self.validateSubscriptions(topics)
        guard let connection = self.registry.connection(conn) else { return false }
        connection.eventLoop.execute { connection.subscribe(topics, ack: ack) }
        return true
    }

    public func unsubscribe(conn: UInt64, topics: [String], ack: JSONValue??) throws(ArgumentError) -> Bool {
        try self.validateSubscriptions(topics)
        guard let connection = self.registry.connection(conn) else { return false }
        connection.eventLoop.execute { connection.unsubscribe(topics, ack: ack) }
        return true
    }

    /// The members of `topic` on every instance (multi-instance mode with `presence`), as JSON
    /// objects. Blocks the calling thread for one Redis round trip (at most `timeout` seconds).
    public func presence(topic: String, timeout: Double) throws(ArgumentError) -> [[UInt8]] {
        if let problem = Topic.validate(topic, maxLength: self.config.maxTopicLength, allowWildcards: false) {
            throw ArgumentError("topic: \(problem.message)")
        }
        guard self.config.presence else { throw ArgumentError("presence is off: start the server with presence=True") }
        return try self.delivery.presenceMembers(topic: topic, timeout: timeout)
    }

    // MARK: streams and presence, with or without Redis

    /// The id of this instance in presence members.
    var node: String { self.delivery.node }

    /// `node` while running, else "".
    public var nodeID: String { self.isRunning ? self.node : "" }

    /// A topic's position and, with `since`, what came after it (Redis or the in-memory history).
    func position(topic: String, since: StreamPosition?, on loop: EventLoop) -> EventLoopFuture<PositionReply> {
        self.delivery.position(topic: topic, since: since, on: loop)
    }

    func localPosition(topic: String, since: StreamPosition?) -> PositionReply {
        self.offsets.position(topic: topic, since: since)
    }

    /// Adds (or updates) a member of `topic`. A new member beyond `max_presence_members` is not
    /// added: it is counted and `refused` runs (on any thread; with Redis once Redis answered).
    func presenceJoin(topic: String, conn: UInt64, member: [UInt8], refused: @escaping @Sendable () -> Void = {}) {
        self.delivery.presenceJoin(topic: topic, conn: conn, member: member, limit: self.config.maxPresenceMembers) {
            self.stats.add(.presenceRefused)
            refused()
        }
    }

    func presenceLeave(topic: String, conn: UInt64) {
        self.delivery.presenceLeave(topic: topic, conn: conn)
    }

    func presenceMembers(topic: String, on loop: EventLoop) -> EventLoopFuture<[[UInt8]]> {
        self.delivery.presenceMembers(topic: topic, on: loop)
    }

    /// Sets the `info` (a small JSON value) shown for a connection in presence; updates the
    /// topics it is already a member of. Returns false when the connection is unknown.
    public func setPresenceInfo(conn: UInt64, info: UnsafeRawBufferPointer) throws(ArgumentError) -> Bool {
        guard info.count <= 4096 else { throw ArgumentError("info: longer than 4096 bytes of JSON") }
        do { _ = try JSONParser.parse(info, maxDepth: 32) } catch { throw ArgumentError("info: not valid JSON: \(error.message)") }
        guard let connection = self.registry.connection(conn) else { return false }
        let bytes = Array(info)
        connection.eventLoop.execute { connection.setPresenceInfo(bytes) }
        return true
    }

    /// Answers a client request with an error reply (e.g. a refused subscription).
    public func deny(conn: UInt64, code: String, message: String, id: JSONValue?) -> Bool {
        guard let connection = self.registry.connection(conn) else { return false }
        let body = ServerMessage.error(code: code, message: message, id: id)
        connection.eventLoop.execute { connection.sendJSON(body) }
        return true
    }

    /// HMAC secrets shorter than this get a warning at start.
    static let minimumSecretLength = 32

    /// Closes every connection of `user` with `code` (revocation, logout): on this instance, and with
    /// `redis_url` on every other one (a command on the user's channel). Returns how many of this
    /// instance's connections are being closed.
    public func disconnectUser(_ user: String, code: UInt16, reason: String) throws(ArgumentError) -> Int {
        guard CloseCode.isValidForApplication(code) else {
            throw ArgumentError("code: \(code) is not a close code an application may send (1000, 1001, 1003, 1007-1009, 1011-1013, 3000-4999)")
        }
        guard reason.utf8.count <= 123 else { throw ArgumentError("reason: longer than 123 bytes of UTF-8") }
        return self.delivery.disconnectUser(user, code: code, reason: reason)
    }

    @discardableResult
    func disconnectUserLocally(_ user: String, code: UInt16, reason: String) -> Int {
        let connections = self.registry.connections(ofUser: user)
        for connection in connections {
            connection.eventLoop.execute { connection.initiateClose(code: code, reason: reason) }
        }
        return connections.count
    }

    /// Starts the close handshake with one connection.
    public func close(conn: UInt64, code: UInt16, reason: String) throws(ArgumentError) -> Bool {
        guard CloseCode.isValidForApplication(code) else {
            throw ArgumentError("code: \(code) is not a close code an application may send (1000, 1001, 1003, 1007-1009, 1011-1013, 3000-4999)")
        }
        guard reason.utf8.count <= 123 else { throw ArgumentError("reason: longer than 123 bytes of UTF-8") }
        guard let connection = self.registry.connection(conn) else { return false }
        connection.eventLoop.execute { connection.initiateClose(code: code, reason: reason) }
        return true
    }

    private func validateSubscriptions(_ topics: [String]) throws(ArgumentError) {
        for topic in topics {
            if let problem = Topic.validate(topic, maxLength: self.config.maxTopicLength, allowWildcards: true) {
                throw ArgumentError("topics: \(problem.message): \"\(topic)\"")
            }
        }
    }

    /// All counters as one JSON object.
    public func statsJSON() -> String {
        var fields = EngineStats.Counter.allCases.map { (name: $0.name, value: self.stats.value($0)) }
        fields += [
            ("connections_active", self.registry.count),
            ("users_active", self.registry.userCount),
            ("inbound_queue", self.queue.count),
            ("inbound_paused", self.queue.pausedCount),
            ("send_queue_bytes", self.sendQueueBytes.load(ordering: .relaxed)),
            ("partial_bytes", self.partialBytes.load(ordering: .relaxed)),
            ("topics_with_offsets", self.offsets.count),
            ("redis_connected", self.delivery.redisConnected ? 1 : 0),
            ("history_bytes", self.offsets.historyBytes),
        ]
        return String(decoding: ServerMessage.counters(fields), as: UTF8.self)
    }

    // MARK: helpers

    static func makeEpoch() -> String {
        var bytes = [UInt8](repeating: 0, count: 8)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func describe(_ error: Error) -> String {
        if let io = error as? IOError {
            return "\(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))"
        }
        return String(describing: error)
    }
}
