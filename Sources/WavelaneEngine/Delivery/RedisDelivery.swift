// Multi-instance mode: the link between this instance and the others, through Redis Pub/Sub.
//
// Publications go to Redis (a Lua script assigns the topic's offset, keeps the history and
// PUBLISHes) and come back through this instance's subscriptions like everyone else's, so every
// instance delivers one sequence in one order. The instance subscribes in Redis only to what its
// connections need: a channel per exact topic, a pattern per glob, a channel per connected user,
// a channel per topic whose presence events someone here watches. docs/delivery.md has the
// guarantees; the fault handling (Redis down, restarted) is at the bottom of this file.

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
    private let client: RedisClient
    private let pubsub: RedisPubSub
    private let allocator = ByteBufferAllocator()
    private let historySize: Int
    private let ttlMilliseconds: String
    private let presenceTTLMilliseconds: String
    /// How long a recovering subscription waits for Redis (subscription confirmation, then reply).
    let recoveryTimeout: TimeAmount = .seconds(5)

    // Connection state, reported to Python and /health.
    private struct LinkState {
        var client: RedisConnectionState = .connecting
        var pubsub: RedisConnectionState = .connecting
        var reported: Bool? = nil
    }
    private let link = NIOLockedValueBox(LinkState())
    /// Candidate epochs: this instance's id and a counter, unique without a random draw per publication.
    private let epochCounter = Atomic<UInt64>(0)

    private func candidateEpoch() -> String {
        let n = self.epochCounter.wrappingAdd(1, ordering: .relaxed).newValue
        return self.node + String(n, radix: 36)
    }

    /// Publications sent to Redis and not yet acknowledged, and their bytes. A slow Redis cannot
    /// make them pile up: at either bound, `publish` waits (the caller's thread, never an event
    /// loop) up to `backpressureWait` for room, then treats the publication as if Redis were down.
    private let inFlightBytes = Atomic<Int>(0)
    private let inFlightCount = Atomic<Int>(0)
    static let maxInFlightBytes = 64 << 20
    static let maxInFlightCount = 65_536
    static let backpressureWait: TimeAmount = .seconds(2)

    /// How the hot scripts are called: by SHA once `SCRIPT LOAD` answered on the current command
    /// connection (a 40-byte name instead of the script text per publication), or with EVAL when
    /// the server refused SCRIPT LOAD. nil while (re)connecting.
    private enum ScriptMode { case eval, sha(publish: String, position: String) }
    private let scripts = NIOLockedValueBox<ScriptMode?>(nil)

    /// Publications that could not go through Redis since the last `cluster` event.
    private let unreported = Atomic<Int>(0)
    private var reporter: RepeatedTask?
    private var heartbeat: RepeatedTask?

    /// Last (epoch, offset) seen per topic on the Redis stream: drops the second copy of a message
    /// that matched both a channel and a pattern (Redis sends one per match) and counts gaps.
    /// Event loop only.
    private var lastSeen: [ByteString: (epoch: String, offset: UInt64)] = [:]
    private static let lastSeenLimit = 1 << 18

    /// This instance's presence members: topic -> field (`node:conn`) -> member JSON. Commands that
    /// change a member are handed to the Redis connection under this lock, so a heartbeat can never
    /// re-add a member whose leave was sent after the heartbeat's snapshot.
    private let members = NIOLockedValueBox<[ByteString: [String: [UInt8]]]>([:])

    init(host: DeliveryHost, url: RedisURL, eventLoop: EventLoop) throws(RedisError) {
        let config = host.config
        self.host = host
        self.names = ClusterNames(prefix: config.redisPrefix)
        self.node = ServerCore.makeEpoch()
        self.eventLoop = eventLoop
        self.historySize = config.historySize
        self.ttlMilliseconds = String(Int64((config.historyTTL * 1000).rounded(.up)))
        self.presenceTTLMilliseconds = String(Int64((config.presenceTTL * 1000).rounded(.up)))
        var clientConfiguration = RedisClientConfiguration()
        clientConfiguration.connection.commandTimeout = .seconds(5)
        // Publications in flight are bounded by `reserve` (which waits); this only backstops the rest.
        clientConfiguration.connection.maxPendingCommands = 1 << 20
        let weakSelf = WeakRedisDelivery()
        self.client = try RedisClient(url: url, eventLoop: eventLoop, configuration: clientConfiguration) { state in
            weakSelf.value?.stateChanged(client: state)
        }
        self.pubsub = try RedisPubSub(url: url, eventLoop: eventLoop, configuration: clientConfiguration, onMessage: { channel, payload in
            weakSelf.value?.received(channel: channel, payload: payload)
        }, onStateChange: { state in
            weakSelf.value?.stateChanged(pubsub: state)
        })
        weakSelf.value = self
        self.pubsub.onReady = { weakSelf.value?.reportState() }
        self.client.onConnected = { connection in weakSelf.value?.loadScripts(on: connection) }
    }

    /// Loads the publish and position scripts on a new command connection; publications go
    /// through Redis once both are known.
    private func loadScripts(on connection: RedisConnection) {
        self.scripts.withLockedValue { $0 = nil }
        let publish = connection.send(["SCRIPT", "LOAD", .string(ClusterScripts.publish)])
        let position = connection.send(["SCRIPT", "LOAD", .string(ClusterScripts.position)])
        publish.and(position).whenComplete { result in
            guard case .success(let (a, b)) = result else { return }  // the connection dropped: the next one loads
            if let pa = a.string, let pb = b.string, a.errorMessage == nil, b.errorMessage == nil {
                self.scripts.withLockedValue { $0 = .sha(publish: pa, position: pb) }
            } else {
                self.host.logger.warning("SCRIPT LOAD refused: sending scripts with EVAL", metadata: [
                    "error": "\(a.errorMessage ?? b.errorMessage ?? "unexpected reply")"])
                self.scripts.withLockedValue { $0 = .eval }
            }
            self.reportState()
        }
    }

    private func scriptCommand(_ mode: ScriptMode, publish: Bool) -> [RESPArgument] {
        switch mode {
        case .eval: return ["EVAL", .string(publish ? ClusterScripts.publish : ClusterScripts.position)]
        case .sha(let p, let q): return ["EVALSHA", .string(publish ? p : q)]
        }
    }

    func start() {
        // Messages for this instance's connections from `send` on other instances.
        self.pubsub.need(channel: self.names.nodeChannel(self.node))
        self.client.start()
        self.pubsub.start()
        self.eventLoop.execute {
            self.reporter = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { [weak self] _ in
                self?.reportUndelivered()
            }
            if self.host.config.presence {
                let period = TimeAmount.nanoseconds(Int64(self.host.config.presenceTTL / 3 * 1e9))
                self.heartbeat = self.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { [weak self] _ in
                    self?.refreshPresence()
                }
            }
        }
    }

    /// Leaves presence (best effort, bounded by `timeout`) and closes both Redis connections.
    func stop(timeout: TimeAmount) {
        let leaves: [EventLoopFuture<RESPValue>] = self.members.withLockedValue { all in
            var futures: [EventLoopFuture<RESPValue>] = []
            for (topic, entries) in all {
                for (field, member) in entries { futures.append(self.sendLeave(topic: topic.string, field: field, member: member)) }
            }
            all.removeAll()
            return futures
        }
        // Replies come in order: once this PING is answered, every command sent before it (the
        // leaves of connections closed by the stop, and the ones above) has been applied.
        let barrier = leaves + (self.client.isConnected ? [self.client.send(["PING"])] : [])
        if !barrier.isEmpty {
            let done = NIOLockedValueBox(false)
            EventLoopFuture.whenAllComplete(barrier, on: self.eventLoop).whenComplete { _ in done.withLockedValue { $0 = true } }
            let deadline = NIODeadline.now() + timeout
            while !done.withLockedValue({ $0 }) && NIODeadline.now() < deadline { usleep(1000) }
        }
        try? self.eventLoop.submit {
            self.reporter?.cancel()
            self.reporter = nil
            self.heartbeat?.cancel()
            self.heartbeat = nil
        }.wait()
        _ = try? self.client.close().wait()
        _ = try? self.pubsub.close().wait()
    }

    // MARK: state

    /// Publications go through Redis only while both connections are up and the subscriber has
    /// every subscription it needs confirmed again after a reconnect: a publication made before
    /// that would get an offset and reach nobody here (it is delivered locally and counted instead).
    var isConnected: Bool {
        self.link.withLockedValue { $0.client == .connected && $0.pubsub == .connected } && self.pubsub.isReady
            && self.scripts.withLockedValue { $0 != nil }
    }

    var redisConnected: Bool { self.isConnected }
    var redisState: String? { self.stateDescription }

    /// "connected", or "disconnected: <why>" / "connecting".
    var stateDescription: String {
        self.link.withLockedValue { link in
            if link.client == .connected && link.pubsub == .connected {
                if !self.pubsub.isReady { return "connecting: restoring subscriptions" }
                return self.scripts.withLockedValue { $0 != nil } ? "connected" : "connecting: loading scripts"
            }
            for state in [link.client, link.pubsub] {
                if case .disconnected = state { return state.description }
            }
            return link.client == .connected ? link.pubsub.description : link.client.description
        }
    }

    private func stateChanged(client: RedisConnectionState) {
        self.link.withLockedValue { $0.client = client }
        if client != .connected { self.scripts.withLockedValue { $0 = nil } }
        self.reportState()
    }

    private func stateChanged(pubsub: RedisConnectionState) {
        self.link.withLockedValue { $0.pubsub = pubsub }
        self.reportState()
    }

    /// A `cluster` event for Python whenever connected/disconnected flips (not for each retry).
    private func reportState() {
        let ready = self.pubsub.isReady && self.scripts.withLockedValue { $0 != nil }
        let (changed, up): (Bool, Bool) = self.link.withLockedValue { link in
            let up = link.client == .connected && link.pubsub == .connected && ready
            let down: Bool
            switch (link.client, link.pubsub) {
            case (.disconnected, _), (_, .disconnected): down = true
            default: down = false
            }
            guard up || down, link.reported != up else { return (false, up) }
            link.reported = up
            return (true, up)
        }
        guard changed else { return }
        if up {
            self.host.logger.info("redis connected", metadata: ["url": "\(self.client.url)", "node": "\(self.node)"])
            // Members joined while Redis was away are written back now, not at the next heartbeat.
            if self.host.config.presence { self.eventLoop.execute { self.refreshPresence() } }
        } else {
            self.host.logger.warning("redis unavailable: serving local connections only", metadata: [
                "url": "\(self.client.url)", "state": "\(self.stateDescription)"])
        }
        self.pushEvent(up: up)
    }

    private func pushEvent(up: Bool) {
        let undelivered = self.unreported.exchange(0, ordering: .relaxed)
        var reason: String? = nil
        if !up {
            reason = self.stateDescription
            if reason!.hasPrefix("disconnected: ") { reason!.removeFirst("disconnected: ".count) }
        }
        let out = ServerMessage.clusterEvent(connected: up, reason: reason, undelivered: undelivered)
        var payload = self.allocator.buffer(capacity: out.count)
        payload.writeBytes(out)
        self.host.pushClusterEvent(payload)
    }

    private func reportUndelivered() {
        guard self.unreported.load(ordering: .relaxed) > 0 else { return }
        self.pushEvent(up: self.isConnected)
    }

    private func undelivered(_ n: Int = 1) {
        self.unreported.wrappingAdd(n, ordering: .relaxed)
        self.host.stats.add(.redisUndelivered, n)
    }

    // MARK: publishing

    /// Sends a publication through Redis. While Redis is unreachable it is delivered to this
    /// instance's subscribers only, with offset 0, and counted as undelivered. If the connection
    /// drops with the command in flight, it may or may not have been published: it is counted as
    /// undelivered and not delivered locally (it may come back through Redis).
    func publish(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> UInt64 {
        let body = ClusterMessage.body(kind: kind, priority: priority, key: key, payload: payload, allocator: self.allocator)
        let size = body.readableBytes
        guard self.reserve(size), let mode = self.scripts.withLockedValue({ $0 }) else {
            self.undelivered()
            self.host.deliverLocally(topic: topic, kind: kind, payload: payload, priority: priority, key: key)
            return 0
        }
        let command: [RESPArgument] = self.scriptCommand(mode, publish: true) + [
            "2", .string(self.names.metaKey(topic)), .string(self.names.historyKey(topic)),
            .string(self.names.topicChannel(topic)), .string(self.candidateEpoch()), .bytes(body),
            .string(String(self.historySize)), .string(self.ttlMilliseconds),
        ]
        self.host.stats.add(.redisPublished)
        self.client.send(command).whenComplete { result in
            self.unreserve(size)
            switch result {
            case .success(let reply):
                if let message = reply.errorMessage {
                    self.undelivered()
                    self.host.logger.error("redis refused a publication", metadata: ["topic": "\(topic)", "error": "\(message)"])
                    if message.hasPrefix("NOSCRIPT"), let connection = self.client.currentConnection {
                        self.loadScripts(on: connection)  // the script cache was flushed
                    }
                }
            case .failure(let error):
                self.undelivered()
                self.host.logger.debug("publication not confirmed by redis", metadata: ["topic": "\(topic)", "error": "\(error)"])
            }
        }
        return 0
    }

    /// Makes room for one publication of `size` bytes among those waiting for Redis' replies,
    /// waiting for it up to `backpressureWait` (Redis slower than the publisher). False: Redis is
    /// down, or still too slow.
    private func reserve(_ size: Int) -> Bool {
        var deadline: NIODeadline?
        while self.isConnected {
            let count = self.inFlightCount.wrappingAdd(1, ordering: .relaxed).newValue
            let bytes = self.inFlightBytes.wrappingAdd(size, ordering: .relaxed).newValue
            // One oversized publication may still go alone.
            if count <= Self.maxInFlightCount && (bytes <= Self.maxInFlightBytes || bytes == size) { return true }
            self.unreserve(size)
            if self.eventLoop.inEventLoop { return false }  // never wait on the loop that drains the replies
            let now = NIODeadline.now()
            if deadline == nil { deadline = now + Self.backpressureWait }
            if now >= deadline! { return false }
            usleep(100)
        }
        return false
    }

    private func unreserve(_ size: Int) {
        self.inFlightCount.wrappingSubtract(1, ordering: .relaxed)
        self.inFlightBytes.wrappingSubtract(size, ordering: .relaxed)
    }

    /// Sends a frame to connection `conn` of instance `node` (another one). True when it was handed
    /// to Redis (whether the connection still exists there is not known here).
    func send(node: String, conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool,
              priority: Priority, key: String?) throws(ArgumentError) -> Bool {
        guard !node.isEmpty, node.utf8.count <= 64 else { throw ArgumentError("node: not an instance id") }
        let message = ClusterMessage.unsequenced(kind: binary ? .binary : .text, priority: priority, key: key, payload: payload,
                                                 allocator: self.allocator, number: conn)
        let size = message.readableBytes
        guard self.reserve(size) else {
            self.undelivered()
            return false
        }
        self.host.stats.add(.redisPublished)
        self.client.publish(channel: self.names.nodeChannel(node), payload: message).whenComplete { result in
            self.unreserve(size)
            if case .failure = result { self.undelivered() }
        }
        return true
    }

    /// Sends a message to a user's connections on every instance. While Redis is down: this
    /// instance's connections only (counted as undelivered).
    func sendUser(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Int {
        let kind: PayloadKind = binary ? .binary : .text
        let message = ClusterMessage.unsequenced(kind: kind, priority: priority, key: key, payload: payload, allocator: self.allocator)
        let size = message.readableBytes
        guard self.reserve(size) else {
            self.undelivered()
            self.host.sendUserLocally(user, payload: payload, binary: binary, priority: priority, key: key)
            return self.host.connectionCount(ofUser: user)
        }
        self.host.stats.add(.redisPublished)
        self.client.publish(channel: self.names.userChannel(user), payload: message).whenComplete { result in
            self.unreserve(size)
            if case .failure = result { self.undelivered() }
        }
        return self.host.connectionCount(ofUser: user)
    }

    /// Closes a user's connections on the other instances: a command on the user's channel, which
    /// every instance with a connection of that user listens to (this instance closes its own
    /// directly and skips its command when it comes back).
    func disconnectUser(_ user: String, code: UInt16, reason: String) -> Int {
        self.publishDisconnect(user, code: code, reason: reason)
        return self.host.disconnectUserLocally(user, code: code, reason: reason)
    }

    private func publishDisconnect(_ user: String, code: UInt16, reason: String) {
        let message = ClusterMessage.disconnectCommand(node: self.node, code: code, reason: reason, allocator: self.allocator)
        let size = message.readableBytes
        guard self.reserve(size) else {
            self.undelivered()
            return
        }
        self.host.stats.add(.redisPublished)
        self.client.publish(channel: self.names.userChannel(user), payload: message).whenComplete { result in
            self.unreserve(size)
            if case .failure = result { self.undelivered() }
        }
    }

    // MARK: subscriptions (refcounted by RedisPubSub; called from any loop)

    func need(subscription: String) {
        if Topic.isPattern(subscription) {
            self.pubsub.need(pattern: self.names.topicPattern(subscription))
        } else {
            self.pubsub.need(channel: self.names.topicChannel(subscription))
        }
    }

    func release(subscription: String) {
        if Topic.isPattern(subscription) {
            if self.pubsub.release(pattern: self.names.topicPattern(subscription)) {
                // Topics seen only through this pattern would linger in the dedup table.
                self.eventLoop.execute { self.lastSeen.removeAll() }
            }
        } else if self.pubsub.release(channel: self.names.topicChannel(subscription)) {
            self.eventLoop.execute { self.lastSeen[ByteString(subscription)] = nil }
        }
    }

    /// Completes when Redis has confirmed this instance's subscription for each of
    /// `subscriptions` (topics and globs), so that everything published to them from then on
    /// arrives; at once while Redis is down (local delivery only), after at most
    /// `recoveryTimeout` otherwise. Never fails.
    func whenRouted(_ subscriptions: [String], on loop: EventLoop, _ body: @escaping @Sendable () -> Void) {
        guard !subscriptions.isEmpty else { return body() }
        self.whenRouted(subscriptions).hop(to: loop).whenComplete { _ in body() }
    }

    private func whenRouted(_ subscriptions: [String]) -> EventLoopFuture<Void> {
        guard self.isConnected, !subscriptions.isEmpty else { return self.eventLoop.makeSucceededVoidFuture() }
        let waits = subscriptions.map { s in
            Topic.isPattern(s)
                ? self.pubsub.whenSubscribed(pattern: self.names.topicPattern(s), timeout: self.recoveryTimeout)
                : self.pubsub.whenSubscribed(channel: self.names.topicChannel(s), timeout: self.recoveryTimeout)
        }
        return EventLoopFuture.andAllComplete(waits, on: self.eventLoop)
    }

    func need(user: String) { self.pubsub.need(channel: self.names.userChannel(user)) }
    func release(user: String) { self.pubsub.release(channel: self.names.userChannel(user)) }
    func needPresenceEvents(_ topic: String) { self.pubsub.need(channel: self.names.presenceChannel(topic)) }
    func releasePresenceEvents(_ topic: String) { self.pubsub.release(channel: self.names.presenceChannel(topic)) }

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
            if let last = self.lastSeen[ByteString(topic)] {
                if last.epoch == message.epoch {
                    if message.offset <= last.offset { return }  // the same message through a second subscription
                    if message.offset > last.offset + 1 { self.host.stats.add(.redisMissed, Int(message.offset - last.offset - 1)) }
                } else if message.offset > 1 {
                    // A new stream (Redis lost the topic) whose first publications never reached us.
                    self.host.stats.add(.redisMissed, Int(message.offset - 1))
                }
            }
            if self.lastSeen.count >= Self.lastSeenLimit && self.lastSeen[ByteString(topic)] == nil { self.lastSeen.removeAll() }
            self.lastSeen[ByteString(topic)] = (message.epoch, message.offset)
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
            guard node == self.node, let message = try? ClusterMessage.parse(payload) else { return }
            self.host.stats.add(.redisReceived)
            _ = message.payload.withUnsafeReadableBytes { bytes in
                let binary = message.kind == .binary
                guard binary || UTF8Validator.isValid(bytes) else { return false }
                return self.host.sendLocally(conn: message.offset, payload: bytes, binary: binary,
                                             priority: message.priority, key: message.key)
            }
        case nil:
            break
        }
    }

    // MARK: positions and recovery

    /// The topic's current position and, when `since` is given, what came after it. Waits first
    /// for Redis to confirm this instance's subscription to the topic's channel, so that every
    /// publication after the read also arrives live: the caller merges both by offset.
    func position(topic: String, since: StreamPosition?, on loop: EventLoop) -> EventLoopFuture<PositionReply> {
        let channel = self.names.topicChannel(topic)
        let historySize = self.historySize
        guard self.isConnected else {
            return self.eventLoop.makeFailedFuture(RedisError(.notConnected, "Redis is unavailable (\(self.stateDescription))"))
        }
        return self.pubsub.whenSubscribed(channel: channel, timeout: self.recoveryTimeout).flatMap { () -> EventLoopFuture<RESPValue> in
            let mode = self.scripts.withLockedValue { $0 } ?? .eval
            let command: [RESPArgument] = self.scriptCommand(mode, publish: false) + [
                "2", .string(self.names.metaKey(topic)), .string(self.names.historyKey(topic)),
                .string(since?.epoch ?? ""), .string(since.map { String($0.offset) } ?? "-1"), .string(self.ttlMilliseconds),
            ]
            return self.client.send(command)
        }.flatMapThrowing { reply -> PositionReply in
            if let message = reply.errorMessage { throw RedisError(.serverError, message) }
            guard let parts = reply.elements, parts.count >= 2, let epoch = parts[0].string, let top = parts[1].integer, top >= 0 else {
                throw RedisError(.protocolError, "unexpected reply to the position script: \(reply)")
            }
            let position = StreamPosition(epoch: epoch, offset: UInt64(top))
            guard let since else { return PositionReply(position: position, recovery: .none) }
            if historySize == 0 { return PositionReply(position: position, recovery: .failed("history is off on this server")) }
            // The script vouches for the epoch (also for one read while the topic had no stream).
            guard parts.count >= 4, parts[2].integer == 1, let entries = parts[3].elements else {
                return PositionReply.check(since, against: position) ?? PositionReply.gone(since, position)
            }
            var publications: [Publication] = []
            publications.reserveCapacity(entries.count)
            for entry in entries {
                guard let bytes = entry.bytes, let message = try? ClusterMessage.parse(bytes) else {
                    throw RedisError(.protocolError, "malformed history entry for \(topic)")
                }
                if message.offset > since.offset { publications.append(self.host.makePublication(topic: topic, message: message)) }
            }
            return PositionReply(position: position, recovery: .recovered(publications))
        }
    }

    // MARK: presence

    private func field(_ conn: UInt64) -> String { "\(self.node):\(conn)" }

    /// Adds (or updates) a connection as a member of `topic`; a new member's join event goes out.
    /// A new member is refused (`refused` runs, nothing is kept) when the topic has `limit` members:
    /// in Redis (every instance's), or on this instance alone while Redis is away.
    func presenceJoin(topic: String, conn: UInt64, member: [UInt8], limit: Int, refused: @escaping @Sendable () -> Void) {
        let field = self.field(conn)
        let key = ByteString(topic)
        let outcome: (admitted: Bool, command: [RESPArgument]?) = self.members.withLockedValue { all in
            if all[key]?[field] == nil && (all[key]?.count ?? 0) >= limit { return (false, nil) }
            all[key, default: [:]][field] = member
            guard self.client.isConnected else { return (true, nil) }  // written back on reconnect
            let event = ServerMessage.presenceEvent("join", topic: topic, member: member)
            return (true, [
                "EVAL", .string(ClusterScripts.join), "1", .string(self.names.presenceKey(topic)),
                .string(field), .bytes(ByteBuffer(bytes: member)), .string(self.presenceTTLMilliseconds),
                .string(self.names.presenceChannel(topic)), .bytes(ByteBuffer(bytes: event)), .string(String(limit)),
            ])
        }
        guard outcome.admitted else { return refused() }
        guard let command = outcome.command else { return }
        self.client.send(command).whenSuccess { reply in
            guard reply.integer == -1 else { return }
            // Full in Redis: forget it here too (unless it left, or changed, meanwhile).
            let forgotten: Bool = self.members.withLockedValue { all in
                guard let kept = all[key]?[field], kept == member else { return false }
                all[key]![field] = nil
                if all[key]!.isEmpty { all[key] = nil }
                return true
            }
            if forgotten { refused() }
        }
    }

    func presenceLeave(topic: String, conn: UInt64) {
        let field = self.field(conn)
        self.members.withLockedValue { all in
            guard let member = all[ByteString(topic)]?.removeValue(forKey: field) else { return }
            if all[ByteString(topic)]?.isEmpty == true { all[ByteString(topic)] = nil }
            _ = self.sendLeave(topic: topic, field: field, member: member)
        }
    }

    private func sendLeave(topic: String, field: String, member: [UInt8]) -> EventLoopFuture<RESPValue> {
        let event = ServerMessage.presenceEvent("leave", topic: topic, member: member)
        return self.client.send([
            "EVAL", .string(ClusterScripts.leave), "1", .string(self.names.presenceKey(topic)),
            .string(field), .string(self.names.presenceChannel(topic)), .bytes(ByteBuffer(bytes: event)),
        ])
    }

    /// Heartbeat: rewrites the expiry of this instance's members and reaps crashed instances' ones.
    private func refreshPresence() {
        guard self.client.isConnected else { return }
        self.members.withLockedValue { all in
            for (key, entries) in all {
                let topic = key.string
                var topicJSON: [UInt8] = []
                JSONWriter.appendString(topic, to: &topicJSON)
                var command: [RESPArgument] = [
                    "EVAL", .string(ClusterScripts.refresh), "1", .string(self.names.presenceKey(topic)),
                    .string(self.presenceTTLMilliseconds), .string(self.names.presenceChannel(topic)), .bytes(ByteBuffer(bytes: topicJSON)),
                ]
                command.reserveCapacity(command.count + entries.count * 2)
                for (field, member) in entries {
                    command.append(.string(field))
                    command.append(.bytes(ByteBuffer(bytes: member)))
                }
                _ = self.client.send(command)
            }
        }
    }

    /// The members of `topic` on every instance, as JSON objects.
    func presenceMembers(topic: String, on loop: EventLoop) -> EventLoopFuture<[[UInt8]]> {
        self.members(of: topic)
    }

    func presenceMembers(topic: String, timeout: Double) throws(ArgumentError) -> [[UInt8]] {
        let result = NIOLockedValueBox<Result<[[UInt8]], Error>?>(nil)
        self.members(of: topic).whenComplete { r in result.withLockedValue { $0 = r } }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(max(0.001, timeout) * 1e9))
        while NIODeadline.now() < deadline {
            if let r = result.withLockedValue({ $0 }) {
                switch r {
                case .success(let members): return members
                case .failure(let error): throw ArgumentError("presence: \((error as? RedisError)?.message ?? "\(error)")")
                }
            }
            usleep(200)
        }
        throw ArgumentError("presence: no answer from Redis within \(timeout) s")
    }

    private func members(of topic: String) -> EventLoopFuture<[[UInt8]]> {
        self.client.send(["EVAL", .string(ClusterScripts.members), "1", .string(self.names.presenceKey(topic))]).flatMapThrowing { reply in
            if let message = reply.errorMessage { throw RedisError(.serverError, message) }
            guard let items = reply.elements else { throw RedisError(.protocolError, "unexpected reply to the members script") }
            return items.compactMap { $0.bytes.map { Array($0.readableBytesView) } }
        }
    }
}

/// The Redis callbacks reach the broker through this (they are made before the broker exists).
private final class WeakRedisDelivery: @unchecked Sendable {
    weak var value: RedisDelivery?
}
