// Tests of the policy settings (Policies.swift), failed handshakes, cookie origins and trusted proxies.
// TokenBucket/InboundLimiter, Admission and Origins tests are in the files mirroring their sources.

import NIOCore
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

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
