import NIOCore
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

/// A made-up monotonic clock: `t(1.5)` is 1.5 s after an arbitrary origin.
private func t(_ seconds: Double) -> NIODeadline {
    .uptimeNanoseconds(1_000_000_000_000 + UInt64(seconds * 1e9))
}

private func policies(_ json: String) throws -> PolicyConfiguration {
    try EngineConfiguration(json: JSONParser.parse(json)).policies
}

private func policyError(_ json: String) -> ConfigurationError? {
    do {
        _ = try EngineConfiguration(json: JSONParser.parse(json))
        return nil
    } catch let error as ConfigurationError {
        return error
    } catch {
        Issue.record("unexpected \(error)")
        return nil
    }
}

extension Result where Success == AdmissionTicket, Failure == Admission.Refusal {
    var refusal: Admission.Refusal? {
        if case .failure(let r) = self { return r }
        return nil
    }
}

private func ip(_ text: String) throws -> IPKey {
    try #require(IPKey(try SocketAddress(ipAddress: text, port: 40000)))
}

@Suite("TokenBucket")
struct TokenBucketTests {
    @Test func startsFullAndRefillsAtTheRate() {
        var b = TokenBucket(rate: 2, capacity: 4, now: t(0))
        for _ in 0..<4 { let v = b.take(now: t(0)); #expect(v) }
        do { let v = !b.take(now: t(0)); #expect(v) }
        do { let v = !b.take(now: t(0.4)); #expect(v) }          // 0.8 tokens
        do { let v = b.take(now: t(0.5)); #expect(v) }           // 1.0
        do { let v = !b.take(now: t(0.5)); #expect(v) }
        #expect(b.secondsUntil(1, now: t(0.5)) == 0.5)
        #expect(!b.isFull(now: t(2.4)))
        #expect(b.isFull(now: t(2.5)))
        // Never above capacity, however long it rests.
        for _ in 0..<4 { let v = b.take(now: t(1000)); #expect(v) }
        do { let v = !b.take(now: t(1000)); #expect(v) }
    }

    @Test func clockGoingBackwardsChangesNothing() {
        var b = TokenBucket(rate: 1, capacity: 1, now: t(10))
        do { let v = b.take(now: t(10)); #expect(v) }
        do { let v = !b.take(now: t(5)); #expect(v) }
        do { let v = !b.take(now: t(10.5)); #expect(v) }
        do { let v = b.take(now: t(11)); #expect(v) }
    }

    @Test func costAboveCapacityPassesOnlyFromAFullBucket() {
        var b = TokenBucket(rate: 100, capacity: 100, now: t(0))
        do { let v = b.take(250, now: t(0)); #expect(v) }        // full: passes, leaves a debt of 150
        #expect(b.tokens == -150)
        do { let v = !b.take(1, now: t(1.0)); #expect(v) }       // -50
        do { let v = b.take(1, now: t(1.51)); #expect(v) }       // 1.0
        do { let v = !b.take(250, now: t(2)); #expect(v) }       // 50 < 100: not full
        do { let v = b.take(250, now: t(3)); #expect(v) }        // full again
        #expect(b.secondsUntil(250, now: t(3)) > 0)
    }
}

@Suite("InboundLimiter")
struct InboundLimiterTests {
    @Test func offWhenNotConfigured() throws {
        #expect(InboundLimiter(PolicyConfiguration(), now: t(0)) == nil)
        #expect(InboundLimiter(try policies(#"{"rate_limit_messages":0,"rate_limit_bytes":0}"#), now: t(0)) == nil)
    }

    @Test func messageBudgetRepliesAtMostOncePerSecondThenCloses() throws {
        var p = PolicyConfiguration()
        p.rateLimitMessages = 10
        p.rateLimitBurstMessages = 5
        p.rateLimitStrikes = 4
        var l = try #require(InboundLimiter(p, now: t(0)))
        for _ in 0..<5 { let v = l.admit(size: 10, now: t(0)); #expect(v == .pass) }
        do { let v = l.admit(size: 10, now: t(0)) == .refuse(reply: true); #expect(v) }      // strike 1
        do { let v = l.admit(size: 10, now: t(0.01)) == .refuse(reply: false); #expect(v) }  // ~2: replies throttled to 1/s
        do { let v = l.admit(size: 10, now: t(0.15)) == .pass; #expect(v) }                  // refilled 1.5 (10/s)
        do { let v = l.admit(size: 10, now: t(0.15)) == .refuse(reply: false); #expect(v) }   // ~2.85
        do { let v = l.admit(size: 10, now: t(0.15)) == .refuse(reply: false); #expect(v) }   // ~3.85
        do { let v = l.admit(size: 10, now: t(0.15)) == .close; #expect(v) }                  // ~4.85 >= 4
    }

    @Test func strikesLeakAtOnePerSecond() throws {
        var p = PolicyConfiguration()
        p.rateLimitMessages = 1
        p.rateLimitStrikes = 3
        var l = try #require(InboundLimiter(p, now: t(0)))
        var now = 0.0
        // One message over the budget every 1.2 s: strikes never accumulate to 3.
        for _ in 0..<20 {
            do { let v = l.admit(size: 1, now: t(now)) == .pass; #expect(v) }
            if case .close = l.admit(size: 1, now: t(now)) { Issue.record("closed at \(now)") }
            now += 1.2
        }
        // Zero strikes: only drops, never a close.
        p.rateLimitStrikes = 0
        var forgiving = try #require(InboundLimiter(p, now: t(0)))
        for i in 0..<1000 { let v = forgiving.admit(size: 1, now: t(0)); #expect(v != .close, "message \(i)") }
    }

    @Test func byteBudgetAndRefusedMessagesTakeNothing() throws {
        var p = PolicyConfiguration()
        p.rateLimitMessages = 100
        p.rateLimitBytes = 1000
        p.rateLimitBurstBytes = 1000
        p.rateLimitStrikes = 0
        var l = try #require(InboundLimiter(p, now: t(0)))
        do { let v = l.admit(size: 600, now: t(0)) == .pass; #expect(v) }
        do { let v = l.admit(size: 600, now: t(0)) == .refuse(reply: true); #expect(v) }   // 400 bytes left
        do { let v = l.admit(size: 400, now: t(0)) == .pass; #expect(v) }                   // the refusal took nothing
        do { let v = l.admit(size: 1, now: t(0)) != .pass; #expect(v) }
        do { let v = l.admit(size: 500, now: t(0.5)) == .pass; #expect(v) }
        // A message bigger than the burst passes from a full bucket only.
        do { let v = l.admit(size: 5000, now: t(2)) == .pass; #expect(v) }
        do { let v = l.admit(size: 1, now: t(3)) != .pass; #expect(v) }
    }
}

@Suite("Admission")
struct AdmissionTests {
    @Test func ipKeys() throws {
        #expect(try ip("10.1.2.3") == .v4(0x0A01_0203))
        #expect(try ip("::ffff:10.1.2.3") == .v4(0x0A01_0203))
        // IPv6 counts by /64.
        #expect(try ip("2001:db8:1:2::1") == ip("2001:db8:1:2:ffff::9"))
        #expect(try ip("2001:db8:1:2::1") != ip("2001:db8:1:3::1"))
        #expect(try ip("2001:db8:1:2::1").description == "2001:db8:1:2::/64")
        #expect(try ip("192.168.0.255").description == "192.168.0.255")
        #expect(IPKey(try SocketAddress(unixDomainSocketPath: "/tmp/x.sock")) == nil)
        #expect(IPKey(nil) == nil)
    }

    @Test func concurrentPerIPAndRelease() throws {
        var p = PolicyConfiguration()
        p.maxConnectionsPerIP = 2
        let a = Admission(policy: p)
        let one = try ip("10.0.0.1")
        let t1 = try a.admit(ip: one, now: t(0)).get()
        let t2 = try a.admit(ip: one, now: t(0)).get()
        #expect(a.admit(ip: one, now: t(0)).refusal == .ipConcurrency)
        _ = try a.admit(ip: ip("10.0.0.2"), now: t(0)).get()
        #expect(a.connections(ip: one) == 2)
        t1.release(now: t(0))
        t1.release(now: t(0))   // idempotent
        #expect(a.connections(ip: one) == 1)
        #expect((try? a.admit(ip: one, now: t(0)).get()) != nil)
        t2.release(now: t(0))
        #expect(a.connections(ip: one) == 1)
    }

    @Test func newConnectionRatePerIP() throws {
        var p = PolicyConfiguration()
        p.maxConnectionsPerIPRate = 2
        p.maxConnectionsPerIPRateBurst = 3
        let a = Admission(policy: p)
        let one = try ip("10.0.0.1")
        for _ in 0..<3 { try a.admit(ip: one, now: t(0)).get().release(now: t(0)) }
        #expect(a.admit(ip: one, now: t(0)).refusal == .rate(retryAfter: 1))
        #expect(a.admit(ip: one, now: t(0.2)).refusal == .rate(retryAfter: 1))
        #expect((try? a.admit(ip: one, now: t(0.5)).get()) != nil)
        // Another IP has its own bucket.
        #expect((try? a.admit(ip: ip("10.0.0.2"), now: t(0)).get()) != nil)
        // Slow rate: Retry-After rounds up to whole seconds.
        p.maxConnectionsPerIPRate = 0.1
        p.maxConnectionsPerIPRateBurst = 1
        let slow = Admission(policy: p)
        _ = try slow.admit(ip: one, now: t(0)).get()
        #expect(slow.admit(ip: one, now: t(1.5)).refusal == .rate(retryAfter: 9))
    }

    @Test func lazyCleanupDropsIdleEntriesWithFullBuckets() throws {
        var p = PolicyConfiguration()
        p.maxConnectionsPerIPRate = 1
        p.maxConnectionsPerIP = 10
        let a = Admission(policy: p)
        let ticket = try a.admit(ip: ip("10.0.0.1"), now: t(0)).get()
        _ = try a.admit(ip: ip("10.0.0.2"), now: t(0)).get()   // stays connected
        ticket.release(now: t(0))
        // Released, but its bucket is not full yet: the entry stays (it remembers the rate).
        #expect(a.trackedIPs == 2)
        a.sweep(now: t(0.5))
        #expect(a.trackedIPs == 2)
        a.sweep(now: t(1))
        #expect(a.trackedIPs == 1)     // 10.0.0.2 still has a connection
        // Concurrency only (no bucket): the entry goes at release.
        var q = PolicyConfiguration()
        q.maxConnectionsPerIP = 1
        let b = Admission(policy: q)
        let tb = try b.admit(ip: ip("10.0.0.1"), now: t(0)).get()
        #expect(b.trackedIPs == 1)
        tb.release(now: t(0))
        #expect(b.trackedIPs == 0)
    }

    @Test func tableCapRefusesNewIPsInsteadOfGrowing() throws {
        var p = PolicyConfiguration()
        p.maxConnectionsPerIP = 5
        p.maxTrackedIPs = 100
        let a = Admission(policy: p)
        var tickets: [AdmissionTicket] = []
        for i in 0..<100 { tickets.append(try a.admit(ip: .v4(UInt32(i)), now: t(0)).get()) }
        #expect(a.admit(ip: .v4(1000), now: t(0)).refusal == .tableFull)
        #expect(a.trackedIPs == 100)
        // Known IPs are still served.
        #expect((try? a.admit(ip: .v4(7), now: t(0)).get()) != nil)
        // Once some leave, new IPs fit again.
        tickets[0].release(now: t(0))
        #expect((try? a.admit(ip: .v4(1000), now: t(0)).get()) != nil)
        #expect(a.trackedIPs == 100)

        // With a rate limit, released entries linger until their bucket is full; the cap sweeps them.
        var r = PolicyConfiguration()
        r.maxConnectionsPerIPRate = 10
        r.maxTrackedIPs = 50
        let b = Admission(policy: r)
        for i in 0..<50 { try b.admit(ip: .v4(UInt32(i)), now: t(0)).get().release(now: t(0)) }
        #expect(b.trackedIPs == 50)
        #expect(b.admit(ip: .v4(999), now: t(0.01)).refusal == .tableFull)
        #expect((try? b.admit(ip: .v4(999), now: t(1)).get()) != nil)
        #expect(b.trackedIPs == 1)
    }

    @Test func manyIPsStayBounded() throws {
        var p = PolicyConfiguration()
        p.maxConnectionsPerIPRate = 1000
        p.maxTrackedIPs = 100_000
        let a = Admission(policy: p)
        // 300k one-shot clients, 1 ms apart: amortized sweeps keep the table small.
        for i in 0..<300_000 {
            try a.admit(ip: .v4(UInt32(i)), now: t(Double(i) / 1000)).get().release(now: t(Double(i) / 1000))
        }
        #expect(a.trackedIPs <= 2048)
    }

    @Test func perUser() throws {
        var p = PolicyConfiguration()
        p.maxConnectionsPerUser = 2
        let a = Admission(policy: p)
        let tickets = try (0..<3).map { _ in try a.admit(ip: ip("10.0.0.1"), now: t(0)).get() }
        #expect(a.admit(user: "alice", ticket: tickets[0]) == nil)
        #expect(a.admit(user: "alice", ticket: tickets[1]) == nil)
        #expect(a.admit(user: "alice", ticket: tickets[2]) == .userConcurrency)
        #expect(a.admit(user: "bob", ticket: tickets[2]) == nil)
        #expect(a.connections(user: "alice") == 2)
        tickets[0].release(now: t(0))
        #expect(a.connections(user: "alice") == 1)
        tickets[1].release(now: t(0))
        tickets[2].release(now: t(0))
        #expect(a.trackedUsers == 0)
    }
}

@Suite("Origins and subprotocols")
struct OriginTests {
    private func allowed(_ patterns: [String], _ origin: String?) throws -> Bool {
        var p = PolicyConfiguration()
        p.allowedOrigins = try patterns.map { try #require(OriginPattern($0)) }
        return p.checkOrigin(origin.map { [$0] } ?? []) == nil
    }

    @Test func exact() throws {
        let list = ["https://app.example.com"]
        #expect(try allowed(list, "https://app.example.com"))
        #expect(try allowed(list, "https://APP.Example.COM"))
        #expect(try allowed(list, "HTTPS://app.example.com"))
        #expect(try allowed(list, "https://app.example.com:443"))   // the default port
        #expect(try !allowed(list, "http://app.example.com"))       // scheme
        #expect(try !allowed(list, "https://app.example.com:8443")) // port
        #expect(try !allowed(list, "https://evil.app.example.com"))
        #expect(try !allowed(list, "https://app.example.com.evil.org"))
        #expect(try !allowed(list, "https://example.com"))
        #expect(try allowed(list, nil))                              // non-browser client
    }

    @Test func ports() throws {
        let list = ["http://localhost:3000", "https://a.example:8443"]
        #expect(try allowed(list, "http://localhost:3000"))
        #expect(try !allowed(list, "http://localhost"))
        #expect(try !allowed(list, "http://localhost:3001"))
        #expect(try allowed(list, "https://a.example:8443"))
        #expect(try !allowed(list, "https://a.example"))
        #expect(try allowed(["http://example.com:80"], "http://example.com"))
    }

    @Test func wildcard() throws {
        let list = ["https://*.example.com"]
        #expect(try allowed(list, "https://app.example.com"))
        #expect(try allowed(list, "https://a.b.Example.com"))
        #expect(try !allowed(list, "https://example.com"))           // not the apex
        #expect(try !allowed(list, "https://badexample.com"))
        #expect(try !allowed(list, "https://app.example.com.evil.org"))
        #expect(try !allowed(list, "http://app.example.com"))
        #expect(try !allowed(list, "https://app.example.com:444"))
        #expect(try allowed(list + ["https://example.com"], "https://example.com"))
    }

    @Test func malformedOriginsAreRefused() throws {
        let list = ["https://app.example.com", "https://*.example.com"]
        for bad in ["null", "", "app.example.com", "https://", "https://app.example.com/", "https://app.example.com/x",
                    "https://user@app.example.com", "https://app.example.com:", "https://app.example.com:99999",
                    "https://app.example.com:0", "https://app..example.com", "https://.example.com",
                    "https://*.example.com", "https://app.example.com?x", "https://app example.com", "1https://a.example.com",
                    "https://[::1", "https://app.example.com#f"] {
            #expect(try !allowed(list, bad), "\(bad)")
        }
        // Two Origin headers are refused.
        var p = PolicyConfiguration()
        p.allowedOrigins = [try #require(OriginPattern("https://app.example.com"))]
        #expect(p.checkOrigin(["https://app.example.com", "https://app.example.com"]) != nil)
        #expect(try allowed(["http://[::1]:8080"], "http://[::1]:8080"))
    }

    @Test func requireOrigin() throws {
        var p = PolicyConfiguration()
        p.requireOrigin = true
        #expect(p.checkOrigin([]) != nil)
        #expect(p.checkOrigin(["https://anything.example"]) == nil)  // no allowlist: any origin
    }

    @Test func patternsInConfiguration() throws {
        let p = try policies(#"{"allowed_origins":["https://app.example.com","https://*.Example.org:8443"],"require_origin":true}"#)
        #expect(p.allowedOrigins.map(\.description) == ["https://app.example.com:443", "https://*.example.org:8443"])
        #expect(p.requireOrigin)
        for bad in ["example.com", "https://*", "https://a.*.example.com", "https://x.example.com/path", "*"] {
            #expect(policyError(#"{"allowed_origins":["\#(bad)"]}"#)?.key == "allowed_origins", "\(bad)")
        }
    }

    @Test func subprotocolSelection() {
        var p = PolicyConfiguration()
        p.subprotocols = ["v2.chat", "v1.chat"]
        #expect(p.selectSubprotocol([]) == .none)
        #expect(p.selectSubprotocol(["v1.chat"]) == .chosen("v1.chat"))
        // The client's order decides.
        #expect(p.selectSubprotocol(["v1.chat, v2.chat"]) == .chosen("v1.chat"))
        #expect(p.selectSubprotocol(["x, v2.chat,v1.chat"]) == .chosen("v2.chat"))
        #expect(p.selectSubprotocol(["x", "  v1.chat "]) == .chosen("v1.chat"))
        #expect(p.selectSubprotocol(["V1.CHAT"]) == .none)  // case-sensitive tokens
        #expect(p.selectSubprotocol(["x, y"]) == .none)
        p.subprotocolRequired = true
        #expect(p.selectSubprotocol(["x, y"]) == .refused)
        #expect(p.selectSubprotocol([]) == .refused)
        #expect(p.selectSubprotocol([",,v2.chat"]) == .chosen("v2.chat"))
        // No subprotocols configured: offers are ignored.
        #expect(PolicyConfiguration().selectSubprotocol(["v1.chat"]) == .none)
    }
}

@Suite("Policy configuration")
struct PolicyConfigurationTests {
    @Test func defaults() throws {
        let p = try policies("{}")
        #expect(p.rateLimitMessages == 0 && p.rateLimitBytes == 0 && p.rateLimitStrikes == 10)
        #expect(p.maxConnectionsPerIPRate == 0 && p.maxConnectionsPerIP == 0 && p.maxConnectionsPerUser == 0)
        #expect(p.maxTrackedIPs == 100_000)
        #expect(p.allowedOrigins.isEmpty && !p.requireOrigin && p.subprotocols.isEmpty && !p.subprotocolRequired)
        #expect(!p.inboundLimited && !p.admissionEnabled)
    }

    @Test func values() throws {
        let p = try policies(#"""
            {"rate_limit_messages":2.5,"rate_limit_burst_messages":7,"rate_limit_bytes":1000,"rate_limit_burst_bytes":5000,
             "rate_limit_strikes":3,"max_connections_per_ip_rate":0.5,"max_connections_per_ip_rate_burst":4,
             "max_connections_per_ip":20,"max_connections_per_user":3,"max_tracked_ips":5000,
             "subprotocols":["graphql-ws","v1.json"],"subprotocol_required":true}
            """#)
        #expect(p.rateLimitMessages == 2.5 && p.effectiveBurstMessages == 7)
        #expect(p.rateLimitBytes == 1000 && p.effectiveBurstBytes == 5000 && p.rateLimitStrikes == 3)
        #expect(p.maxConnectionsPerIPRate == 0.5 && p.effectiveConnectionBurst == 4)
        #expect(p.maxConnectionsPerIP == 20 && p.maxConnectionsPerUser == 3 && p.maxTrackedIPs == 5000)
        #expect(p.subprotocols == ["graphql-ws", "v1.json"] && p.subprotocolRequired)
        // Derived bursts: one second's worth.
        let q = try policies(#"{"rate_limit_messages":2.5,"rate_limit_bytes":100,"max_connections_per_ip_rate":0.2}"#)
        #expect(q.effectiveBurstMessages == 3 && q.effectiveBurstBytes == 100 && q.effectiveConnectionBurst == 1)
    }

    @Test func errorsNameTheKey() {
        let cases: [(String, String)] = [
            (#"{"rate_limit_messages":-1}"#, "rate_limit_messages"),
            (#"{"rate_limit_messages":true}"#, "rate_limit_messages"),
            (#"{"rate_limit_messages":"5"}"#, "rate_limit_messages"),
            (#"{"rate_limit_bytes":1.5}"#, "rate_limit_bytes"),
            (#"{"rate_limit_strikes":-1}"#, "rate_limit_strikes"),
            (#"{"rate_limit_burst_messages":5}"#, "rate_limit_burst_messages"),
            (#"{"rate_limit_burst_bytes":5}"#, "rate_limit_burst_bytes"),
            (#"{"max_connections_per_ip_rate_burst":5}"#, "max_connections_per_ip_rate_burst"),
            (#"{"max_connections_per_ip":-2}"#, "max_connections_per_ip"),
            (#"{"max_tracked_ips":0}"#, "max_tracked_ips"),
            (#"{"allowed_origins":"https://a.example"}"#, "allowed_origins"),
            (#"{"require_origin":1}"#, "require_origin"),
            (#"{"subprotocols":["has space"]}"#, "subprotocols"),
            (#"{"subprotocols":[""]}"#, "subprotocols"),
            (#"{"subprotocol_required":true}"#, "subprotocol_required"),
            (#"{"rate_limit_mesages":1}"#, "rate_limit_mesages"),
        ]
        for (json, key) in cases {
            #expect(policyError(json)?.key == key, "\(json)")
        }
    }
}

@Suite("Failed handshakes, cookie origins, trusted proxies")
struct TokenPolicyTests {
    @Test func failedHandshakeDefaultsAndKeys() throws {
        let d = try policies("{}")
        #expect(d.maxFailedHandshakesPerIPRate == 5 && d.maxFailedHandshakesPerIPBurst == 20 && d.trustedProxies.isEmpty)
        let p = try policies(#"{"max_failed_handshakes_per_ip_rate":0.5,"max_failed_handshakes_per_ip_burst":2,"trusted_proxies":["10.0.0.0/8","::1"]}"#)
        #expect(p.maxFailedHandshakesPerIPRate == 0.5 && p.maxFailedHandshakesPerIPBurst == 2)
        #expect(p.trustedProxies.map(\.description) == ["10.0.0.0/8", "::1"])
        for (json, key) in [
            (#"{"max_failed_handshakes_per_ip_rate":-1}"#, "max_failed_handshakes_per_ip_rate"),
            (#"{"max_failed_handshakes_per_ip_burst":0}"#, "max_failed_handshakes_per_ip_burst"),
            (#"{"trusted_proxies":["10.0.0.0/33"]}"#, "trusted_proxies"),
            (#"{"trusted_proxies":["example.com"]}"#, "trusted_proxies"),
            (#"{"trusted_proxies":"10.0.0.1"}"#, "trusted_proxies"),
        ] {
            #expect(policyError(json)?.key == key, "\(json)")
        }
    }

    @Test func failedHandshakesPerIP() throws {
        var policy = PolicyConfiguration()
        policy.maxFailedHandshakesPerIPRate = 1
        policy.maxFailedHandshakesPerIPBurst = 2
        let limiter = FailedHandshakes(policy: policy)
        let ip = IPKey.v4(0x0a00_0001), other = IPKey.v4(0x0a00_0002)
        #expect(limiter.check(ip, now: t(0)) == nil)
        limiter.recordFailure(ip, now: t(0))
        #expect(limiter.check(ip, now: t(0)) == nil)
        limiter.recordFailure(ip, now: t(0))
        #expect(limiter.check(ip, now: t(0)) == 1)  // burst used: wait a second
        #expect(limiter.check(other, now: t(0)) == nil)
        #expect(limiter.check(ip, now: t(1.01)) == nil)
        limiter.sweep(now: t(1.5))
        #expect(limiter.trackedIPs == 1)  // not full yet
        limiter.sweep(now: t(3))
        #expect(limiter.trackedIPs == 0)  // refilled: forgotten
        #expect(limiter.check(nil, now: t(3)) == nil)
    }

    @Test func failedHandshakeTableIsBounded() {
        var policy = PolicyConfiguration()
        policy.maxTrackedIPs = 100
        let limiter = FailedHandshakes(policy: policy)
        for i in 0..<10_000 { limiter.recordFailure(.v4(UInt32(i)), now: t(0)) }
        #expect(limiter.trackedIPs <= 100)
        var off = PolicyConfiguration()
        off.maxFailedHandshakesPerIPRate = 0
        let disabled = FailedHandshakes(policy: off)
        for _ in 0..<100 { disabled.recordFailure(.v4(1), now: t(0)) }
        #expect(disabled.check(.v4(1), now: t(0)) == nil && disabled.trackedIPs == 0)
    }

    @Test func cookieTokensOnlyFromAllowedOrigins() throws {
        let open = try policies("{}")
        #expect(!open.cookieTokenAllowed(["https://app.example"]) && !open.cookieTokenAllowed([]))
        let p = try policies(#"{"allowed_origins":["https://app.example"]}"#)
        #expect(p.cookieTokenAllowed(["https://app.example"]))
        #expect(p.cookieTokenAllowed(["https://APP.example:443"]))
        #expect(!p.cookieTokenAllowed(["https://evil.example"]))
        #expect(!p.cookieTokenAllowed([]))
        #expect(!p.cookieTokenAllowed(["null"]))
        #expect(!p.cookieTokenAllowed(["https://app.example", "https://app.example"]))
    }

    @Test func ipRanges() throws {
        func bytes(_ s: String) -> [UInt8] { IPRange.parseAddress(Substring(s))!.0 }
        let v4 = try #require(IPRange("10.1.0.0/16"))
        #expect(v4.contains(bytes("10.1.255.3")) && !v4.contains(bytes("10.2.0.1")))
        #expect(!v4.contains(bytes("::a01:1")))  // not the IPv4-mapped form
        #expect(IPRange("127.0.0.1")!.contains(bytes("127.0.0.1")) && !IPRange("127.0.0.1")!.contains(bytes("127.0.0.2")))
        let v6 = try #require(IPRange("fd00::/8"))
        #expect(v6.contains(bytes("fd12:3456::1")) && !v6.contains(bytes("fe80::1")))
        #expect(IPRange("0.0.0.0/0")!.contains(bytes("8.8.8.8")) && !IPRange("0.0.0.0/0")!.contains(bytes("2001:db8::1")))
        #expect(IPRange("::/0")!.contains(bytes("8.8.8.8")))
        #expect(IPRange("10.1.2.3/8")!.contains(bytes("10.200.0.0")))  // host bits are masked
        for bad in ["", "10.0.0.0/33", "::/129", "1.2.3.4/", "/8", "1.2.3", "10.0.0.0/8/8", "10.0.0.0/-1", "host.example", "1.2.3.4 /8"] {
            #expect(IPRange(bad) == nil, "\(bad)")
        }
    }

    @Test func clientAddress() throws {
        let peer = try SocketAddress(ipAddress: "127.0.0.1", port: 5555)
        let stranger = try SocketAddress(ipAddress: "192.0.2.1", port: 5555)
        let none = try policies("{}")
        #expect(none.clientAddress(peer: peer, forwardedFor: ["203.0.113.9"], realIP: []) == peer)
        let p = try policies(#"{"trusted_proxies":["127.0.0.1","10.0.0.0/8"]}"#)
        func client(_ from: SocketAddress, _ xff: [String], _ realIP: [String] = []) -> String? {
            p.clientAddress(peer: from, forwardedFor: xff, realIP: realIP)?.ipAddress
        }
        #expect(client(stranger, ["203.0.113.9"], ["203.0.113.8"]) == "192.0.2.1")  // untrusted peer: ignored
        #expect(client(peer, ["203.0.113.9"]) == "203.0.113.9")
        #expect(client(peer, ["1.1.1.1, 203.0.113.9", "10.0.0.5"]) == "203.0.113.9")  // rightmost untrusted
        #expect(client(peer, ["10.0.0.7, 10.0.0.5"]) == "10.0.0.7")  // all trusted: leftmost
        #expect(client(peer, ["203.0.113.9:4711"]) == "203.0.113.9")
        #expect(client(peer, ["[2001:db8::1]:4711"]) == "2001:db8::1")
        #expect(client(peer, ["2001:db8::2"]) == "2001:db8::2")
        #expect(client(peer, ["1.1.1.1, garbage, 10.0.0.5"]) == "127.0.0.1")  // unparseable hop: the peer
        #expect(client(peer, [], ["198.51.100.4"]) == "198.51.100.4")
        #expect(client(peer, [], ["198.51.100.4", "198.51.100.5"]) == "127.0.0.1")
        #expect(client(peer, []) == "127.0.0.1")
        #expect(p.clientAddress(peer: peer, forwardedFor: ["203.0.113.9"], realIP: [])?.port == 0)
    }
}
