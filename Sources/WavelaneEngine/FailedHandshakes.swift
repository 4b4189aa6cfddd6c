// Failed handshakes per IP, checked before a token is verified (issue #4).

import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
