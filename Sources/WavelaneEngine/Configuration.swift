import WavelaneAuth
import WavelaneProtocol

/// A bad configuration key or value. `message` starts with the key: "port: must be 0...65535".
public struct ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    public var key: String
    public var problem: String
    public var message: String { "\(self.key): \(self.problem)" }
    public var description: String { self.message }
    public init(_ key: String, _ problem: String) {
        self.key = key
        self.problem = problem
    }
}

/// Every engine setting with its default. The bindings pass settings as one JSON object whose keys
/// are the snake_case names below (docs/python-api.md lists them with what each protects against).
public struct EngineConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8765
    /// Event loops; 0 = `LoopCount.detect()`: the cores the process may run on less one, at least 1.
    public var threads = 0
    /// The path the WebSocket endpoint answers on; nil = any path.
    public var wsPath: String? = nil
    /// SO_REUSEPORT on the listening socket: several processes (workers) bind the same port and
    /// the kernel spreads connections among them (with `redisURL` they behave as one).
    public var reusePort = false
    /// false: bind nothing (a "publisher only" instance: publish / send_user / disconnect_user into
    /// a multi-instance deployment through Redis from a process that serves no clients). Needs
    /// `redisURL`.
    public var listen = true
    /// Request headers (lower-case names) copied into the connect event, each value capped at
    /// `connectHeaderMaxBytes`. Empty: none (the default; headers may carry credentials).
    public var connectHeaders: [String] = []
    public static let connectHeaderMaxBytes = 1024
    public static let maxConnectHeaders = 32

    public var jwt: JWTConfiguration? = nil
    public var jwtCookie: String? = "token"
    public var jwtQueryParam: String? = "token"
    public var jwtHeader = true

    public var pingInterval = 20.0
    public var idleTimeout = 60.0
    public var handshakeTimeout = 10.0
    public var closeTimeout = 5.0

    public var maxMessageSize = 1 << 20
    public var maxFrameSize = 1 << 20
    /// Bytes of fragmented messages being assembled, all connections together; a connection whose
    /// next fragment would go beyond is closed with 1013 (try again later). Default: 64 MiB, or
    /// `maxMessageSize` when that is larger (one maximal message can always be assembled).
    public var maxPartialBytes = 64 << 20
    public var maxConnections = 100_000
    public var maxSubscriptions = 1024
    public var maxTopicLength = 256
    public var inboundQueueSize = 65536
    /// `drain_spin_us`: microseconds `EventQueue.drainSegments` polls after an urgent batch.
    public var drainSpinMicros = 250
    public var maxSendQueue = 8 << 20
    public var slowConsumerTimeout = 10.0
    public var clientSubscriptions = true
    public var subscribeApproval = false
    /// Deny by default: what a client may subscribe to without the application's approval, beyond
    /// its own `user:<sub>` space (`client_topics`, glob patterns; docs/security.md).
    public var topicAccess = TopicAccess()
    /// Glob subscriptions a client may hold (each costs every publication a trie walk and, with
    /// Redis, a PSUBSCRIBE), and distinct glob patterns per server.
    public var maxGlobsPerConnection = 16
    public var maxGlobs = 10_000
    /// Send the `ready` message after the upgrade (off only for raw echo servers, e.g. conformance runs).
    public var readyMessage = true
    /// Handle the client's JSON control messages (subscribe/unsubscribe/ping) in the engine; when off,
    /// every frame is the application's.
    public var controlMessages = true
    /// TLS (wss): PEM certificate chain and private key files; with a client CA, clients must
    /// present a certificate signed by it (mutual TLS).
    public var tlsCertificatePath: String? = nil
    public var tlsKeyPath: String? = nil
    public var tlsClientCAPath: String? = nil
    /// The lowest swift-log level the engine records for Python's `logging` (logger "wavelane").
    public var logLevel = "info"
    /// Serve `GET /metrics` and `GET /health` (on the WebSocket port, or on the admin listener).
    public var metrics = true
    public var health = true
    /// A separate plain-HTTP listener for /metrics and /health (nil: none, they stay on the
    /// WebSocket port). With it, the WebSocket port answers them with 404.
    public var adminHost = "127.0.0.1"
    public var adminPort: Int? = nil
    /// permessage-deflate (RFC 7692) policy.
    public var compression = PerMessageDeflate.ServerPolicy()
    /// Admission and inbound rate-limit policies (Policies.swift).
    public var policies = PolicyConfiguration()

    /// Multi-instance mode (docs/delivery.md): publications and user messages go through this Redis.
    public var redisURL: RedisURL? = nil
    /// Every Redis key and channel starts with `<prefix>:`.
    public var redisPrefix = "wavelane"
    /// Publications kept per topic for recovery (0: no history): in Redis with `redisURL`, else in memory.
    public var historySize = 0
    /// Single-instance mode: the in-memory history's total bound (oldest entries of all topics go first).
    public var historyMaxBytes = 64 << 20
    /// A topic's history, offset and epoch expire this long after its last publication.
    public var historyTTL = 300.0
    /// Track who is subscribed to each exact topic (across instances with `redisURL`).
    public var presence = false
    /// A member not refreshed for this long (its instance died) is gone; refreshed every third of it.
    public var presenceTTL = 30.0
    /// Presence members per topic (across instances with `redisURL`); a join beyond it is refused
    /// (the subscription stands, without presence) and counted. One `presence` reply lists them all:
    /// 10,000 members of ~100 bytes is about the default `max_message_size`.
    public var maxPresenceMembers = 10_000
    /// The bearer key of the HTTP publish API (`POST /api/publish` on the server's port); `nil`: no API
    /// (the route answers 404). At least `minAPIKeyBytes` bytes.
    public var apiKey: [UInt8]? = nil
    public static let minAPIKeyBytes = 32

    public init() {}

    /// A header name as `connect_headers` takes it: a non-empty RFC 9110 token in lower case.
    static func isLowercaseHeaderName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || "!#$%&'*+-.^_`|~".utf8.contains(c)
        }
    }

    /// The keys `init(json:)` accepts: those of `ConfigSchema.settings`.
    public static let keys: Set<String> = Set(ConfigSchema.settings.map(\.key))

    /// Builds a configuration from a JSON object; unknown keys and bad values are errors naming the key.
    /// JSON null means "the default" for every key, except `jwt_cookie` and `jwt_query_param`, where it
    /// switches that token source off.
    public init(json: JSONValue) throws(ConfigurationError) {
        guard case .object(let object) = json else { throw ConfigurationError("config", "must be a JSON object") }
        for key in object.keys.sorted() where !Self.keys.contains(key) {
            throw ConfigurationError(key, "unknown setting")
        }
        let r = Reader(object: object)
        if let v = try r.string("host") { self.host = v }
        if let v = try r.int("port") { self.port = v }
        if let v = try r.int("threads") { self.threads = v }
        if r.has("ws_path") {
            self.wsPath = try r.string("ws_path")
            if let p = self.wsPath, !p.hasPrefix("/") { throw ConfigurationError("ws_path", "must start with '/'") }
        }
        if let v = try r.bool("reuse_port") { self.reusePort = v }
        if let v = try r.bool("listen") { self.listen = v }
        if let list = try r.stringList("connect_headers") {
            guard list.count <= Self.maxConnectHeaders else {
                throw ConfigurationError("connect_headers", "at most \(Self.maxConnectHeaders) names, got \(list.count)")
            }
            for name in list where !Self.isLowercaseHeaderName(name) {
                throw ConfigurationError("connect_headers", "\"\(name)\" is not a lower-case header name")
            }
            self.connectHeaders = Array(Set(list)).sorted()
        }
        if let v = try r.seconds("ping_interval") { self.pingInterval = v }
        if let v = try r.seconds("idle_timeout") { self.idleTimeout = v }
        if let v = try r.seconds("handshake_timeout") { self.handshakeTimeout = v }
        if let v = try r.seconds("close_timeout") { self.closeTimeout = v }
        if let v = try r.seconds("slow_consumer_timeout") { self.slowConsumerTimeout = v }
        if let v = try r.int("max_message_size") { self.maxMessageSize = v }
        if let v = try r.int("max_frame_size") { self.maxFrameSize = v }
        if let v = try r.int("max_partial_bytes") {
            guard v >= self.maxMessageSize else {
                throw ConfigurationError("max_partial_bytes", "must be at least max_message_size (\(self.maxMessageSize)), got \(v)")
            }
            self.maxPartialBytes = v
        } else {
            self.maxPartialBytes = max(self.maxPartialBytes, self.maxMessageSize)
        }
        if let v = try r.int("max_connections") { self.maxConnections = v }
        if let v = try r.int("max_subscriptions") { self.maxSubscriptions = v }
        if let v = try r.int("max_topic_length") { self.maxTopicLength = v }
        if let v = try r.int("inbound_queue_size") { self.inboundQueueSize = v }
        if let v = try r.int("drain_spin_us") { self.drainSpinMicros = v }
        if let v = try r.int("max_send_queue") { self.maxSendQueue = v }
        if let v = try r.bool("client_subscriptions") { self.clientSubscriptions = v }
        if let v = try r.bool("subscribe_approval") { self.subscribeApproval = v }
        if let list = try r.stringList("client_topics") {
            for pattern in list {
                if let problem = Topic.validate(pattern, maxLength: self.maxTopicLength, allowWildcards: true) {
                    throw ConfigurationError("client_topics", "\(problem.message): \"\(pattern)\"")
                }
            }
            self.topicAccess = TopicAccess(clientTopics: list)
        }
        if let v = try r.int("max_globs_per_connection") { self.maxGlobsPerConnection = v }
        if let v = try r.int("max_globs") { self.maxGlobs = v }
        if let v = try r.bool("ready_message") { self.readyMessage = v }
        if let v = try r.bool("control_messages") { self.controlMessages = v }
        if let v = try r.choice("log_level") { self.logLevel = v }
        if let v = try r.bool("metrics") { self.metrics = v }
        if let v = try r.bool("health") { self.health = v }
        if let v = try r.string("admin_host") { self.adminHost = v }
        if let v = try r.int("admin_port") { self.adminPort = v }
        if r.has("admin_host") && self.adminPort == nil { throw ConfigurationError("admin_host", "needs admin_port") }
        if let port = self.adminPort, port == self.port, self.adminHost == self.host {
            throw ConfigurationError("admin_port", "must differ from port (\(port)) on the same host")
        }
        self.tlsCertificatePath = try r.string("tls_cert")
        self.tlsKeyPath = try r.string("tls_key")
        self.tlsClientCAPath = try r.string("tls_client_ca")
        if (self.tlsCertificatePath == nil) != (self.tlsKeyPath == nil) {
            throw ConfigurationError(self.tlsCertificatePath == nil ? "tls_cert" : "tls_key", "tls_cert and tls_key go together")
        }
        if self.tlsClientCAPath != nil && self.tlsCertificatePath == nil {
            throw ConfigurationError("tls_client_ca", "needs tls_cert and tls_key")
        }
        if let v = try r.bool("compression") { self.compression.enabled = v }
        if let v = try r.int("compression_min_size") { self.compression.minSize = v }
        if let v = try r.int("compression_level") { self.compression.level = v }
        if let v = try r.int("compression_window_bits") { self.compression.maxWindowBits = v }
        if let v = try r.int("compression_mem_level") { self.compression.memLevel = v }
        if let v = try r.bool("compression_server_context_takeover") { self.compression.serverContextTakeover = v }
        if let v = try r.bool("compression_client_context_takeover") { self.compression.clientContextTakeover = v }
        if let v = try r.bool("jwt_header") { self.jwtHeader = v }
        // For these two, an explicit null switches the token source off.
        if r.present("jwt_cookie") { self.jwtCookie = try r.string("jwt_cookie") }
        if r.present("jwt_query_param") { self.jwtQueryParam = try r.string("jwt_query_param") }
        try self.readPolicies(r)
        try self.readCluster(r)
        if self.idleTimeout < self.pingInterval {
            throw ConfigurationError("idle_timeout", "must be at least ping_interval (\(self.pingInterval) s)")
        }

        var jwt = JWTConfiguration()
        var anyJWT = false
        if let secret = try r.string("jwt_secret") {
            guard !secret.isEmpty else { throw ConfigurationError("jwt_secret", "must not be empty") }
            jwt.secrets.append(Array(secret.utf8)); anyJWT = true
        }
        if let secret = try r.string("jwt_previous_secret") {
            guard !secret.isEmpty else { throw ConfigurationError("jwt_previous_secret", "must not be empty") }
            guard anyJWT else { throw ConfigurationError("jwt_previous_secret", "needs jwt_secret") }
            jwt.secrets.append(Array(secret.utf8))
        }
        if let pem = try r.string("jwt_public_key") { jwt.publicKeysPEM.append(pem); anyJWT = true }
        if let list = try r.stringList("jwt_algorithms") {
            var algorithms = Set<JWTAlgorithm>()
            for name in list {
                guard let a = JWTAlgorithm(rawValue: name.uppercased()) else {
                    throw ConfigurationError("jwt_algorithms", "unsupported algorithm \"\(name)\" (supported: \(JWTAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                algorithms.insert(a)
            }
            jwt.algorithms = algorithms
        }
        if let v = try r.string("jwt_issuer") { jwt.issuer = v }
        if let v = try r.string("jwt_audience") { jwt.audience = v }
        if let v = try r.seconds("jwt_leeway") { jwt.leeway = Int64(v.rounded(.up)) }
        if let v = try r.bool("jwt_require_exp") { jwt.requireExpiry = v }
        if let v = try r.bool("jwt_reject_high_s") { jwt.rejectHighS = v }
        if anyJWT {
            self.jwt = jwt
        } else {
            for key in ["jwt_algorithms", "jwt_issuer", "jwt_audience"] where r.has(key) {
                throw ConfigurationError(key, "needs jwt_secret or jwt_public_key")
            }
        }
    }

    private mutating func readCluster(_ r: Reader) throws(ConfigurationError) {
        if let text = try r.string("redis_url") {
            do {
                self.redisURL = try RedisURL(parsing: text)
            } catch {
                throw ConfigurationError("redis_url", error.message)
            }
        }
        if !self.listen && self.redisURL == nil {
            throw ConfigurationError("listen", "false (publisher only) needs redis_url: the publications reach clients through Redis")
        }
        if let v = try r.string("redis_prefix") {
            if let problem = ClusterNames.validatePrefix(v) { throw ConfigurationError("redis_prefix", problem) }
            self.redisPrefix = v
        }
        if let v = try r.int("history_size") { self.historySize = v }
        if let v = try r.seconds("history_ttl") { self.historyTTL = v }
        if let v = try r.int("history_max_bytes") { self.historyMaxBytes = v }
        if let v = try r.bool("presence") { self.presence = v }
        if let v = try r.seconds("presence_ttl") { self.presenceTTL = v }
        if let v = try r.int("max_presence_members") { self.maxPresenceMembers = v }
        if let v = try r.string("api_key") {
            guard v.utf8.count >= Self.minAPIKeyBytes else {
                throw ConfigurationError("api_key", "must be at least \(Self.minAPIKeyBytes) bytes (a random secret), got \(v.utf8.count)")
            }
            self.apiKey = Array(v.utf8)
        }
    }

    struct Reader {
        let object: [String: JSONValue]

        func present(_ key: String) -> Bool { self.object[key] != nil }

        func has(_ key: String) -> Bool {
            if let v = self.object[key], v != .null { return true }
            return false
        }
        func string(_ key: String) throws(ConfigurationError) -> String? {
            guard let v = self.object[key], v != .null else { return nil }
            guard let s = v.stringValue else { throw ConfigurationError(key, "must be a string") }
            return s
        }
        /// An integer in the setting's range (`ConfigSchema`).
        func int(_ key: String) throws(ConfigurationError) -> Int? {
            guard let v = self.object[key], v != .null else { return nil }
            let range = ConfigSchema.setting(key).intRange
            guard case .int(let i) = v else { throw ConfigurationError(key, "must be an integer") }
            guard let n = Int(exactly: i), range.contains(n) else {
                throw ConfigurationError(key, "must be in \(range.lowerBound)...\(range.upperBound), got \(i)")
            }
            return n
        }
        /// A duration: > 0 (>= 0 when the setting allows zero), at least its minimum, at most its maximum.
        func seconds(_ key: String) throws(ConfigurationError) -> Double? {
            guard let v = self.object[key], v != .null else { return nil }
            let setting = ConfigSchema.setting(key)
            if case .bool = v { throw ConfigurationError(key, "must be a number of seconds") }
            guard let d = v.doubleValue, d.isFinite else { throw ConfigurationError(key, "must be a number of seconds") }
            guard setting.zeroAllowed ? d >= 0 : d > 0, d <= setting.maximum ?? ConfigSchema.year else {
                throw ConfigurationError(key, setting.zeroAllowed ? "must be >= 0" : "must be > 0")
            }
            if let minimum = setting.minimum, minimum > 0, d < minimum {
                throw ConfigurationError(key, "must be at least \(Int(minimum)) second\(minimum == 1 ? "" : "s")")
            }
            return d
        }
        /// A non-negative number (a rate per second) up to the setting's maximum; 0 switches the limit off.
        func rate(_ key: String) throws(ConfigurationError) -> Double? {
            guard let v = self.object[key], v != .null else { return nil }
            let max = ConfigSchema.setting(key).maximum ?? 1e9
            if case .bool = v { throw ConfigurationError(key, "must be a number (per second)") }
            guard let d = v.doubleValue, d.isFinite else { throw ConfigurationError(key, "must be a number (per second)") }
            guard d >= 0, d <= max else { throw ConfigurationError(key, "must be in 0...\(Int(max)), got \(d)") }
            return d
        }
        /// One of the setting's choices.
        func choice(_ key: String) throws(ConfigurationError) -> String? {
            guard let v = try self.string(key) else { return nil }
            let choices = ConfigSchema.setting(key).choices
            guard choices.contains(v) else {
                throw ConfigurationError(key, "must be one of \(choices.joined(separator: ", ")), got \"\(v)\"")
            }
            return v
        }
        func bool(_ key: String) throws(ConfigurationError) -> Bool? {
            guard let v = self.object[key], v != .null else { return nil }
            guard let b = v.boolValue else { throw ConfigurationError(key, "must be true or false") }
            return b
        }
        func stringList(_ key: String) throws(ConfigurationError) -> [String]? {
            guard let v = self.object[key], v != .null else { return nil }
            guard let list = v.arrayValue else { throw ConfigurationError(key, "must be a list of strings") }
            var out: [String] = []
            for item in list {
                guard let s = item.stringValue else { throw ConfigurationError(key, "must be a list of strings") }
                out.append(s)
            }
            return out
        }
    }
}
