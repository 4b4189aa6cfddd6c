import WavelaneProtocol

/// One engine setting: its key, type, default, range and a one-line description.
///
/// `ConfigSchema.settings` is the only table of settings: `EngineConfiguration.init(json:)` accepts
/// exactly these keys and takes every range from here, the C ABI exports the table as JSON
/// (`wl_config_schema`), the Python package takes its types and defaults from that export, and a
/// test checks `docs/configuration.md` against it.
public struct ConfigSetting: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case bool
        case int
        /// A duration in seconds (int or float).
        case seconds
        /// A number per second (int or float); 0 switches the limit off.
        case rate
        case string
        /// A list of strings.
        case stringList = "string_list"
        /// One of `choices`.
        case choice
    }

    public let key: String
    public let kind: Kind
    /// The value used when the key is absent (or JSON null); `.null`: unset.
    public let defaultValue: JSONValue
    /// JSON null is a value of its own (it switches something off) that callers may pass.
    public let nullable: Bool
    /// Inclusive bounds for `int`, `seconds` and `rate` (for `seconds`, `minimum` 0 is exclusive
    /// unless `zeroAllowed`).
    public let minimum: Double?
    public let maximum: Double?
    public let zeroAllowed: Bool
    public let choices: [String]
    public let doc: String

    init(_ key: String, _ kind: Kind, _ defaultValue: JSONValue, min: Double? = nil, max: Double? = nil,
         nullable: Bool = false, zeroAllowed: Bool = false, choices: [String] = [], _ doc: String) {
        self.key = key
        self.kind = kind
        self.defaultValue = defaultValue
        self.nullable = nullable
        self.minimum = min
        self.maximum = max
        self.zeroAllowed = zeroAllowed
        self.choices = choices
        self.doc = doc
    }

    /// The integer range of an `int` setting.
    var intRange: ClosedRange<Int> { Int(self.minimum ?? 0)...Int(self.maximum ?? Double(Int32.max)) }

    /// The entry as JSON: {"key","type","default","nullable","min","max","zero_allowed","choices","doc"}.
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "key": .string(self.key), "type": .string(self.kind.rawValue), "default": self.defaultValue,
            "nullable": .bool(self.nullable), "doc": .string(self.doc),
        ]
        if let v = self.minimum { o["min"] = Self.number(v) }
        if let v = self.maximum { o["max"] = Self.number(v) }
        if self.kind == .seconds { o["zero_allowed"] = .bool(self.zeroAllowed) }
        if !self.choices.isEmpty { o["choices"] = .array(self.choices.map(JSONValue.string)) }
        return .object(o)
    }

    private static func number(_ d: Double) -> JSONValue {
        d == d.rounded() && abs(d) < 9e15 ? .int(Int64(d)) : .double(d)
    }
}

public enum ConfigSchema {
    static let year = 86400.0 * 365
    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Every engine setting, grouped as in docs/configuration.md.
    public static let settings: [ConfigSetting] = [
        // network
        .init("host", .string, .string("127.0.0.1"), "address to bind"),
        .init("port", .int, .int(8765), min: 0, max: 65535, "port to bind; 0: an ephemeral port"),
        .init("threads", .int, .int(0), min: 0, max: 1024, "event loops; 0: the cores the process may run on (affinity mask, cgroup cpu.max quota) less one for Python, at least 1"),
        .init("ws_path", .string, .null, nullable: true, "the only path that upgrades; null: any path"),
        .init("reuse_port", .bool, .bool(false), "SO_REUSEPORT: several processes share the port"),
        .init("listen", .bool, .bool(true), "false: bind nothing (a publisher-only instance; needs redis_url)"),
        .init("connect_headers", .stringList, .array([]), "lower-case request headers copied into the connect event"),
        .init("max_connections", .int, .int(100_000), min: 1, max: 10_000_000, "connections plus handshakes in progress"),
        // JWT
        .init("jwt_secret", .string, .null, "HMAC secret (HS256/384/512)"),
        .init("jwt_previous_secret", .string, .null, "a second accepted secret, for rotation"),
        .init("jwt_public_key", .string, .null, "RSA / EC public key, PEM"),
        .init("jwt_algorithms", .stringList, .null, "accepted alg values; null: every one the keys can verify"),
        .init("jwt_issuer", .string, .null, "required iss"),
        .init("jwt_audience", .string, .null, "required aud"),
        .init("jwt_leeway", .seconds, .int(5), min: 0, max: year, zeroAllowed: true, "clock skew allowed for exp / nbf"),
        .init("jwt_require_exp", .bool, .bool(false), "refuse tokens without exp"),
        .init("jwt_reject_high_s", .bool, .bool(true), "refuse high-S ES256/ES384 signatures"),
        .init("jwt_header", .bool, .bool(true), "accept Authorization: Bearer"),
        .init("jwt_cookie", .string, .string("token"), nullable: true, "cookie carrying the token; null: none"),
        .init("jwt_query_param", .string, .string("token"), nullable: true, "query parameter carrying the token; null: none"),
        // timeouts
        .init("handshake_timeout", .seconds, .int(10), min: 0, max: year, "time to complete the upgrade"),
        .init("ping_interval", .seconds, .int(20), min: 0, max: year, "a ping after this long without traffic"),
        .init("idle_timeout", .seconds, .int(60), min: 0, max: year, "close after this long without traffic (at least ping_interval)"),
        .init("close_timeout", .seconds, .int(5), min: 0, max: year, "time the peer has to answer a close"),
        .init("slow_consumer_timeout", .seconds, .int(10), min: 0, max: year, "close a client whose queue stays full this long"),
        // limits
        .init("max_message_size", .int, .int(1 << 20), min: 16, max: Double(1 << 30), "largest inbound message, bytes"),
        .init("max_frame_size", .int, .int(1 << 20), min: 16, max: Double(1 << 30), "largest inbound frame, bytes"),
        .init("max_partial_bytes", .int, .int(64 << 20), min: 16, max: Double(1 << 40),
              "bytes of fragmented messages being assembled, all connections (at least max_message_size)"),
        .init("max_subscriptions", .int, .int(1024), min: 1, max: 10_000_000, "subscriptions per connection"),
        .init("max_topic_length", .int, .int(256), min: 1, max: 65535, "longest topic name, bytes"),
        .init("inbound_queue_size", .int, .int(65536), min: 16, max: 100_000_000, "events waiting for the application"),
        .init("drain_spin_us", .int, .int(250), min: 0, max: 100_000,
              "after a batch with a message, drain() polls this long (µs) before it sleeps; 0: sleep at once"),
        .init("max_send_queue", .int, .int(8 << 20), min: 1024, max: Double(1 << 34), "bytes queued per connection"),
        // application switches
        .init("client_subscriptions", .bool, .bool(true), "clients may subscribe themselves"),
        .init("subscribe_approval", .bool, .bool(false), "other subscriptions go to the application for approval"),
        .init("client_topics", .stringList, .array([]), "glob patterns any client may subscribe to"),
        .init("max_globs_per_connection", .int, .int(16), min: 0, max: 1_000_000, "glob subscriptions per connection"),
        .init("max_globs", .int, .int(10_000), min: 0, max: 10_000_000, "distinct glob patterns per server"),
        .init("log_level", .choice, .string("info"), choices: logLevels, "lowest engine log level recorded"),
        .init("metrics", .bool, .bool(true), "serve GET /metrics"),
        .init("health", .bool, .bool(true), "serve GET /health"),
        .init("admin_port", .int, .null, min: 1, max: 65535, "a separate listener for /metrics and /health"),
        .init("admin_host", .string, .string("127.0.0.1"), "address of the admin listener (needs admin_port)"),
        .init("api_key", .string, .null, "bearer key of POST /api/publish (at least 32 bytes); null: no API"),
        .init("ready_message", .bool, .bool(true), "send the ready message after the upgrade"),
        .init("control_messages", .bool, .bool(true), "the engine handles the client's control messages"),
        // compression
        .init("compression", .bool, .bool(true), "permessage-deflate"),
        .init("compression_min_size", .int, .int(256), min: 1, max: Double(1 << 30), "smallest message compressed, bytes"),
        .init("compression_level", .int, .int(6), min: 1, max: 9, "zlib level"),
        .init("compression_window_bits", .int, .int(15), min: 9, max: 15, "largest window offered"),
        .init("compression_mem_level", .int, .int(8), min: 1, max: 9, "zlib memLevel"),
        .init("compression_server_context_takeover", .bool, .bool(false), "keep the server's deflate context between messages"),
        .init("compression_client_context_takeover", .bool, .bool(false), "let the client keep its deflate context"),
        // TLS
        .init("tls_cert", .string, .null, "PEM certificate chain file"),
        .init("tls_key", .string, .null, "PEM private key file"),
        .init("tls_client_ca", .string, .null, "CA file clients' certificates must be signed by (mutual TLS)"),
        // multi-instance
        .init("redis_url", .string, .null, nullable: true, "multi-instance mode through this Redis"),
        .init("redis_prefix", .string, .string("wavelane"), "prefix of every Redis key and channel"),
        .init("history_size", .int, .int(0), min: 0, max: 1_000_000, "publications kept per topic for recovery"),
        .init("history_ttl", .seconds, .int(300), min: 0, max: year, "history expires this long after the last publication"),
        .init("history_max_bytes", .int, .int(64 << 20), min: 1024, max: Double(1 << 40), "in-memory history bound, bytes"),
        .init("presence", .bool, .bool(false), "track who is subscribed to each exact topic"),
        .init("presence_ttl", .seconds, .int(30), min: 1, max: year, "a member not refreshed this long is gone"),
        .init("max_presence_members", .int, .int(10_000), min: 1, max: 10_000_000, "presence members per topic"),
        // admission and rate limits
        .init("rate_limit_messages", .rate, .int(0), min: 0, max: 1e9, "inbound messages per second per connection; 0: off"),
        .init("rate_limit_burst_messages", .int, .int(0), min: 0, max: 1_000_000_000, "burst of messages; 0: one second's worth"),
        .init("rate_limit_bytes", .int, .int(0), min: 0, max: Double(1 << 40), "inbound bytes per second per connection; 0: off"),
        .init("rate_limit_burst_bytes", .int, .int(0), min: 0, max: Double(1 << 40), "burst of bytes; 0: one second's worth"),
        .init("rate_limit_strikes", .int, .int(10), min: 0, max: 1_000_000, "refused messages that close the connection; 0: never"),
        .init("max_connections_per_ip_rate", .rate, .int(0), min: 0, max: 1e6, "new connections per second per IP; 0: off"),
        .init("max_connections_per_ip_rate_burst", .int, .int(0), min: 0, max: 1_000_000, "burst of new connections per IP; 0: one second's worth"),
        .init("max_connections_per_ip", .int, .int(0), min: 0, max: 10_000_000, "concurrent connections per IP; 0: off"),
        .init("max_connections_per_user", .int, .int(0), min: 0, max: 10_000_000, "concurrent connections per user; 0: off"),
        .init("max_tracked_ips", .int, .int(100_000), min: 1, max: 10_000_000, "IPs tracked at once by the per-IP limits"),
        .init("max_failed_handshakes_per_ip_rate", .rate, .int(5), min: 0, max: 1e6, "failed handshakes per second per IP; 0: off"),
        .init("max_failed_handshakes_per_ip_burst", .int, .int(20), min: 1, max: 1_000_000, "burst of failed handshakes per IP"),
        .init("trusted_proxies", .stringList, .null, "proxies whose X-Forwarded-For / X-Real-IP is believed"),
        .init("allowed_origins", .stringList, .null, "allowed browser origins; null: any"),
        .init("require_origin", .bool, .bool(false), "refuse upgrades without an Origin header"),
        .init("subprotocols", .stringList, .null, "subprotocols the server speaks"),
        .init("subprotocol_required", .bool, .bool(false), "refuse clients that offer none of subprotocols"),
    ]

    static let byKey: [String: ConfigSetting] = Dictionary(uniqueKeysWithValues: settings.map { ($0.key, $0) })

    /// The setting named `key` (a programming error when there is none).
    static func setting(_ key: String) -> ConfigSetting {
        guard let s = byKey[key] else { preconditionFailure("\(key) is not in ConfigSchema.settings") }
        return s
    }

    /// The schema as a JSON array of `ConfigSetting.json` objects, in table order.
    public static var json: String { JSONValue.array(settings.map(\.json)).serialized() }
}
