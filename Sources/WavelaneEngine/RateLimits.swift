// Inbound rate limits: a token bucket and the per-connection limiter built on it (issue #4).

import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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

/// An `InboundLimiter` on the heap, made only for connections that send something.
final class InboundLimiterBox {
    var limiter: InboundLimiter

    init(_ limiter: InboundLimiter) {
        self.limiter = limiter
    }
}
