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

/// Plain HTTP on the WebSocket port: the routes Python registered (e.g. the demo page), `/health`
/// and `/metrics` (unless switched off or moved to the admin listener), and the answer to a refused
/// upgrade. On the admin listener (`admin`): `/health` and `/metrics` only. Every response closes
/// the connection.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: ServerCore
    /// Until the upgrade (internal for tests).
    let state: HandshakeState
    private let admin: Bool
    private var responded = false

    init(server: ServerCore, state: HandshakeState, admin: Bool = false) {
        self.server = server
        self.state = state
        self.admin = admin
    }

    /// A `POST /api/publish` whose body is being read: its head, the announced length, the bytes so far.
    private var apiRequest: (head: HTTPRequestHead, length: Int, body: ByteBuffer)?

    /// The HTTP publish API's path (served on the server's port when `api_key` is set).
    static let apiPublishPath = "/api/publish"

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        if self.apiRequest != nil {
            self.apiRequestPart(context: context, part)
            return
        }
        guard case .head(let head) = part, !self.responded else { return }
        self.responded = true
        if let rejection = self.state.rejection {
            var extra: [(String, String)] = []
            if rejection.status == .upgradeRequired { extra.append(("Sec-WebSocket-Version", "13")) }
            extra.append(contentsOf: rejection.headers)
            self.respond(context: context, status: rejection.status, contentType: "text/plain; charset=utf-8",
                         body: Array(rejection.reason.utf8), head: head, extraHeaders: extra)
            return
        }
        if head.headers.contains(name: "upgrade") {
            // An upgrade that no upgrader took (not "websocket", or missing WebSocket headers).
            self.server.stats.add(.rejectedBadRequest)
            self.respond(context: context, status: .badRequest, contentType: "text/plain; charset=utf-8",
                         body: Array("bad websocket upgrade request".utf8), head: head)
            return
        }
        if !self.admin && Handshake.splitTarget(head.uri).path == Substring(Self.apiPublishPath) {
            self.apiRequestHead(context: context, head)
            return
        }
        guard head.method == .GET || head.method == .HEAD else {
            self.respond(context: context, status: .methodNotAllowed, contentType: "text/plain; charset=utf-8",
                         body: Array("method not allowed".utf8), head: head, extraHeaders: [("Allow", "GET, HEAD")])
            return
        }
        let path = String(Handshake.splitTarget(head.uri).path)
        let config = self.server.config
        // /health and /metrics: where they are served (here or on the admin listener), if at all.
        let observable = self.admin == (config.adminPort != nil)
        if !self.admin, let route = self.server.route(path) {
            self.respond(context: context, status: .ok, contentType: route.contentType, body: route.body, head: head)
        } else if path == "/health" && observable && config.health {
            let accepting = self.server.accepting
            let delivery = self.server.delivery!
            let redis = delivery.redisState
            let status = !accepting ? "draining" : redis != nil && !delivery.redisConnected ? "degraded" : "ok"
            let body = ServerMessage.health(status: status, connections: self.server.stats.activeConnections,
                                            inboundQueue: self.server.queue.count, redis: redis)
            self.respond(context: context, status: accepting ? .ok : .serviceUnavailable, contentType: "application/json",
                         body: body, head: head)
        } else if path == "/metrics" && observable && config.metrics {
            self.respond(context: context, status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
                         body: self.server.metrics.render(self.server), head: head)
        } else {
            self.respond(context: context, status: .notFound, contentType: "text/plain; charset=utf-8",
                         body: Array("not found".utf8), head: head)
        }
    }

    // MARK: HTTP publish API

    /// `POST /api/publish` (docs/protocol.md): checked on the head — the route exists only with
    /// `api_key`; the method; the failed-key limiter; the bearer key; a Content-Length within
    /// `max_message_size` — before any of the body is kept. Every answer closes the connection.
    private func apiRequestHead(context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let config = self.server.config
        func refuse(_ status: HTTPResponseStatus, _ reason: String, _ extra: [(String, String)] = []) {
            self.respondJSON(context: context, status: status, error: reason, head: head, extraHeaders: extra)
        }
        guard let apiKey = config.apiKey else {
            self.respond(context: context, status: .notFound, contentType: "text/plain; charset=utf-8",
                         body: Array("not found".utf8), head: head)
            return
        }
        guard head.method == .POST else {
            return refuse(.methodNotAllowed, "use POST", [("Allow", "POST")])
        }
        let policy = config.policies
        let clientIP = IPKey(policy.clientAddress(peer: context.channel.remoteAddress,
                                                  forwardedFor: head.headers["x-forwarded-for"], realIP: head.headers["x-real-ip"]))
        let failures = self.server.failedHandshakes
        if let retryAfter = failures.check(clientIP, now: .now()) {
            self.server.stats.add(.rejectedRate)
            return refuse(.tooManyRequests, "too many failed requests from this address", [("Retry-After", String(retryAfter))])
        }
        let presented = head.headers["authorization"].lazy.compactMap(Handshake.bearerToken(fromAuthorization:)).first
        guard let presented, Self.constantTimeEquals(apiKey, Array(presented.utf8)) else {
            self.server.stats.add(.rejectedAuth)
            failures.recordFailure(clientIP, now: .now())
            return refuse(.unauthorized, presented == nil ? "missing bearer key" : "bad key", [("WWW-Authenticate", "Bearer")])
        }
        if head.headers.contains(name: "transfer-encoding") {
            return refuse(.lengthRequired, "the body needs a Content-Length (no Transfer-Encoding)")
        }
        let lengths = head.headers["content-length"]
        guard !lengths.isEmpty else { return refuse(.lengthRequired, "the body needs a Content-Length") }
        guard lengths.count == 1, let length = Int(lengths[0].trimmingSpaces), length >= 0 else {
            return refuse(.badRequest, "bad Content-Length")
        }
        guard length <= config.maxMessageSize else {
            return refuse(.payloadTooLarge, "body of \(length) bytes is over max_message_size (\(config.maxMessageSize))")
        }
        self.apiRequest = (head, length, context.channel.allocator.buffer(capacity: length))
        // A client that waits for the go-ahead before sending its body (curl does above 1 KiB).
        if head.version == .http1_1, head.headers["expect"].contains(where: { $0.trimmingSpaces.lowercased() == "100-continue" }) {
            context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
    }

    private func apiRequestPart(context: ChannelHandlerContext, _ part: HTTPServerRequestPart) {
        guard var request = self.apiRequest else { return }
        switch part {
        case .head:
            return
        case .body(var bytes):
            // The decoder stops at Content-Length; the check keeps the buffer bounded regardless.
            guard request.body.readableBytes + bytes.readableBytes <= request.length else {
                self.apiRequest = nil
                return self.respondJSON(context: context, status: .badRequest, error: "body longer than Content-Length", head: request.head)
            }
            self.apiRequest = nil  // no copy-on-write of the buffer while it grows
            request.body.writeBuffer(&bytes)
            self.apiRequest = request
        case .end:
            self.apiRequest = nil
            self.apiPublish(context: context, head: request.head, body: request.body)
        }
    }

    private func apiPublish(context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
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
                     body: ServerMessage.published(offset: offset), head: head)
    }

    private func respondJSON(context: ChannelHandlerContext, status: HTTPResponseStatus, error: String,
                             head: HTTPRequestHead, extraHeaders: [(String, String)] = []) {
        self.respond(context: context, status: status, contentType: "application/json", body: ServerMessage.httpError(error), head: head,
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

    private func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, contentType: String,
                         body: [UInt8], head: HTTPRequestHead, extraHeaders: [(String, String)] = []) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Server", value: "wavelane/\(wavelaneVersion)")
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD && !body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Still here: no upgrade took the holds.
        self.state.channelClosed(self.server.stats)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A refused upgrade is reported here before the request is passed on; it is answered in
        // channelRead. Anything else (bad HTTP, I/O errors) closes the connection.
        if error is WebSocketUpgrader.Refused { return }
        context.close(promise: nil)
    }
}
