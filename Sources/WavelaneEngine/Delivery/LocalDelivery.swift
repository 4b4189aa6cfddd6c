// Single-instance delivery: this instance numbers its topics, keeps their history and presence
// in memory (Streams.swift), and its connections are all there is.

import NIOCore
import WavelaneProtocol

final class LocalDelivery: Delivery, @unchecked Sendable {
    private unowned let host: DeliveryHost
    private let presence = LocalPresence()

    init(host: DeliveryHost) {
        self.host = host
    }

    var node: String { self.host.epoch }
    var redisConnected: Bool { false }
    var redisState: String? { nil }

    func stop(timeout: TimeAmount) {}

    func publish(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> UInt64 {
        self.host.deliverNumbered(topic: topic, kind: kind, payload: payload, priority: priority, key: key)
    }

    func send(node: String, conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool,
              priority: Priority, key: String?) throws(ArgumentError) -> Bool {
        throw ArgumentError("node: another instance's connection needs redis_url")
    }

    func sendUser(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Int {
        self.host.sendUserLocally(user, payload: payload, binary: binary, priority: priority, key: key)
    }

    func disconnectUser(_ user: String, code: UInt16, reason: String) -> Int {
        self.host.disconnectUserLocally(user, code: code, reason: reason)
    }

    func need(subscription: String) {}
    func release(subscription: String) {}
    func need(user: String) {}
    func release(user: String) {}
    func needPresenceEvents(_ topic: String) {}
    func releasePresenceEvents(_ topic: String) {}

    func whenRouted(_ subscriptions: [String], on loop: EventLoop, _ body: @escaping @Sendable () -> Void) {
        body()
    }

    func position(topic: String, since: StreamPosition?, on loop: EventLoop) -> EventLoopFuture<PositionReply> {
        loop.makeSucceededFuture(self.host.localPosition(topic: topic, since: since))
    }

    func presenceJoin(topic: String, conn: UInt64, member: [UInt8], limit: Int, refused: @escaping @Sendable () -> Void) {
        switch self.presence.join(topic: topic, conn: conn, member: member, limit: limit) {
        case .joined:
            self.host.deliverPresenceEvent(topic: topic, event: ByteBuffer(bytes: ServerMessage.presenceEvent("join", topic: topic, member: member)))
        case .updated:
            break
        case .full:
            refused()
        }
    }

    func presenceLeave(topic: String, conn: UInt64) {
        guard let member = self.presence.leave(topic: topic, conn: conn) else { return }
        self.host.deliverPresenceEvent(topic: topic, event: ByteBuffer(bytes: ServerMessage.presenceEvent("leave", topic: topic, member: member)))
    }

    func presenceMembers(topic: String, on loop: EventLoop) -> EventLoopFuture<[[UInt8]]> {
        loop.makeSucceededFuture(self.presence.members(of: topic))
    }

    func presenceMembers(topic: String, timeout: Double) throws(ArgumentError) -> [[UInt8]] {
        self.presence.members(of: topic)
    }
}
