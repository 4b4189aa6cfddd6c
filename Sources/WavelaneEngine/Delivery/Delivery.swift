// How publications, messages to users and connections, and presence reach connections.
//
// The engine runs one of two deliveries, chosen once at `start()`: `LocalDelivery` (this
// instance only) or `RedisDelivery` (every instance sharing a Redis, Cluster/*). ServerCore,
// the shards and the connections call only `Delivery`; neither delivery knows ServerCore, they
// reach this instance's connections through `DeliveryHost` alone.

import Logging
import NIOCore
import WavelaneProtocol

protocol Delivery: AnyObject, Sendable {
    /// This instance's id in presence members (and the `node` of `send` to a connection elsewhere).
    var node: String { get }
    /// 1 in `redis_connected` (stats, /metrics): publications go through Redis right now.
    var redisConnected: Bool { get }
    /// The Redis link for /health ("connected", "disconnected: ..."), nil without Redis.
    var redisState: String? { get }

    /// Leaves presence and closes what the delivery opened (waiting up to `timeout`).
    func stop(timeout: TimeAmount)

    // MARK: publishing (any thread)

    /// Publishes to every subscriber of `topic`; returns its offset, or 0 when it is assigned elsewhere.
    func publish(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> UInt64
    /// One frame to connection `conn` of instance `node` (not this one).
    func send(node: String, conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool,
              priority: Priority, key: String?) throws(ArgumentError) -> Bool
    /// One frame to every connection of `user`; returns how many of this instance's it was queued for.
    func sendUser(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Int
    /// Closes every connection of `user`; returns how many of this instance's are being closed.
    func disconnectUser(_ user: String, code: UInt16, reason: String) -> Int

    // MARK: what this instance's connections need (any loop)

    func need(subscription: String)
    func release(subscription: String)
    func need(user: String)
    func release(user: String)
    func needPresenceEvents(_ topic: String)
    func releasePresenceEvents(_ topic: String)
    /// Runs `body` on `loop` once everything published to `subscriptions` from now on reaches this
    /// instance (at once, inline, when nothing has to be waited for).
    func whenRouted(_ subscriptions: [String], on loop: EventLoop, _ body: @escaping @Sendable () -> Void)

    // MARK: streams and presence

    /// A topic's position and, with `since`, what came after it.
    func position(topic: String, since: StreamPosition?, on loop: EventLoop) -> EventLoopFuture<PositionReply>
    /// Adds (or updates) a member; `refused` runs when the topic is full.
    func presenceJoin(topic: String, conn: UInt64, member: [UInt8], limit: Int, refused: @escaping @Sendable () -> Void)
    func presenceLeave(topic: String, conn: UInt64)
    func presenceMembers(topic: String, on loop: EventLoop) -> EventLoopFuture<[[UInt8]]>
    /// The members of `topic`, blocking the caller (not an event loop) up to `timeout` seconds.
    func presenceMembers(topic: String, timeout: Double) throws(ArgumentError) -> [[UInt8]]
}

/// What a delivery may ask of the engine: its settings, its counters, and this instance's
/// connections. ServerCore implements it; it is the only way back from a delivery.
protocol DeliveryHost: AnyObject, Sendable {
    var config: EngineConfiguration { get }
    var logger: Logger { get }
    var stats: EngineStats { get }
    /// The engine's random id for this run (a single instance's `node`).
    var epoch: String { get }

    /// Numbers a publication in this instance's sequence (and history) and hands it to every loop.
    func deliverNumbered(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> UInt64
    /// Hands a publication to every loop outside any sequence (offset 0).
    func deliverLocally(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?)
    /// Hands a publication numbered elsewhere (the Redis stream) to every loop, in call order.
    func deliver(topic: String, message: ClusterMessage)
    /// Encodes a publication numbered elsewhere (a history entry).
    func makePublication(topic: String, message: ClusterMessage) -> Publication
    /// A join/leave event (JSON text) for this instance's watchers of `topic`.
    func deliverPresenceEvent(topic: String, event: ByteBuffer)
    /// The in-memory stream of a topic (single instance).
    func localPosition(topic: String, since: StreamPosition?) -> PositionReply
    /// One frame to one of this instance's connections; false when it is unknown.
    func sendLocally(conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Bool
    @discardableResult
    func sendUserLocally(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Int
    @discardableResult
    func disconnectUserLocally(_ user: String, code: UInt16, reason: String) -> Int
    /// How many of this instance's connections `user` has.
    func connectionCount(ofUser user: String) -> Int
    /// A `cluster` event (JSON object) for the application.
    func pushClusterEvent(_ payload: ByteBuffer)
}
