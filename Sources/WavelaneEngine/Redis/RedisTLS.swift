// TLS for `rediss://`: the client context built from a URL's TLS options (once per client, not per
// connection attempt), the name sent in SNI, and readable reasons for TLS failures.

import NIOCore
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension RedisURL {
    /// The TLS context for this URL: nil for `redis://`. Reads the files named in `tlsOptions` (and
    /// the system trust store when no `ssl_ca_certs` is given), so build it once per client. Throws
    /// `.tlsConfiguration` when a file cannot be read or the pieces do not make a context.
    func makeTLSContext() throws(RedisError) -> NIOSSLContext? {
        guard self.tls else { return nil }
        let options = self.tlsOptions
        func bad(_ what: String, _ error: Error? = nil) -> RedisError {
            RedisError(.tlsConfiguration, "rediss:// TLS setup: \(what)" + (error.map { ": \(Self.describeTLS($0))" } ?? ""))
        }
        // NIOSSL reports a missing file as a bad certificate: say which it is.
        func checkReadable(_ path: String, _ option: String) throws(RedisError) {
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else {
                let code = errno
                throw bad("cannot read \(option)=\(path): \(String(cString: strerror(code))) (errno \(code))")
            }
            close(fd)
        }
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv12
        if !options.verifyCertificate {
            config.certificateVerification = .none
        } else if !options.checkHostname {
            config.certificateVerification = .noHostnameVerification
        } else {
            config.certificateVerification = .fullVerification
        }
        if let caPath = options.caCertificatesPath {
            try checkReadable(caPath, "ssl_ca_certs")
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMFile(caPath)
            } catch {
                throw bad("cannot read PEM CA certificates from ssl_ca_certs=\(caPath)", error)
            }
            guard !roots.isEmpty else { throw bad("no certificate in ssl_ca_certs=\(caPath)") }
            config.trustRoots = .certificates(roots)
        }
        if let certPath = options.certificatePath {
            try checkReadable(certPath, "ssl_certfile")
            let chain: [NIOSSLCertificate]
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certPath)
            } catch {
                throw bad("cannot read a PEM certificate from ssl_certfile=\(certPath)", error)
            }
            guard !chain.isEmpty else { throw bad("no certificate in ssl_certfile=\(certPath)") }
            let keyPath = options.keyPath ?? certPath
            if options.keyPath != nil { try checkReadable(keyPath, "ssl_keyfile") }
            let key: NIOSSLPrivateKey
            do {
                key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            } catch {
                throw bad("cannot read a PEM private key from \(options.keyPath == nil ? "ssl_certfile" : "ssl_keyfile")=\(keyPath)", error)
            }
            config.certificateChain = chain.map { .certificate($0) }
            config.privateKey = .privateKey(key)
        } else if let keyPath = options.keyPath {
            throw bad("ssl_keyfile=\(keyPath) needs ssl_certfile (the client certificate)")
        }
        do {
            return try NIOSSLContext(configuration: config)
        } catch {
            throw bad("the certificates and key do not make a TLS context", error)
        }
    }

    /// The name sent in SNI and matched against the server's certificate: the host, unless it is an
    /// IP literal (not allowed in SNI; the certificate's IP SANs are then matched against the peer's
    /// address).
    var tlsServerHostname: String? {
        (try? SocketAddress(ipAddress: self.host, port: 0)) == nil ? self.host : nil
    }

    /// A TLS or file error for people: errno text for I/O errors, the BoringSSL reasons for handshake
    /// failures (e.g. `CERTIFICATE_VERIFY_FAILED`, with a hint).
    static func describeTLS(_ error: Error) -> String {
        switch error {
        case NIOSSLError.handshakeFailed(let inner):
            let reasons = Self.describeBoringSSL(inner)
            let hint = reasons.contains("CERTIFICATE_VERIFY_FAILED") ? " (the server's certificate is not signed by a trusted CA; see ssl_ca_certs)" : ""
            return "\(reasons)\(hint)"
        case let inner as BoringSSLError:
            return Self.describeBoringSSL(inner)
        case NIOSSLError.failedToLoadCertificate:
            return "not a PEM certificate file"
        case NIOSSLError.failedToLoadPrivateKey:
            return "no unencrypted PEM private key in it"
        case NIOSSLError.uncleanShutdown:
            return "the server closed the TLS connection (without close_notify)"
        case let extra as NIOSSLExtraError where extra == .failedToValidateHostname:
            return "the server's certificate is not valid for this host (not among its subject alternative names); ssl_check_hostname=false skips this check"
        default:
            return ServerCore.describe(error)
        }
    }

    private static func describeBoringSSL(_ error: BoringSSLError) -> String {
        guard case .sslError(let stack) = error, !stack.isEmpty else { return "\(error)" }
        // "Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at
        // .../handshake.cc:123": the reason is the last field of the OpenSSL-style string.
        return stack.map { entry in
            let text = "\(entry)"
            guard let start = text.firstRange(of: "error:") else { return text }
            var message = text[start.lowerBound...]
            if let at = message.firstRange(of: " at ") { message = message[..<at.lowerBound] }
            return message.split(separator: ":").last.map(String.init) ?? String(message)
        }.joined(separator: ", ")
    }
}
