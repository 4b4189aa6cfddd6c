// Tests of Sources/WavelaneEngine/Admission.swift (moved from PoliciesTests.swift).

import NIOCore
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

extension Result where Success == AdmissionTicket, Failure == Admission.Refusal {
    var refusal: Admission.Refusal? {
        if case .failure(let r) = self { return r }
        return nil
    }
}

private func ip(_ text: String) throws -> IPKey {
    try #require(IPKey(try SocketAddress(ipAddress: text, port: 40000)))
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
