// A dedicated Redis connection in subscribe mode, with reference-counted channel and pattern
// subscriptions and automatic reconnection (re-subscribing everything still needed).

import NIOConcurrencyHelpers
import NIOCore
import Synchronization
import WavelaneProtocol

public final class RedisPubSub: @unchecked Sendable {
    /// Called on the subscriber's event loop for every `message` (exact channel) and `pmessage`
    /// (pattern match; `channel` is the concrete channel the message was published to). A channel
    /// that is both subscribed and matched by a subscribed pattern is delivered once per match, as
    /// Redis sends it. Must not block.
    public typealias MessageHandler = @Sendable (_ channel: String, _ payload: ByteBuffer) -> Void
    public typealias StateHandler = @Sendable (RedisConnectionState) -> Void

    private enum Kind { case channel, pattern }

    /// Refcounts and the "to reconcile" sets, shared between callers (any thread) and the loop.
    private struct Wanted {
        // Names compare as bytes (ByteString): two channels that merely look alike stay two.
        var channels: [ByteString: Int] = [:]
        var patterns: [ByteString: Int] = [:]
        var dirtyChannels: Set<ByteString> = []
        var dirtyPatterns: Set<ByteString> = []
        var reconcileScheduled = false
        /// Subscriptions Redis confirmed on the current connection.
        var confirmedChannels: Set<ByteString> = []
        var confirmedPatterns: Set<ByteString> = []
    }

    public let eventLoop: EventLoop
    public let url: RedisURL
    private let core: ReconnectingConnection
    private let onMessage: MessageHandler
    private let wanted = NIOLockedValueBox(Wanted())
    private let receivedCounter = Atomic<Int>(0)
    private let readyFlag = ReadyFlag()

    private final class ReadyFlag: Sendable {
        let value = Atomic<Bool>(false)
        func store(_ v: Bool) { self.value.store(v, ordering: .relaxed) }
        func load() -> Bool { self.value.load(ordering: .relaxed) }
    }

    /// Called on the event loop once a (re)connected subscriber has had every subscription still
    /// needed confirmed by Redis: from then on nothing published to them is missed.
    public var onReady: (@Sendable () -> Void)?

    /// True between `onReady` and the next disconnect.
    public var isReady: Bool { self.readyFlag.load() }

    // Event-loop state: what we asked the current connection to subscribe to.
    private var sentChannels: Set<ByteString> = []
    private var sentPatterns: Set<ByteString> = []

    /// Promises waiting for Redis to confirm a channel subscription (event loop only).
    private final class Waiter {
        let promise: EventLoopPromise<Void>
        var timer: Scheduled<Void>?
        var done = false
        init(promise: EventLoopPromise<Void>) { self.promise = promise }
        func finish(_ result: Result<Void, Error>) {
            guard !self.done else { return }
            self.done = true
            self.timer?.cancel()
            self.promise.completeWith(result)
        }
    }
    private var waiters: [ByteString: [Waiter]] = [:]

    /// Most channel/pattern names sent in one SUBSCRIBE-family command.
    static let batchSize = 512

    /// `eventLoop` runs the connection, the reconnect timer and the handlers. Throws
    /// `.tlsConfiguration` when a `rediss://` URL's TLS files cannot be used. Call `start()` to connect.
    public init(
        url: RedisURL, eventLoop: EventLoop, configuration: RedisClientConfiguration = .init(),
        onMessage: @escaping MessageHandler, onStateChange: StateHandler? = nil
    ) throws(RedisError) {
        self.url = url
        self.eventLoop = eventLoop
        self.onMessage = onMessage
        var configuration = configuration
        configuration.connection.commandTimeout = configuration.connection.commandTimeout ?? .seconds(5)
        self.core = ReconnectingConnection(url: url, eventLoop: eventLoop, configuration: configuration, subscriberMode: true)
        let readyFlag = self.readyFlag
        self.core.onStateChange = { state in
            if state != .connected { readyFlag.store(false) }
            onStateChange?(state)
        }
        self.core.onPush = { [weak self] value in self?.handleFrame(value) }
        self.core.onConnected = { [weak self] connection in self?.restore(on: connection) }
        _ = try self.core.tlsContext.get()  // made once, here; a bad TLS setup fails now
    }

    deinit { _ = self.core.close() }

    /// Starts connecting (in the background; never blocks). Idempotent.
    public func start() { self.core.start() }

    /// Stops reconnecting and closes the connection. Refcounts are kept (but nothing is sent).
    public func close() -> EventLoopFuture<Void> { self.core.close() }

    public var state: RedisConnectionState { self.core.state }
    public var stats: RedisConnectionStats { self.core.stats }
    /// Messages delivered to the handler so far.
    public var messagesReceived: Int { self.receivedCounter.load(ordering: .relaxed) }

    // MARK: refcounts

    /// Declares that the engine needs `channel`; only the first need (0 → 1) subscribes in Redis.
    /// Returns true when this call made the channel needed. Any thread; never blocks on I/O.
    @discardableResult
    public func need(channel: String) -> Bool { self.change([ByteString(channel)], .channel, +1)[0] }

    /// The engine no longer needs `channel`; only the last release (1 → 0) unsubscribes. Returns
    /// true when this call made it unneeded; releasing a channel that is not needed is a no-op (false).
    @discardableResult
    public func release(channel: String) -> Bool { self.change([ByteString(channel)], .channel, -1)[0] }

    @discardableResult
    public func need(pattern: String) -> Bool { self.change([ByteString(pattern)], .pattern, +1)[0] }

    @discardableResult
    public func release(pattern: String) -> Bool { self.change([ByteString(pattern)], .pattern, -1)[0] }

    /// Batch forms (one lock, one SUBSCRIBE for all). Results in order of `channels`.
    @discardableResult
    public func need(channels: [String]) -> [Bool] { self.change(channels.map { ByteString($0) }, .channel, +1) }

    @discardableResult
    public func release(channels: [String]) -> [Bool] { self.change(channels.map { ByteString($0) }, .channel, -1) }

    /// The current refcount of `channel` (0 when not needed).
    public func refcount(channel: String) -> Int { self.wanted.withLockedValue { $0.channels[ByteString(channel)] ?? 0 } }
    public func refcount(pattern: String) -> Int { self.wanted.withLockedValue { $0.patterns[ByteString(pattern)] ?? 0 } }

    /// True when Redis has confirmed the subscription on the current connection.
    public func isSubscribed(channel: String) -> Bool { self.wanted.withLockedValue { $0.confirmedChannels.contains(ByteString(channel)) } }
    public func isSubscribed(pattern: String) -> Bool { self.wanted.withLockedValue { $0.confirmedPatterns.contains(ByteString(pattern)) } }

    /// Needed channels/patterns (refcount > 0).
    public var neededChannels: Set<String> { self.wanted.withLockedValue { Set($0.channels.keys.map(\.string)) } }
    public var neededPatterns: Set<String> { self.wanted.withLockedValue { Set($0.patterns.keys.map(\.string)) } }

    /// Completes once Redis has confirmed the subscription to `channel` on the current connection
    /// (at once if it already has): from then on every message published to it reaches us. Fails
    /// with `.timeout` after `timeout`. Call after `need(channel:)`. Any thread.
    public func whenSubscribed(channel: String, timeout: TimeAmount) -> EventLoopFuture<Void> {
        self.whenConfirmed(.channel, channel, timeout: timeout)
    }

    /// The same for a pattern (after `need(pattern:)`).
    public func whenSubscribed(pattern: String, timeout: TimeAmount) -> EventLoopFuture<Void> {
        self.whenConfirmed(.pattern, pattern, timeout: timeout)
    }

    private static func waiterKey(_ kind: Kind, _ name: ByteString) -> ByteString {
        ByteString((kind == .channel ? "c:" : "p:") + name.string)
    }

    private func whenConfirmed(_ kind: Kind, _ text: String, timeout: TimeAmount) -> EventLoopFuture<Void> {
        let promise = self.eventLoop.makePromise(of: Void.self)
        let name = ByteString(text)
        let key = Self.waiterKey(kind, name)
        self.eventLoop.execute {
            let confirmed = self.wanted.withLockedValue { w in
                kind == .channel ? w.confirmedChannels.contains(name) : w.confirmedPatterns.contains(name)
            }
            if confirmed {
                promise.succeed(())
                return
            }
            let waiter = Waiter(promise: promise)
            waiter.timer = self.eventLoop.scheduleTask(in: timeout) {
                waiter.finish(.failure(RedisError(.timeout, "Redis did not confirm the subscription to \(name)")))
                self.waiters[key]?.removeAll { $0.done }
                if self.waiters[key]?.isEmpty == true { self.waiters[key] = nil }
            }
            self.waiters[key, default: []].append(waiter)
        }
        return promise.futureResult
    }

    private func change(_ names: [ByteString], _ kind: Kind, _ delta: Int) -> [Bool] {
        var schedule = false
        let results: [Bool] = self.wanted.withLockedValue { w in
            var results: [Bool] = []
            results.reserveCapacity(names.count)
            for name in names {
                let old = (kind == .channel ? w.channels[name] : w.patterns[name]) ?? 0
                let new = max(0, old + delta)
                let crossed = (old == 0) != (new == 0)
                if kind == .channel { w.channels[name] = new == 0 ? nil : new } else { w.patterns[name] = new == 0 ? nil : new }
                if crossed {
                    if kind == .channel { w.dirtyChannels.insert(name) } else { w.dirtyPatterns.insert(name) }
                }
                results.append(crossed)
            }
            if !w.reconcileScheduled && (!w.dirtyChannels.isEmpty || !w.dirtyPatterns.isEmpty) {
                w.reconcileScheduled = true
                schedule = true
            }
            return results
        }
        if schedule { self.eventLoop.execute { self.reconcileDirty() } }
        return results
    }

    // MARK: event loop

    /// Brings Redis in line with the refcounts for every name touched since the last run. Reads the
    /// wanted state at run time, so need/release racing from several threads cannot reorder.
    private func reconcileDirty() {
        let (channels, patterns, wantChannels, wantPatterns): ([ByteString], [ByteString], Set<ByteString>, Set<ByteString>) =
            self.wanted.withLockedValue { w in
                let c = Array(w.dirtyChannels)
                let p = Array(w.dirtyPatterns)
                w.dirtyChannels.removeAll()
                w.dirtyPatterns.removeAll()
                w.reconcileScheduled = false
                return (c, p, Set(c.filter { w.channels[$0] != nil }), Set(p.filter { w.patterns[$0] != nil }))
            }
        guard let connection = self.core.current, connection.isConnected else { return }  // restore() will catch up
        self.reconcile(channels, want: wantChannels, kind: .channel, on: connection)
        self.reconcile(patterns, want: wantPatterns, kind: .pattern, on: connection)
    }

    private func reconcile(_ names: [ByteString], want: Set<ByteString>, kind: Kind, on connection: RedisConnection) {
        var subscribe: [ByteString] = []
        var unsubscribe: [ByteString] = []
        for name in names {
            let sent = kind == .channel ? self.sentChannels.contains(name) : self.sentPatterns.contains(name)
            if want.contains(name) && !sent { subscribe.append(name) }
            if !want.contains(name) && sent { unsubscribe.append(name) }
        }
        if kind == .channel {
            self.sentChannels.formUnion(subscribe)
            self.sentChannels.subtract(unsubscribe)
        } else {
            self.sentPatterns.formUnion(subscribe)
            self.sentPatterns.subtract(unsubscribe)
        }
        self.send(kind == .channel ? "SUBSCRIBE" : "PSUBSCRIBE", subscribe, on: connection)
        self.send(kind == .channel ? "UNSUBSCRIBE" : "PUNSUBSCRIBE", unsubscribe, on: connection)
    }

    private func send(_ verb: String, _ names: [ByteString], on connection: RedisConnection) {
        var index = 0
        while index < names.count {  // never send an empty (UN)SUBSCRIBE: it would mean "all"
            let chunk = names[index..<min(names.count, index + Self.batchSize)]
            var args: [RESPArgument] = [.string(verb)]
            args.reserveCapacity(chunk.count + 1)
            for name in chunk { args.append(.string(name.string)) }
            connection.sendWithoutReply(args)
            index += chunk.count
        }
    }

    /// A new connection: subscribe to everything still needed.
    private func restore(on connection: RedisConnection) {
        self.eventLoop.assertInEventLoop()
        self.sentChannels.removeAll()
        self.sentPatterns.removeAll()
        let (channels, patterns): ([ByteString], [ByteString]) = self.wanted.withLockedValue { w in
            w.confirmedChannels.removeAll()
            w.confirmedPatterns.removeAll()
            return (Array(w.channels.keys), Array(w.patterns.keys))
        }
        self.reconcile(channels, want: Set(channels), kind: .channel, on: connection)
        self.reconcile(patterns, want: Set(patterns), kind: .pattern, on: connection)
        // Replies come in order: the PONG for this PING arrives after every confirmation above.
        connection.sendWithoutReply(["PING"])
    }

    private func markReady() {
        guard !self.readyFlag.load(), self.core.current?.isConnected == true else { return }
        self.readyFlag.store(true)
        self.onReady?()
    }

    private func handleFrame(_ value: RESPValue) {
        if value.elements == nil, value.string == "PONG" {  // PING answered outside subscribe mode
            self.markReady()
            return
        }
        guard let elements = value.elements, let kind = elements.first?.string else { return }
        switch kind {
        case "message" where elements.count >= 3:
            guard let channel = elements[1].string, let payload = elements[2].bytes else { return }
            guard self.sentChannels.contains(ByteString(channel)) else { return }  // unsubscribe in flight
            self.receivedCounter.wrappingAdd(1, ordering: .relaxed)
            self.onMessage(channel, payload)
        case "pmessage" where elements.count >= 4:
            guard let pattern = elements[1].string, let channel = elements[2].string, let payload = elements[3].bytes else { return }
            guard self.sentPatterns.contains(ByteString(pattern)) else { return }
            self.receivedCounter.wrappingAdd(1, ordering: .relaxed)
            self.onMessage(channel, payload)
        case "pong":
            self.markReady()
        case "subscribe", "psubscribe", "unsubscribe", "punsubscribe":
            guard elements.count >= 2, let text = elements[1].string else { return }
            let name = ByteString(text)
            self.wanted.withLockedValue { w in
                switch kind {
                case "subscribe": w.confirmedChannels.insert(name)
                case "psubscribe": w.confirmedPatterns.insert(name)
                case "unsubscribe": w.confirmedChannels.remove(name)
                default: w.confirmedPatterns.remove(name)
                }
            }
            if kind == "subscribe" || kind == "psubscribe",
               let waiting = self.waiters.removeValue(forKey: Self.waiterKey(kind == "subscribe" ? .channel : .pattern, name)) {
                for waiter in waiting { waiter.finish(.success(())) }
            }
        default:
            break
        }
    }
}
