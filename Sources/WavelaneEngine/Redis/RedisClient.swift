// A reconnecting Redis connection for commands (PUBLISH and anything else). While Redis is down,
// commands fail at once with `.notConnected` (nothing is queued), so callers can count them.

import NIOCore
import WavelaneProtocol

public final class RedisClient: @unchecked Sendable {
    public typealias StateHandler = @Sendable (RedisConnectionState) -> Void

    public let eventLoop: EventLoop
    public let url: RedisURL
    private let core: ReconnectingConnection

    /// Throws `.tlsConfiguration` when the TLS files of a `rediss://` URL cannot be used (the TLS
    /// context is built here, once). Call `start()` to connect.
    public init(url: RedisURL, eventLoop: EventLoop, configuration: RedisClientConfiguration = .init(), onStateChange: StateHandler? = nil) throws(RedisError) {
        let core = ReconnectingConnection(url: url, eventLoop: eventLoop, configuration: configuration, subscriberMode: false)
        _ = try core.tlsContext.get()
        self.url = url
        self.eventLoop = eventLoop
        self.core = core
        self.core.onStateChange = onStateChange
    }

    deinit { _ = self.core.close() }

    /// Starts connecting (in the background; never blocks). Idempotent.
    public func start() { self.core.start() }

    /// Stops reconnecting and closes the connection.
    public func close() -> EventLoopFuture<Void> { self.core.close() }

    /// Called on the event loop for every new connection, after `.connected` is reported and
    /// before any other command of this client reaches it from the loop (e.g. to load scripts).
    public var onConnected: ((RedisConnection) -> Void)? {
        get { self.core.onConnected }
        set { self.core.onConnected = newValue }
    }

    public var state: RedisConnectionState { self.core.state }
    public var stats: RedisConnectionStats { self.core.stats }
    public var isConnected: Bool { self.core.current?.isConnected ?? false }

    /// The live connection, if any.
    public var currentConnection: RedisConnection? { self.core.current.flatMap { $0.isConnected ? $0 : nil } }

    /// Sends one command on the current connection (see `RedisConnection.send`). Fails at once with
    /// `.notConnected` while Redis is down. Any thread.
    public func send(_ command: [RESPArgument]) -> EventLoopFuture<RESPValue> {
        guard let connection = self.core.current, connection.isConnected else { return self.down() }
        return connection.send(command)
    }

    public func send(_ command: [String]) -> EventLoopFuture<RESPValue> {
        guard let connection = self.core.current, connection.isConnected else { return self.down() }
        return connection.send(command)
    }

    /// PUBLISH `payload` to `channel`; the future holds the number of receivers. Fails at once with
    /// `.notConnected` while Redis is down, with `.connectionClosed` if the connection drops before
    /// the reply (the message may or may not have been published). Any thread.
    public func publish(channel: String, payload: ByteBuffer) -> EventLoopFuture<Int> {
        guard let connection = self.core.current, connection.isConnected else { return self.down() }
        return connection.publish(channel: channel, payload: payload)
    }

    private func down<T>() -> EventLoopFuture<T> {
        let reason: String
        switch self.core.state {
        case .disconnected(let why): reason = "Redis is unavailable (\(why))"
        case .closed: return self.eventLoop.makeFailedFuture(RedisError(.closed, "the Redis client is closed"))
        default: reason = "Redis is not connected yet"
        }
        return self.eventLoop.makeFailedFuture(RedisError(.notConnected, reason))
    }
}
