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

/// Per-connection state of the HTTP phase, shared by the upgrader and the HTTP handler.
/// Touched only on the channel's event loop.
final class HandshakeState: @unchecked Sendable {
    struct Rejection: Error {
        var status: HTTPResponseStatus
        var reason: String
        /// Extra response headers (e.g. Retry-After on 429).
        var headers: [(String, String)] = []
    }

    var rejection: Rejection?
    /// When the TCP connection was accepted (for the handshake latency histogram).
    let acceptedAt = NIODeadline.now()
    var slotHeld = false
    var upgraded = false
    var timeout: Scheduled<Void>?
    /// Set by a successful check: the connection's id, user and connect-event payload.
    var accepted: (id: UInt64, user: String?, payload: ByteBuffer, deflate: PerMessageDeflate.Parameters?, exp: Double?)?
    /// The subprotocol chosen from the client's offers (answered in the 101), if any.
    var subprotocol: String?
    /// What this connection holds in the per-IP / per-user admission table; released when the channel closes.
    var admission: AdmissionTicket?

    /// Gives back the connection slot and the admission counts (idempotent). Called when the
    /// connection is torn down — before its disconnect event is queued, so a client that saw the
    /// disconnect can reconnect at once — and again, harmlessly, when the channel's close completes.
    func releaseHolds(_ stats: EngineStats) {
        self.admission?.release()
        if self.slotHeld {
            self.slotHeld = false
            stats.connectionSlots.wrappingSubtract(1, ordering: .relaxed)
        }
    }
}

/// The WebSocket side of the HTTP/1.1 upgrade (RFC 6455 §4.2.2). Checks the request, the token and
/// the limits before anything is sent, so a refused client gets a plain HTTP status (401, 404, 503)
/// and never a 101; then installs NIO's frame decoder and our `Connection` handler.
struct WebSocketUpgrader: HTTPServerProtocolUpgrader, @unchecked Sendable {
    let supportedProtocol = "websocket"
    let requiredUpgradeHeaders: [String] = []  // checked in `check` so a bad request gets a clear 400
    let server: ServerCore
    let state: HandshakeState

    struct Refused: Error {}

    func buildUpgradeResponse(channel: Channel, upgradeRequest: HTTPRequestHead,
                              initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
        switch self.check(channel: channel, request: upgradeRequest) {
        case .success(let key):
            var headers = initialResponseHeaders
            headers.add(name: "Sec-WebSocket-Accept", value: Handshake.acceptValue(forKey: key))
            if let deflate = self.state.accepted?.deflate {
                headers.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader)
            }
            if let subprotocol = self.state.subprotocol {
                headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol)
            }
            return channel.eventLoop.makeSucceededFuture(headers)
        case .failure(let rejection):
            self.server.logger.debug("upgrade refused", metadata: [
                "status": "\(rejection.status.code)", "reason": "\(rejection.reason)",
                "addr": "\(Self.describe(channel.remoteAddress))",
            ])
            self.state.rejection = rejection
            return channel.eventLoop.makeFailedFuture(Refused())
        }
    }

    private func check(channel: Channel, request: HTTPRequestHead) -> Result<String, HandshakeState.Rejection> {
        let config = self.server.config
        let stats = self.server.stats
        guard self.server.accepting else {
            stats.add(.rejectedCapacity)
            return .failure(.init(status: .serviceUnavailable, reason: "server is shutting down"))
        }
        guard request.method == .GET else {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .methodNotAllowed, reason: "websocket upgrades use GET"))
        }
        // A GET upgrade has no body; one that announces a body (request smuggling, or bytes the
        // WebSocket decoder would take as frames) is refused.
        if request.headers["content-length"].contains(where: { $0.trimmingSpaces != "0" }) || request.headers.contains(name: "transfer-encoding") {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .badRequest, reason: "an upgrade request must not have a body"))
        }
        let (path, query) = Handshake.splitTarget(request.uri)
        if let wsPath = config.wsPath, path != Substring(wsPath) {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .notFound, reason: "no websocket endpoint at this path"))
        }
        let versions = request.headers["sec-websocket-version"]
        guard versions.count == 1, versions[0] == "13" else {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .upgradeRequired, reason: "unsupported websocket version (13 required)"))
        }
        let keys = request.headers["sec-websocket-key"]
        guard keys.count == 1, Handshake.isValidKey(keys[0].trimmingSpaces) else {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .badRequest, reason: "bad Sec-WebSocket-Key"))
        }

        // Policies (Policies.swift): origin, subprotocol, then per-IP admission, all before the JWT
        // is verified and before any per-connection state (slot, id, payload) exists.
        let policy = config.policies
        if let problem = policy.checkOrigin(request.headers["origin"]) {
            stats.add(.rejectedOrigin)
            return .failure(.init(status: .forbidden, reason: problem))
        }
        let subprotocol: String?
        switch policy.selectSubprotocol(request.headers["sec-websocket-protocol"]) {
        case .none: subprotocol = nil
        case .chosen(let name): subprotocol = name
        case .refused:
            stats.add(.rejectedSubprotocol)
            return .failure(.init(status: .badRequest, reason: "none of the offered subprotocols is supported (supported: \(policy.subprotocols.joined(separator: ", ")))"))
        }
        // The client's address: the peer's, or the one a trusted proxy forwarded (trusted_proxies).
        let client = policy.clientAddress(peer: channel.remoteAddress, forwardedFor: request.headers["x-forwarded-for"],
                                          realIP: request.headers["x-real-ip"])
        let clientIP = IPKey(client)
        // An address that keeps failing the token check is refused before its token is verified.
        if self.server.verifier != nil, let retryAfter = self.server.failedHandshakes.check(clientIP, now: .now()) {
            stats.add(.rejectedRate)
            return .failure(.init(status: .tooManyRequests, reason: "too many failed handshakes from this address",
                                  headers: [("Retry-After", String(retryAfter))]))
        }
        var ticket: AdmissionTicket? = nil
        if policy.admissionEnabled {
            switch self.server.admission.admit(ip: clientIP, now: .now()) {
            case .success(let t):
                ticket = t
                self.state.admission = t
                channel.closeFuture.whenComplete { _ in t.release() }
            case .failure(.rate(let retryAfter)):
                stats.add(.rejectedRate)
                return .failure(.init(status: .tooManyRequests, reason: "too many new connections from this address",
                                      headers: [("Retry-After", String(retryAfter))]))
            case .failure(.tableFull):
                stats.add(.rejectedIPTableFull)
                return .failure(.init(status: .serviceUnavailable, reason: "too many clients", headers: [("Retry-After", "1")]))
            case .failure:
                stats.add(.rejectedIP)
                return .failure(.init(status: .serviceUnavailable, reason: "too many connections from this address"))
            }
        }
        // From here on a refusal gives back what the ticket holds at once (the close also would, later).
        func refuse(_ rejection: HandshakeState.Rejection) -> Result<String, HandshakeState.Rejection> {
            ticket?.release()
            return .failure(rejection)
        }

        if stats.connectionSlots.load(ordering: .relaxed) >= config.maxConnections {
            stats.add(.rejectedCapacity)
            return refuse(.init(status: .serviceUnavailable, reason: "too many connections"))
        }

        var user: String? = nil
        var claimsJSON = "{}"
        var exp: Double? = nil
        if let verifier = self.server.verifier {
            let failures = self.server.failedHandshakes
            let token: String
            switch self.token(request: request, query: query) {
            case .none:
                stats.add(.rejectedAuth)
                failures.recordFailure(clientIP, now: .now())
                return refuse(.init(status: .unauthorized, reason: "missing token"))
            case .cookieFromOtherOrigin:
                stats.add(.rejectedOrigin)
                failures.recordFailure(clientIP, now: .now())
                return refuse(.init(status: .forbidden, reason: "a token in a cookie needs an Origin listed in allowed_origins"))
            case .found(let t):
                token = t
            }
            switch verifier.verify(token, now: Int64(time(nil))) {
            case .success(let verified):
                user = verified.subject
                claimsJSON = verified.claimsJSON
                exp = verified.claims["exp"]?.doubleValue
            case .failure(let error):
                stats.add(.rejectedAuth)
                failures.recordFailure(clientIP, now: .now())
                return refuse(.init(status: .unauthorized, reason: error.reason))
            }
        }
        if let user, let ticket, self.server.admission.admit(user: user, ticket: ticket) != nil {
            stats.add(.rejectedUser)
            return refuse(.init(status: .serviceUnavailable, reason: "too many connections for this user"))
        }

        let slots = stats.connectionSlots.wrappingAdd(1, ordering: .relaxed).newValue
        if slots > config.maxConnections {
            stats.connectionSlots.wrappingSubtract(1, ordering: .relaxed)
            stats.add(.rejectedCapacity)
            return refuse(.init(status: .serviceUnavailable, reason: "too many connections"))
        }
        self.state.slotHeld = true
        self.state.subprotocol = subprotocol

        let id = self.server.nextConnectionID(on: channel.eventLoop)
        var headers: [(name: String, value: String)] = []
        for name in config.connectHeaders {
            let values = request.headers[name]
            guard !values.isEmpty else { continue }
            let capped = FrameEncoder.truncatedUTF8(values.joined(separator: ", "), maxBytes: EngineConfiguration.connectHeaderMaxBytes)
            headers.append((name, String(decoding: capped, as: UTF8.self)))
        }
        let body = ServerMessage.connectEvent(
            user: user, addr: Self.describe(client), path: String(path), subprotocol: subprotocol,
            query: Handshake.applicationQuery(query, removing: config.jwtQueryParam, maxBytes: Self.maxQueryBytes),
            headers: headers, claims: claimsJSON)
        var payload = channel.allocator.buffer(capacity: body.count)
        payload.writeBytes(body)
        let deflate = PerMessageDeflate.negotiate(offers: request.headers["sec-websocket-extensions"], policy: config.compression)
        self.state.accepted = (id, user, payload, deflate, exp)
        return .success(keys[0].trimmingSpaces)
    }

    /// The connect event's `query` keeps at most this many bytes of parameters.
    static let maxQueryBytes = 4096

    enum TokenSource {
        case none
        case found(String)
        /// Only a cookie carries a token, and the request's Origin is not in allowed_origins (403).
        case cookieFromOtherOrigin
    }

    /// The handshake's token: the Authorization header, then the cookie, then the query parameter.
    /// A cookie token counts only from an allowed Origin (Policies.swift, cookieTokenAllowed).
    private func token(request: HTTPRequestHead, query: Substring?) -> TokenSource {
        let config = self.server.config
        if config.jwtHeader {
            for value in request.headers["authorization"] {
                if let token = Handshake.bearerToken(fromAuthorization: value) { return .found(token) }
            }
        }
        var refusedCookie = false
        if let name = config.jwtCookie {
            for header in request.headers["cookie"] {
                if let token = Handshake.cookie(named: name, in: header), !token.isEmpty {
                    if config.policies.cookieTokenAllowed(request.headers["origin"]) { return .found(token) }
                    refusedCookie = true
                    break
                }
            }
        }
        if let name = config.jwtQueryParam, let query,
           let token = Handshake.queryParameter(named: name, in: query), !token.isEmpty {
            return .found(token)
        }
        return refusedCookie ? .cookieFromOtherOrigin : .none
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        let channel = context.channel
        guard let accepted = self.state.accepted, let shard = self.server.shard(for: channel.eventLoop) else {
            return channel.eventLoop.makeFailedFuture(Refused())
        }
        self.state.upgraded = true
        self.server.metrics.handshakeSeconds.recordNanoseconds((NIODeadline.now() - self.state.acceptedAt).nanoseconds)
        self.state.timeout?.cancel()
        self.state.timeout = nil
        let connection = Connection(id: accepted.id, user: accepted.user, connectPayload: accepted.payload,
                                    deflate: accepted.deflate, shard: shard, server: self.server, handshake: self.state,
                                    tokenExpiry: accepted.exp)
        return channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: self.server.config.maxFrameSize)))
            try sync.addHandler(connection)
        }
    }

    static func describe(_ address: SocketAddress?) -> String {
        guard let address else { return "" }
        switch address {
        case .v4:
            return "\(address.ipAddress ?? ""):\(address.port ?? 0)"
        case .v6:
            return "[\(address.ipAddress ?? "")]:\(address.port ?? 0)"
        case .unixDomainSocket:
            return address.pathname ?? "unix"
        }
    }
}

/// Plain HTTP on the WebSocket port: the routes Python registered (e.g. the demo page), `/health`
/// and `/metrics` (unless switched off or moved to the admin listener), and the answer to a refused
/// upgrade. On the admin listener (`admin`): `/health` and `/metrics` only. Every response closes
/// the connection.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: ServerCore
    private let state: HandshakeState
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

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A refused upgrade is reported here before the request is passed on; it is answered in
        // channelRead. Anything else (bad HTTP, I/O errors) closes the connection.
        if error is WebSocketUpgrader.Refused { return }
        context.close(promise: nil)
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
