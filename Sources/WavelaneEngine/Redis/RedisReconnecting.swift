// Keeps one Redis connection up: connects, and whenever the connection cannot be established or
// drops, retries after an exponential backoff with jitter, forever (until closed). Shared by
// `RedisPubSub` and `RedisClient`. All mutable state lives on `eventLoop`.

import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import Synchronization
import WavelaneProtocol

/// What a reconnecting Redis component reports to the engine.
public enum RedisConnectionState: Equatable, Sendable, CustomStringConvertible {
    /// Not yet connected (first attempt in progress).
    case connecting
    /// Connected and ready (authenticated, database selected, subscriptions being restored).
    case connected
    /// Down; retrying with backoff. `reason` is the last failure.
    case disconnected(reason: String)
    /// Closed by the application; no more attempts.
    case closed

    public var description: String {
        switch self {
        case .connecting: return "connecting"
        case .connected: return "connected"
        case .disconnected(let reason): return "disconnected: \(reason)"
        case .closed: return "closed"
        }
    }
}

public struct RedisClientConfiguration: Sendable {
    public var connection = RedisConnection.Configuration()
    /// First retry delay; doubles per failed attempt up to `reconnectMax`.
    public var reconnectBase: TimeAmount = .milliseconds(50)
    public var reconnectMax: TimeAmount = .seconds(5)
    /// Fraction of each delay that is random: the delay is d * (1 - jitter * U[0,1)).
    public var reconnectJitter = 0.5

    public init() {}

    /// The delay before retry number `attempt` (0-based).
    public func backoff(attempt: Int) -> TimeAmount {
        let base = max(1, self.reconnectBase.nanoseconds)
        let cap = max(base, self.reconnectMax.nanoseconds)
        let shift = min(attempt, 40)
        let raw = base.multipliedReportingOverflow(by: Int64(1) << shift)
        let d = raw.overflow ? cap : min(cap, raw.partialValue)
        let jitter = min(1, max(0, self.reconnectJitter))
        let factor = 1 - jitter * Double.random(in: 0..<1)
        return .nanoseconds(max(1, Int64(Double(d) * factor)))
    }
}

/// Counters of a reconnecting component (monotonic; read from any thread).
public struct RedisConnectionStats: Equatable, Sendable {
    /// Connection attempts started.
    public var attempts: Int
    /// Attempts that failed (refused, timed out, AUTH refused, ...).
    public var failedAttempts: Int
    /// Successful connections after the first one.
    public var reconnects: Int
    /// Established connections that were lost.
    public var disconnects: Int
}

final class ReconnectingConnection: @unchecked Sendable {
    let url: RedisURL
    let eventLoop: EventLoop
    let configuration: RedisClientConfiguration
    private let subscriberMode: Bool
    /// Built once from the URL (nil for `redis://`). A failure makes `start()` report `.disconnected`
    /// with its message and attempt nothing more (retrying cannot help).
    let tlsContext: Result<NIOSSLContext?, RedisError>

    // Set before start(); called on the event loop.
    var onPush: ((RESPValue) -> Void)?
    var onConnected: ((RedisConnection) -> Void)?
    var onStateChange: ((RedisConnectionState) -> Void)?

    /// The live connection, readable from any thread (fast path for fail-fast sends).
    private let currentBox = NIOLockedValueBox<RedisConnection?>(nil)
    private let stateBox = NIOLockedValueBox<RedisConnectionState>(.connecting)
    private let attemptsCounter = Atomic<Int>(0)
    private let failedCounter = Atomic<Int>(0)
    private let reconnectCounter = Atomic<Int>(0)
    private let disconnectCounter = Atomic<Int>(0)

    // Event-loop state.
    private var started = false
    private var closed = false
    private var everConnected = false
    private var attempt = 0
    private var retryTask: Scheduled<Void>?

    init(url: RedisURL, eventLoop: EventLoop, configuration: RedisClientConfiguration, subscriberMode: Bool) {
        self.url = url
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.subscriberMode = subscriberMode
        self.tlsContext = Result { () throws(RedisError) in try url.makeTLSContext() }
    }

    var current: RedisConnection? { self.currentBox.withLockedValue { $0 } }
    var state: RedisConnectionState { self.stateBox.withLockedValue { $0 } }

    var stats: RedisConnectionStats {
        RedisConnectionStats(
            attempts: self.attemptsCounter.load(ordering: .relaxed),
            failedAttempts: self.failedCounter.load(ordering: .relaxed),
            reconnects: self.reconnectCounter.load(ordering: .relaxed),
            disconnects: self.disconnectCounter.load(ordering: .relaxed))
    }

    func start() {
        self.eventLoop.execute {
            guard !self.started, !self.closed else { return }
            self.started = true
            self.connectNow()
        }
    }

    private func setState(_ new: RedisConnectionState) {
        let changed: Bool = self.stateBox.withLockedValue { state in
            let same: Bool
            switch (state, new) {
            case (.disconnected, .disconnected), (.connected, .connected), (.closed, .closed), (.connecting, .connecting): same = true
            default: same = false
            }
            state = new
            return !same
        }
        if changed { self.onStateChange?(new) }
    }

    private func connectNow() {
        self.eventLoop.assertInEventLoop()
        self.retryTask = nil
        guard !self.closed else { return }
        self.attemptsCounter.wrappingAdd(1, ordering: .relaxed)
        let tlsContext: NIOSSLContext?
        switch self.tlsContext {
        case .success(let context):
            tlsContext = context
        case .failure(let error):
            // Not transient: retrying cannot help.
            self.failedCounter.wrappingAdd(1, ordering: .relaxed)
            self.setState(.disconnected(reason: error.message))
            return
        }
        RedisConnection.connect(
            to: self.url, on: self.eventLoop, configuration: self.configuration.connection, tlsContext: tlsContext,
            subscriberMode: self.subscriberMode, onPush: { [weak self] value in self?.onPush?(value) }
        ).whenComplete { result in
            switch result {
            case .success(let connection):
                guard !self.closed else {
                    connection.channel.close(promise: nil)
                    return
                }
                self.attempt = 0
                if self.everConnected { self.reconnectCounter.wrappingAdd(1, ordering: .relaxed) }
                self.everConnected = true
                self.currentBox.withLockedValue { $0 = connection }
                self.setState(.connected)
                if connection.isConnected { self.onConnected?(connection) }
                // Registered last: if the connection is already gone this runs at once, after the
                // `.connected` report, so the final state is `.disconnected` and a retry is scheduled.
                connection.closeFuture.whenComplete { _ in self.connectionLost(connection) }
            case .failure(let error):
                self.failedCounter.wrappingAdd(1, ordering: .relaxed)
                if let e = error as? RedisError, e.kind == .tlsConfiguration {
                    // Not transient: retrying cannot help.
                    self.setState(.disconnected(reason: e.message))
                    return
                }
                self.setState(.disconnected(reason: (error as? RedisError)?.message ?? "\(error)"))
                self.scheduleRetry()
            }
        }
    }

    private func connectionLost(_ connection: RedisConnection) {
        self.eventLoop.assertInEventLoop()
        let wasCurrent: Bool = self.currentBox.withLockedValue { current in
            guard current === connection else { return false }
            current = nil
            return true
        }
        guard wasCurrent, !self.closed else { return }
        self.disconnectCounter.wrappingAdd(1, ordering: .relaxed)
        self.setState(.disconnected(reason: "connection lost: \(connection.closeReason)"))
        self.scheduleRetry()
    }

    private func scheduleRetry() {
        guard !self.closed, self.retryTask == nil else { return }
        let delay = self.configuration.backoff(attempt: self.attempt)
        self.attempt += 1
        self.retryTask = self.eventLoop.scheduleTask(in: delay) { self.connectNow() }
    }

    /// Stops retrying and closes the connection. Idempotent; callable from any thread.
    func close() -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            self.closed = true
            self.retryTask?.cancel()
            self.retryTask = nil
            let connection = self.currentBox.withLockedValue { c in
                defer { c = nil }
                return c
            }
            self.setState(.closed)
            guard let connection else { return self.eventLoop.makeSucceededVoidFuture() }
            return connection.close()
        }
    }
}
