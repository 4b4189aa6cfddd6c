// Presence across instances: this instance's members are kept here and in a Redis hash per topic
// (field `node:conn`), with an expiry that a heartbeat rewrites, so a crashed instance's members
// are reaped by the others. Join and leave events go out on the topic's presence channel.

import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class ClusterPresence: @unchecked Sendable {
    private let client: RedisClient
    private let names: ClusterNames
    private let node: String
    private let ttlMilliseconds: String
    private let eventLoop: EventLoop
    private let heartbeatPeriod: TimeAmount
    private var heartbeat: RepeatedTask?

    /// This instance's members: topic -> field (`node:conn`) -> member JSON. Commands that change a
    /// member are handed to the Redis connection under this lock, so a heartbeat can never re-add a
    /// member whose leave was sent after the heartbeat's snapshot.
    private let members = NIOLockedValueBox<[ByteString: [String: [UInt8]]]>([:])

    init(client: RedisClient, names: ClusterNames, node: String, ttl: Double, eventLoop: EventLoop) {
        self.client = client
        self.names = names
        self.node = node
        self.ttlMilliseconds = String(Int64((ttl * 1000).rounded(.up)))
        self.heartbeatPeriod = .nanoseconds(Int64(ttl / 3 * 1e9))
        self.eventLoop = eventLoop
    }

    /// Starts the heartbeat (on the event loop).
    func startHeartbeat() {
        self.eventLoop.execute {
            self.heartbeat = self.eventLoop.scheduleRepeatedTask(initialDelay: self.heartbeatPeriod, delay: self.heartbeatPeriod) { [weak self] _ in
                self?.refresh()
            }
        }
    }

    /// Stops the heartbeat (call on the event loop).
    func stopHeartbeat() {
        self.heartbeat?.cancel()
        self.heartbeat = nil
    }

    private func field(_ conn: UInt64) -> String { "\(self.node):\(conn)" }

    /// Adds (or updates) a connection as a member of `topic`; a new member's join event goes out.
    /// A new member is refused (`refused` runs, nothing is kept) when the topic has `limit` members:
    /// in Redis (every instance's), or on this instance alone while Redis is away.
    func join(topic: String, conn: UInt64, member: [UInt8], limit: Int, refused: @escaping @Sendable () -> Void) {
        let field = self.field(conn)
        let key = ByteString(topic)
        let outcome: (admitted: Bool, command: [RESPArgument]?) = self.members.withLockedValue { all in
            if all[key]?[field] == nil && (all[key]?.count ?? 0) >= limit { return (false, nil) }
            all[key, default: [:]][field] = member
            guard self.client.isConnected else { return (true, nil) }  // written back on reconnect
            let event = ServerMessage.presenceEvent("join", topic: topic, member: member)
            return (true, [
                "EVAL", .string(ClusterScripts.join), "1", .string(self.names.presenceKey(topic)),
                .string(field), .bytes(ByteBuffer(bytes: member)), .string(self.ttlMilliseconds),
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

    func leave(topic: String, conn: UInt64) {
        let field = self.field(conn)
        self.members.withLockedValue { all in
            guard let member = all[ByteString(topic)]?.removeValue(forKey: field) else { return }
            if all[ByteString(topic)]?.isEmpty == true { all[ByteString(topic)] = nil }
            _ = self.sendLeave(topic: topic, field: field, member: member)
        }
    }

    /// Every member of this instance leaves (the server stops); the futures of the commands sent.
    func leaveAll() -> [EventLoopFuture<RESPValue>] {
        self.members.withLockedValue { all in
            var futures: [EventLoopFuture<RESPValue>] = []
            for (topic, entries) in all {
                for (field, member) in entries { futures.append(self.sendLeave(topic: topic.string, field: field, member: member)) }
            }
            all.removeAll()
            return futures
        }
    }

    private func sendLeave(topic: String, field: String, member: [UInt8]) -> EventLoopFuture<RESPValue> {
        let event = ServerMessage.presenceEvent("leave", topic: topic, member: member)
        return self.client.send([
            "EVAL", .string(ClusterScripts.leave), "1", .string(self.names.presenceKey(topic)),
            .string(field), .string(self.names.presenceChannel(topic)), .bytes(ByteBuffer(bytes: event)),
        ])
    }

    /// Heartbeat (and on reconnect): rewrites the expiry of this instance's members (re-adding
    /// those joined while Redis was away) and reaps crashed instances' ones.
    func refresh() {
        guard self.client.isConnected else { return }
        self.members.withLockedValue { all in
            for (key, entries) in all {
                let topic = key.string
                var topicJSON: [UInt8] = []
                JSONWriter.appendString(topic, to: &topicJSON)
                var command: [RESPArgument] = [
                    "EVAL", .string(ClusterScripts.refresh), "1", .string(self.names.presenceKey(topic)),
                    .string(self.ttlMilliseconds), .string(self.names.presenceChannel(topic)), .bytes(ByteBuffer(bytes: topicJSON)),
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
    func members(of topic: String) -> EventLoopFuture<[[UInt8]]> {
        self.client.send(["EVAL", .string(ClusterScripts.members), "1", .string(self.names.presenceKey(topic))]).flatMapThrowing { reply in
            if let message = reply.errorMessage { throw RedisError(.serverError, message) }
            guard let items = reply.elements else { throw RedisError(.protocolError, "unexpected reply to the members script") }
            return items.compactMap { $0.bytes.map { Array($0.readableBytesView) } }
        }
    }

    /// `members(of:)`, blocking the caller (never an event loop) up to `timeout` seconds.
    func members(of topic: String, timeout: Double) throws(ArgumentError) -> [[UInt8]] {
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
}
