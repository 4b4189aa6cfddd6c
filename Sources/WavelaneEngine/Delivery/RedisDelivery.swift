// Multi-instance delivery: the instances share one Redis.
//
// Publications go to Redis (a Lua script assigns the topic's offset, keeps the history and
// PUBLISHes) and come back through this instance's subscriptions like everyone else's, so every
// instance delivers one sequence in one order. The instance subscribes in Redis only to what its
// connections need: a channel per exact topic, a pattern per glob, a channel per connected user,
// a channel per topic whose presence events someone here watches, and its own channel for `send`
// to one of its connections from elsewhere. docs/delivery.md has the guarantees.
//
// Its parts, one job each (Cluster/): `RedisLink` (the two connections and whether they are
// usable), `PublishBudget` (publications in flight), `StreamDedup` (second copies and gaps),
// `ClusterRecovery` (positions and history), `ClusterPresence` (members across instances). This
// class routes between them and reaches this instance's connections only through `DeliveryHost`.

import NIOConcurrencyHelpers
import NIOCore
import Synchronization
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class RedisDelivery: Delivery, @unchecked Sendable {
    let names: ClusterNames
    /// This instance's id in presence members and logs (random per start).
    let node: String
    let eventLoop: EventLoop
    private unowned let host: DeliveryHost
    private let link: RedisLink
    private let budget = PublishBudget()
    private let presence: ClusterPresence
    private let recovery: ClusterRecovery
    private let allocator = ByteBufferAllocator()
    private let historySize: Int
    private let ttlMilliseconds: String

    /// Candidate epochs: this instance's id and a counter, unique without a random draw per publication.
    private let epochCounter = Atomic<UInt64>(0)
    /// Publications that could not go through Redis since the last `cluster` event.
    private let unreported = Atomic<Int>(0)
    private var reporter: RepeatedTask?
    /// Event loop only.
    private var dedup = StreamDedup()

    init(host: DeliveryHost, url: RedisURL, eventLoop: EventLoop) throws(RedisError) {
        let config = host.config
        self.host = host
        self.names = ClusterNames(prefix: config.redisPrefix)
        self.node = ServerCore.makeEpoch()
        self.eventLoop = eventLoop
        self.historySize = config.historySize
        self.ttlMilliseconds = String(Int64((config.historyTTL * 1000).rounded(.up)))
        let weakSelf = WeakRedisDelivery()
        self.link = try RedisLink(url: url, eventLoop: eventLoop, logger: host.logger, onMessage: { channel, payload in
            weakSelf.value?.received(channel: channel, payload: payload)
        }, onFlip: { up in
            weakSelf.value?.linkFlipped(up: up)
        })
        self.presence = ClusterPresence(client: self.link.client, names: self.names, node: self.node, ttl: config.presenceTTL,
                                        eventLoop: eventLoop)
        self.recovery = ClusterRecovery(link: self.link, names: self.names, historySize: config.historySize,
                                        ttlMilliseconds: self.ttlMilliseconds)
        weakSelf.value = self
    }

    func start() {
        // Messages for this instance's connections from `send` on other instances.
        self.link.pubsub.need(channel: self.names.nodeChannel(self.node))
        self.link.start()
        self.eventLoop.execute {
            self.reporter = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { [weak self] _ in
                self?.reportUndelivered()
            }
        }
        if self.host.config.presence { self.presence.startHeartbeat() }
    }

    /// Leaves presence (best effort, bounded by `timeout`) and closes both Redis connections.
    func stop(timeout: TimeAmount) {
        let leaves = self.presence.leaveAll()
        // Replies come in order: once this PING is answered, every command sent before it (the
        // leaves of connections closed by the stop, and the ones above) has been applied.
        let barrier = leaves + (self.link.client.isConnected ? [self.link.client.send(["PING"])] : [])
        if !barrier.isEmpty {
            let done = NIOLockedValueBox(false)
            EventLoopFuture.whenAllComplete(barrier, on: self.eventLoop).whenComplete { _ in done.withLockedValue { $0 = true } }
            let deadline = NIODeadline.now() + timeout
            while !done.withLockedValue({ $0 }) && NIODeadline.now() < deadline { usleep(1000) }
        }
        try? self.eventLoop.submit {
            self.reporter?.cancel()
            self.reporter = nil
            self.presence.stopHeartbeat()
        }.wait()
        self.link.close()
    }

    // MARK: state

    var redisConnected: Bool { self.link.isUp }
    var redisState: String? { self.link.description }

    private func linkFlipped(up: Bool) {
        if up {
            self.host.logger.info("redis connected", metadata: ["url": "\(self.link.url)", "node": "\(self.node)"])
            // Members joined while Redis was away are written back now, not at the next heartbeat.
            if self.host.config.presence { self.eventLoop.execute { self.presence.refresh() } }
        } else {
            self.host.logger.warning("redis unavailable: serving local connections only", metadata: [
                "url": "\(self.link.url)", "state": "\(self.link.description)"])
        }
        self.pushEvent(up: up)
    }

    /// A `cluster` event for the application: the link's state and what could not go through Redis.
    private func pushEvent(up: Bool) {
        let undelivered = self.unreported.exchange(0, ordering: .relaxed)
        let event = ServerMessage.clusterEvent(connected: up, reason: up ? nil : self.link.reason, undelivered: undelivered)
        var payload = self.allocator.buffer(capacity: event.count)
        payload.writeBytes(event)
        self.host.pushClusterEvent(payload)
    }

    private func reportUndelivered() {
        guard self.unreported.load(ordering: .relaxed) > 0 else { return }
        self.pushEvent(up: self.link.isUp)
    }

    private func undelivered(_ n: Int = 1) {
        self.unreported.wrappingAdd(n, ordering: .relaxed)
        self.host.stats.add(.redisUndelivered, n)
    }

    // MARK: publishing

    private func candidateEpoch() -> String {
        let n = self.epochCounter.wrappingAdd(1, ordering: .relaxed).newValue
        return self.node + String(n, radix: 36)
    }

    /// Room among the publications waiting for Redis (never waiting on the loop that drains the replies).
    private func reserve(_ size: Int) -> Bool {
        self.budget.reserve(size, mayWait: !self.eventLoop.inEventLoop) { self.link.isUp }
    }

    /// Sends a publication through Redis. While Redis is unreachable it is delivered to this
    /// instance's subscribers only, with offset 0, and counted as undelivered. If the connection
    /// drops with the command in flight, it may or may not have been published: it is counted as
    /// undelivered and not delivered locally (it may come back through Redis).
    func publish(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> UInt64 {
        let body = ClusterMessage.body(kind: kind, priority: priority, key: key, payload: payload, allocator: self.allocator)
        let size = body.readableBytes
        guard self.reserve(size), let mode = self.link.scriptMode else {
            self.undelivered()
            self.host.deliverLocally(topic: topic, kind: kind, payload: payload, priority: priority, key: key)
            return 0
        }
        let command: [RESPArgument] = self.link.scriptCommand(mode, publish: true) + [
            "2", .string(self.names.metaKey(topic)), .string(self.names.historyKey(topic)),
            .string(self.names.topicChannel(topic)), .string(self.candidateEpoch()), .bytes(body),
            .string(String(self.historySize)), .string(self.ttlMilliseconds),
        ]
        self.host.stats.add(.redisPublished)
        self.link.client.send(command).whenComplete { result in
            self.budget.release(size)
            switch result {
            case .success(let reply):
                if let message = reply.errorMessage {
                    self.undelivered()
                    self.host.logger.error("redis refused a publication", metadata: ["topic": "\(topic)", "error": "\(message)"])
                    if message.hasPrefix("NOSCRIPT") { self.link.reloadScripts() }  // the script cache was flushed
                }
            case .failure(let error):
                self.undelivered()
                self.host.logger.debug("publication not confirmed by redis", metadata: ["topic": "\(topic)", "error": "\(error)"])
            }
        }
        return 0
    }

    /// Publishes an unsequenced message on a channel; false (counted as undelivered) when Redis is
    /// down or too slow.
    @discardableResult
    private func publish(_ message: ByteBuffer, on channel: String) -> Bool {
        let size = message.readableBytes
        guard self.reserve(size) else {
            self.undelivered()
            return false
        }
        self.host.stats.add(.redisPublished)
        self.link.client.publish(channel: channel, payload: message).whenComplete { result in
            self.budget.release(size)
            if case .failure = result { self.undelivered() }
        }
        return true
    }

    /// Sends a frame to connection `conn` of instance `node` (another one). True when it was handed
    /// to Redis (whether the connection still exists there is not known here).
    func send(node: String, conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool,
              priority: Priority, key: String?) throws(ArgumentError) -> Bool {
        guard !node.isEmpty, node.utf8.count <= 64 else { throw ArgumentError("node: not an instance id") }
        let message = ClusterMessage.direct(conn: conn, kind: binary ? .binary : .text, priority: priority, key: key,
                                            payload: payload, allocator: self.allocator)
        return self.publish(message, on: self.names.nodeChannel(node))
    }

    /// Sends a message to a user's connections on every instance. While Redis is down: this
    /// instance's connections only (counted as undelivered).
    func sendUser(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Int {
        let message = ClusterMessage.unsequenced(kind: binary ? .binary : .text, priority: priority, key: key, payload: payload,
                                                 allocator: self.allocator)
        if !self.publish(message, on: self.names.userChannel(user)) {
            self.host.sendUserLocally(user, payload: payload, binary: binary, priority: priority, key: key)
        }
        return self.host.connectionCount(ofUser: user)
    }

    /// Closes a user's connections here, and on the other instances through a command on the
    /// user's channel, which every instance with a connection of that user listens to (this
    /// instance skips its own command when it comes back).
    func disconnectUser(_ user: String, code: UInt16, reason: String) -> Int {
        let command = ClusterMessage.disconnectCommand(node: self.node, code: code, reason: reason, allocator: self.allocator)
        self.publish(command, on: self.names.userChannel(user))
        return self.host.disconnectUserLocally(user, code: code, reason: reason)
    }

    // MARK: subscriptions (refcounted by RedisPubSub; called from any loop)

    func need(subscription: String) {
        if Topic.isPattern(subscription) {
            self.link.pubsub.need(pattern: self.names.topicPattern(subscription))
        } else {
            self.link.pubsub.need(channel: self.names.topicChannel(subscription))
        }
    }

    func release(subscription: String) {
        if Topic.isPattern(subscription) {
            if self.link.pubsub.release(pattern: self.names.topicPattern(subscription)) {
                // Topics seen only through this pattern would linger in the dedup table.
                self.eventLoop.execute { self.dedup.forgetAll() }
            }
        } else if self.link.pubsub.release(channel: self.names.topicChannel(subscription)) {
            self.eventLoop.execute { self.dedup.forget(ByteString(subscription)) }
        }
    }

    func need(user: String) { self.link.pubsub.need(channel: self.names.userChannel(user)) }
    func release(user: String) { self.link.pubsub.release(channel: self.names.userChannel(user)) }
    func needPresenceEvents(_ topic: String) { self.link.pubsub.need(channel: self.names.presenceChannel(topic)) }
    func releasePresenceEvents(_ topic: String) { self.link.pubsub.release(channel: self.names.presenceChannel(topic)) }

    /// Runs `body` on `loop` once Redis has confirmed this instance's subscription for each of
    /// `subscriptions` (topics and globs), so that everything published to them from then on
    /// arrives; at once while Redis is down (local delivery only), after at most the recovery
    /// timeout otherwise.
    func whenRouted(_ subscriptions: [String], on loop: EventLoop, _ body: @escaping @Sendable () -> Void) {
        guard !subscriptions.isEmpty else { return body() }
        let routed: EventLoopFuture<Void>
        if self.link.isUp {
            let pubsub = self.link.pubsub
            let timeout = self.recovery.timeout
            let waits = subscriptions.map { s in
                Topic.isPattern(s)
                    ? pubsub.whenSubscribed(pattern: self.names.topicPattern(s), timeout: timeout)
                    : pubsub.whenSubscribed(channel: self.names.topicChannel(s), timeout: timeout)
            }
            routed = EventLoopFuture.andAllComplete(waits, on: self.eventLoop)
        } else {
            routed = self.eventLoop.makeSucceededVoidFuture()
        }
        routed.hop(to: loop).whenComplete { _ in body() }
    }

    // MARK: inbound from Redis (on `eventLoop`)

    private func received(channel: String, payload: ByteBuffer) {
        switch self.names.route(channel) {
        case .topic(let topic):
            let message: ClusterMessage
            do {
                message = try ClusterMessage.parse(payload)
            } catch {
                self.host.logger.warning("ignoring a malformed message from redis", metadata: ["channel": "\(channel)", "error": "\(error)"])
                return
            }
            switch self.dedup.admit(topic: ByteString(topic), epoch: message.epoch, offset: message.offset) {
            case .duplicate:
                return  // the same message through a second subscription
            case .deliver(let missed):
                if missed > 0 { self.host.stats.add(.redisMissed, Int(clamping: missed)) }
            }
            self.host.stats.add(.redisReceived)
            self.host.deliver(topic: topic, message: message)
        case .user(let user):
            if let command = ClusterMessage.parseCommand(payload) {
                switch command {
                case .disconnect(let node, let code, let reason):
                    self.host.stats.add(.redisReceived)
                    if node != self.node { self.host.disconnectUserLocally(user, code: code, reason: reason) }
                }
                return
            }
            guard let message = try? ClusterMessage.parse(payload) else { return }
            self.host.stats.add(.redisReceived)
            _ = message.payload.withUnsafeReadableBytes { bytes in
                self.host.sendUserLocally(user, payload: bytes, binary: message.kind == .binary,
                                          priority: message.priority, key: message.key)
            }
        case .presence(let topic):
            self.host.stats.add(.redisReceived)
            self.host.deliverPresenceEvent(topic: topic, event: payload)
        case .node(let node):
            guard node == self.node, let message = try? ClusterMessage.parse(payload), let conn = message.conn else { return }
            self.host.stats.add(.redisReceived)
            _ = message.payload.withUnsafeReadableBytes { bytes in
                let binary = message.kind == .binary
                guard binary || UTF8Validator.isValid(bytes) else { return false }
                return self.host.sendLocally(conn: conn, payload: bytes, binary: binary, priority: message.priority, key: message.key)
            }
        case nil:
            break
        }
    }

    // MARK: positions and presence

    func position(topic: String, since: StreamPosition?, on loop: EventLoop) -> EventLoopFuture<PositionReply> {
        let host = self.host
        return self.recovery.position(topic: topic, since: since, on: self.eventLoop) { message in
            host.makePublication(topic: topic, message: message)
        }
    }

    func presenceJoin(topic: String, conn: UInt64, member: [UInt8], limit: Int, refused: @escaping @Sendable () -> Void) {
        self.presence.join(topic: topic, conn: conn, member: member, limit: limit, refused: refused)
    }

    func presenceLeave(topic: String, conn: UInt64) {
        self.presence.leave(topic: topic, conn: conn)
    }

    func presenceMembers(topic: String, on loop: EventLoop) -> EventLoopFuture<[[UInt8]]> {
        self.presence.members(of: topic)
    }

    func presenceMembers(topic: String, timeout: Double) throws(ArgumentError) -> [[UInt8]] {
        try self.presence.members(of: topic, timeout: timeout)
    }
}

/// The Redis callbacks reach the delivery through this (they are made before it exists).
private final class WeakRedisDelivery: @unchecked Sendable {
    weak var value: RedisDelivery?
}
