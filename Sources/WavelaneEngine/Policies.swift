import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Admission and inbound rate-limit policies (issue #4). Their configuration keys are read here so
// that the policy code stays in one file. Everything here is native and off the GIL:
//
// * `TokenBucket`     a refilling budget on a monotonic clock (NIODeadline), clock injected by the caller
// * `InboundLimiter`  per connection: messages/s and bytes/s with bursts, strikes, reply throttling
// * `Admission`       per server: new connections/s and concurrent connections per IP, concurrent
//                     connections per user; one lock-protected table, bounded
// * `OriginPattern`   the `allowed_origins` allowlist (exact and `*.` wildcard subdomains)
// * `FailedHandshakes` per server: failed handshakes (bad or missing token) per IP, checked before a
//                     token is verified; bounded
// * `IPRange` / `PolicyConfiguration.clientAddress`  `trusted_proxies`: whose X-Forwarded-For /
//                     X-Real-IP is believed
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

// MARK: - token bucket

/// A token bucket: `capacity` tokens, refilled at `rate` tokens per second on the monotonic clock the
/// caller passes in (`now`), so tests can drive it with made-up deadlines.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let capacity: Double
    public private(set) var tokens: Double
    private var last: NIODeadline

    /// A full bucket.
    public init(rate: Double, capacity: Double, now: NIODeadline) {
        precondition(rate > 0 && capacity > 0)
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.last = now
    }

    public mutating func refill(now: NIODeadline) {
        guard now > self.last else { return }  // monotonic; an older `now` changes nothing
        let elapsed = Double((now - self.last).nanoseconds) / 1e9
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.last = now
    }

    /// Whether `cost` tokens are available: at least `cost`, or a full bucket (so that a cost larger
    /// than the capacity, e.g. one big message, can still pass, leaving the bucket in debt).
    public func allows(_ cost: Double) -> Bool {
        self.tokens >= cost || self.tokens >= self.capacity
    }

    /// Takes `cost` tokens when `allows(cost)`; false (and nothing taken) otherwise.
    public mutating func take(_ cost: Double = 1, now: NIODeadline) -> Bool {
        self.refill(now: now)
        guard self.allows(cost) else { return false }
        self.tokens -= cost
        return true
    }

    public func isFull(now: NIODeadline) -> Bool {
        var copy = self
        copy.refill(now: now)
        return copy.tokens >= copy.capacity
    }

    /// Seconds until `cost` tokens are available (0 if they are now).
    public func secondsUntil(_ cost: Double = 1, now: NIODeadline) -> Double {
        var copy = self
        copy.refill(now: now)
        if copy.allows(cost) { return 0 }
        return (min(cost, copy.capacity) - copy.tokens) / copy.rate
    }
}

// MARK: - per-connection inbound limiter

/// The inbound rate limit of one connection (touched only on its event loop).
struct InboundLimiter {
    enum Verdict: Equatable {
        case pass
        /// Not delivered; `reply` = send the client a `rate_limited` error (at most one per second).
        case refuse(reply: Bool)
        /// Not delivered, and the strikes are used up: close with 1008.
        case close
    }

    static let errorReply = ServerMessage.error(
        code: "rate_limited", message: "rate limit exceeded: message dropped; slow down", id: nil)

    private var messages: TokenBucket?
    private var bytes: TokenBucket?
    private let strikeLimit: Double
    private var strikes = 0.0
    private var strikesAt: NIODeadline
    private var lastReply: NIODeadline?

    /// nil when no inbound limit is configured.
    init?(_ policy: PolicyConfiguration, now: NIODeadline) {
        guard policy.inboundLimited else { return nil }
        if policy.rateLimitMessages > 0 {
            self.messages = TokenBucket(rate: policy.rateLimitMessages, capacity: policy.effectiveBurstMessages, now: now)
        }
        if policy.rateLimitBytes > 0 {
            self.bytes = TokenBucket(rate: Double(policy.rateLimitBytes), capacity: policy.effectiveBurstBytes, now: now)
        }
        self.strikeLimit = Double(policy.rateLimitStrikes)
        self.strikesAt = now
    }

    /// One inbound message of `size` payload bytes. Both budgets must allow it; a refused message
    /// takes nothing from either.
    mutating func admit(size: Int, now: NIODeadline) -> Verdict {
        self.messages?.refill(now: now)
        self.bytes?.refill(now: now)
        let cost = Double(size)
        if self.messages?.allows(1) ?? true, self.bytes?.allows(cost) ?? true {
            _ = self.messages?.take(1, now: now)
            _ = self.bytes?.take(cost, now: now)
            return .pass
        }
        // A strike per refused message; strikes leak at one per second.
        if now > self.strikesAt {
            self.strikes = max(0, self.strikes - Double((now - self.strikesAt).nanoseconds) / 1e9)
        }
        self.strikesAt = max(now, self.strikesAt)
        self.strikes += 1
        if self.strikeLimit > 0 && self.strikes >= self.strikeLimit - 1e-9 { return .close }
        if let last = self.lastReply, now - last < .seconds(1) { return .refuse(reply: false) }
        self.lastReply = now
        return .refuse(reply: true)
    }
}

// MARK: - admission (per IP, per user)

/// The key the per-IP limits count by: an IPv4 address, or the /64 prefix of an IPv6 address (one
/// host usually owns a whole /64, so per-address keys would be trivially evaded). IPv4-mapped IPv6
/// addresses (`::ffff:a.b.c.d`) count as their IPv4 address.
public enum IPKey: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6(UInt64)

    public init?(_ address: SocketAddress?) {
        guard let address else { return nil }
        switch address {
        case .v4(let a):
            self = .v4(UInt32(bigEndian: a.address.sin_addr.s_addr))
        case .v6(let a):
            var addr = a.address.sin6_addr
            let bytes = withUnsafeBytes(of: &addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                self = .v4(bytes[12..<16].reduce(0) { $0 << 8 | UInt32($1) })
            } else {
                self = .v6(bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) })
            }
        case .unixDomainSocket:
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let a): return "\(a >> 24).\(a >> 16 & 255).\(a >> 8 & 255).\(a & 255)"
        case .v6(let p):
            let groups = (0..<4).map { String(p >> (48 - 16 * UInt64($0)) & 0xffff, radix: 16) }
            return groups.joined(separator: ":") + "::/64"
        }
    }
}

/// What one admitted handshake holds in the admission table; released once (idempotent), when the
/// channel closes or as soon as the handshake is refused for another reason.
final class AdmissionTicket: @unchecked Sendable {
    fileprivate let admission: Admission
    fileprivate var ip: IPKey?
    fileprivate var user: String?

    fileprivate init(admission: Admission) { self.admission = admission }

    func release(now: NIODeadline = .now()) { self.admission.release(self, now: now) }
}

/// Per-server admission state: one lock-protected table for the per-IP limits and one for the
/// per-user count. The IP table never grows without bound: an entry goes when its IP has no
/// connection and a full bucket (at release, and in sweeps amortized over admissions), and at
/// `maxTrackedIPs` entries new IPs are refused instead of added.
final class Admission: @unchecked Sendable {
    enum Refusal: Error, Equatable {
        /// Too many new connections per second from this IP; retry after that many seconds.
        case rate(retryAfter: Int)
        case ipConcurrency
        case tableFull
        case userConcurrency
    }

    struct IPEntry {
        var count = 0
        var bucket: TokenBucket?
    }

    let policy: PolicyConfiguration
    private let lock = NIOLock()
    private var ips: [IPKey: IPEntry] = [:]
    private var users: [ByteString: Int] = [:]
    private var admissionsSinceSweep = 0
    private var lastSweep: NIODeadline?

    init(policy: PolicyConfiguration) {
        self.policy = policy
    }

    var trackedIPs: Int { self.lock.withLock { self.ips.count } }
    var trackedUsers: Int { self.lock.withLock { self.users.count } }
    func connections(ip: IPKey) -> Int { self.lock.withLock { self.ips[ip]?.count ?? 0 } }
    func connections(user: String) -> Int { self.lock.withLock { self.users[ByteString(user)] ?? 0 } }

    /// Admits one new connection from `ip` (nil: not an IP peer, not limited).
    func admit(ip: IPKey?, now: NIODeadline) -> Result<AdmissionTicket, Refusal> {
        let ticket = AdmissionTicket(admission: self)
        guard let ip, self.policy.ipLimited else { return .success(ticket) }
        return self.lock.withLock { () -> Result<AdmissionTicket, Refusal> in
            self.admissionsSinceSweep += 1
            if self.admissionsSinceSweep >= max(1024, self.ips.count) { self.sweepLocked(now: now) }
            var entry: IPEntry
            if let existing = self.ips[ip] {
                entry = existing
            } else {
                if self.ips.count >= self.policy.maxTrackedIPs {
                    // Full: sweep (at most every 100 ms, so a flood of new IPs costs O(1) each) and retry.
                    if self.lastSweep.map({ now - $0 >= .milliseconds(100) }) ?? true { self.sweepLocked(now: now) }
                    if self.ips.count >= self.policy.maxTrackedIPs { return .failure(.tableFull) }
                }
                entry = IPEntry()
                if self.policy.maxConnectionsPerIPRate > 0 {
                    entry.bucket = TokenBucket(rate: self.policy.maxConnectionsPerIPRate,
                                               capacity: self.policy.effectiveConnectionBurst, now: now)
                }
            }
            if self.policy.maxConnectionsPerIP > 0 && entry.count >= self.policy.maxConnectionsPerIP {
                return .failure(.ipConcurrency)
            }
            if var bucket = entry.bucket {
                guard bucket.take(1, now: now) else {
                    let wait = bucket.secondsUntil(1, now: now)
                    return .failure(.rate(retryAfter: max(1, Int(wait.rounded(.up)))))
                }
                entry.bucket = bucket
            }
            entry.count += 1
            self.ips[ip] = entry
            ticket.ip = ip
            return .success(ticket)
        }
    }

    /// Adds `user` to an admitted ticket, unless the user already has `maxConnectionsPerUser` connections.
    func admit(user: String, ticket: AdmissionTicket) -> Refusal? {
        guard self.policy.maxConnectionsPerUser > 0 else { return nil }
        return self.lock.withLock { () -> Refusal? in
            let count = self.users[ByteString(user)] ?? 0
            if count >= self.policy.maxConnectionsPerUser { return .userConcurrency }
            self.users[ByteString(user)] = count + 1
            ticket.user = user
            return nil
        }
    }

    fileprivate func release(_ ticket: AdmissionTicket, now: NIODeadline) {
        self.lock.withLock {
            if let ip = ticket.ip, var entry = self.ips[ip] {
                entry.count -= 1
                if entry.count <= 0 && (entry.bucket?.isFull(now: now) ?? true) {
                    self.ips[ip] = nil
                } else {
                    self.ips[ip] = entry
                }
            }
            ticket.ip = nil
            if let user = ticket.user, let count = self.users[ByteString(user)] {
                self.users[ByteString(user)] = count > 1 ? count - 1 : nil
            }
            ticket.user = nil
        }
    }

    /// Drops every entry with no connection and a full bucket.
    func sweep(now: NIODeadline) {
        self.lock.withLock { self.sweepLocked(now: now) }
    }

    private func sweepLocked(now: NIODeadline) {
        self.admissionsSinceSweep = 0
        self.lastSweep = now
        self.ips = self.ips.filter { $0.value.count > 0 || !($0.value.bucket?.isFull(now: now) ?? true) }
    }
}

// MARK: - origins

/// A parsed `Origin` header value: scheme, host (lower case) and port (the scheme's default when absent).
struct Origin: Equatable {
    var scheme: String
    var host: String
    /// nil: no port given and the scheme has no known default.
    var port: Int?

    static func defaultPort(_ scheme: String) -> Int? {
        switch scheme {
        case "http", "ws": return 80
        case "https", "wss": return 443
        default: return nil
        }
    }

    /// Parses `scheme://host[:port]` (RFC 6454 serialization); nil for anything else ("null", paths,
    /// user info, bad ports, empty labels...).
    init?(parsing text: String, allowWildcard: Bool = false) {
        let s = Substring(text.trimmingSpaces)
        guard let colon = s.firstIndex(of: ":"), s[colon...].hasPrefix("://") else { return nil }
        let scheme = s[..<colon].lowercased()
        guard let first = scheme.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first),
              scheme.utf8.allSatisfy({ Self.isSchemeByte($0) }) else { return nil }
        var rest = s[s.index(colon, offsetBy: 3)...]
        var host: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[...close]
            rest = rest[rest.index(after: close)...]
            let inner = host.dropFirst().dropLast()
            guard !inner.isEmpty, inner.utf8.allSatisfy({ Self.isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else { return nil }
        } else {
            let end = rest.firstIndex(of: ":") ?? rest.endIndex
            host = rest[..<end]
            rest = rest[end...]
            var labels = host.split(separator: ".", omittingEmptySubsequences: false)
            if allowWildcard, labels.first == "*", labels.count >= 2 { labels.removeFirst() }
            guard !labels.isEmpty, labels.allSatisfy({ label in
                !label.isEmpty && label.utf8.count <= 63 && label.utf8.allSatisfy { Self.isHostByte($0) }
            }) else { return nil }
        }
        var port: Int? = Self.defaultPort(scheme)
        if !rest.isEmpty {
            guard rest.first == ":" else { return nil }
            let digits = rest.dropFirst()
            guard !digits.isEmpty, digits.utf8.count <= 5, digits.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                  let p = Int(digits), (1...65535).contains(p) else { return nil }
            port = p
        }
        self.scheme = scheme
        self.host = host.lowercased()
        self.port = port
    }

    private static func isSchemeByte(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
            || b == UInt8(ascii: "+") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
    }
    private static func isHexDigit(_ b: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(b)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(b)
    }
    private static func isHostByte(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
    }
}

/// One `allowed_origins` entry: an exact origin (`https://app.example.com`, `http://localhost:3000`)
/// or a wildcard over subdomains (`https://*.example.com`: any depth of subdomain, not the apex).
/// Scheme and port must match (an absent port is the scheme's default); hosts compare case-insensitively.
public struct OriginPattern: Sendable, Equatable, CustomStringConvertible {
    let scheme: String
    /// The host, or for a wildcard the suffix after `*` (starting with ".").
    let host: String
    let wildcard: Bool
    let port: Int?

    public init?(_ text: String) {
        guard let origin = Origin(parsing: text, allowWildcard: true) else { return nil }
        self.scheme = origin.scheme
        self.wildcard = origin.host.hasPrefix("*.")
        self.host = self.wildcard ? String(origin.host.dropFirst()) : origin.host
        self.port = origin.port
    }

    func matches(_ origin: Origin) -> Bool {
        guard origin.scheme == self.scheme, origin.port == self.port else { return false }
        if self.wildcard {
            return origin.host.count > self.host.count && origin.host.hasSuffix(self.host)
        }
        return origin.host == self.host
    }

    /// Whether the `Origin` header value `text` is allowed by this pattern.
    public func matches(_ text: String) -> Bool {
        guard let origin = Origin(parsing: text) else { return false }
        return self.matches(origin)
    }

    public var description: String {
        "\(self.scheme)://\(self.wildcard ? "*" : "")\(self.host)\(self.port.map { ":\($0)" } ?? "")"
    }
}

// MARK: - failed handshakes per IP

/// Failed handshakes (missing or invalid token) per IP: a token bucket per IP (key as for the
/// admission limits). `check` runs before the token is verified, so once an IP has used its burst
/// its junk tokens cost no signature check (429 with Retry-After instead); a valid handshake takes
/// nothing. Bounded: at most `maxTrackedIPs` entries; entries whose bucket is full again are swept
/// (amortized over insertions, and when full), and when still full an arbitrary entry makes room.
final class FailedHandshakes: @unchecked Sendable {
    private let rate: Double
    private let burst: Double
    private let limit: Int
    private let lock = NIOLock()
    private var buckets: [IPKey: TokenBucket] = [:]
    private var insertsSinceSweep = 0
    private var lastSweep: NIODeadline?

    init(policy: PolicyConfiguration) {
        self.rate = policy.maxFailedHandshakesPerIPRate
        self.burst = Double(policy.maxFailedHandshakesPerIPBurst)
        self.limit = policy.maxTrackedIPs
    }

    var enabled: Bool { self.rate > 0 }
    var trackedIPs: Int { self.lock.withLock { self.buckets.count } }

    /// nil: `ip` may try a handshake; else the seconds it must wait (for Retry-After).
    func check(_ ip: IPKey?, now: NIODeadline) -> Int? {
        guard self.enabled, let ip else { return nil }
        return self.lock.withLock { () -> Int? in
            guard let bucket = self.buckets[ip] else { return nil }
            let wait = bucket.secondsUntil(1, now: now)
            return wait > 0 ? max(1, Int(wait.rounded(.up))) : nil
        }
    }

    /// Counts one failed handshake of `ip`.
    func recordFailure(_ ip: IPKey?, now: NIODeadline) {
        guard self.enabled, let ip else { return }
        self.lock.withLock {
            if var bucket = self.buckets[ip] {
                _ = bucket.take(1, now: now)
                self.buckets[ip] = bucket
                return
            }
            self.insertsSinceSweep += 1
            if self.insertsSinceSweep >= max(1024, self.buckets.count) { self.sweepLocked(now: now) }
            if self.buckets.count >= self.limit {
                if self.lastSweep.map({ now - $0 >= .milliseconds(100) }) ?? true { self.sweepLocked(now: now) }
                if self.buckets.count >= self.limit { self.buckets.remove(at: self.buckets.startIndex) }
            }
            var bucket = TokenBucket(rate: self.rate, capacity: self.burst, now: now)
            _ = bucket.take(1, now: now)
            self.buckets[ip] = bucket
        }
    }

    /// Drops every entry whose bucket is full again (the IP has not failed for a while).
    func sweep(now: NIODeadline) {
        self.lock.withLock { self.sweepLocked(now: now) }
    }

    private func sweepLocked(now: NIODeadline) {
        self.insertsSinceSweep = 0
        self.lastSweep = now
        self.buckets = self.buckets.filter { !$0.value.isFull(now: now) }
    }
}

// MARK: - trusted proxies

/// One `trusted_proxies` entry: an address or a CIDR range, IPv4 or IPv6. Addresses are compared as
/// 16 bytes, IPv4 as the IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), so a v4 peer reached over a
/// dual-stack socket matches a v4 entry.
public struct IPRange: Sendable, Equatable, CustomStringConvertible {
    let network: [UInt8]
    /// Leading bits that must match, in the 16-byte form (96 + n for IPv4 /n).
    let prefixLength: Int
    public let description: String

    public init?(_ text: String) {
        let trimmed = text.trimmingSpaces
        let parts = trimmed.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, let (bytes, v4) = Self.parseAddress(first) else { return nil }
        var length = 128
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.utf8.count <= 3, digits.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                  let n = Int(digits), n <= (v4 ? 32 : 128) else { return nil }
            length = v4 ? 96 + n : n
        }
        self.prefixLength = length
        self.network = Self.masked(bytes, length)
        self.description = trimmed
    }

    func contains(_ address: [UInt8]) -> Bool {
        address.count == 16 && Self.masked(address, self.prefixLength) == self.network
    }

    private static func masked(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<16 {
            let keep = max(0, min(8, length - 8 * i))
            out[i] &= keep == 8 ? 0xff : UInt8(truncatingIfNeeded: 0xff << (8 - keep))
        }
        return out
    }

    /// A textual IPv4 or IPv6 address as 16 bytes, and whether it was IPv4.
    static func parseAddress(_ text: Substring) -> ([UInt8], Bool)? {
        guard !text.isEmpty, text.utf8.count < 64 else { return nil }
        let string = String(text)
        var out = [UInt8](repeating: 0, count: 16)
        if !string.contains(":") {
            var a = in_addr()
            guard inet_pton(AF_INET, string, &a) == 1 else { return nil }
            out[10] = 0xff
            out[11] = 0xff
            withUnsafeBytes(of: &a) { for i in 0..<4 { out[12 + i] = $0[i] } }
            return (out, true)
        }
        var a6 = in6_addr()
        guard inet_pton(AF_INET6, string, &a6) == 1 else { return nil }
        withUnsafeBytes(of: &a6) { for i in 0..<16 { out[i] = $0[i] } }
        return (out, false)
    }

    /// A peer's address as 16 bytes (nil for a Unix socket).
    static func bytes(of address: SocketAddress) -> [UInt8]? {
        guard let ip = address.ipAddress else { return nil }
        return parseAddress(Substring(ip))?.0
    }

    /// One X-Forwarded-For / X-Real-IP entry: an address, possibly `[v6]`, `[v6]:port` or `v4:port`.
    /// Returns the bare address text and its bytes.
    static func parseForwarded(_ entry: Substring) -> (text: String, bytes: [UInt8])? {
        var s = Substring(String(entry).trimmingSpaces)
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            let rest = s[s.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { return nil }
            s = s[s.index(after: s.startIndex)..<close]
        } else if let colon = s.firstIndex(of: ":"), s[s.index(after: colon)...].firstIndex(of: ":") == nil {
            s = s[..<colon]  // v4:port (a single colon: not an IPv6 address)
        }
        guard let (bytes, _) = parseAddress(s) else { return nil }
        return (String(s), bytes)
    }
}
