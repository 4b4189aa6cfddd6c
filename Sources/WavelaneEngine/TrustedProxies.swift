// Trusted proxies: whose X-Forwarded-For / X-Real-IP is believed (`trusted_proxies`).

import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
