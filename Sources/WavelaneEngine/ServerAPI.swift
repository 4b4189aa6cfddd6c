// What the application asks of the engine (through the C ABI, from any thread): publish, send,
// subscribe on a connection's behalf, presence, close and disconnect, counters. Where a call can
// reach other instances it goes to the delivery (Delivery/) chosen at start.

import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket
import WavelaneProtocol

extension ServerCore {
    /// Publishes to every subscriber of `topic` on every loop; returns the publication's offset. In
    /// multi-instance mode the publication goes through Redis (which assigns the offset, so 0 is
    /// returned) and reaches the subscribers of every instance.
    public func publish(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer,
                        priority: Priority = .normal, key: String? = nil) throws(ArgumentError) -> UInt64 {
        if let problem = Topic.validate(topic, maxLength: self.config.maxTopicLength, allowWildcards: false) {
            throw ArgumentError("topic: \(problem.message)")
        }
        if kind == .text && !UTF8Validator.isValid(payload) { throw ArgumentError("data: text is not valid UTF-8") }
        if kind == .json {
            do { _ = try JSONParser.parse(payload, maxDepth: 512) } catch { throw ArgumentError("data: not valid JSON: \(error.message)") }
        }
        let shards = self.shardsBox.withLockedValue { $0 }
        guard !shards.isEmpty else { throw ArgumentError("server is not running") }
        self.stats.add(.publications)
        let started = NIODeadline.now()
        defer { self.metrics.publishSeconds.recordNanoseconds((NIODeadline.now() - started).nanoseconds) }
        return self.delivery.publish(topic: topic, kind: kind, payload: payload, priority: priority, key: key)
    }

    /// Sends one frame to one connection. Returns false when the connection is unknown or closed.
    public func send(conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool,
                     priority: Priority = .normal, key: String? = nil, node: String? = nil) throws(ArgumentError) -> Bool {
        if !binary && !UTF8Validator.isValid(payload) { throw ArgumentError("data: text is not valid UTF-8") }
        if let node, node != self.node {
            // A connection of another instance (its `node` as in presence members).
            return try self.delivery.send(node: node, conn: conn, payload: payload, binary: binary, priority: priority, key: key)
        }
        return self.sendLocally(conn: conn, payload: payload, binary: binary, priority: priority, key: key)
    }

    /// Sends one frame to every connection of `user`; returns how many of this instance's
    /// connections it was queued for. In multi-instance mode it goes through Redis and also reaches
    /// the user's connections on the other instances.
    public func sendUser(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool,
                         priority: Priority = .normal, key: String? = nil) throws(ArgumentError) -> Int {
        if !binary && !UTF8Validator.isValid(payload) { throw ArgumentError("data: text is not valid UTF-8") }
        return self.delivery.sendUser(user, payload: payload, binary: binary, priority: priority, key: key)
    }

    /// Subscribes a connection server-side; `ack` (when given) is sent back as the `id` of a `subscribed` reply.
    public func subscribe(conn: UInt64, topics: [String], ack: JSONValue??) throws(ArgumentError) -> Bool {
        try self.validateSubscriptions(topics)
        guard let connection = self.registry.connection(conn) else { return false }
        connection.shard.execute { connection.subscribe(topics, ack: ack) }
        return true
    }

    public func unsubscribe(conn: UInt64, topics: [String], ack: JSONValue??) throws(ArgumentError) -> Bool {
        try self.validateSubscriptions(topics)
        guard let connection = self.registry.connection(conn) else { return false }
        connection.shard.execute { connection.unsubscribe(topics, ack: ack) }
        return true
    }

    /// The members of `topic` on every instance (multi-instance mode with `presence`), as JSON
    /// objects. Blocks the calling thread for one Redis round trip (at most `timeout` seconds).
    public func presence(topic: String, timeout: Double) throws(ArgumentError) -> [[UInt8]] {
        if let problem = Topic.validate(topic, maxLength: self.config.maxTopicLength, allowWildcards: false) {
            throw ArgumentError("topic: \(problem.message)")
        }
        guard self.config.presence else { throw ArgumentError("presence is off: start the server with presence=True") }
        return try self.delivery.presenceMembers(topic: topic, timeout: timeout)
    }

    /// The id of this instance in presence members.
    var node: String { self.delivery.node }

    /// `node` while running, else "".
    public var nodeID: String { self.isRunning ? self.node : "" }

    /// A topic's position and, with `since`, what came after it (Redis or the in-memory history).
    func position(topic: String, since: StreamPosition?, on loop: EventLoop) -> EventLoopFuture<PositionReply> {
        self.delivery.position(topic: topic, since: since, on: loop)
    }

    /// Adds (or updates) a member of `topic`. A new member beyond `max_presence_members` is not
    /// added: it is counted and `refused` runs (on any thread; with Redis once Redis answered).
    func presenceJoin(topic: String, conn: UInt64, member: [UInt8], refused: @escaping @Sendable () -> Void = {}) {
        self.delivery.presenceJoin(topic: topic, conn: conn, member: member, limit: self.config.maxPresenceMembers) {
            self.stats.add(.presenceRefused)
            refused()
        }
    }

    func presenceLeave(topic: String, conn: UInt64) {
        self.delivery.presenceLeave(topic: topic, conn: conn)
    }

    func presenceMembers(topic: String, on loop: EventLoop) -> EventLoopFuture<[[UInt8]]> {
        self.delivery.presenceMembers(topic: topic, on: loop)
    }

    /// Sets the `info` (a small JSON value) shown for a connection in presence; updates the
    /// topics it is already a member of. Returns false when the connection is unknown.
    public func setPresenceInfo(conn: UInt64, info: UnsafeRawBufferPointer) throws(ArgumentError) -> Bool {
        guard info.count <= 4096 else { throw ArgumentError("info: longer than 4096 bytes of JSON") }
        do { _ = try JSONParser.parse(info, maxDepth: 32) } catch { throw ArgumentError("info: not valid JSON: \(error.message)") }
        guard let connection = self.registry.connection(conn) else { return false }
        let bytes = Array(info)
        connection.shard.execute { connection.setPresenceInfo(bytes) }
        return true
    }

    /// Answers a client request with an error reply (e.g. a refused subscription).
    public func deny(conn: UInt64, code: String, message: String, id: JSONValue?) -> Bool {
        guard let connection = self.registry.connection(conn) else { return false }
        let body = ServerMessage.error(code: code, message: message, id: id)
        connection.shard.execute { connection.sendJSON(body) }
        return true
    }

    /// Closes every connection of `user` with `code` (revocation, logout): on this instance, and with
    /// `redis_url` on every other one (a command on the user's channel). Returns how many of this
    /// instance's connections are being closed.
    public func disconnectUser(_ user: String, code: UInt16, reason: String) throws(ArgumentError) -> Int {
        guard CloseCode.isValidForApplication(code) else {
            throw ArgumentError("code: \(code) is not a close code an application may send (1000, 1001, 1003, 1007-1009, 1011-1013, 3000-4999)")
        }
        guard reason.utf8.count <= 123 else { throw ArgumentError("reason: longer than 123 bytes of UTF-8") }
        return self.delivery.disconnectUser(user, code: code, reason: reason)
    }

    /// Starts the close handshake with one connection.
    public func close(conn: UInt64, code: UInt16, reason: String) throws(ArgumentError) -> Bool {
        guard CloseCode.isValidForApplication(code) else {
            throw ArgumentError("code: \(code) is not a close code an application may send (1000, 1001, 1003, 1007-1009, 1011-1013, 3000-4999)")
        }
        guard reason.utf8.count <= 123 else { throw ArgumentError("reason: longer than 123 bytes of UTF-8") }
        guard let connection = self.registry.connection(conn) else { return false }
        connection.shard.execute { connection.initiateClose(code: code, reason: reason) }
        return true
    }

    private func validateSubscriptions(_ topics: [String]) throws(ArgumentError) {
        for topic in topics {
            if let problem = Topic.validate(topic, maxLength: self.config.maxTopicLength, allowWildcards: true) {
                throw ArgumentError("topics: \(problem.message): \"\(topic)\"")
            }
        }
    }

    /// All counters as one JSON object.
    public func statsJSON() -> String {
        var fields = EngineStats.Counter.allCases.map { (name: $0.name, value: self.stats.value($0)) }
        fields += [
            ("connections_active", self.registry.count),
            ("users_active", self.registry.userCount),
            ("inbound_queue", self.queue.count),
            ("inbound_paused", self.queue.pausedCount),
            ("send_queue_bytes", self.sendQueueBytes.load(ordering: .relaxed)),
            ("partial_bytes", self.partialBytes.load(ordering: .relaxed)),
            ("topics_with_offsets", self.offsets.count),
            ("redis_connected", self.delivery.redisConnected ? 1 : 0),
            ("history_bytes", self.offsets.historyBytes),
        ]
        return String(decoding: ServerMessage.counters(fields), as: UTF8.self)
    }
}
