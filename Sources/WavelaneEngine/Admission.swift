// Admission: new and concurrent connections per IP and per user (issue #4).

import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
