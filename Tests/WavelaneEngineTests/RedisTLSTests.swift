import Foundation
import NIOCore
import NIOPosix
import Testing
import WavelaneProtocol
@testable import WavelaneEngine

// MARK: - Fixtures

/// A throwaway PKI made with the `openssl` CLI in a temp dir (deleted on deinit). Files, as
/// `path("name.pem")` / `path("name.key")`:
/// - `ca`, `other-ca`: two unrelated CAs;
/// - `server`: signed by `ca`, SANs `DNS:localhost, IP:127.0.0.1`;
/// - `wrong-name`: signed by `ca`, SAN `DNS:redis.invalid` only;
/// - `client`: signed by `ca`, for mutual TLS; `client-combined.pem` holds its certificate and key;
/// - `self-signed`: a self-signed server certificate (SANs as `server`).
final class TestPKI {
    let directory: String

    init() throws {
        self.directory = NSTemporaryDirectory() + "wavelane-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        do {
            try self.makeSelfSigned("ca", subject: "/CN=Wavelane test CA")
            try self.makeSelfSigned("other-ca", subject: "/CN=Unrelated test CA")
            try self.makeSelfSigned("self-signed", subject: "/CN=localhost", san: "DNS:localhost,IP:127.0.0.1")
            try self.makeLeaf("server", san: "DNS:localhost,IP:127.0.0.1")
            try self.makeLeaf("wrong-name", san: "DNS:redis.invalid")
            try self.makeLeaf("client", san: "DNS:wavelane-client")
            let combined = try String(contentsOfFile: self.path("client.pem"), encoding: .utf8) + String(contentsOfFile: self.path("client.key"), encoding: .utf8)
            try combined.write(toFile: self.path("client-combined.pem"), atomically: true, encoding: .utf8)
        } catch {
            try? FileManager.default.removeItem(atPath: self.directory)
            throw error
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: self.directory) }

    func path(_ file: String) -> String { "\(self.directory)/\(file)" }

    /// A TLS `redis-server` listener with the certificate `name` (trusting `ca` for client certificates).
    func server(_ name: String = "server", requireClientCertificate: Bool = false) -> RedisServerProcess.TLS {
        RedisServerProcess.TLS(
            certificate: self.path("\(name).pem"), key: self.path("\(name).key"),
            ca: self.path(name == "self-signed" ? "self-signed.pem" : "ca.pem"), requireClientCertificate: requireClientCertificate)
    }

    private static let ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    private func makeSelfSigned(_ name: String, subject: String, san: String? = nil) throws {
        var args = ["req", "-x509"] + Self.ecKey + ["-keyout", self.path("\(name).key"), "-out", self.path("\(name).pem"), "-days", "2", "-subj", subject]
        if let san { args += ["-addext", "subjectAltName=\(san)"] }
        try Self.openssl(args)
    }

    private func makeLeaf(_ name: String, san: String) throws {
        try Self.openssl(["req"] + Self.ecKey + ["-keyout", self.path("\(name).key"), "-out", self.path("\(name).csr"), "-subj", "/CN=\(name)"])
        let ext = """
            subjectAltName=\(san)
            basicConstraints=CA:FALSE
            keyUsage=digitalSignature,keyEncipherment
            extendedKeyUsage=serverAuth,clientAuth

            """
        try ext.write(toFile: self.path("\(name).ext"), atomically: true, encoding: .utf8)
        try Self.openssl([
            "x509", "-req", "-in", self.path("\(name).csr"), "-CA", self.path("ca.pem"), "-CAkey", self.path("ca.key"),
            "-set_serial", String(Int.random(in: 1...Int(Int32.max))), "-out", self.path("\(name).pem"), "-days", "2",
            "-extfile", self.path("\(name).ext"),
        ])
    }

    static func openssl(_ args: [String]) throws {
        let candidates = ["/usr/bin/openssl", "/usr/local/bin/openssl"]
            + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/openssl" }
        guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw RedisFixtureError(description: """
                the openssl CLI is not installed, so the rediss:// tests cannot make their certificates. \
                Install the Debian package: `apt-get install -y openssl` (.ci/run does this).
                """)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw RedisFixtureError(description: "openssl \(args.joined(separator: " ")) failed: \(output)")
        }
    }
}

/// Connects once; the error (or nil when it connected, closing the connection).
private func connectError(_ url: String) async throws -> RedisError? {
    do {
        let connection = try await RedisConnection.connect(to: try RedisURL(parsing: url), on: MultiThreadedEventLoopGroup.singleton.next()).get()
        try await connection.close().get()
        return nil
    } catch let error as RedisError {
        return error
    }
}

// MARK: - Tests without a server

@Suite struct RedisTLSURLTests {
    @Test func parsesTLSOptions() throws {
        let plain = try RedisURL(parsing: "rediss://h:6380")
        #expect(plain.tls)
        #expect(plain.tlsOptions == RedisURL.TLSOptions())
        #expect(plain.tlsOptions.verifyCertificate && plain.tlsOptions.checkHostname)
        let full = try RedisURL(
            parsing: "rediss://u:p%40ss@redis.example:6390/4?ssl_ca_certs=%2Fetc%2Fca%20dir%2Fca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
                + "&ssl_check_hostname=false&unknown=1&ssl_cert_reqs=required")
        #expect(full == RedisURL(
            host: "redis.example", port: 6390, username: "u", password: "p@ss", database: 4, tls: true,
            tlsOptions: .init(caCertificatesPath: "/etc/ca dir/ca.pem", certificatePath: "/c.pem", keyPath: "/k.pem", verifyCertificate: true, checkHostname: false)))
        #expect(full.description == "rediss://u:***@redis.example:6390/4", "the password stays masked")
        #expect(!full.description.contains("p@ss"))
        #expect(try RedisURL(parsing: "rediss://h?ssl_cert_reqs=none").tlsOptions.verifyCertificate == false)
        #expect(try RedisURL(parsing: "rediss://h?ssl_cert_reqs=NONE").tlsOptions.verifyCertificate == false)
        #expect(try RedisURL(parsing: "rediss://h?ssl_cert_reqs=optional").tlsOptions.verifyCertificate == true)
        #expect(try RedisURL(parsing: "rediss://h?ssl_check_hostname=0").tlsOptions.checkHostname == false)
        #expect(try RedisURL(parsing: "rediss://h?ssl_check_hostname=True").tlsOptions.checkHostname == true)
        // db= still works next to the TLS options; parameters without '=' are ignored as before.
        #expect(try RedisURL(parsing: "rediss://h?ssl_cert_reqs=none&db=7&flag").database == 7)
        for bad in [
            "rediss://h?ssl_cert_reqs=maybe", "rediss://h?ssl_check_hostname=perhaps", "rediss://h?ssl_ca_certs=",
            "rediss://h?ssl_certfile=%zz", "rediss://h?db=x",
        ] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisURL(parsing: bad) }
        }
        do {
            _ = try RedisURL(parsing: "rediss://h?ssl_cert_reqs=maybe")
        } catch {
            #expect(error.kind == .invalidURL)
            #expect(error.message.contains("ssl_cert_reqs") && error.message.contains("none, optional or required"), "\(error.message)")
        }
    }

    /// A server that accepts TCP and never answers the ClientHello: a connection failure after the
    /// connect timeout, not a hang.
    @Test func silentServerTimesOutTheTLSHandshake() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let silent = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        defer { silent.close(promise: nil) }
        var config = RedisConnection.Configuration()
        config.connectTimeout = .milliseconds(300)
        let url = try RedisURL(parsing: "rediss://127.0.0.1:\(silent.localAddress!.port!)?ssl_cert_reqs=none")
        let start = ContinuousClock.now
        do {
            _ = try await RedisConnection.connect(to: url, on: group.next(), configuration: config).get()
            Issue.record("connected to a silent server")
        } catch let error as RedisError {
            #expect(error.kind == .connectionFailed)
            #expect(error.message.contains("no TLS handshake and reply within the connect timeout"), "\(error.message)")
        }
        #expect(ContinuousClock.now - start < .seconds(30), "a hang, not a timeout")
    }

    @Test func unusableTLSFilesFailAtOnceAndAreNotRetried() async throws {
        let pki = try TestPKI()
        let group = MultiThreadedEventLoopGroup.singleton
        let empty = pki.path("empty.pem")
        try "".write(toFile: empty, atomically: true, encoding: .utf8)
        let cases: [(url: String, expected: String)] = [
            ("rediss://127.0.0.1:1?ssl_ca_certs=\(pki.path("missing.pem"))", "ssl_ca_certs=\(pki.path("missing.pem")): No such file or directory"),
            ("rediss://127.0.0.1:1?ssl_ca_certs=\(empty)", "ssl_ca_certs=\(empty)"),
            ("rediss://127.0.0.1:1?ssl_keyfile=\(pki.path("client.key"))", "needs ssl_certfile"),
            ("rediss://127.0.0.1:1?ssl_certfile=\(pki.path("client.pem"))&ssl_keyfile=\(pki.path("nokey.key"))", "ssl_keyfile=\(pki.path("nokey.key"))"),
            ("rediss://127.0.0.1:1?ssl_certfile=\(pki.path("client.pem"))", "ssl_certfile=\(pki.path("client.pem"))"),  // no key in it
        ]
        for (text, expected) in cases {
            let url = try RedisURL(parsing: text)
            do {
                try url.checkSupported()
                Issue.record("\(text): checkSupported() passed")
            } catch {
                #expect(error.kind == .tlsConfiguration)
                #expect(error.message.contains(expected), "\(error.message)")
            }
            #expect(throws: RedisError.self) { _ = try RedisClient(url: url, eventLoop: group.next()) }
            #expect(throws: RedisError.self) { _ = try RedisPubSub(url: url, eventLoop: group.next(), onMessage: { _, _ in }) }
            let error = try await connectError(text)
            #expect(error?.kind == .tlsConfiguration, "\(text): \(String(describing: error))")
        }
        // A reconnecting component that gets such a URL anyway reports it once and stops.
        let core = ReconnectingConnection(
            url: try RedisURL(parsing: cases[0].url), eventLoop: group.next(), configuration: fastConfig(), subscriberMode: false)
        core.start()
        #expect(await eventually { if case .disconnected = core.state { return true } else { return false } })
        try await Task.sleep(for: .milliseconds(200))
        #expect(core.stats.attempts == 1 && core.stats.failedAttempts == 1, "\(core.stats)")
        #expect(core.state.description.contains("No such file or directory"), "\(core.state)")
        try await core.close().get()
        // TLS options on a redis:// URL are parsed but unused: no files are read.
        let plain = try RedisURL(parsing: "redis://127.0.0.1:1?ssl_ca_certs=/nonexistent.pem")
        try plain.checkSupported()
        _ = try RedisClient(url: plain, eventLoop: group.next())
    }
}

// MARK: - Tests against a real TLS redis-server

@Suite(
    .serialized,
    .enabled(
        if: RedisServerProcess.tlsUnsupportedReason == nil,
        "the installed redis-server has no TLS support (built without it), so the rediss:// end-to-end tests are skipped")
)
struct RedisTLSTests {
    @Test func commandsAndPubSubOverTLS() async throws {
        let pki = try TestPKI()
        let server = try RedisServerProcess(tls: pki.server())
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let url = try RedisURL(parsing: "rediss://127.0.0.1:\(server.port)/0?ssl_ca_certs=\(pki.path("ca.pem"))")
        let c = try await RedisConnection.connect(to: url, on: group.next()).get()
        #expect(try await c.send(["PING"]).get() == .simpleString("PONG"))
        #expect(try await c.send(["SET", "k", RESPArgument([0x00, 0x0D, 0x0A, 0xFF])]).get() == .simpleString("OK"))
        #expect(try await c.send(["GET", "k"]).get().bytes.map { Array($0.readableBytesView) } == [0x00, 0x0D, 0x0A, 0xFF])
        // A large value crosses many TLS records.
        let big = [UInt8](repeating: 0x2A, count: 1_000_000)
        #expect(try await c.send(["SET", "big", RESPArgument(big)]).get() == .simpleString("OK"))
        #expect(try await c.send(["STRLEN", "big"]).get() == .integer(1_000_000))
        try await c.close().get()
        // By name (SNI + the DNS SAN) and with SELECT.
        let byName = try await RedisConnection.connect(
            to: try RedisURL(parsing: "rediss://localhost:\(server.port)/2?ssl_ca_certs=\(pki.path("ca.pem"))"), on: group.next()
        ).get()
        #expect(try await byName.send(["SET", "where", "two"]).get() == .simpleString("OK"))
        #expect(try await byName.send(["GET", "k"]).get() == .bulkString(nil), "database 2, not 0")
        try await byName.close().get()

        // PUBLISH through RedisClient, SUBSCRIBE through RedisPubSub, both over TLS.
        let inbox = Inbox()
        let sub = try RedisPubSub(url: url, eventLoop: group.next(), configuration: fastConfig(), onMessage: { inbox.add($0, $1) })
        let publisher = try RedisClient(url: url, eventLoop: group.next(), configuration: fastConfig())
        sub.start()
        publisher.start()
        defer {
            _ = sub.close()
            _ = publisher.close()
        }
        sub.need(channel: "secure")
        sub.need(pattern: "sec.*")
        #expect(await eventually { sub.isSubscribed(channel: "secure") && sub.isSubscribed(pattern: "sec.*") && publisher.isConnected })
        #expect(try await publisher.publish(channel: "secure", payload: ByteBuffer(bytes: [1, 0, 13, 10])).get() == 1)
        #expect(try await publisher.publish(channel: "sec.x", payload: ByteBuffer(string: "p")).get() == 1)
        #expect(await eventually { inbox.count == 2 })
        #expect(inbox.all.map(\.channel) == ["secure", "sec.x"])
        #expect(inbox.all.first?.payload == [1, 0, 13, 10])
        #expect(sub.state == .connected && publisher.state == .connected)

        // Redis restarts (SIGKILL): both reconnect over TLS and the subscriptions come back.
        server.stop()
        #expect(await eventually(3) { if case .disconnected = sub.state { return true } else { return false } })
        let restarted = try RedisServerProcess(port: server.port, tls: pki.server())
        try restarted.start()
        defer { restarted.stop() }
        // Asked of the new server (isSubscribed may still hold the old connection's confirmation).
        #expect(await eventually(5) {
            guard publisher.isConnected, let reply = try? await publisher.send(["PUBSUB", "NUMSUB", "secure"]).get() else { return false }
            return reply.elements?[1].integer == 1
        })
        #expect(sub.stats.reconnects == 1 && publisher.stats.reconnects == 1)
        #expect(try await publisher.publish(channel: "secure", payload: ByteBuffer(string: "again")).get() == 1)
        #expect(await eventually { inbox.count == 3 })
    }

    @Test func untrustedServerFailsAsAConnectionFailureAndIsRetried() async throws {
        let pki = try TestPKI()
        let server = try RedisServerProcess(tls: pki.server())
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        // The wrong CA, and the system trust store (which does not know the test CA).
        for text in [
            "rediss://127.0.0.1:\(server.port)?ssl_ca_certs=\(pki.path("other-ca.pem"))",
            "rediss://127.0.0.1:\(server.port)",
        ] {
            let error = try await connectError(text)
            #expect(error?.kind == .connectionFailed, "\(text): \(String(describing: error))")
            #expect(error?.message.contains("cannot connect to 127.0.0.1:\(server.port): TLS handshake failed") == true, "\(String(describing: error))")
            #expect(error?.message.contains("CERTIFICATE_VERIFY_FAILED") == true, "\(String(describing: error))")
        }
        let states = StateLog()
        let client = try RedisClient(
            url: try RedisURL(parsing: "rediss://127.0.0.1:\(server.port)?ssl_ca_certs=\(pki.path("other-ca.pem"))"),
            eventLoop: group.next(), configuration: fastConfig(), onStateChange: { states.add($0) })
        client.start()
        defer { _ = client.close() }
        #expect(await eventually(3) { client.stats.failedAttempts >= 3 }, "retried with backoff")
        guard case .disconnected(let reason) = client.state else {
            Issue.record("expected disconnected, got \(client.state)")
            return
        }
        #expect(reason.contains("TLS handshake failed") && reason.contains("CERTIFICATE_VERIFY_FAILED"), "\(reason)")
        #expect(states.all.count == 1, "one report per outage: \(states.all)")
        await #expect(throws: RedisError.self) { _ = try await client.send(["PING"]).get() }
        // The server is unharmed.
        #expect(try await connectError("rediss://127.0.0.1:\(server.port)?ssl_ca_certs=\(pki.path("ca.pem"))") == nil)
    }

    @Test func hostnameIsCheckedUnlessDisabled() async throws {
        let pki = try TestPKI()
        let server = try RedisServerProcess(tls: pki.server("wrong-name"))
        try server.start()
        defer { server.stop() }
        let ca = pki.path("ca.pem")
        let error = try await connectError("rediss://127.0.0.1:\(server.port)?ssl_ca_certs=\(ca)")
        #expect(error?.kind == .connectionFailed)
        #expect(error?.message.contains("is not valid for this host") == true, "\(String(describing: error))")
        #expect(try await connectError("rediss://localhost:\(server.port)?ssl_ca_certs=\(ca)")?.kind == .connectionFailed)
        // The chain is still verified with ssl_check_hostname=false.
        #expect(try await connectError("rediss://127.0.0.1:\(server.port)?ssl_ca_certs=\(ca)&ssl_check_hostname=false") == nil)
        #expect(try await connectError("rediss://127.0.0.1:\(server.port)?ssl_ca_certs=\(pki.path("other-ca.pem"))&ssl_check_hostname=false")?.kind == .connectionFailed)
    }

    @Test func certReqsNoneAcceptsASelfSignedServer() async throws {
        let pki = try TestPKI()
        let server = try RedisServerProcess(tls: pki.server("self-signed"))
        try server.start()
        defer { server.stop() }
        #expect(try await connectError("rediss://127.0.0.1:\(server.port)")?.kind == .connectionFailed)
        #expect(try await connectError("rediss://127.0.0.1:\(server.port)?ssl_ca_certs=\(pki.path("ca.pem"))")?.kind == .connectionFailed)
        let url = try RedisURL(parsing: "rediss://127.0.0.1:\(server.port)/1?ssl_cert_reqs=none")
        let c = try await RedisConnection.connect(to: url, on: MultiThreadedEventLoopGroup.singleton.next()).get()
        #expect(try await c.send(["ECHO", "insecure but encrypted"]).get().string == "insecure but encrypted")
        try await c.close().get()
    }

    @Test func mutualTLS() async throws {
        let pki = try TestPKI()
        let server = try RedisServerProcess(password: "pw", tls: pki.server(requireClientCertificate: true))
        try server.start()
        defer { server.stop() }
        let base = "rediss://:pw@127.0.0.1:\(server.port)?ssl_ca_certs=\(pki.path("ca.pem"))"
        #expect(try await connectError("\(base)&ssl_certfile=\(pki.path("client.pem"))&ssl_keyfile=\(pki.path("client.key"))") == nil)
        #expect(try await connectError("\(base)&ssl_certfile=\(pki.path("client-combined.pem"))") == nil, "key read from the certificate file")
        // No client certificate, or one the server's CA did not sign: refused by the server.
        let missing = try await connectError(base)
        #expect(missing?.kind == .connectionFailed, "\(String(describing: missing))")
        #expect(missing?.message.contains("TLS handshake failed") == true, "\(String(describing: missing))")
        let foreign = try await connectError("\(base)&ssl_certfile=\(pki.path("other-ca.pem"))&ssl_keyfile=\(pki.path("other-ca.key"))")
        #expect(foreign?.kind == .connectionFailed, "\(String(describing: foreign))")
    }
}
