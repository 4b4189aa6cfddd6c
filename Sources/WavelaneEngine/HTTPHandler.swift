// Plain HTTP: routes, /health, /metrics, the HTTP publish API, and the answer to a refused upgrade.

import NIOCore
import NIOHTTP1
import NIOWebSocket
import WavelaneAuth
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The first handler of every connection to the WebSocket port (after TLS) and the admin listener:
/// reads the HTTP/1.1 request head (`RequestHeadParser`, WavelaneProtocol) and answers it.
/// On the WebSocket port: an upgrade request goes to `WebSocketUpgrader` (the 101 and a `Connection`
/// in this handler's place, or a refusal), other requests to the routes Python registered (e.g. the
/// demo page), `/health` and `/metrics` (unless switched off or moved to the admin listener) and
/// the HTTP publish API. On the admin listener (`admin`): `/health` and `/metrics` only. Every
/// response closes the connection, so one request is read per connection and bytes after it are
/// ignored (or, after an upgrade, handed to the connection).
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: ServerCore
    /// Until the upgrade (internal for tests).
    let state: HandshakeState
    private let admin: Bool

    private enum Phase {
        /// Reading the request head.
        case head
        /// Reading the body of a `POST /api/publish`: its head, the announced length, the bytes so far.
        case apiBody(head: RequestHead, length: Int, body: ByteBuffer)
        /// Answered (or upgraded): what comes after is not read.
        case answered
    }

    private var phase = Phase.head
    /// The head's bytes so far, when the reads so far did not bring all of it (a copy: the receive
    /// buffer goes back to NIO).
    private var partialHead: ByteBuffer?
    /// Where the head ends, found as its bytes come.
    private var scanner = RequestHeadScanner()

    init(server: ServerCore, state: HandshakeState, admin: Bool = false) {
        self.server = server
        self.state = state
        self.admin = admin
    }

    /// The HTTP publish API's path (served on the server's port when `api_key` is set).
    static let apiPublishPath = "/api/publish"

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        switch self.phase {
        case .answered:
            return
        case .apiBody(let head, let length, var body):
            self.phase = .answered  // no copy-on-write of the body while it grows
            let take = min(bytes.readableBytes, length - body.readableBytes)
            body.writeImmutableBuffer(bytes.readSlice(length: take)!)
            if body.readableBytes == length {
                self.apiPublish(context: context, head: head, body: body)
            } else {
                self.phase = .apiBody(head: head, length: length, body: body)
            }
        case .head:
            if var partial = self.partialHead {
                self.partialHead = nil
                partial.writeBuffer(&bytes)
                bytes = partial
            }
            var scanner = self.scanner
            let parsed: Result<(head: RequestHead, length: Int)?, RequestHeadParser.Error> = bytes.withUnsafeReadableBytes { raw in
                do throws(RequestHeadParser.Error) {
                    guard let length = try scanner.scan(raw) else { return .success(nil) }
                    return .success((try RequestHeadParser.parse(UnsafeRawBufferPointer(rebasing: raw[0..<length])), length))
                } catch {
                    return .failure(error)
                }
            }
            self.scanner = scanner
            switch parsed {
            case .success(nil):
                var partial = context.channel.allocator.buffer(capacity: max(1024, bytes.readableBytes * 2))
                partial.writeBuffer(&bytes)
                self.partialHead = partial
            case .success(let (head, length)?):
                bytes.moveReaderIndex(forwardBy: length)
                self.phase = .answered
                self.request(context: context, head, rest: bytes)
            case .failure(let error):
                self.phase = .answered
                self.server.stats.add(.rejectedBadRequest)
                let status: HTTPResponseStatus
                switch error {
                case .headTooLarge, .tooManyFields: status = .requestHeaderFieldsTooLarge
                case .unsupportedVersion: status = .httpVersionNotSupported
                case .badRequestLine, .badField, .badLineEnding: status = .badRequest
                }
                self.respond(context: context, status: status, contentType: "text/plain; charset=utf-8",
                             body: Array(Self.describe(error).utf8), method: "GET")
            }
        }
    }

    static func describe(_ error: RequestHeadParser.Error) -> String {
        switch error {
        case .headTooLarge: return "request head over \(RequestHeadParser.maxHeadBytes) bytes"
        case .tooManyFields: return "more than \(RequestHeadParser.maxFields) header fields"
        case .unsupportedVersion: return "HTTP/1.0 and HTTP/1.1 only"
        case .badRequestLine: return "malformed request line"
        case .badField: return "malformed header field"
        case .badLineEnding: return "lines must end in CRLF"
        }
    }

    /// A complete head: the upgrade, or a plain request.
    private func request(context: ChannelHandlerContext, _ head: RequestHead, rest: ByteBuffer) {
        // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host; none has two.
        let hosts = head.values("host").count
        if hosts > 1 || (hosts == 0 && head.minorVersion >= 1) {
            self.server.stats.add(.rejectedBadRequest)
            return self.respond(context: context, status: .badRequest, contentType: "text/plain; charset=utf-8",
                                body: Array((hosts == 0 ? "missing Host header" : "more than one Host header").utf8), method: head.method)
        }
        if !self.admin, head.listContains("upgrade", token: "websocket"), head.listContains("connection", token: "upgrade") {
            let upgrader = WebSocketUpgrader(server: self.server, state: self.state)
            switch upgrader.accept(channel: context.channel, request: head) {
            case .success(let key):
                upgrader.upgrade(context: context, key: key, rest: rest)
            case .failure(let rejection):
                var extra: [(String, String)] = []
                if rejection.status == .upgradeRequired { extra.append(("Sec-WebSocket-Version", "13")) }
                extra.append(contentsOf: rejection.headers)
                self.respond(context: context, status: rejection.status, contentType: "text/plain; charset=utf-8",
                             body: Array(rejection.reason.utf8), method: head.method, extraHeaders: extra)
            }
            return
        }
        if head.contains("upgrade") {
            // An upgrade to something else, or one without `Connection: upgrade`.
            self.server.stats.add(.rejectedBadRequest)
            return self.respond(context: context, status: .badRequest, contentType: "text/plain; charset=utf-8",
                                body: Array("bad websocket upgrade request".utf8), method: head.method)
        }
        if !self.admin && Handshake.splitTarget(head.target).path == Substring(Self.apiPublishPath) {
            return self.apiRequestHead(context: context, head, rest: rest)
        }
        guard head.method == "GET" || head.method == "HEAD" else {
            return self.respond(context: context, status: .methodNotAllowed, contentType: "text/plain; charset=utf-8",
                                body: Array("method not allowed".utf8), method: head.method, extraHeaders: [("Allow", "GET, HEAD")])
        }
        let path = String(Handshake.splitTarget(head.target).path)
        let config = self.server.config
        // /health and /metrics: where they are served (here or on the admin listener), if at all.
        let observable = self.admin == (config.adminPort != nil)
        if !self.admin, let route = self.server.route(path) {
            self.respond(context: context, status: .ok, contentType: route.contentType, body: route.body, method: head.method)
        } else if path == "/health" && observable && config.health {
            let accepting = self.server.accepting
            let delivery = self.server.delivery!
            let redis = delivery.redisState
            let status = !accepting ? "draining" : redis != nil && !delivery.redisConnected ? "degraded" : "ok"
            let body = ServerMessage.health(status: status, connections: self.server.stats.activeConnections,
                                            inboundQueue: self.server.queue.count, redis: redis)
            self.respond(context: context, status: accepting ? .ok : .serviceUnavailable, contentType: "application/json",
                         body: body, method: head.method)
        } else if path == "/metrics" && observable && config.metrics {
            self.respond(context: context, status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
                         body: self.server.metrics.render(self.server), method: head.method)
        } else {
            self.respond(context: context, status: .notFound, contentType: "text/plain; charset=utf-8",
                         body: Array("not found".utf8), method: head.method)
        }
    }

    // MARK: HTTP publish API

    /// `POST /api/publish` (docs/protocol.md): checked on the head — the route exists only with
    /// `api_key`; the method; the failed-key limiter; the bearer key; a Content-Length within
    /// `max_message_size` — before any of the body is kept. Every answer closes the connection.
    private func apiRequestHead(context: ChannelHandlerContext, _ head: RequestHead, rest: ByteBuffer) {
        let config = self.server.config
        func refuse(_ status: HTTPResponseStatus, _ reason: String, _ extra: [(String, String)] = []) {
            self.respondJSON(context: context, status: status, error: reason, head: head, extraHeaders: extra)
        }
        guard let apiKey = config.apiKey else {
            self.respond(context: context, status: .notFound, contentType: "text/plain; charset=utf-8",
                         body: Array("not found".utf8), method: head.method)
            return
        }
        guard head.method == "POST" else {
            return refuse(.methodNotAllowed, "use POST", [("Allow", "POST")])
        }
        let policy = config.policies
        let clientIP = IPKey(policy.clientAddress(peer: context.channel.remoteAddress,
                                                  forwardedFor: head["x-forwarded-for"], realIP: head["x-real-ip"]))
        let failures = self.server.failedHandshakes
        if let retryAfter = failures.check(clientIP, now: .now()) {
            self.server.stats.add(.rejectedRate)
            return refuse(.tooManyRequests, "too many failed requests from this address", [("Retry-After", String(retryAfter))])
        }
        let presented = head["authorization"].lazy.compactMap(Handshake.bearerToken(fromAuthorization:)).first
        guard let presented, Self.constantTimeEquals(apiKey, Array(presented.utf8)) else {
            self.server.stats.add(.rejectedAuth)
            failures.recordFailure(clientIP, now: .now())
            return refuse(.unauthorized, presented == nil ? "missing bearer key" : "bad key", [("WWW-Authenticate", "Bearer")])
        }
        if head.contains("transfer-encoding") {
            return refuse(.lengthRequired, "the body needs a Content-Length (no Transfer-Encoding)")
        }
        let lengths = head["content-length"]
        guard !lengths.isEmpty else { return refuse(.lengthRequired, "the body needs a Content-Length") }
        guard lengths.count == 1, let length = Int(lengths[0].trimmingSpaces), length >= 0 else {
            return refuse(.badRequest, "bad Content-Length")
        }
        guard length <= config.maxMessageSize else {
            return refuse(.payloadTooLarge, "body of \(length) bytes is over max_message_size (\(config.maxMessageSize))")
        }
        // A client that waits for the go-ahead before sending its body (curl does above 1 KiB).
        if head.minorVersion >= 1, rest.readableBytes == 0, head["expect"].contains(where: { $0.trimmingSpaces.lowercased() == "100-continue" }) {
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
        self.phase = .apiBody(head: head, length: length, body: context.channel.allocator.buffer(capacity: length))
        // What came with the head is the body's start (or all of it).
        self.channelRead(context: context, data: self.wrapInboundOut(rest))
    }

    private func apiPublish(context: ChannelHandlerContext, head: RequestHead, body: ByteBuffer) {
        func bad(_ reason: String) {
            self.respondJSON(context: context, status: .badRequest, error: reason, head: head)
        }
        let parsed: JSONValue
        do {
            parsed = try body.withUnsafeReadableBytes { bytes in try JSONParser.parse(bytes, maxDepth: 512) }
        } catch {
            return bad("body is not valid JSON: \(error)")
        }
        guard let object = parsed.objectValue else { return bad("body must be a JSON object") }
        for key in object.keys.sorted() where !["topic", "data", "priority", "key"].contains(key) {
            return bad("unknown field \"\(key)\"")
        }
        guard let topicValue = object["topic"] else { return bad("missing \"topic\"") }
        guard let topic = topicValue.stringValue else { return bad("\"topic\" must be a string") }
        guard let data = object["data"] else { return bad("missing \"data\"") }
        var priority = Priority.normal
        if let value = object["priority"], value != .null {
            guard let name = value.stringValue, let p = Priority.allCases.first(where: { $0.name == name }) else {
                return bad("\"priority\" must be one of \(Priority.allCases.map(\.name).joined(separator: ", "))")
            }
            priority = p
        }
        var key: String? = nil
        if let value = object["key"], value != .null {
            guard let k = value.stringValue else { return bad("\"key\" must be a string") }
            key = k.isEmpty ? nil : k
        }
        var payload: [UInt8] = []
        data.write(into: &payload)
        // The same path as Python's Server.publish (wl_publish): validation, offsets, history, Redis.
        let offset: UInt64
        do {
            offset = try payload.withUnsafeBytes { bytes in
                try self.server.publish(topic: topic, kind: .json, payload: bytes, priority: priority, key: key)
            }
        } catch {
            return bad("\(error)")
        }
        self.respond(context: context, status: .ok, contentType: "application/json",
                     body: ServerMessage.published(offset: offset), method: head.method)
    }

    private func respondJSON(context: ChannelHandlerContext, status: HTTPResponseStatus, error: String,
                             head: RequestHead, extraHeaders: [(String, String)] = []) {
        self.respond(context: context, status: status, contentType: "application/json", body: ServerMessage.httpError(error), method: head.method,
                     extraHeaders: extraHeaders)
    }

    /// Compares a presented key with the configured one in time that depends only on the presented
    /// key's length, never on where the two differ.
    static func constantTimeEquals(_ expected: [UInt8], _ presented: [UInt8]) -> Bool {
        guard !expected.isEmpty else { return false }
        var diff = UInt8(truncatingIfNeeded: expected.count ^ presented.count) | UInt8(expected.count == presented.count ? 0 : 1)
        for i in 0..<presented.count {
            diff |= presented[i] ^ expected[i % expected.count]
        }
        return diff == 0
    }

    /// Writes a response and closes the connection once it has gone out. Header values that could
    /// end a line (CR, LF) are left out rather than written.
    private func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, contentType: String,
                         body: [UInt8], method: String, extraHeaders: [(String, String)] = []) {
        var out = context.channel.allocator.buffer(capacity: 192 + body.count)
        out.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        func header(_ name: String, _ value: String) {
            guard !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A }) else { return }
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        header("Content-Type", contentType)
        header("Content-Length", String(body.count))
        header("Connection", "close")
        header("Server", "wavelane/\(wavelaneVersion)")
        for (name, value) in extraHeaders { header(name, value) }
        out.writeStaticString("\r\n")
        if method != "HEAD" { out.writeBytes(body) }
        context.writeAndFlush(self.wrapOutboundOut(out)).whenComplete { _ in context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Still here: no upgrade took the holds.
        self.state.channelClosed(self.server.stats)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // I/O and TLS errors before the upgrade close the connection.
        context.close(promise: nil)
    }
}
