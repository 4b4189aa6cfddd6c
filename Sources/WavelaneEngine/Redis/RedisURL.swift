// Where the Redis server is and how to log in: parsed from `redis://[user:password@]host:port/db`.

/// Every failure of the Redis client. `kind` is for code, `message` for people.
public struct RedisError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The URL could not be parsed.
        case invalidURL
        /// `rediss://` (TLS) is recognised but not implemented yet.
        case tlsUnsupported
        /// The TCP connection could not be established (refused, unreachable, timed out).
        case connectionFailed
        /// A command was issued while no connection is up (reconnecting clients fail fast).
        case notConnected
        /// The connection closed (or was closed) before the reply arrived.
        case connectionClosed
        /// AUTH was refused (wrong password, unknown user) or the server requires a password.
        case authenticationFailed
        /// SELECT was refused (database index out of range).
        case selectFailed
        /// The server sent bytes that are not valid RESP, or a reply of an unexpected type.
        case protocolError
        /// The server answered with an error reply (`-ERR ...`), for helpers that expect success.
        case serverError
        /// Too many commands are waiting for replies on this connection.
        case tooManyPending
        /// No reply within the command timeout (the connection is closed: replies are ordered).
        case timeout
        /// The client was closed by the application.
        case closed
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "redis: \(self.message)" }
}

public struct RedisURL: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int
    /// `rediss://`. Parsed, but connecting fails with `.tlsUnsupported` for now.
    public var tls: Bool

    public static let defaultPort = 6379

    public init(host: String = "127.0.0.1", port: Int = RedisURL.defaultPort, username: String? = nil, password: String? = nil, database: Int = 0, tls: Bool = false) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Parses `redis://[[user]:password@]host[:port][/db][?db=N]` (also `rediss://`, IPv6 `[::1]`).
    /// User and password are percent-decoded. `redis://:secret@h` gives a password only (classic
    /// AUTH); `redis://name:secret@h` gives an ACL user; other query parameters are ignored.
    public init(parsing text: String) throws(RedisError) {
        func bad(_ why: String) -> RedisError { RedisError(.invalidURL, "invalid Redis URL: \(why)") }
        var rest: Substring
        if text.hasPrefix("redis://") {
            self.tls = false
            rest = text.dropFirst("redis://".count)
        } else if text.hasPrefix("rediss://") {
            self.tls = true
            rest = text.dropFirst("rediss://".count)
        } else {
            throw bad("expected redis:// or rediss://")
        }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        self.username = nil
        self.password = nil
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                let user = userinfo[..<colon]
                let pass = userinfo[userinfo.index(after: colon)...]
                guard let u = Self.percentDecode(user), let p = Self.percentDecode(pass) else { throw bad("bad percent-encoding in user info") }
                self.username = u.isEmpty ? nil : u
                self.password = p
            } else {
                guard let u = Self.percentDecode(userinfo) else { throw bad("bad percent-encoding in user info") }
                self.username = u.isEmpty ? nil : u
            }
        }
        // host[:port], host may be [v6]
        var hostPart = rest
        var portPart: Substring? = nil
        if hostPart.hasPrefix("[") {
            guard let close = hostPart.firstIndex(of: "]") else { throw bad("unterminated [IPv6] host") }
            let after = hostPart[hostPart.index(after: close)...]
            if after.hasPrefix(":") { portPart = after.dropFirst() } else if !after.isEmpty { throw bad("junk after [IPv6] host") }
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
        } else if let colon = hostPart.lastIndex(of: ":") {
            portPart = hostPart[hostPart.index(after: colon)...]
            hostPart = hostPart[..<colon]
        }
        self.host = hostPart.isEmpty ? "127.0.0.1" : String(hostPart)
        if let portPart {
            guard let p = Int(portPart), (1...65535).contains(p) else { throw bad("port \"\(portPart)\" is not in 1...65535") }
            self.port = p
        } else {
            self.port = Self.defaultPort
        }
        self.database = 0
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else { throw bad("database \"\(path)\" is not a non-negative integer") }
            self.database = db
        }
        for item in query.split(separator: "&") where item.hasPrefix("db=") {
            guard let db = Int(item.dropFirst(3)), db >= 0 else { throw bad("db query parameter is not a non-negative integer") }
            self.database = db
        }
    }

    /// Fails for URLs this client cannot serve yet (TLS).
    public func checkSupported() throws(RedisError) {
        if self.tls {
            throw RedisError(.tlsUnsupported, "rediss:// (TLS) is not supported yet; use redis:// (e.g. through a local TLS tunnel such as stunnel)")
        }
    }

    /// The URL with the password masked, for logs.
    public var description: String {
        var s = self.tls ? "rediss://" : "redis://"
        if self.username != nil || self.password != nil {
            s += self.username ?? ""
            if self.password != nil { s += ":***" }
            s += "@"
        }
        s += self.host.contains(":") ? "[\(self.host)]" : self.host
        s += ":\(self.port)/\(self.database)"
        return s
    }

    private static func percentDecode(_ s: Substring) -> String? {
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%") {
                guard it.count >= 2, let hi = hex(it.popFirst()!), let lo = hex(it.popFirst()!) else { return nil }
                out.append(hi << 4 | lo)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
