import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The state of one event loop: its connections, their topic subscriptions, and the list of
/// connections with unflushed writes. Everything here is touched only on `eventLoop`, so fan-out
/// takes no lock: a publication hops once to each loop and is written to that loop's subscribers.
final class Shard: @unchecked Sendable {
    let index: Int
    let eventLoop: EventLoop
    private unowned let server: ServerCore

    var connections: [UInt64: Connection] = [:]
    /// The buffers this loop's connections unmask each read's payloads into (`FrameReader`).
    var payloadBuffers = PayloadBuffers()
    /// Subscriptions by topic and glob. The index holds the connections themselves (hashed by id),
    /// so a delivery walks subscribers without a lookup in `connections` per subscriber.
    var topics = TopicIndex<Connection>()
    private var dirty: [Connection] = []
    /// Shared permessage-deflate state for connections without context takeover (reset per message).
    private(set) lazy var inflater = Inflater(contextTakeover: false)
    private var deflaters: [Int: Deflater] = [:]
    private var flushScheduled = false
    private var sweeper: RepeatedTask?
    /// The handshake timeouts of this loop's connections still in their HTTP phase.
    private(set) lazy var handshakeDeadlines = HandshakeDeadlines(
        eventLoop: self.eventLoop, timeout: .nanoseconds(Int64(self.server.config.handshakeTimeout * 1e9)),
        stats: self.server.stats)

    init(index: Int, eventLoop: EventLoop, server: ServerCore) {
        self.index = index
        self.eventLoop = eventLoop
        self.server = server
    }

    /// Starts the heartbeat / idle / slow-consumer sweep on this loop.
    func startSweeping() {
        let config = self.server.config
        let period = max(0.05, min(1.0, config.pingInterval / 4, config.idleTimeout / 4))
        let ns = Int64(period * 1e9)
        self.sweeper = self.eventLoop.scheduleRepeatedTask(initialDelay: .nanoseconds(ns), delay: .nanoseconds(ns)) { [weak self] _ in
            self?.sweep()
        }
    }

    func stopSweeping() {
        self.sweeper?.cancel()
        self.sweeper = nil
        self.handshakeDeadlines.stop()
    }

    private func sweep() {
        let now = NIODeadline.now()
        let idle = TimeAmount.nanoseconds(Int64(self.server.config.idleTimeout * 1e9))
        let ping = TimeAmount.nanoseconds(Int64(self.server.config.pingInterval * 1e9))
        // Token expiry: one comparison per connection per sweep, against the wall clock in whole
        // seconds (exp is Unix time; the same rule as the handshake's check: now > exp + leeway).
        let leeway = self.server.verifier.map { Double($0.expiryLeeway) }
        var wall = timespec()
        if leeway != nil { clock_gettime(CLOCK_REALTIME, &wall) }
        let unixNow = Double(wall.tv_sec)
        for connection in self.connections.values where connection.state == .open {
            if let leeway {
                connection.checkExpiry(now: unixNow, leeway: leeway)
                if connection.state != .open { continue }
            }
            if now - connection.lastActivity > idle {
                self.server.stats.add(.idleTimeouts)
                self.server.logger.debug("closing idle connection", metadata: ["conn": "\(connection.id)"])
                connection.abort(code: CloseCode.goingAway, reason: "idle timeout")
                continue
            }
            if now - connection.lastPing >= ping && now - connection.lastActivity >= ping {
                connection.sendPing(now: now)
            }
            connection.checkSlowConsumer(now: now)
            connection.reportDrops()
        }
        self.commitCounters()
    }

    /// The no-context-takeover compressor for a window size, made on first use.
    func deflater(windowBits: Int) -> Deflater {
        if let d = self.deflaters[windowBits] { return d }
        let policy = self.server.config.compression
        let d = Deflater(level: policy.level, windowBits: windowBits, memLevel: policy.memLevel, contextTakeover: false)
        self.deflaters[windowBits] = d
        return d
    }

    // MARK: subscriptions

    /// Adds a subscription; the first subscriber of a topic or glob on this loop makes the
    /// instance subscribe to it in Redis (multi-instance mode). Returns false if it existed.
    @discardableResult
    func addSubscription(_ conn: Connection, _ subscription: String) -> Bool {
        let first = !self.topics.hasSubscribers(subscription)
        guard self.topics.subscribe(conn, to: subscription) else { return false }
        if first { self.server.delivery.need(subscription: subscription) }
        return true
    }

    @discardableResult
    func removeSubscription(_ conn: Connection, _ subscription: String) -> Bool {
        guard self.topics.unsubscribe(conn, from: subscription) else { return false }
        if !self.topics.hasSubscribers(subscription) { self.server.delivery.release(subscription: subscription) }
        return true
    }

    /// Connections that asked for the join/leave events of a topic.
    private var presenceWatchers: [ByteString: Set<UInt64>] = [:]

    func watchPresence(_ conn: UInt64, _ topic: String) {
        let first = self.presenceWatchers[ByteString(topic)] == nil
        guard self.presenceWatchers[ByteString(topic), default: []].insert(conn).inserted else { return }
        if first { self.server.delivery.needPresenceEvents(topic) }
    }

    func unwatchPresence(_ conn: UInt64, _ topic: String) {
        guard self.presenceWatchers[ByteString(topic)]?.remove(conn) != nil else { return }
        if self.presenceWatchers[ByteString(topic)]?.isEmpty == true {
            self.presenceWatchers[ByteString(topic)] = nil
            self.server.delivery.releasePresenceEvents(topic)
        }
    }

    /// Hands a join/leave event (a complete frame) to this loop's watchers of `topic`.
    func deliverPresence(topic: String, frame: ByteBuffer) {
        self.deliverPending()
        guard let watchers = self.presenceWatchers[ByteString(topic)] else { return }
        for id in watchers {
            self.connections[id]?.writeFrame(frame)
        }
    }

    /// Publications handed to this loop and not yet written (`publish`): written together by
    /// `deliverPending`, in a task queued behind the ones already waiting.
    private var pendingPublications: [Publication] = []

    /// Hands an encoded publication to this loop for every local subscriber of its topic (from any
    /// thread). It takes its place among the loop's tasks in the order it came, and is written with
    /// the others that reach the loop in the same tick (`deliverPending`), before any later task
    /// that `execute` runs.
    func publish(_ publication: Publication) {
        self.eventLoop.execute {
            self.pendingPublications.append(publication)
            if self.pendingPublications.count == 1 { self.eventLoop.execute { self.deliverPending() } }
        }
    }

    /// Runs `body` on this loop after the publications handed over before it. Every call that
    /// reaches a connection from another thread (send, subscribe, unsubscribe, close) goes through
    /// here, so a connection sees publications and those calls in the order they were made.
    func execute(_ body: @escaping @Sendable () -> Void) {
        self.eventLoop.execute {
            self.deliverPending()
            body()
        }
    }

    /// Writes the pending publications, subscriber by subscriber: each run of publications to
    /// one topic goes to each subscriber as one batch (`Connection.writePublications`), so a
    /// subscriber is looked at once per run, not once per publication, and the frames that follow
    /// each other in a shared block go to it with one copy (or join its send queue as one run).
    func deliverPending() {
        guard !self.pendingPublications.isEmpty else { return }
        var batch: [Publication] = []
        swap(&batch, &self.pendingPublications)
        var stretches: [PublicationStretch] = []
        var start = 0
        while start < batch.count {
            let topic = batch[start].topic
            var end = start + 1
            while end < batch.count && batch[end].topic == topic { end += 1 }
            PublicationStretch.split(batch, start..<end, into: &stretches)
            var subscribers = 0
            self.topics.forEachSubscriber(of: topic) { connection in
                connection.writePublications(batch, stretches)
                subscribers += 1
            }
            if subscribers > 0 { self.server.stats.add(.deliveries, subscribers * (end - start)) }
            stretches.removeAll(keepingCapacity: true)
            start = end
        }
        if self.pendingPublications.isEmpty && batch.capacity <= 4096 {
            batch.removeAll(keepingCapacity: true)
            self.pendingPublications = batch
        }
    }

    /// Wakes Python once at the end of this tick for the inbound events queued during it
    /// (`EventQueue.pushDeferringWake`).
    private var wakeScheduled = false
    /// A wake-up for connection lifecycle events alone is due within `lifecycleWakeDelay`.
    private var lifecycleWakeScheduled = false

    /// How long connect and disconnect events (and nothing else) may wait for Python to be woken.
    /// A storm of connections then wakes Python about once per this period, not once per
    /// connection per tick: each wake-up is two context switches and a drain (with one loop on
    /// one core, ~2 per handshake and about a fifth of the server's CPU per handshake).
    static let lifecycleWakeDelay = TimeAmount.milliseconds(1)

    /// Wakes Python for the events this loop queued: at the end of this tick when any of them is
    /// `urgent` (`InboundEvent.Kind.isUrgent`: a message, a request), else within
    /// `lifecycleWakeDelay`. An urgent wake-up takes a pending lifecycle one with it (the consumer
    /// then drains everything).
    func scheduleConsumerWake(urgent: Bool = true) {
        guard !self.wakeScheduled else { return }
        if urgent {
            self.wakeScheduled = true
            self.eventLoop.execute {
                self.wakeScheduled = false
                self.server.queue.wakeConsumer()
            }
        } else if !self.lifecycleWakeScheduled {
            self.lifecycleWakeScheduled = true
            self.eventLoop.scheduleTask(in: Self.lifecycleWakeDelay) {
                self.lifecycleWakeScheduled = false
                self.server.queue.wakeConsumer()
            }
        }
    }

    /// Records a connection with pending writes; all of them are flushed once, at the end of this tick.
    func markDirty(_ connection: Connection) {
        self.dirty.append(connection)
        if !self.flushScheduled {
            self.flushScheduled = true
            self.eventLoop.execute { self.flushAll() }
        }
    }

    private func flushAll() {
        self.flushScheduled = false
        var pending: [Connection] = []
        swap(&pending, &self.dirty)
        for connection in pending { connection.flush() }
        if self.dirty.isEmpty {
            pending.removeAll(keepingCapacity: true)
            self.dirty = pending
        }
        self.commitCounters()
    }

    /// Per-frame counters are kept here, on the loop, and added to the shared atomics once per
    /// tick: an atomic add per delivery on counters shared by every loop cost more than the write.
    var framesOut = 0
    var bytesOut = 0

    /// Change of this loop's send-queue bytes not yet added to `ServerCore.sendQueueBytes` (committed
    /// once per tick: an atomic add per queued frame showed in fan-out profiles).
    private var queuedBytesDelta = 0

    @inline(__always)
    func queuedBytesChanged(by delta: Int) {
        guard delta != 0 else { return }
        self.queuedBytesDelta += delta
        if !self.flushScheduled {
            self.flushScheduled = true
            self.eventLoop.execute { self.flushAll() }
        }
    }

    func commitCounters() {
        if self.queuedBytesDelta != 0 {
            self.server.sendQueueBytes.wrappingAdd(self.queuedBytesDelta, ordering: .relaxed)
            self.queuedBytesDelta = 0
        }
        if self.framesOut > 0 {
            self.server.stats.add(.framesOut, self.framesOut)
            self.server.stats.add(.bytesOut, self.bytesOut)
            self.framesOut = 0
            self.bytesOut = 0
        }
    }
}

/// Consecutive publications of a batch (`range`) whose frames follow each other in one shared
/// block — `shared`: `block[first ..< first + range.count]`, all at one priority — or (`shared` nil) ones
/// that go out one by one (keyed, large or compressed-only frames). Computed once per batch and
/// topic (`Shard.deliverPending`), used for every subscriber.
struct PublicationStretch {
    /// Frames `first ..< first + range.count` of `block`, at `priority`; `largestBody`: the largest
    /// body among them (compression applies from `compression.min_size`).
    struct Shared {
        let block: FrameBlock
        let first: Int
        let priority: Priority
        let largestBody: Int
    }

    let range: Range<Int>
    /// Nil: the publications go one by one.
    let shared: Shared?

    /// Appends the stretches of `batch[range]` to `stretches`.
    static func split(_ batch: [Publication], _ range: Range<Int>, into stretches: inout [PublicationStretch]) {
        var i = range.lowerBound
        while i < range.upperBound {
            guard let origin = batch[i].origin else {
                var j = i + 1
                while j < range.upperBound && batch[j].origin == nil { j += 1 }
                stretches.append(PublicationStretch(range: i..<j, shared: nil))
                i = j
                continue
            }
            let priority = batch[i].priority
            var largest = batch[i].body.readableBytes
            var j = i + 1
            while j < range.upperBound, let next = batch[j].origin, next.block === origin.block,
                  next.index == origin.index + (j - i), batch[j].priority == priority {
                largest = max(largest, batch[j].body.readableBytes)
                j += 1
            }
            stretches.append(PublicationStretch(range: i..<j, shared: Shared(block: origin.block, first: origin.index,
                                                                               priority: priority, largestBody: largest)))
            i = j
        }
    }
}

/// One publication, encoded once: the plain frame, its body (a slice of the frame, for connections
/// that compress with their own parameters) and, when any connection can share it, the frame
/// compressed once with no context takeover and a 15-bit window.
struct Publication: Sendable {
    let topic: String
    /// The topic offset (0: outside the topic's sequence, e.g. published while Redis was down).
    let offset: UInt64
    /// The stream's epoch in multi-instance mode (nil in single-instance mode).
    let epoch: String?
    let frame: ByteBuffer
    let body: ByteBuffer
    let opcode: WebSocketOpcode
    let compressedFrame: ByteBuffer?
    let priority: Priority
    /// Latest-state-wins key: replaces a queued publication with the same key.
    let key: String?
    /// Where `frame` sits in the shared frame blocks (nil: keyed or large), so a backed-up
    /// connection queues consecutive publications as one run.
    let origin: FrameOrigin?

    init(topic: String, offset: UInt64, epoch: String?, frame: ByteBuffer, body: ByteBuffer, opcode: WebSocketOpcode,
         compressedFrame: ByteBuffer?, priority: Priority, key: String?, origin: FrameOrigin? = nil) {
        self.topic = topic
        self.offset = offset
        self.epoch = epoch
        self.frame = frame
        self.body = body
        self.opcode = opcode
        self.compressedFrame = compressedFrame
        self.priority = priority
        self.key = key
        self.origin = origin
    }
}

/// Connections and users by id, for calls that come from Python threads. One lock; held only to
/// look up or update a dictionary, never while doing I/O.
final class ConnectionRegistry: @unchecked Sendable {
    /// One user's connections. Most users have one: it is kept without a dictionary of its own
    /// (~110 bytes per connected user); the others go to `more`.
    struct UserConnections {
        private(set) var one: Connection?
        private(set) var more: [UInt64: Connection] = [:]

        var isEmpty: Bool { self.one == nil && self.more.isEmpty }
        var all: [Connection] { (self.one.map { [$0] } ?? []) + self.more.values }

        mutating func insert(_ connection: Connection) {
            if self.one == nil {
                self.one = connection
            } else {
                self.more[connection.id] = connection
            }
        }

        mutating func remove(_ connection: Connection) {
            if self.one === connection {
                self.one = nil
            } else {
                self.more[connection.id] = nil
            }
        }
    }

    private let lock = NIOLock()
    private var connections: [UInt64: Connection] = [:]
    private var users: [ByteString: UserConnections] = [:]

    func add(_ connection: Connection) {
        self.lock.withLock {
            self.connections[connection.id] = connection
            if let user = connection.user { self.users[ByteString(user), default: UserConnections()].insert(connection) }
        }
    }

    func remove(_ connection: Connection) {
        self.lock.withLock {
            self.connections[connection.id] = nil
            // Mutate in place: copying the inner dictionary out and back made a mass disconnect O(n²).
            if let user = connection.user {
                self.users[ByteString(user)]?.remove(connection)
                if self.users[ByteString(user)]?.isEmpty == true { self.users[ByteString(user)] = nil }
            }
        }
    }

    func connection(_ id: UInt64) -> Connection? {
        self.lock.withLock { self.connections[id] }
    }

    func connections(ofUser user: String) -> [Connection] {
        self.lock.withLock { self.users[ByteString(user)]?.all ?? [] }
    }

    func all() -> [Connection] {
        self.lock.withLock { Array(self.connections.values) }
    }

    var count: Int { self.lock.withLock { self.connections.count } }
    var userCount: Int { self.lock.withLock { self.users.count } }
}
