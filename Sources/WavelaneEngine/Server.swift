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
public final class ServerCore: @unchecked Sendable {
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
    let allocator = ByteBufferAllocator()

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
    let shardsBox = NIOLockedValueBox<[Shard]>([])
    private let routes = NIOLockedValueBox<[String: Route]>([:])
    /// Whether new upgrades are taken (internal for tests).
    let acceptingFlag = Atomic<Bool>(false)
    private let connectionCounter = Atomic<UInt64>(0)
    /// Bytes waiting in all connections' send queues (messages held back from slow consumers).
    let sendQueueBytes = Atomic<Int>(0)
    /// Connections that take the shared compressed publication frame.
    let sharedDeflateConnections = Atomic<Int>(0)
    /// Compresses publications once for all sharing connections; used under `offsets.lock`.
    lazy var publicationDeflater = Deflater(
        level: self.config.compression.level, windowBits: 15, memLevel: self.config.compression.memLevel,
        contextTakeover: false)
    /// Publication frames in shared blocks, so backed-up connections queue runs of them; used under
    /// `offsets.lock`.
    var frameBlocks = FrameBlockWriter()

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
        self.queue = EventQueue(capacity: configuration.inboundQueueSize, spinNanos: configuration.drainSpinMicros * 1000)
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

    /// Receive buffers of an upgraded WebSocket connection (set at the upgrade). NIO keeps a
    /// connection's first receive buffer for reuse as long as the connection lives, so an idle
    /// connection holds one of `initial` bytes (NIO's default: 2 KiB); the buffer doubles up to
    /// 64 KiB (NIO's default) under inbound load as before.
    static let receiveAllocator = ReceiveAllocator(initial: 512)
    /// Receive buffers before the upgrade: 512 bytes each, never more, so the buffer NIO keeps is
    /// not grown by a long request (an upgrade request longer than 512 bytes takes several reads).
    static let handshakeReceiveAllocator = ReceiveAllocator.fixed(512)

    /// Reads per readable event of an upgraded connection (set at the upgrade). NIO also keeps up
    /// to this many receive buffers per connection: a new one whenever a handler still holds the
    /// last one at the next read. Before the upgrade it is `handshakeMessagesPerRead`: a request
    /// longer than a buffer takes one read per readable event, and the connection keeps one
    /// receive buffer. Plain HTTP (routes, the publish API's bodies) reads that way too.
    static let messagesPerRead: UInt = 4
    static let handshakeMessagesPerRead: UInt = 1

    /// Small marks: what a connection hands NIO beyond them waits in its send queue, where
    /// publications are shared runs (FrameBlock) instead of per-connection copies; 1,000 backed-up
    /// subscribers then hold ~16 MB here, not 256 MB (issue #12's fan-out RSS).
    static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 8 * 1024, high: 16 * 1024)

    /// Whether accepted sockets take TCP_NODELAY from the listener (Linux: `inet_csk_clone_lock`
    /// copies the listening socket's Nagle setting) instead of a setsockopt each.
    #if os(Linux)
    static let listenerNoDelay = true
    #else
    static let listenerNoDelay = false
    #endif

    /// SO_REUSEPORT (NIO has no name for it).
    private static let reusePortOption = ChannelOptions.Types.SocketOption(
        level: NIOBSDSocket.OptionLevel.socket, name: NIOBSDSocket.Option(rawValue: SO_REUSEPORT))

    public func start() throws(StartError) {
        self.lifecycleLock.lock()
        defer { self.lifecycleLock.unlock() }
        do {
            guard self.group == nil else { throw StartError(message: "server is already running") }
            let threads = self.config.threads == 0 ? LoopCount.detect() : self.config.threads
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

            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 4096)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(Self.reusePortOption, value: self.config.reusePort ? 1 : 0)
                // Linux gives an accepted socket the listener's TCP_NODELAY: set once here, it costs
                // no setsockopt per connection (test_accepted_sockets_have_nodelay checks it).
                .serverChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: Self.listenerNoDelay ? 1 : 0)
                // Child channel options are set in `initializeChild`, directly: NIO's generic path
                // chains futures per option, per accepted connection (~3% of a handshake's CPU for
                // TCP_NODELAY alone).
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
            shard.execute {
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
            shard.execute {
                for connection in shard.connections.values {
                    connection.closeAfterDrain(code: CloseCode.goingAway, reason: "server shutting down")
                }
            }
        }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(max(0, timeout) * 1e9))
        while self.registry.count > 0 && NIODeadline.now() < deadline { usleep(2000) }
        self.stop(timeout: 0)
    }

    /// A connection to the WebSocket port: [TLS,] then `HTTPHandler`, which reads the request and
    /// answers it or puts a `Connection` in its place; and the handshake timeout (internal for tests).
    func initializeChild(_ channel: Channel) -> EventLoopFuture<Void> {
        // The loop's shard (its handshake deadlines, and the `Connection`'s home after the upgrade).
        guard let shard = self.shard(for: channel.eventLoop) else {
            return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        let state = HandshakeState()
        state.shard = shard
        do {
            if let options = channel.syncOptions {
                if !Self.listenerNoDelay {
                    try options.setOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                }
                try options.setOption(ChannelOptions.writeBufferWaterMark, value: Self.writeBufferWaterMark)
                try options.setOption(ChannelOptions.maxMessagesPerRead, value: Self.handshakeMessagesPerRead)
                try options.setOption(ChannelOptions.recvAllocator, value: Self.handshakeReceiveAllocator)
            }
            let sync = channel.pipeline.syncOperations
            if let tlsContext = self.tlsContext {
                try sync.addHandler(NIOSSLServerHandler(context: tlsContext))
            }
            try sync.addHandler(HTTPHandler(server: self, state: state))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        // Ended at the upgrade, or when the channel closes before it (HTTPHandler.channelInactive,
        // which also gives back the holds): nothing keeps the handshake state for the connection's
        // life.
        shard.handshakeDeadlines.add(state, channel: channel)
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    /// A connection to the admin listener: plain HTTP, /metrics and /health only, no upgrade.
    private func initializeAdminChild(_ channel: Channel) -> EventLoopFuture<Void> {
        do {
            let sync = channel.pipeline.syncOperations
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

    /// HMAC secrets shorter than this get a warning at start.
    static let minimumSecretLength = 32

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
