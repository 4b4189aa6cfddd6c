// Tests of Sources/WavelaneEngine/RateLimits.swift (moved from PoliciesTests.swift).

import NIOCore
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

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
