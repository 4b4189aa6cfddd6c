// Origins: the `allowed_origins` allowlist (exact and `*.` wildcard subdomains).

import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
