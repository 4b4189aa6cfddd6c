// The WebSocket handshake: the checks before an upgrade (origin, admission limits, token), the
// connect event it produces, and the upgrade into a `Connection`.

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

/// What an admitted connection holds until it is torn down: its connection slot and its admission
/// counts. Taken by the handshake's checks, handed to the `Connection` at the upgrade.
struct ConnectionHolds {
    var slot = false
    /// What this connection holds in the per-IP / per-user admission table.
    var admission: AdmissionTicket?

    /// Gives back the slot and the admission counts (idempotent).
    mutating func release(_ stats: EngineStats) {
        self.admission?.release()
        self.admission = nil
        if self.slot {
            self.slot = false
            stats.connectionSlots.wrappingSubtract(1, ordering: .relaxed)
        }
    }
}

/// Per-connection state of the HTTP phase, shared by the HTTP handler and the handshake timeout.
/// Nothing keeps it once the upgrade is done: what outlives the handshake (`holds`) goes to the
/// `Connection`. Touched only on the channel's event loop.
final class HandshakeState: @unchecked Sendable {
    struct Rejection: Error {
        var status: HTTPResponseStatus
        var reason: String
        /// Extra response headers (e.g. Retry-After on 429).
        var headers: [(String, String)] = []
    }

    /// When the TCP connection was accepted (for the handshake latency histogram).
    let acceptedAt = NIODeadline.now()
    /// The slot and admission counts taken by the checks; given back if the channel closes before
    /// the upgrade, else handed to the connection.
    var holds = ConnectionHolds()
    /// The loop's shard (found once, at the accept).
    var shard: Shard?
    /// The handshake timeout (`HandshakeDeadlines`, the shard's): while listed there, the list
    /// holds this state, its channel (to close at `deadline`) and its place in the list.
    var deadlines: HandshakeDeadlines?
    var deadline = NIODeadline.uptimeNanoseconds(0)
    var channel: Channel?
    var next: HandshakeState?
    unowned(unsafe) var previous: HandshakeState?
    /// What a successful check decided, until the upgrade hands it to the `Connection`.
    final class Accepted {
        let id: UInt64
        let user: String?
        /// The connect event's payload.
        let payload: ByteBuffer
        let deflate: PerMessageDeflate.Parameters?
        /// The subprotocol chosen from the client's offers (answered in the 101), if any.
        let subprotocol: String?
        let exp: Double?

        init(id: UInt64, user: String?, payload: ByteBuffer, deflate: PerMessageDeflate.Parameters?, subprotocol: String?,
             exp: Double?) {
            self.id = id
            self.user = user
            self.payload = payload
            self.deflate = deflate
            self.subprotocol = subprotocol
            self.exp = exp
        }
    }

    /// Set by a successful check, cleared by the upgrade.
    var accepted: Accepted?

    /// The channel closed before the upgrade (the HTTP handler's `channelInactive`): the timeout is
    /// cancelled and the holds are given back.
    func channelClosed(_ stats: EngineStats) {
        self.deadlines?.remove(self)
        self.holds.release(stats)
    }
}

/// The WebSocket side of the HTTP/1.1 upgrade (RFC 6455 §4.2.2), called by `HTTPHandler` for a
/// request that asks for it. Checks the request, the token and the limits before anything is sent,
/// so a refused client gets a plain HTTP status (401, 403, 404, 429, 503) and never a 101; then
/// writes the 101 and puts our `Connection` (which reads the frames itself) in the handler's place.
struct WebSocketUpgrader {
    let server: ServerCore
    let state: HandshakeState

    /// The checks; on success the `Sec-WebSocket-Key` to answer, on failure what to answer instead.
    func accept(channel: Channel, request: RequestHead) -> Result<String, HandshakeState.Rejection> {
        let result = self.check(channel: channel, request: request)
        if case .failure(let rejection) = result {
            self.server.logger.debug("upgrade refused", metadata: [
                "status": "\(rejection.status.code)", "reason": "\(rejection.reason)",
                "addr": "\(Self.describe(channel.remoteAddress))",
            ])
        }
        return result
    }

    private func check(channel: Channel, request: RequestHead) -> Result<String, HandshakeState.Rejection> {
        let config = self.server.config
        let stats = self.server.stats
        guard self.server.accepting else {
            stats.add(.rejectedCapacity)
            return .failure(.init(status: .serviceUnavailable, reason: "server is shutting down"))
        }
        guard request.method == "GET" else {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .methodNotAllowed, reason: "websocket upgrades use GET"))
        }
        guard request.minorVersion >= 1 else {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .badRequest, reason: "websocket upgrades need HTTP/1.1"))
        }
        // A GET upgrade has no body; one that announces a body (request smuggling, or bytes the
        // WebSocket decoder would take as frames) is refused.
        if request["content-length"].contains(where: { $0.trimmingSpaces != "0" }) || request.contains("transfer-encoding") {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .badRequest, reason: "an upgrade request must not have a body"))
        }
        let (path, query) = Handshake.splitTarget(request.target)
        if let wsPath = config.wsPath, path != Substring(wsPath) {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .notFound, reason: "no websocket endpoint at this path"))
        }
        let versions = request["sec-websocket-version"]
        guard versions.count == 1, versions[0] == "13" else {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .upgradeRequired, reason: "unsupported websocket version (13 required)"))
        }
        let keys = request["sec-websocket-key"]
        guard keys.count == 1, Handshake.isValidKey(keys[0].trimmingSpaces) else {
            stats.add(.rejectedBadRequest)
            return .failure(.init(status: .badRequest, reason: "bad Sec-WebSocket-Key"))
        }

        // Policies (Policies.swift): origin, subprotocol, then per-IP admission, all before the JWT
        // is verified and before any per-connection state (slot, id, payload) exists.
        let policy = config.policies
        if let problem = policy.checkOrigin(request["origin"]) {
            stats.add(.rejectedOrigin)
            return .failure(.init(status: .forbidden, reason: problem))
        }
        let subprotocol: String?
        switch policy.selectSubprotocol(request["sec-websocket-protocol"]) {
        case .none: subprotocol = nil
        case .chosen(let name): subprotocol = name
        case .refused:
            stats.add(.rejectedSubprotocol)
            return .failure(.init(status: .badRequest, reason: "none of the offered subprotocols is supported (supported: \(policy.subprotocols.joined(separator: ", ")))"))
        }
        // The client's address: the peer's, or the one a trusted proxy forwarded (trusted_proxies).
        let client = policy.clientAddress(peer: channel.remoteAddress, forwardedFor: request["x-forwarded-for"],
                                          realIP: request["x-real-ip"])
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
                self.state.holds.admission = t
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
        self.state.holds.slot = true

        let id = self.server.nextConnectionID(on: channel.eventLoop)
        var headers: [(name: String, value: String)] = []
        for name in config.connectHeaders {
            let values = request[name]
            guard !values.isEmpty else { continue }
            let capped = FrameEncoder.truncatedUTF8(values.joined(separator: ", "), maxBytes: EngineConfiguration.connectHeaderMaxBytes)
            headers.append((name, String(decoding: capped, as: UTF8.self)))
        }
        let body = ServerMessage.connectEvent(
            user: user, addr: Self.describe(client), path: String(path), subprotocol: subprotocol,
            query: Handshake.applicationQuery(query, removing: config.jwtQueryParam, maxBytes: Self.maxQueryBytes),
            headers: headers, claims: Array(claimsJSON.utf8))
        var payload = channel.allocator.buffer(capacity: body.count)
        payload.writeBytes(body)
        let deflate = PerMessageDeflate.negotiate(offers: request["sec-websocket-extensions"], policy: config.compression)
        self.state.accepted = HandshakeState.Accepted(id: id, user: user, payload: payload, deflate: deflate,
                                                      subprotocol: subprotocol, exp: exp)
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
    private func token(request: RequestHead, query: Substring?) -> TokenSource {
        let config = self.server.config
        if config.jwtHeader {
            for value in request["authorization"] {
                if let token = Handshake.bearerToken(fromAuthorization: value) { return .found(token) }
            }
        }
        var refusedCookie = false
        if let name = config.jwtCookie {
            for header in request["cookie"] {
                if let token = Handshake.cookie(named: name, in: header), !token.isEmpty {
                    if config.policies.cookieTokenAllowed(request["origin"]) { return .found(token) }
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

    /// The upgrade, for a request `accept` passed: the 101 is written (not flushed), the `Connection`
    /// takes the calling handler's place in the pipeline and writes its first frames, and one flush
    /// sends them all in one write. `rest` (bytes that came after the request: the client's first
    /// frames) goes on to the connection.
    func upgrade(context: ChannelHandlerContext, key: String, rest: ByteBuffer) {
        let channel = context.channel
        guard let accepted = self.state.accepted, let shard = self.state.shard else {
            self.state.holds.release(self.server.stats)
            context.close(promise: nil)
            return
        }
        // Handed to the connection; the handshake state goes with the HTTP handler.
        self.state.accepted = nil
        self.server.metrics.handshakeSeconds.recordNanoseconds((NIODeadline.now() - self.state.acceptedAt).nanoseconds)
        self.state.deadlines?.remove(self.state)
        self.state.shard = nil
        let holds = self.state.holds
        self.state.holds = ConnectionHolds()
        // The handshake read one message at a time into fixed-size buffers
        // (ServerCore.handshakeMessagesPerRead, handshakeReceiveAllocator).
        try? channel.syncOptions?.setOption(ChannelOptions.maxMessagesPerRead, value: ServerCore.messagesPerRead)
        try? channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: ServerCore.receiveAllocator)
        context.write(NIOAny(Self.switchingProtocols(key: key, deflate: accepted.deflate, subprotocol: accepted.subprotocol,
                                                     allocator: channel.allocator)), promise: nil)
        let connection = Connection(id: accepted.id, user: accepted.user, connectPayload: accepted.payload,
                                    deflate: accepted.deflate, shard: shard, server: self.server, holds: holds,
                                    tokenExpiry: accepted.exp)
        let sync = context.pipeline.syncOperations
        do {
            try sync.addHandler(connection, position: .after(context.handler))
        } catch {
            // Not in the pipeline (the channel closed): its teardown will not run.
            connection.releaseHolds()
            context.close(promise: nil)
            return
        }
        connection.flush()
        if rest.readableBytes > 0 { context.fireChannelRead(NIOAny(rest)) }
        sync.removeHandler(context: context, promise: nil)
    }

    /// The 101 (RFC 6455 §4.2.2 item 5).
    static func switchingProtocols(key: String, deflate: PerMessageDeflate.Parameters?, subprotocol: String?,
                                   allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 256)
        buffer.writeStaticString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
        buffer.writeString(Handshake.acceptValue(forKey: key))
        if let deflate {
            buffer.writeStaticString("\r\nSec-WebSocket-Extensions: ")
            buffer.writeString(deflate.responseHeader)
        }
        if let subprotocol {
            buffer.writeStaticString("\r\nSec-WebSocket-Protocol: ")
            buffer.writeString(subprotocol)
        }
        buffer.writeStaticString("\r\n\r\n")
        return buffer
    }

    static func describe(_ address: SocketAddress?) -> String {
        guard let address else { return "" }
        switch address {
        case .v4(let v4):
            return Self.describe(v4.address)
        case .v6:
            return "[\(address.ipAddress ?? "")]:\(address.port ?? 0)"
        case .unixDomainSocket:
            return address.pathname ?? "unix"
        }
    }
}

extension WebSocketUpgrader {
    /// "a.b.c.d:port", written directly (`SocketAddress.ipAddress` goes through glibc's
    /// `inet_ntop`, a `sprintf` per address: ~1% of a handshake's CPU).
    static func describe(_ address: sockaddr_in) -> String {
        let ip = UInt32(bigEndian: address.sin_addr.s_addr)
        let port = UInt16(bigEndian: address.sin_port)
        return String(unsafeUninitializedCapacity: 21) { out in
            var n = 0
            func decimal(_ value: Int) {
                var divisor = 1
                while divisor * 10 <= value { divisor *= 10 }
                while divisor > 0 {
                    out[n] = UInt8(ascii: "0") + UInt8(value / divisor % 10)
                    n += 1
                    divisor /= 10
                }
            }
            for shift in stride(from: UInt32(24), through: 0, by: -8) {
                decimal(Int((ip >> shift) & 0xFF))
                out[n] = shift == 0 ? UInt8(ascii: ":") : UInt8(ascii: ".")
                n += 1
            }
            decimal(Int(port))
            return n
        }
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
