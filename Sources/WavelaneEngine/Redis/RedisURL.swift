// Where the Redis server is and how to log in: parsed from `redis://[user:password@]host:port/db`
// (or `rediss://...?ssl_ca_certs=...` for TLS).

/// Every failure of the Redis client. `kind` is for code, `message` for people.
public struct RedisError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The URL could not be parsed.
        case invalidURL
        /// The TLS settings of a `rediss://` URL cannot be used (unreadable or invalid certificate,
        /// key or CA file). Not transient: reconnecting clients stop retrying.
        case tlsConfiguration
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
    /// `rediss://`: the connection runs over TLS, set up by `tlsOptions`.
    public var tls: Bool
    /// How `rediss://` connections verify the server and authenticate the client (ignored for `redis://`).
    public var tlsOptions: TLSOptions

    public static let defaultPort = 6379

    /// The TLS settings of a `rediss://` URL, from its query parameters (redis-py's names). The
    /// default verifies the server's certificate chain against the system trust store and its
    /// name (the URL's host; an IP literal host is matched against the certificate's IP SANs).
    public struct TLSOptions: Equatable, Sendable {
        /// `ssl_ca_certs=/path/ca.pem`: trust the CA certificates in this PEM file instead of the
        /// system trust store.
        public var caCertificatesPath: String?
        /// `ssl_certfile=/path/cert.pem`: the client certificate chain, for mutual TLS.
        public var certificatePath: String?
        /// `ssl_keyfile=/path/key.pem`: the client certificate's private key (PEM, unencrypted);
        /// when absent, the key is read from `certificatePath`.
        public var keyPath: String?
        /// `ssl_cert_reqs=none` makes this false: no verification of the server at all (self-signed
        /// development setups only). `required` and `optional` (the default) verify.
        public var verifyCertificate: Bool
        /// `ssl_check_hostname=false` makes this false: the chain is verified, the name is not.
        public var checkHostname: Bool

        public init(
            caCertificatesPath: String? = nil, certificatePath: String? = nil, keyPath: String? = nil,
            verifyCertificate: Bool = true, checkHostname: Bool = true
        ) {
            self.caCertificatesPath = caCertificatesPath
            self.certificatePath = certificatePath
            self.keyPath = keyPath
            self.verifyCertificate = verifyCertificate
            self.checkHostname = checkHostname
        }
    }

    public init(
        host: String = "127.0.0.1", port: Int = RedisURL.defaultPort, username: String? = nil, password: String? = nil, database: Int = 0,
        tls: Bool = false, tlsOptions: TLSOptions = .init()
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.tlsOptions = tlsOptions
    }

    /// Parses `redis://[[user]:password@]host[:port][/db][?db=N]` (also `rediss://`, IPv6 `[::1]`).
    /// User and password are percent-decoded. `redis://:secret@h` gives a password only (classic
    /// AUTH); `redis://name:secret@h` gives an ACL user. The query may also hold the TLS options
    /// (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`, `ssl_check_hostname`; values
    /// percent-decoded; see `TLSOptions`); other query parameters are ignored.
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
        self.tlsOptions = TLSOptions()
        for item in query.split(separator: "&") {
            guard let eq = item.firstIndex(of: "=") else { continue }
            let name = item[..<eq]
            let raw = item[item.index(after: eq)...]
            func value() throws(RedisError) -> String {
                guard let v = Self.percentDecode(raw) else { throw bad("bad percent-encoding in the \(name) query parameter") }
                return v
            }
            func path() throws(RedisError) -> String {
                let v = try value()
                guard !v.isEmpty else { throw bad("the \(name) query parameter needs a file path") }
                return v
            }
            switch name {
            case "db":
                guard let db = Int(raw), db >= 0 else { throw bad("db query parameter is not a non-negative integer") }
                self.database = db
            case "ssl_ca_certs":
                self.tlsOptions.caCertificatesPath = try path()
            case "ssl_certfile":
                self.tlsOptions.certificatePath = try path()
            case "ssl_keyfile":
                self.tlsOptions.keyPath = try path()
            case "ssl_cert_reqs":
                switch try value().lowercased() {
                case "none": self.tlsOptions.verifyCertificate = false
                case "optional", "required": self.tlsOptions.verifyCertificate = true
                case let other: throw bad("ssl_cert_reqs is \"\(other)\", expected none, optional or required")
                }
            case "ssl_check_hostname":
                switch try value().lowercased() {
                case "true", "1", "yes", "on": self.tlsOptions.checkHostname = true
                case "false", "0", "no", "off": self.tlsOptions.checkHostname = false
                case let other: throw bad("ssl_check_hostname is \"\(other)\", expected true or false")
                }
            default:
                continue
            }
        }
    }

    /// Checks that a client can serve this URL: for `rediss://`, builds the TLS context once (reading
    /// the certificate, key and CA files of `tlsOptions`) and throws `.tlsConfiguration` if that
    /// fails. `RedisClient` and `RedisPubSub` make this check in their initializers, so a bad TLS
    /// setup fails at startup rather than as an endless stream of failed connection attempts.
    public func checkSupported() throws(RedisError) {
        _ = try self.makeTLSContext()
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
