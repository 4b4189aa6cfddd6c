import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Admission and inbound rate-limit policies (issue #4): their settings (`PolicyConfiguration`, read
// from the keys of `ConfigSchema`) and the checks on them. The policies, one file each, all native
// and off the GIL:
//
// * `TokenBucket`, `InboundLimiter` (RateLimits.swift): a refilling budget on a monotonic clock
//   injected by the caller; per connection messages/s and bytes/s with bursts, strikes, reply throttling
// * `Admission` (Admission.swift): per server, new connections/s and concurrent connections per IP,
//   concurrent connections per user; one lock-protected table, bounded
// * `OriginPattern` (Origins.swift): the `allowed_origins` allowlist (exact and `*.` wildcards)
// * `FailedHandshakes` (FailedHandshakes.swift): failed handshakes (bad or missing token) per IP,
//   checked before a token is verified; bounded
// * `IPRange` (TrustedProxies.swift) / `PolicyConfiguration.clientAddress`: `trusted_proxies`, whose
//   X-Forwarded-For / X-Real-IP is believed
// * `PolicyConfiguration.cookieTokenAllowed`  a cookie token counts only from an allowed Origin
// * `PolicyConfiguration.selectSubprotocol`  `Sec-WebSocket-Protocol` negotiation

/// The policy settings (see docs/configuration.md, "Admission and rate limits").
public struct PolicyConfiguration: Sendable {
    /// Inbound messages per second per connection; 0 = no limit.
    public var rateLimitMessages = 0.0
    /// Messages a connection may send at once above the rate; 0 = one second's worth (at least 1).
    public var rateLimitBurstMessages = 0
    /// Inbound bytes (of message payload, after decompression) per second per connection; 0 = no limit.
    public var rateLimitBytes = 0
    /// Bytes a connection may send at once above the rate; 0 = one second's worth.
    public var rateLimitBurstBytes = 0
    /// Refused messages (leaking at one per second) that close the connection with 1008; 0 = never close.
    public var rateLimitStrikes = 10

    /// New connections (upgrade attempts that pass the request checks) per second per IP; 0 = no limit.
    public var maxConnectionsPerIPRate = 0.0
    /// Burst of new connections per IP; 0 = one second's worth (at least 1).
    public var maxConnectionsPerIPRateBurst = 0
    /// Concurrent connections per IP; 0 = no limit.
    public var maxConnectionsPerIP = 0
    /// Concurrent connections per user (JWT `sub`); 0 = no limit.
    public var maxConnectionsPerUser = 0
    /// Most IPs (IPv4 addresses, IPv6 /64 prefixes) tracked at once by the per-IP limits.
    public var maxTrackedIPs = 100_000
    /// Failed handshakes (missing or invalid token) per second per IP; beyond the burst, upgrades
    /// from that IP get 429 before their token is verified. 0 = no limit.
    public var maxFailedHandshakesPerIPRate = 5.0
    /// Failed handshakes per IP allowed at once above the rate.
    public var maxFailedHandshakesPerIPBurst = 20
    /// Peers (proxies) whose X-Forwarded-For / X-Real-IP is believed; empty = nobody's.
    public var trustedProxies: [IPRange] = []

    /// Allowed browser origins; empty = any origin.
    public var allowedOrigins: [OriginPattern] = []
    /// Refuse upgrades without an Origin header (non-browser clients) with 403.
    public var requireOrigin = false
    /// Subprotocols the server speaks, in no particular order (the client's order decides).
    public var subprotocols: [String] = []
    /// Refuse (400) clients that offer none of `subprotocols`.
    public var subprotocolRequired = false

    public init() {}

    var inboundLimited: Bool { self.rateLimitMessages > 0 || self.rateLimitBytes > 0 }
    var ipLimited: Bool { self.maxConnectionsPerIPRate > 0 || self.maxConnectionsPerIP > 0 }
    var admissionEnabled: Bool { self.ipLimited || self.maxConnectionsPerUser > 0 }

    var effectiveBurstMessages: Double {
        self.rateLimitBurstMessages > 0 ? Double(self.rateLimitBurstMessages) : max(1, self.rateLimitMessages.rounded(.up))
    }
    var effectiveBurstBytes: Double {
        self.rateLimitBurstBytes > 0 ? Double(self.rateLimitBurstBytes) : Double(max(1, self.rateLimitBytes))
    }
    var effectiveConnectionBurst: Double {
        self.maxConnectionsPerIPRateBurst > 0
            ? Double(self.maxConnectionsPerIPRateBurst) : max(1, self.maxConnectionsPerIPRate.rounded(.up))
    }

    // MARK: origin

    /// nil when the request may proceed, else why it is refused (403).
    func checkOrigin(_ values: [String]) -> String? {
        if values.isEmpty {
            return self.requireOrigin ? "an Origin header is required" : nil
        }
        guard !self.allowedOrigins.isEmpty else { return nil }
        guard values.count == 1 else { return "more than one Origin header" }
        guard let origin = Origin(parsing: values[0]) else { return "origin not allowed" }
        for pattern in self.allowedOrigins where pattern.matches(origin) { return nil }
        return "origin not allowed"
    }

    /// Whether a token taken from a cookie may count: only when the request comes from an origin in
    /// `allowed_origins` (a browser sends the cookie along with a page of any site: cross-site
    /// WebSocket hijacking). With no `allowed_origins`, or no Origin header, never.
    func cookieTokenAllowed(_ originValues: [String]) -> Bool {
        guard !self.allowedOrigins.isEmpty, originValues.count == 1, let origin = Origin(parsing: originValues[0]) else {
            return false
        }
        return self.allowedOrigins.contains { $0.matches(origin) }
    }

    // MARK: client address

    /// The client's address: the peer's, or — when the peer is one of `trustedProxies` — the one it
    /// forwarded: the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (the
    /// leftmost when all are), else `X-Real-IP`. A forwarded address has port 0. An entry that is
    /// not an address stops the walk (nothing left of it is believed): the peer's address is used.
    func clientAddress(peer: SocketAddress?, forwardedFor: [String], realIP: [String]) -> SocketAddress? {
        guard !self.trustedProxies.isEmpty, let peer, let peerBytes = IPRange.bytes(of: peer),
              self.isTrustedProxy(peerBytes) else { return peer }
        if !forwardedFor.isEmpty {
            let entries = forwardedFor.flatMap { $0.split(separator: ",") }
            var chosen: (text: String, bytes: [UInt8])? = nil
            for entry in entries.reversed() {
                guard let parsed = IPRange.parseForwarded(entry) else { return peer }
                chosen = parsed
                if !self.isTrustedProxy(parsed.bytes) { break }
            }
            if let chosen { return (try? SocketAddress(ipAddress: chosen.text, port: 0)) ?? peer }
            return peer
        }
        if realIP.count == 1, let parsed = IPRange.parseForwarded(Substring(realIP[0])) {
            return (try? SocketAddress(ipAddress: parsed.text, port: 0)) ?? peer
        }
        return peer
    }

    func isTrustedProxy(_ bytes: [UInt8]) -> Bool {
        self.trustedProxies.contains { $0.contains(bytes) }
    }

    // MARK: subprotocols

    enum SubprotocolChoice: Equatable {
        case none
        case chosen(String)
        case refused
    }

    /// The first of the client's offers (in its order) that the server speaks.
    func selectSubprotocol(_ headerValues: [String]) -> SubprotocolChoice {
        if !self.subprotocols.isEmpty {
            for value in headerValues {
                for offer in value.split(separator: ",") {
                    let name = String(offer).trimmingSpaces
                    if !name.isEmpty, self.subprotocols.contains(name) { return .chosen(name) }
                }
            }
        }
        return self.subprotocolRequired ? .refused : .none
    }

    /// RFC 7230 token characters (what a subprotocol name is made of).
    static func isToken(_ s: String) -> Bool {
        guard !s.isEmpty else { return false }
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
                continue
            default:
                if !"!#$%&'*+-.^_`|~".utf8.contains(b) { return false }
            }
        }
        return true
    }
}

extension EngineConfiguration {
    mutating func readPolicies(_ r: Reader) throws(ConfigurationError) {
        var p = PolicyConfiguration()
        if let v = try r.rate("rate_limit_messages") { p.rateLimitMessages = v }
        if let v = try r.int("rate_limit_burst_messages") { p.rateLimitBurstMessages = v }
        if let v = try r.int("rate_limit_bytes") { p.rateLimitBytes = v }
        if let v = try r.int("rate_limit_burst_bytes") { p.rateLimitBurstBytes = v }
        if let v = try r.int("rate_limit_strikes") { p.rateLimitStrikes = v }
        if let v = try r.rate("max_connections_per_ip_rate") { p.maxConnectionsPerIPRate = v }
        if let v = try r.int("max_connections_per_ip_rate_burst") { p.maxConnectionsPerIPRateBurst = v }
        if let v = try r.int("max_connections_per_ip") { p.maxConnectionsPerIP = v }
        if let v = try r.int("max_connections_per_user") { p.maxConnectionsPerUser = v }
        if let v = try r.int("max_tracked_ips") { p.maxTrackedIPs = v }
        if let v = try r.rate("max_failed_handshakes_per_ip_rate") { p.maxFailedHandshakesPerIPRate = v }
        if let v = try r.int("max_failed_handshakes_per_ip_burst") { p.maxFailedHandshakesPerIPBurst = v }
        if let list = try r.stringList("trusted_proxies") {
            for entry in list {
                guard let range = IPRange(entry) else {
                    throw ConfigurationError("trusted_proxies", "\"\(entry)\" is not an IP address or CIDR range (e.g. 10.0.0.0/8, ::1, fd00::/8)")
                }
                p.trustedProxies.append(range)
            }
        }
        if let list = try r.stringList("allowed_origins") {
            for entry in list {
                guard let pattern = OriginPattern(entry) else {
                    throw ConfigurationError("allowed_origins", "\"\(entry)\" is not an origin (scheme://host[:port], host may start with \"*.\"; no path)")
                }
                p.allowedOrigins.append(pattern)
            }
        }
        if let v = try r.bool("require_origin") { p.requireOrigin = v }
        if let list = try r.stringList("subprotocols") {
            for name in list where !PolicyConfiguration.isToken(name) {
                throw ConfigurationError("subprotocols", "\"\(name)\" is not a valid subprotocol name (an HTTP token)")
            }
            p.subprotocols = list
        }
        if let v = try r.bool("subprotocol_required") { p.subprotocolRequired = v }
        if p.subprotocolRequired && p.subprotocols.isEmpty {
            throw ConfigurationError("subprotocol_required", "needs subprotocols")
        }
        for (burstKey, burst, rateKey, on) in [
            ("rate_limit_burst_messages", p.rateLimitBurstMessages, "rate_limit_messages", p.rateLimitMessages > 0),
            ("rate_limit_burst_bytes", p.rateLimitBurstBytes, "rate_limit_bytes", p.rateLimitBytes > 0),
            ("max_connections_per_ip_rate_burst", p.maxConnectionsPerIPRateBurst, "max_connections_per_ip_rate", p.maxConnectionsPerIPRate > 0),
        ] where burst > 0 && !on {
            throw ConfigurationError(burstKey, "needs \(rateKey)")
        }
        self.policies = p
    }
}
