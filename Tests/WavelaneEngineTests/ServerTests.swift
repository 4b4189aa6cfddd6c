#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

/// Loopback end-to-end tests of `ServerCore` with a deliberately simple blocking client on raw
/// POSIX sockets: the HTTP upgrade is written by hand and frames are built and parsed byte by byte,
/// so nothing of the server's own code is used on the client side.
private final class RawClient {
    struct Frame: Equatable {
        var fin: Bool
        var opcode: UInt8
        var payload: [UInt8]
        var text: String { String(decoding: self.payload, as: UTF8.self) }
    }

    enum Failure: Error, CustomStringConvertible {
        case io(String)
        case timeout(String)
        case closed
        var description: String {
            switch self {
            case .io(let s): return "io: \(s)"
            case .timeout(let s): return "timeout: \(s)"
            case .closed: return "connection closed by the server"
            }
        }
    }

    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int, timeoutSeconds: Int = 5) throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw Failure.io("socket") }
        self.fd = fd
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw Failure.io("connect errno \(errno)")
        }
    }

    deinit { close(self.fd) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure.io("send errno \(errno)") }
            sent += n
        }
    }

    func send(_ s: String) throws { try self.send(Array(s.utf8)) }

    /// Reads more bytes into the buffer; false on EOF.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { return false }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure.timeout("recv") }
            if errno == ECONNRESET { return false }
            throw Failure.io("recv errno \(errno)")
        }
        self.buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    /// The HTTP response head (status line and headers), up to the blank line.
    func readHTTPHead() throws -> String {
        while true {
            if let end = self.indexOfHeadEnd() {
                let head = String(decoding: self.buffer[0..<end], as: UTF8.self)
                self.buffer.removeFirst(end + 4)
                return head
            }
            guard try self.fill() else { throw Failure.closed }
        }
    }

    private func indexOfHeadEnd() -> Int? {
        guard self.buffer.count >= 4 else { return nil }
        for i in 0...(self.buffer.count - 4)
        where self.buffer[i] == 13 && self.buffer[i + 1] == 10 && self.buffer[i + 2] == 13 && self.buffer[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// Everything until the server closes the connection.
    func readToEOF() throws -> [UInt8] {
        while try self.fill() {}
        defer { self.buffer.removeAll() }
        return self.buffer
    }

    /// The raw bytes of the next complete frame (header included) and the parsed frame.
    func readFrameWithBytes() throws -> (raw: [UInt8], frame: Frame) {
        while true {
            if let parsed = Self.parseFrame(self.buffer) {
                let raw = Array(self.buffer[0..<parsed.size])
                self.buffer.removeFirst(parsed.size)
                return (raw, parsed.frame)
            }
            guard try self.fill() else { throw Failure.closed }
        }
    }

    func readFrame() throws -> Frame { try self.readFrameWithBytes().frame }

    private static func parseFrame(_ b: [UInt8]) -> (frame: Frame, size: Int)? {
        guard b.count >= 2 else { return nil }
        precondition(b[1] & 0x80 == 0, "server frames must not be masked")
        var length = Int(b[1] & 0x7F)
        var offset = 2
        if length == 126 {
            guard b.count >= 4 else { return nil }
            length = Int(b[2]) << 8 | Int(b[3])
            offset = 4
        } else if length == 127 {
            guard b.count >= 10 else { return nil }
            length = b[2..<10].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        guard b.count >= offset + length else { return nil }
        return (Frame(fin: b[0] & 0x80 != 0, opcode: b[0] & 0x0F, payload: Array(b[offset..<(offset + length)])), offset + length)
    }

    /// A masked client frame.
    static func frame(opcode: UInt8, payload: [UInt8], fin: Bool = true, mask: [UInt8] = [0xA1, 0x5B, 0x07, 0xEE]) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        if payload.count <= 125 {
            out.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            out.append(0x80 | 127)
            out += (0..<8).reversed().map { UInt8(truncatingIfNeeded: payload.count >> ($0 * 8)) }
        }
        out += mask
        out += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return out
    }

    func sendText(_ s: String) throws { try self.send(Self.frame(opcode: 0x1, payload: Array(s.utf8))) }

    static func upgradeRequest(path: String = "/ws", key: String = "dGhlIHNhbXBsZSBub25jZQ==", version: String = "13",
                               extraHeaders: [String] = []) -> String {
        var lines = [
            "GET \(path) HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: \(key)", "Sec-WebSocket-Version: \(version)",
        ]
        lines += extraHeaders
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }

    /// Connects and upgrades; returns the client and the response head.
    static func upgraded(port: Int, path: String = "/ws", extraHeaders: [String] = []) throws -> (RawClient, String) {
        let client = try RawClient(port: port)
        try client.send(upgradeRequest(path: path, extraHeaders: extraHeaders))
        return (client, try client.readHTTPHead())
    }

    /// The status line of the answer to an upgrade request.
    static func statusLine(port: Int, request: String) throws -> String {
        let client = try RawClient(port: port)
        try client.send(request)
        let head = try client.readHTTPHead()
        return String(head.split(separator: "\r\n", omittingEmptySubsequences: false)[0])
    }
}

private func makeServer(_ json: String) throws -> ServerCore {
    let base = try JSONParser.parse(json)
    guard case .object(var object) = base else { fatalError("config must be an object") }
    object["host"] = object["host"] ?? .string("127.0.0.1")
    object["port"] = object["port"] ?? .int(0)
    object["threads"] = object["threads"] ?? .int(2)
    // Deny by default would refuse the free subscriptions these tests make; access tests pass their own.
    object["client_topics"] = object["client_topics"] ?? .array([.string("*")])
    let server = try ServerCore(configuration: EngineConfiguration(json: .object(object)))
    try server.start()
    return server
}

/// Drains until an event of `kind` arrives (other kinds are collected too), bounded by `timeoutMs`.
private func waitForEvent(_ queue: EventQueue, _ kind: InboundEvent.Kind, timeoutMs: Int = 3000) -> [InboundEvent] {
    var seen: [InboundEvent] = []
    let deadline = NIODeadline.now() + .milliseconds(Int64(timeoutMs))
    while NIODeadline.now() < deadline {
        let batch = queue.drain(max: 64, timeoutMs: 100)
        seen += batch
        if batch.contains(where: { $0.kind == kind }) { return seen }
    }
    return seen
}

private func payloadString(_ e: InboundEvent) -> String { String(buffer: e.payload) }

/// Runs `server.stop(timeout:)` on a plain (non-event-loop) thread; `wait` returns whether it finished in time.
private final class BackgroundStop {
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let done = ConditionLock(value: 0)

    init(_ server: ServerCore, timeout: Double) {
        self.pool.start()
        let done = self.done
        self.pool.submit { _ in
            server.stop(timeout: timeout)
            done.lock()
            done.unlock(withValue: 1)
        }
    }

    func wait(seconds: Double) -> Bool {
        let finished = self.done.lock(whenValue: 1, timeoutSeconds: seconds)
        if finished { self.done.unlock() }
        return finished
    }

    deinit { try? self.pool.syncShutdownGracefully() }
}

@Suite("ServerCore over loopback", .serialized, .timeLimit(.minutes(1)))
struct ServerTests {
    @Test func endToEnd() throws {
        let server = try makeServer(#"{"ws_path":"/ws","ping_interval":30,"idle_timeout":60}"#)
        defer { server.stop(timeout: 0) }
        let port = server.port
        #expect(port > 0)
        #expect(server.isRunning)

        let (client, head) = try RawClient.upgraded(port: port, path: "/ws?room=1")
        #expect(head.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
        #expect(head.lowercased().contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="))
        #expect(head.lowercased().contains("\r\nupgrade: websocket"))

        // 1. The ready message.
        let ready = try client.readFrame()
        #expect(ready.fin)
        #expect(ready.opcode == 0x1)
        let readyJSON = try JSONParser.parse(bytes: ready.payload)
        #expect(readyJSON["type"] == .string("ready"))
        #expect(readyJSON["user"] == .null)
        #expect(readyJSON["server"] == .string("wavelane/\(wavelaneVersion)"))
        #expect(readyJSON["heartbeat"] == .int(30))
        #expect(readyJSON["max_message_size"] == .int(1 << 20))
        #expect(readyJSON["epoch"]?.stringValue?.utf8.count == 16)
        let connString = try #require(readyJSON["conn"]?.stringValue)
        let conn = try #require(UInt64(connString))

        // 2. The connect event.
        let connectEvents = waitForEvent(server.queue, .connect)
        let connect = try #require(connectEvents.first { $0.kind == .connect })
        #expect(connect.conn == conn)
        #expect(connect.code == 0)
        let connectJSON = try JSONParser.parse(payloadString(connect))
        #expect(connectJSON["user"] == .null)
        #expect(connectJSON["path"] == .string("/ws"))
        #expect(connectJSON["claims"] == .object([:]))
        #expect(connectJSON["addr"]?.stringValue?.hasPrefix("127.0.0.1:") == true)

        // 3. An application text message becomes a text event, byte for byte.
        try client.sendText("hello, wavelane €")
        let textEvents = waitForEvent(server.queue, .text)
        let text = try #require(textEvents.first { $0.kind == .text })
        #expect(text.conn == conn)
        #expect(payloadString(text) == "hello, wavelane €")

        // A fragmented binary message.
        try client.send(RawClient.frame(opcode: 0x2, payload: [1, 2, 3], fin: false))
        try client.send(RawClient.frame(opcode: 0x0, payload: [4, 5], fin: true))
        let binaryEvents = waitForEvent(server.queue, .binary)
        let binary = try #require(binaryEvents.first { $0.kind == .binary })
        #expect(Array(binary.payload.readableBytesView) == [1, 2, 3, 4, 5])

        // 4. Control messages are answered by the engine, not queued.
        try client.sendText(#"{"type":"subscribe","topics":["news","user:*:events"],"id":1}"#)
        #expect(try client.readFrame() == .init(fin: true, opcode: 0x1, payload: Array(#"{"type":"subscribed","topics":["news","user:*:events"],"id":1}"#.utf8)))
        try client.sendText(#"{"type":"ping","id":"p-1"}"#)
        #expect(try client.readFrame().text == #"{"type":"pong","id":"p-1"}"#)
        try client.sendText(#"{"type":"subscribe","topics":[]}"#)
        #expect(try client.readFrame().text == #"{"type":"error","code":"bad_request","message":"topics is empty"}"#)
        #expect(server.queue.drain(max: 10, timeoutMs: 50).isEmpty, "control messages are not events")

        // 5. A WebSocket ping is answered with a pong carrying the same payload.
        try client.send(RawClient.frame(opcode: 0x9, payload: [0xDE, 0xAD]))
        #expect(try client.readFrame() == .init(fin: true, opcode: 0xA, payload: [0xDE, 0xAD]))

        // 6. Publications: the exact frame, once, for an exact and a glob subscription.
        let offset1 = try Array("breaking".utf8).withUnsafeBytes { try server.publish(topic: "news", kind: .text, payload: $0) }
        #expect(offset1 == 1)
        let (raw1, _) = try client.readFrameWithBytes()
        let expected1 = Array("breaking".utf8).withUnsafeBytes {
            Array(TopicEnvelope.frame(topic: "news", offset: 1, kind: .text, payload: $0, allocator: ByteBufferAllocator()).readableBytesView)
        }
        #expect(raw1 == expected1)
        #expect(raw1 == [0x81, UInt8(expected1.count - 2)] + Array(#"{"type":"message","topic":"news","offset":1,"data":"breaking"}"#.utf8))

        // Not subscribed: nothing arrives (the next frame is the following "news" publication).
        _ = try Array("x".utf8).withUnsafeBytes { try server.publish(topic: "sports", kind: .text, payload: $0) }
        let offset2 = try Array(#"{"n":2}"#.utf8).withUnsafeBytes { try server.publish(topic: "news", kind: .json, payload: $0) }
        #expect(offset2 == 2)
        #expect(try client.readFrame().text == #"{"type":"message","topic":"news","offset":2,"data":{"n":2}}"#)

        let payload: [UInt8] = [0, 1, 2, 0xFF]
        let offset3 = try payload.withUnsafeBytes { try server.publish(topic: "user:42:events", kind: .binary, payload: $0) }
        #expect(offset3 == 1)
        let (raw3, _) = try client.readFrameWithBytes()
        #expect(raw3 == [0x82, 30, 0x01, 0x01, 0x00, 14] + Array("user:42:events".utf8) + [0, 0, 0, 0, 0, 0, 0, 1] + payload)

        // 7. Direct sends.
        #expect(try Array("direct".utf8).withUnsafeBytes { try server.send(conn: conn, payload: $0, binary: false) })
        #expect(try client.readFrame() == .init(fin: true, opcode: 0x1, payload: Array("direct".utf8)))
        #expect(try !Array("x".utf8).withUnsafeBytes { try server.send(conn: conn &+ 1000, payload: $0, binary: false) })

        // 8. Unsubscribe: publications stop.
        try client.sendText(#"{"type":"unsubscribe","topic":"news"}"#)
        #expect(try client.readFrame().text == #"{"type":"unsubscribed","topics":["news"]}"#)
        _ = try Array("gone".utf8).withUnsafeBytes { try server.publish(topic: "news", kind: .text, payload: $0) }
        #expect(try Array("marker".utf8).withUnsafeBytes { try server.send(conn: conn, payload: $0, binary: true) })
        #expect(try client.readFrame() == .init(fin: true, opcode: 0x2, payload: Array("marker".utf8)))

        // 9. stop(): a 1001 close frame, and a quick shutdown once the client answers it.
        let clock = ContinuousClock()
        let start = clock.now
        let stopper = BackgroundStop(server, timeout: 5)
        let close = try client.readFrame()
        #expect(close.opcode == 0x8)
        #expect(Array(close.payload.prefix(2)) == [0x03, 0xE9], "1001 going away")
        #expect(String(decoding: close.payload.dropFirst(2), as: UTF8.self) == "server shutting down")
        try client.send(RawClient.frame(opcode: 0x8, payload: [0x03, 0xE9]))
        #expect(try client.readToEOF().isEmpty, "nothing after the close frame")
        #expect(stopper.wait(seconds: 10))
        #expect(clock.now - start < .seconds(4), "the close handshake completed before the timeout")
        #expect(!server.isRunning)

        let rest = waitForEvent(server.queue, .disconnect, timeoutMs: 1000)
        let disconnect = try #require(rest.first { $0.kind == .disconnect })
        #expect(disconnect.conn == conn)
        #expect(disconnect.code == 1001)
        #expect(payloadString(disconnect) == "server shutting down")
    }

    @Test func stopWithUnresponsiveClientStillSends1001() throws {
        let server = try makeServer(#"{"close_timeout":0.2}"#)
        let (client, head) = try RawClient.upgraded(port: server.port, path: "/")
        #expect(head.hasPrefix("HTTP/1.1 101"))
        _ = try client.readFrame()  // ready
        server.stop(timeout: 0.3)
        let close = try client.readFrame()
        #expect(close.opcode == 0x8)
        #expect(Array(close.payload.prefix(2)) == [0x03, 0xE9])
        #expect(try client.readToEOF().isEmpty)
    }

    @Test func clientInitiatedClose() throws {
        let server = try makeServer("{}")
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        _ = try client.readFrame()
        let connect = waitForEvent(server.queue, .connect).first { $0.kind == .connect }
        #expect(connect != nil)
        try client.send(RawClient.frame(opcode: 0x8, payload: [0x0F, 0xA0] + Array("bye".utf8)))  // 4000
        // The server echoes the code (without the reason) and closes.
        #expect(try client.readFrame() == .init(fin: true, opcode: 0x8, payload: [0x0F, 0xA0]))
        #expect(try client.readToEOF().isEmpty)
        let events = waitForEvent(server.queue, .disconnect)
        let disconnect = try #require(events.first { $0.kind == .disconnect })
        #expect(disconnect.code == 4000)
        #expect(payloadString(disconnect) == "bye")
    }

    @Test func protocolErrorClosesWith1002() throws {
        let server = try makeServer("{}")
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        _ = try client.readFrame()
        // An unmasked frame.
        try client.send([0x81, 0x02, 0x68, 0x69])
        let close = try client.readFrame()
        #expect(close.opcode == 0x8)
        #expect(Array(close.payload.prefix(2)) == [0x03, 0xEA])
        #expect(try client.readToEOF().isEmpty)
        let events = waitForEvent(server.queue, .disconnect)
        #expect(events.first { $0.kind == .disconnect }?.code == 1002)
        #expect(!events.contains { $0.kind == .text }, "the bad frame is not delivered")
    }

    @Test func invalidUTF8ClosesWith1007() throws {
        let server = try makeServer("{}")
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        _ = try client.readFrame()
        try client.send(RawClient.frame(opcode: 0x1, payload: [0x61, 0xC0, 0x80]))
        let close = try client.readFrame()
        #expect(close.opcode == 0x8)
        #expect(Array(close.payload.prefix(2)) == [0x03, 0xEF])
    }

    @Test func badJWTAnswered401() throws {
        let server = try makeServer(#"{"jwt_secret":"s3cret"}"#)
        defer { server.stop(timeout: 0) }
        let port = server.port
        let bad = RawClient.upgradeRequest(extraHeaders: ["Authorization: Bearer not.a.jwt"])
        #expect(try RawClient.statusLine(port: port, request: bad) == "HTTP/1.1 401 Unauthorized")
        // A well-formed but wrongly signed HS256 token.
        let forged = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW5vdC12YWxpZC1hdC1hbGwtMDEyMzQ1Njc4OQ"
        #expect(try RawClient.statusLine(port: port, request: RawClient.upgradeRequest(path: "/?token=\(forged)")) == "HTTP/1.1 401 Unauthorized")
        // A cookie token without an allowed Origin does not count at all (cross-site hijacking): 403.
        #expect(try RawClient.statusLine(port: port, request: RawClient.upgradeRequest(extraHeaders: ["Cookie: token=\(forged)"])) == "HTTP/1.1 403 Forbidden")
        // No token at all.
        #expect(try RawClient.statusLine(port: port, request: RawClient.upgradeRequest()) == "HTTP/1.1 401 Unauthorized")
        #expect(server.stats.value(.rejectedAuth) == 3)
        #expect(server.stats.value(.rejectedOrigin) == 1)
        #expect(server.stats.value(.connectionsAccepted) == 0)
        #expect(server.queue.drain(max: 10, timeoutMs: 50).isEmpty, "no events for refused upgrades")
    }

    @Test func maxConnectionsAnswered503() throws {
        let server = try makeServer(#"{"max_connections":1}"#)
        defer { server.stop(timeout: 0) }
        let port = server.port
        var (first, head) = try RawClient.upgraded(port: port)
        #expect(head.hasPrefix("HTTP/1.1 101"))
        _ = try first.readFrame()
        #expect(try RawClient.statusLine(port: port, request: RawClient.upgradeRequest()) == "HTTP/1.1 503 Service Unavailable")
        #expect(server.stats.value(.rejectedCapacity) == 1)

        // When the first connection is gone, its slot is released.
        try first.send(RawClient.frame(opcode: 0x8, payload: [0x03, 0xE8]))
        _ = try first.readToEOF()
        var status = ""
        for _ in 0..<50 {
            let client = try RawClient(port: port)
            try client.send(RawClient.upgradeRequest())
            status = String(try client.readHTTPHead().prefix(12))
            if status == "HTTP/1.1 101" { first = client; break }
            usleep(20_000)
        }
        #expect(status == "HTTP/1.1 101")
    }

    @Test func refusedUpgrades() throws {
        let server = try makeServer(#"{"ws_path":"/ws"}"#)
        defer { server.stop(timeout: 0) }
        let port = server.port
        #expect(try RawClient.statusLine(port: port, request: RawClient.upgradeRequest(path: "/other")) == "HTTP/1.1 404 Not Found")
        #expect(try RawClient.statusLine(port: port, request: RawClient.upgradeRequest(version: "8")) == "HTTP/1.1 426 Upgrade Required")
        #expect(try RawClient.statusLine(port: port, request: RawClient.upgradeRequest(key: "short")) == "HTTP/1.1 400 Bad Request")
        let health = try RawClient(port: port)
        try health.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        let head = try health.readHTTPHead()
        #expect(head.hasPrefix("HTTP/1.1 200 OK"))
        #expect(String(decoding: try health.readToEOF(), as: UTF8.self) == #"{"status":"ok","connections":0,"inbound_queue":0}"#)
    }

    @Test func subscriptionRules() throws {
        let server = try makeServer(#"{"max_subscriptions":2,"max_topic_length":8}"#)
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        _ = try client.readFrame()
        try client.sendText(#"{"type":"subscribe","topics":["a","b","c"],"id":1}"#)
        #expect(try client.readFrame().text == #"{"type":"error","code":"too_many_subscriptions","message":"at most 2 subscriptions per connection","id":1}"#)
        try client.sendText(#"{"type":"subscribe","topics":["waytoolongtopic"],"id":2}"#)
        #expect(try client.readFrame().text == #"{"type":"error","code":"invalid_topic","message":"topic is longer than 8 bytes","id":2}"#)
        try client.sendText(#"{"type":"subscribe","topics":["n*","news"],"id":3}"#)
        #expect(try client.readFrame().text == #"{"type":"subscribed","topics":["n*","news"],"id":3}"#)
        // Re-subscribing to held topics does not count against the limit.
        try client.sendText(#"{"type":"subscribe","topics":["news"]}"#)
        #expect(try client.readFrame().text == #"{"type":"subscribed","topics":["news"]}"#)
        // Matched by an exact and a glob subscription: delivered once.
        _ = try Array("one".utf8).withUnsafeBytes { try server.publish(topic: "news", kind: .text, payload: $0) }
        _ = try Array("two".utf8).withUnsafeBytes { try server.publish(topic: "nx", kind: .text, payload: $0) }
        #expect(try client.readFrame().text == #"{"type":"message","topic":"news","offset":1,"data":"one"}"#)
        #expect(try client.readFrame().text == #"{"type":"message","topic":"nx","offset":1,"data":"two"}"#)
        #expect(server.stats.value(.deliveries) == 2)
        // Publishing validation.
        #expect(throws: ArgumentError.self) { _ = try Array("x".utf8).withUnsafeBytes { try server.publish(topic: "n*", kind: .text, payload: $0) } }
        #expect(throws: ArgumentError.self) { _ = try [UInt8]([0xFF]).withUnsafeBytes { try server.publish(topic: "news", kind: .text, payload: $0) } }
        #expect(throws: ArgumentError.self) { _ = try Array("{bad".utf8).withUnsafeBytes { try server.publish(topic: "news", kind: .json, payload: $0) } }
    }

    @Test func denyByDefault() throws {
        let server = try makeServer(#"{"client_topics":["room:*"],"max_globs_per_connection":1}"#)
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        _ = try client.readFrame()
        try client.sendText(#"{"type":"subscribe","topics":["room:1","*"],"id":1}"#)
        #expect(try client.readFrame().text == #"{"type":"error","code":"forbidden","message":"not allowed to subscribe to \"*\"","id":1}"#)
        try client.sendText(#"{"type":"subscribe","topics":["room:*","room:2:*"],"id":2}"#)
        #expect(try client.readFrame().text == #"{"type":"error","code":"too_many_subscriptions","message":"at most 1 glob subscriptions per connection","id":2}"#)
        try client.sendText(#"{"type":"subscribe","topics":["room:*"],"id":3}"#)
        #expect(try client.readFrame().text == #"{"type":"subscribed","topics":["room:*"],"id":3}"#)
        // Nothing of the refused requests was subscribed: only room:* delivers.
        _ = try Array("x".utf8).withUnsafeBytes { try server.publish(topic: "other", kind: .text, payload: $0) }
        _ = try Array("y".utf8).withUnsafeBytes { try server.publish(topic: "room:1", kind: .text, payload: $0) }
        #expect(try client.readFrame().text == #"{"type":"message","topic":"room:1","offset":1,"data":"y"}"#)
    }

    @Test func clientSubscriptionsOff() throws {
        let server = try makeServer(#"{"client_subscriptions":false}"#)
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        _ = try client.readFrame()
        try client.sendText(#"{"type":"subscribe","topic":"a","id":"s"}"#)
        #expect(try client.readFrame().text == #"{"type":"error","code":"forbidden","message":"clients may not subscribe on this server","id":"s"}"#)
    }

    @Test func subscribeApproval() throws {
        let server = try makeServer(#"{"subscribe_approval":true,"client_topics":[]}"#)
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        _ = try client.readFrame()
        let conn = try #require(waitForEvent(server.queue, .connect).first { $0.kind == .connect }).conn
        try client.sendText(#"{"type":"subscribe","topics":["room:1"],"id":5}"#)
        let request = try #require(waitForEvent(server.queue, .subscribeRequest).first { $0.kind == .subscribeRequest })
        #expect(request.conn == conn)
        #expect(payloadString(request) == #"{"topics":["room:1"],"patterns":[],"id":5}"#)
        #expect(try server.subscribe(conn: conn, topics: ["room:1"], ack: .some(.int(5))))
        #expect(try client.readFrame().text == #"{"type":"subscribed","topics":["room:1"],"id":5}"#)
        try client.sendText(#"{"type":"subscribe","topics":["room:2"]}"#)
        let second = try #require(waitForEvent(server.queue, .subscribeRequest).first { $0.kind == .subscribeRequest })
        #expect(payloadString(second) == #"{"topics":["room:2"],"patterns":[],"id":null}"#)
        #expect(server.deny(conn: conn, code: "forbidden", message: "no", id: nil))
        #expect(try client.readFrame().text == #"{"type":"error","code":"forbidden","message":"no"}"#)
        _ = try Array("hi".utf8).withUnsafeBytes { try server.publish(topic: "room:2", kind: .text, payload: $0) }
        _ = try Array("hi".utf8).withUnsafeBytes { try server.publish(topic: "room:1", kind: .text, payload: $0) }
        #expect(try client.readFrame().text == #"{"type":"message","topic":"room:1","offset":1,"data":"hi"}"#)
    }

    @Test func idleConnectionIsPingedThenClosed() throws {
        let server = try makeServer(#"{"ping_interval":0.1,"idle_timeout":0.4}"#)
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        #expect(try client.readFrame().opcode == 0x1)  // ready
        var pings = 0
        var close: RawClient.Frame?
        while close == nil {
            let f = try client.readFrame()
            if f.opcode == 0x9 { pings += 1; #expect(f.payload.isEmpty) } else if f.opcode == 0x8 { close = f }
        }
        #expect(pings >= 1)
        #expect(close?.payload == [0x03, 0xE9] + Array("idle timeout".utf8))
        let events = waitForEvent(server.queue, .disconnect)
        #expect(events.first { $0.kind == .disconnect }?.code == 1001)
        #expect(server.stats.value(.idleTimeouts) == 1)
    }

    @Test func applicationClose() throws {
        let server = try makeServer("{}")
        defer { server.stop(timeout: 0) }
        let (client, _) = try RawClient.upgraded(port: server.port)
        _ = try client.readFrame()
        let conn = try #require(waitForEvent(server.queue, .connect).first { $0.kind == .connect }).conn
        #expect(throws: ArgumentError.self) { _ = try server.close(conn: conn, code: 1005, reason: "") }
        #expect(throws: ArgumentError.self) { _ = try server.close(conn: conn, code: 1000, reason: String(repeating: "r", count: 124)) }
        #expect(try server.close(conn: conn, code: 4001, reason: "kicked"))
        #expect(try client.readFrame() == .init(fin: true, opcode: 0x8, payload: [0x0F, 0xA1] + Array("kicked".utf8)))
        try client.send(RawClient.frame(opcode: 0x8, payload: [0x0F, 0xA1]))
        #expect(try client.readToEOF().isEmpty)
        #expect(waitForEvent(server.queue, .disconnect).first { $0.kind == .disconnect }?.code == 4001)
        #expect(try !server.close(conn: conn, code: 1000, reason: ""), "the connection is gone")
    }

    @Test func startFailsOnPortInUse() throws {
        let first = try makeServer("{}")
        defer { first.stop(timeout: 0) }
        let second = try ServerCore(configuration: EngineConfiguration(json: .object(["port": .int(Int64(first.port))])))
        #expect(throws: StartError.self) { try second.start() }
        #expect(!second.isRunning)
    }
}
