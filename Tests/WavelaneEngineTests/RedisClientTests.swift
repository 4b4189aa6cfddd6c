import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import WavelaneProtocol
@testable import WavelaneEngine

// MARK: - Fixtures

struct RedisFixtureError: Error, CustomStringConvertible {
    var description: String
}

/// A real `redis-server` child process on a loopback port (no persistence). Killed by `stop()`.
/// With `tls`, the port is a TLS port (`--port 0 --tls-port <port>`).
final class RedisServerProcess: @unchecked Sendable {
    /// The files of a TLS listener (PEM paths).
    struct TLS {
        var certificate: String
        var key: String
        var ca: String
        /// `--tls-auth-clients yes`: clients must present a certificate signed by `ca`.
        var requireClientCertificate = false
    }

    let port: Int
    let password: String?
    let tls: TLS?
    private var process: Process?
    private let logPath: String

    static func executable() throws -> String {
        let candidates = ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"]
            + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/redis-server" }
        if let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return path }
        throw RedisFixtureError(description: """
            redis-server is not installed, so the Redis client tests cannot run. \
            Install the Debian package: `apt-get install -y redis-server` (.ci/run does this).
            """)
    }

    static func freePort() throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }

    init(port: Int? = nil, password: String? = nil, tls: TLS? = nil) throws {
        self.port = try port ?? Self.freePort()
        self.password = password
        self.tls = tls
        self.logPath = NSTemporaryDirectory() + "wavelane-redis-\(self.port)-\(UUID().uuidString).log"
    }

    /// Why this `redis-server` cannot serve TLS (built without it), or nil when it can (or when it
    /// is not installed: the tests then fail with the install hint, like the other Redis tests).
    static let tlsUnsupportedReason: String? = {
        guard let path = try? RedisServerProcess.executable() else { return nil }
        // A TLS-capable build accepts the option, then exits because it has nothing to listen on.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--port", "0", "--tls-port", "0", "--save", "", "--daemonize", "no"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return "cannot run \(path): \(error)" }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if output.contains("not listen anywhere") { return nil }
        return "\(path) does not accept --tls-port (built without TLS?): \(output.suffix(300))"
    }()

    /// Starts the server and waits (up to 5 s) until it answers PING.
    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.executable())
        let plainPort = self.tls == nil ? self.port : 0
        var args = ["--port", String(plainPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
        if let tls {
            args += [
                "--tls-port", String(self.port), "--tls-cert-file", tls.certificate, "--tls-key-file", tls.key,
                "--tls-ca-cert-file", tls.ca, "--tls-auth-clients", tls.requireClientCertificate ? "yes" : "no",
            ]
        }
        args += ["--logfile", self.logPath]
        if let password { args += ["--requirepass", password] }
        process.arguments = args
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if Self.canConnect(port: self.port) { return }
            guard process.isRunning else {
                let log = (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? ""
                throw RedisFixtureError(description: "redis-server exited at start (port \(self.port) in use?): \(log.suffix(500))")
            }
            usleep(10_000)
        }
        throw RedisFixtureError(description: "redis-server did not accept connections on port \(self.port) within 5 s")
    }

    /// SIGKILL (a crash, not a clean shutdown) and wait for the process to go away.
    func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(atPath: self.logPath)
    }

    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// Messages received by a subscriber.
final class Inbox: @unchecked Sendable {
    private let box = NIOLockedValueBox<[(channel: String, payload: [UInt8])]>([])
    func add(_ channel: String, _ payload: ByteBuffer) {
        self.box.withLockedValue { $0.append((channel, Array(payload.readableBytesView))) }
    }
    var all: [(channel: String, payload: [UInt8])] { self.box.withLockedValue { $0 } }
    var count: Int { self.box.withLockedValue { $0.count } }
}

final class StateLog: @unchecked Sendable {
    private let box = NIOLockedValueBox<[RedisConnectionState]>([])
    func add(_ s: RedisConnectionState) { self.box.withLockedValue { $0.append(s) } }
    var all: [RedisConnectionState] { self.box.withLockedValue { $0 } }
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double = 5, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

private func url(_ port: Int, db: Int = 0, user: String? = nil, password: String? = nil) -> RedisURL {
    RedisURL(host: "127.0.0.1", port: port, username: user, password: password, database: db)
}

private func bytes(_ v: RESPValue) -> [UInt8]? { v.bytes.map { Array($0.readableBytesView) } }

private func numsub(_ connection: RedisConnection, _ channel: String) async throws -> Int64? {
    let reply = try await connection.send(["PUBSUB", "NUMSUB", channel]).get()
    return reply.elements?[1].integer
}

/// Quick reconnects and a short connect timeout, for tests that watch retries.
func fastConfig() -> RedisClientConfiguration {
    var c = RedisClientConfiguration()
    c.reconnectBase = .milliseconds(20)
    c.reconnectMax = .milliseconds(300)
    c.connection.connectTimeout = .milliseconds(500)
    return c
}

// MARK: - Tests without a server

@Suite struct RedisURLTests {
    @Test func parsesURLs() throws {
        #expect(try RedisURL(parsing: "redis://localhost") == RedisURL(host: "localhost", port: 6379))
        #expect(try RedisURL(parsing: "redis://h:7000/3") == RedisURL(host: "h", port: 7000, database: 3))
        #expect(try RedisURL(parsing: "redis://:s%40cret@h:1/2") == RedisURL(host: "h", port: 1, password: "s@cret", database: 2))
        #expect(try RedisURL(parsing: "redis://alice:pw@10.0.0.1:6380") == RedisURL(host: "10.0.0.1", port: 6380, username: "alice", password: "pw"))
        #expect(try RedisURL(parsing: "redis://[::1]:6390/1") == RedisURL(host: "::1", port: 6390, database: 1))
        #expect(try RedisURL(parsing: "redis://h?db=5") == RedisURL(host: "h", port: 6379, database: 5))
        #expect(try RedisURL(parsing: "rediss://h:6380").tls)
        #expect(try RedisURL(parsing: "redis://u:p@h:1/0").description == "redis://u:***@h:1/0")
        for bad in ["http://h", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://h/x", "redis://h/-1", "redis://[::1", "redis://u:%zz@h"] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisURL(parsing: bad) }
        }
    }

    @Test func backoffGrowsWithJitterAndIsCapped() {
        var c = RedisClientConfiguration()
        c.reconnectBase = .milliseconds(50)
        c.reconnectMax = .seconds(5)
        c.reconnectJitter = 0.5
        for attempt in 0..<60 {
            let nominal: Int64 = attempt >= 7 ? 5_000_000_000 : min(5_000_000_000, 50_000_000 << Int64(attempt))
            for _ in 0..<20 {
                let d = c.backoff(attempt: attempt).nanoseconds
                #expect(d <= nominal && d >= nominal / 2, "attempt \(attempt): \(d)")
            }
        }
    }

    /// A fake server that accepts and never answers: replies time out, and the pending queue is bounded.
    @Test func commandTimeoutAndPendingBound() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let silent = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                // Answers the handshake PING, then nothing.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AnswerOnce(reply: "+PONG\r\n"))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { silent.close(promise: nil) }
        var config = RedisConnection.Configuration()
        config.commandTimeout = .milliseconds(300)
        config.maxPendingCommands = 10
        let connection = try await RedisConnection.connect(to: url(silent.localAddress!.port!), on: group.next(), configuration: config).get()
        let futures = (0..<11).map { i in connection.send(["GET", "k\(i)"]) }
        let start = ContinuousClock.now
        var kinds: [RedisError.Kind] = []
        for f in futures {
            do { _ = try await f.get() } catch let e as RedisError { kinds.append(e.kind) }
        }
        #expect(kinds.filter { $0 == .tooManyPending }.count == 1)
        #expect(kinds.filter { $0 == .timeout }.count == 10)
        // The kinds above prove the timeouts fired; this only rules out a hang (loaded CI machines
        // stretch the ~300 ms, so the bound is loose on purpose).
        #expect(ContinuousClock.now - start < .seconds(10), "timeouts fire (after ~300 ms), no hang")
        // The connection is closed after a timeout; further sends fail at once.
        #expect(await eventually(2) { !connection.isConnected })
        await #expect(throws: RedisError.self) { _ = try await connection.send(["PING"]).get() }
    }

    /// Garbage from the server: the pending command fails with a protocol error.
    @Test func protocolErrorFailsPending() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let liar = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AnswerOnce(reply: "+PONG\r\n", then: "?garbage\r\n"))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { liar.close(promise: nil) }
        let connection = try await RedisConnection.connect(to: url(liar.localAddress!.port!), on: group.next()).get()
        do {
            _ = try await connection.send(["GET", "k"]).get()
            Issue.record("expected a protocol error")
        } catch let error as RedisError {
            #expect(error.kind == .protocolError)
            #expect(error.message.contains("invalid RESP type byte 0x3F"))
        }
    }
}

/// Answers the first read with `reply`, later reads with `then` (if any).
private final class AnswerOnce: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let reply: String
    let then: String?
    var answered = false
    init(reply: String, then: String? = nil) {
        self.reply = reply
        self.then = then
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = answered ? then : reply
        answered = true
        if let text { context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(string: text)), promise: nil) }
    }
}

// MARK: - Tests against a real redis-server

@Suite(.serialized) struct RedisClientTests {
    @Test func roundTripsAgainstRealServer() async throws {
        let server = try RedisServerProcess()
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let c = try await RedisConnection.connect(to: url(server.port), on: group.next()).get()
        let binary: [UInt8] = [0x00, 0x0D, 0x0A, 0xFF, 0x24, 0x2A, 0x0D, 0x0A]
        #expect(try await c.send(["SET", "k", RESPArgument(binary)]).get() == .simpleString("OK"))
        #expect(bytes(try await c.send(["GET", "k"]).get()) == binary)
        #expect(try await c.send(["GET", "missing"]).get() == .bulkString(nil))
        #expect(try await c.send(["INCRBY", "n", "-7"]).get() == .integer(-7))
        #expect(try await c.send(["RPUSH", "l", "a", "", "c"]).get() == .integer(3))
        let list = try await c.send(["LRANGE", "l", "0", "-1"]).get()
        #expect(list.elements?.map(\.string) == ["a", "", "c"])
        #expect(try await c.send(["LRANGE", "nolist", "0", "-1"]).get() == .array([]))
        let bad = try await c.send(["NOSUCHCOMMAND", "x"]).get()
        #expect(bad.errorMessage?.hasPrefix("ERR unknown command") == true)
        // The connection is still in step after an error reply.
        #expect(try await c.send(["ECHO", "after"]).get().string == "after")
        // RESP3 after HELLO 3: maps, sets, doubles, nulls come back typed.
        let hello = try await c.send(["HELLO", "3"]).get()
        guard case .map(let info) = hello else { Issue.record("HELLO 3 did not return a map: \(hello)"); return }
        #expect(info.contains { $0.key.string == "server" && $0.value.string == "redis" })
        #expect(try await c.send(["HSET", "h", "f", "v"]).get() == .integer(1))
        #expect(try await c.send(["HGETALL", "h"]).get() == .map([.init(.bulkString(ByteBuffer(string: "f")), .bulkString(ByteBuffer(string: "v")))]))
        #expect(try await c.send(["SADD", "s", "x"]).get() == .integer(1))
        #expect(try await c.send(["SMEMBERS", "s"]).get() == .set([.bulkString(ByteBuffer(string: "x"))]))
        #expect(try await c.send(["ZADD", "z", "1.5", "m"]).get() == .integer(1))
        #expect(try await c.send(["ZSCORE", "z", "m"]).get() == .double(1.5))
        #expect(try await c.send(["GET", "missing"]).get() == .null)
        #expect(try await c.send(["EXISTS", "k"]).get() == .integer(1))
        try await c.close().get()
        await #expect(throws: RedisError.self) { _ = try await c.send(["PING"]).get() }
    }

    @Test func pipelinesAThousandCommandsInOrder() async throws {
        let server = try RedisServerProcess()
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let c = try await RedisConnection.connect(to: url(server.port), on: group.next()).get()
        // All sent before any reply is awaited.
        let futures = (1...1000).map { i in i % 2 == 0 ? c.send(["INCR", "counter"]) : c.send(["ECHO", "m\(i)"]) }
        var expectedCounter: Int64 = 0
        for (n, f) in futures.enumerated() {
            let i = n + 1
            let reply = try await f.get()
            if i % 2 == 0 {
                expectedCounter += 1
                #expect(reply == .integer(expectedCounter))
            } else {
                #expect(reply.string == "m\(i)")
            }
        }
        #expect(expectedCounter == 500)
    }

    @Test func authWithPassword() async throws {
        let server = try RedisServerProcess(password: "s3cret")
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let good = try await RedisConnection.connect(to: url(server.port, password: "s3cret"), on: group.next()).get()
        #expect(try await good.send(["PING"]).get() == .simpleString("PONG"))
        do {
            _ = try await RedisConnection.connect(to: url(server.port, password: "wrong"), on: group.next()).get()
            Issue.record("wrong password accepted")
        } catch let error as RedisError {
            #expect(error.kind == .authenticationFailed)
            #expect(error.message.contains("AUTH failed") && error.message.contains("WRONGPASS"), "\(error.message)")
        }
        do {
            _ = try await RedisConnection.connect(to: url(server.port), on: group.next()).get()
            Issue.record("no password accepted")
        } catch let error as RedisError {
            #expect(error.kind == .authenticationFailed)
            #expect(error.message.contains("NOAUTH"), "\(error.message)")
        }
        // ACL user + password (AUTH username password).
        let setuser = try await good.send(["ACL", "SETUSER", "alice", "on", ">pw", "~*", "&*", "+@all"]).get()
        #expect(setuser == .simpleString("OK"))
        let alice = try await RedisConnection.connect(to: try RedisURL(parsing: "redis://alice:pw@127.0.0.1:\(server.port)"), on: group.next()).get()
        #expect(try await alice.send(["ACL", "WHOAMI"]).get().string == "alice")
        await #expect(throws: RedisError.self) {
            _ = try await RedisConnection.connect(to: try RedisURL(parsing: "redis://alice:nope@127.0.0.1:\(server.port)"), on: group.next()).get()
        }
    }

    @Test func selectsTheDatabase() async throws {
        let server = try RedisServerProcess()
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let db3 = try await RedisConnection.connect(to: try RedisURL(parsing: "redis://127.0.0.1:\(server.port)/3"), on: group.next()).get()
        #expect(try await db3.send(["SET", "where", "three"]).get() == .simpleString("OK"))
        let db0 = try await RedisConnection.connect(to: url(server.port), on: group.next()).get()
        #expect(try await db0.send(["GET", "where"]).get() == .bulkString(nil))
        let again = try await RedisConnection.connect(to: url(server.port, db: 3), on: group.next()).get()
        #expect(try await again.send(["GET", "where"]).get().string == "three")
        do {
            _ = try await RedisConnection.connect(to: url(server.port, db: 999), on: group.next()).get()
            Issue.record("SELECT 999 accepted")
        } catch let error as RedisError {
            #expect(error.kind == .selectFailed)
            #expect(error.message.contains("SELECT 999"), "\(error.message)")
        }
    }

    @Test func publishReachesSubscriberBinarySafe() async throws {
        let server = try RedisServerProcess()
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let inbox = Inbox()
        let loop = group.next()
        let sub = try RedisPubSub(url: url(server.port), eventLoop: loop, onMessage: { channel, payload in
            loop.preconditionInEventLoop()
            inbox.add(channel, payload)
        })
        sub.start()
        defer { _ = sub.close() }
        #expect(sub.need(channel: "wl:room\r\n1"))
        #expect(await eventually { sub.isSubscribed(channel: "wl:room\r\n1") })
        let pub = try await RedisConnection.connect(to: url(server.port), on: group.next()).get()
        let payloads: [[UInt8]] = [[0x00], Array("a\r\nb".utf8), [0x0D, 0x0A, 0x00, 0xFF, 0x0D], [], Array(repeating: 0x2A, count: 100_000)]
        for p in payloads {
            #expect(try await pub.publish(channel: "wl:room\r\n1", payload: ByteBuffer(bytes: p)).get() == 1)
        }
        #expect(try await pub.publish(channel: "wl:other", payload: ByteBuffer(string: "x")).get() == 0)
        #expect(await eventually { inbox.count == payloads.count })
        #expect(inbox.all.map(\.channel) == Array(repeating: "wl:room\r\n1", count: payloads.count))
        #expect(inbox.all.map(\.payload) == payloads)
        #expect(sub.messagesReceived == payloads.count)
    }

    @Test func refcountedSubscriptions() async throws {
        let server = try RedisServerProcess()
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let sub = try RedisPubSub(url: url(server.port), eventLoop: group.next(), onMessage: { _, _ in })
        sub.start()
        defer { _ = sub.close() }
        let other = try await RedisConnection.connect(to: url(server.port), on: group.next()).get()
        #expect(sub.need(channel: "t") == true)
        #expect(sub.need(channel: "t") == false)
        #expect(sub.refcount(channel: "t") == 2)
        #expect(try await eventually { try await numsub(other, "t") == 1 })
        #expect(sub.release(channel: "t") == false)
        // Give a (wrong) UNSUBSCRIBE time to land, then check it is still subscribed.
        try await Task.sleep(for: .milliseconds(150))
        #expect(try await numsub(other, "t") == 1)
        #expect(sub.isSubscribed(channel: "t"))
        #expect(sub.release(channel: "t") == true)
        #expect(try await eventually { try await numsub(other, "t") == 0 })
        #expect(await eventually { !sub.isSubscribed(channel: "t") })
        #expect(sub.release(channel: "t") == false, "releasing an unneeded channel is a no-op")
        #expect(sub.refcount(channel: "t") == 0)
        // Batch form, and a need/release storm from several threads ends consistent.
        #expect(sub.need(channels: ["a", "b", "a"]) == [true, true, false])
        #expect(try await eventually {
            let a = try await numsub(other, "a")
            let b = try await numsub(other, "b")
            return a == 1 && b == 1
        })
        await withTaskGroup(of: Void.self) { tasks in
            for _ in 0..<4 {
                tasks.addTask {
                    for _ in 0..<500 {
                        sub.need(channel: "storm")
                        sub.release(channel: "storm")
                    }
                }
            }
        }
        sub.release(channels: ["a", "b", "a"])
        #expect(try await eventually {
            let a = try await numsub(other, "a")
            let b = try await numsub(other, "b")
            let storm = try await numsub(other, "storm")
            return a == 0 && b == 0 && storm == 0
        })
        #expect(sub.neededChannels.isEmpty)
    }

    @Test func patternSubscriptions() async throws {
        let server = try RedisServerProcess()
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let inbox = Inbox()
        let sub = try RedisPubSub(url: url(server.port), eventLoop: group.next(), onMessage: { inbox.add($0, $1) })
        sub.start()
        defer { _ = sub.close() }
        #expect(sub.need(pattern: "news.*"))
        #expect(await eventually { sub.isSubscribed(pattern: "news.*") })
        let pub = try await RedisConnection.connect(to: url(server.port), on: group.next()).get()
        #expect(try await pub.send(["PUBSUB", "NUMPAT"]).get() == .integer(1))
        #expect(try await pub.publish(channel: "news.sport", payload: ByteBuffer(bytes: [1, 0, 13, 10])).get() == 1)
        #expect(try await pub.publish(channel: "weather", payload: ByteBuffer(string: "no")).get() == 0)
        #expect(await eventually { inbox.count == 1 })
        #expect(inbox.all.first?.channel == "news.sport")
        #expect(inbox.all.first?.payload == [1, 0, 13, 10])
        #expect(sub.release(pattern: "news.*"))
        #expect(try await eventually { try await pub.send(["PUBSUB", "NUMPAT"]).get() == .integer(0) })
    }

    @Test func subscriberReconnectsAfterRedisRestart() async throws {
        let server = try RedisServerProcess()
        try server.start()
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let inbox = Inbox()
        let states = StateLog()
        let sub = try RedisPubSub(url: url(server.port), eventLoop: group.next(), configuration: fastConfig(),
                                  onMessage: { inbox.add($0, $1) }, onStateChange: { states.add($0) })
        let pubStates = StateLog()
        let publisher = try RedisClient(url: url(server.port), eventLoop: group.next(), configuration: fastConfig(), onStateChange: { pubStates.add($0) })
        sub.start()
        publisher.start()
        defer {
            _ = sub.close()
            _ = publisher.close()
        }
        sub.need(channel: "live")
        sub.need(pattern: "pat.*")
        #expect(await eventually { sub.isSubscribed(channel: "live") && sub.isSubscribed(pattern: "pat.*") && publisher.isConnected })
        #expect(try await publisher.publish(channel: "live", payload: ByteBuffer(string: "before")).get() == 1)
        #expect(await eventually { inbox.count == 1 })

        server.stop()  // SIGKILL
        #expect(await eventually(3) {
            if case .disconnected = sub.state, case .disconnected = publisher.state { return true }
            return false
        })
        // While down: publishing fails fast, with a clear error, and nothing is queued.
        let start = ContinuousClock.now
        for _ in 0..<100 {
            do {
                _ = try await publisher.publish(channel: "live", payload: ByteBuffer(string: "lost")).get()
                Issue.record("publish while Redis is down succeeded")
            } catch let error as RedisError {
                #expect(error.kind == .notConnected)
                #expect(error.message.contains("Redis is unavailable"), "\(error.message)")
            }
        }
        // Fail fast: well under one 5 s command timeout for all 100, even on a loaded machine.
        #expect(ContinuousClock.now - start < .seconds(2))
        // A channel needed while down is subscribed after the restart too.
        sub.need(channel: "added-while-down")
        try await Task.sleep(for: .milliseconds(300))  // several failed attempts
        #expect(sub.stats.failedAttempts >= 1)

        let restarted = try RedisServerProcess(port: server.port)
        try restarted.start()
        defer { restarted.stop() }
        #expect(await eventually(5) {
            sub.isSubscribed(channel: "live") && sub.isSubscribed(pattern: "pat.*") && sub.isSubscribed(channel: "added-while-down")
                && publisher.isConnected
        })
        #expect(sub.state == .connected)
        #expect(sub.stats.reconnects == 1 && sub.stats.disconnects == 1)
        #expect(try await publisher.publish(channel: "live", payload: ByteBuffer(string: "after")).get() == 1)
        #expect(try await publisher.publish(channel: "pat.x", payload: ByteBuffer(string: "p")).get() == 1)
        #expect(try await publisher.publish(channel: "added-while-down", payload: ByteBuffer(string: "new")).get() == 1)
        #expect(await eventually { inbox.count == 4 })
        #expect(inbox.all.map { String(decoding: $0.payload, as: UTF8.self) } == ["before", "after", "p", "new"])
        #expect(inbox.all.map(\.channel) == ["live", "live", "pat.x", "added-while-down"])
        let seen = states.all
        #expect(seen.first == .connected)
        #expect(seen.last == .connected)
        #expect(seen.contains { if case .disconnected = $0 { return true } else { return false } })
        #expect(pubStates.all.last == .connected)
    }

    @Test func redisDownAtStartRetriesUntilItComesUp() async throws {
        let port = try RedisServerProcess.freePort()
        let group = MultiThreadedEventLoopGroup.singleton
        let inbox = Inbox()
        let states = StateLog()
        let sub = try RedisPubSub(url: url(port), eventLoop: group.next(), configuration: fastConfig(),
                                  onMessage: { inbox.add($0, $1) }, onStateChange: { states.add($0) })
        let publisher = try RedisClient(url: url(port), eventLoop: group.next(), configuration: fastConfig())
        sub.need(channel: "boot")  // needed before start: subscribed on first connect
        sub.start()
        publisher.start()
        defer {
            _ = sub.close()
            _ = publisher.close()
        }
        #expect(await eventually(2) { sub.stats.failedAttempts >= 3 })
        guard case .disconnected(let reason) = sub.state else {
            Issue.record("expected disconnected, got \(sub.state)")
            return
        }
        #expect(reason.contains("cannot connect to 127.0.0.1:\(port)"), "\(reason)")
        #expect(states.all.count == 1, "one report per outage, not one per attempt: \(states.all)")
        // Fails fast, no hang.
        let start = ContinuousClock.now
        await #expect(throws: RedisError.self) {
            _ = try await publisher.publish(channel: "boot", payload: ByteBuffer(string: "x")).get()
        }
        await #expect(throws: RedisError.self) { _ = try await publisher.send(["PING"]).get() }
        #expect(ContinuousClock.now - start < .seconds(2), "fails at once, not after a command timeout")
        // Backoff: attempts are spaced out, not a busy loop (20 ms base, 300 ms cap, 500 ms window).
        let before = sub.stats.attempts
        try await Task.sleep(for: .milliseconds(500))
        let during = sub.stats.attempts - before
        #expect(during >= 1 && during <= 8, "\(during) attempts in 500 ms")

        let server = try RedisServerProcess(port: port)
        try server.start()
        defer { server.stop() }
        #expect(await eventually(5) { sub.isSubscribed(channel: "boot") && publisher.isConnected })
        #expect(try await publisher.publish(channel: "boot", payload: ByteBuffer(string: "hello")).get() == 1)
        #expect(await eventually { inbox.count == 1 })
        #expect(inbox.all.first?.payload == Array("hello".utf8))
        #expect(states.all == [.disconnected(reason: reason), .connected] || states.all.count == 2)
        try await sub.close().get()
        #expect(sub.state == .closed)
        await #expect(throws: RedisError.self) { _ = try await publisher.close().flatMap { publisher.send(["PING"]) }.get() }
    }
}
