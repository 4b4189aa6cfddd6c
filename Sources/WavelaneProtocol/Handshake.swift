import CWavelaneOpenSSL

/// The pure parts of the HTTP/1.1 upgrade (RFC 6455 §4.2): the accept key and where a token
/// can come from. The engine's upgrader calls these; nothing here touches a socket.
public enum Handshake {
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
    public static func acceptValue(forKey key: String) -> String {
        let input = Array((key + guid).utf8)
        var digest = [UInt8](repeating: 0, count: 20)
        input.withUnsafeBufferPointer { src in
            digest.withUnsafeMutableBufferPointer { dst in
                _ = SHA1(src.baseAddress, src.count, dst.baseAddress)
            }
        }
        return Base64.encode(digest)
    }

    /// A key is valid when it is base64 of exactly 16 bytes (RFC 6455 §4.2.1, item 5).
    public static func isValidKey(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
        return bytes[0..<22].allSatisfy { Base64.value(of: $0) != nil }
    }

    /// The token of an `Authorization: Bearer <token>` header value, if that is what it is.
    public static func bearerToken(fromAuthorization value: String) -> String? {
        let trimmed = value.drop { $0 == " " }
        guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
        let token = trimmed.dropFirst(7).drop { $0 == " " }
        let end = token.lastIndex { $0 != " " }
        guard let end else { return nil }
        return String(token[...end])
    }

    /// The value of cookie `name` in a `Cookie` header value (RFC 6265 §5.4 pairs "a=b; c=d").
    public static func cookie(named name: String, in header: String) -> String? {
        for pair in header.split(separator: ";") {
            let p = pair.drop { $0 == " " }
            guard let eq = p.firstIndex(of: "=") else { continue }
            if p[p.startIndex..<eq] == Substring(name) {
                var value = p[p.index(after: eq)...]
                while value.last == " " { value = value.dropLast() }
                if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
                return String(value)
            }
        }
        return nil
    }

    /// Splits a request target into its path and query.
    public static func splitTarget(_ uri: String) -> (path: Substring, query: Substring?) {
        if let q = uri.firstIndex(of: "?") {
            return (uri[uri.startIndex..<q], uri[uri.index(after: q)...])
        }
        return (uri[...], nil)
    }

    /// The query string for the application: every `&`-separated parameter except those named
    /// `tokenParameter` (nil: none removed), kept as sent (still percent-encoded), and at most
    /// `maxBytes` long — parameters that would go beyond are left out whole, never cut.
    public static func applicationQuery(_ query: Substring?, removing tokenParameter: String?, maxBytes: Int) -> String {
        guard let query, !query.isEmpty else { return "" }
        var out = ""
        for pair in query.split(separator: "&") {
            if let tokenParameter {
                let name = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
                if percentDecode(name) == tokenParameter { continue }
            }
            let extra = pair.utf8.count + (out.isEmpty ? 0 : 1)
            guard out.utf8.count + extra <= maxBytes else { break }
            if !out.isEmpty { out.append("&") }
            out.append(contentsOf: pair)
        }
        return out
    }

    /// The percent-decoded value of query parameter `name` (the first occurrence).
    public static func queryParameter(named name: String, in query: Substring) -> String? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, percentDecode(parts[0]) == name else { continue }
            return percentDecode(parts[1])
        }
        return nil
    }

    static func percentDecode(_ s: Substring) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let b = it.next() {
            if b == UInt8(ascii: "%") {
                guard let h = it.next(), let l = it.next(), let hv = hexValue(h), let lv = hexValue(l) else { return nil }
                out.append(hv << 4 | lv)
            } else if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else {
                out.append(b)
            }
        }
        guard UTF8Validator.isValid(bytes: out) else { return nil }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
