// Positions and recovery across instances: a topic's position (epoch, last offset) and the
// publications a client missed are read from Redis by the position script.

import NIOCore
import WavelaneProtocol

struct ClusterRecovery: Sendable {
    let link: RedisLink
    let names: ClusterNames
    let historySize: Int
    let ttlMilliseconds: String
    /// How long a recovering subscription waits for Redis (subscription confirmation, then reply).
    let timeout: TimeAmount = .seconds(5)

    /// The topic's current position and, when `since` is given, what came after it (encoded by
    /// `encode`). Waits first for Redis to confirm this instance's subscription to the topic's
    /// channel, so that every publication after the read also arrives live: the caller merges
    /// both by offset.
    func position(topic: String, since: StreamPosition?, on eventLoop: EventLoop,
                  encode: @escaping @Sendable (ClusterMessage) -> Publication) -> EventLoopFuture<PositionReply> {
        let link = self.link
        guard link.isUp else {
            return eventLoop.makeFailedFuture(RedisError(.notConnected, "Redis is unavailable (\(link.description))"))
        }
        let names = self.names
        let historySize = self.historySize
        let ttl = self.ttlMilliseconds
        return link.pubsub.whenSubscribed(channel: names.topicChannel(topic), timeout: self.timeout).flatMap { () -> EventLoopFuture<RESPValue> in
            let command: [RESPArgument] = link.scriptCommand(link.scriptMode ?? .eval, publish: false) + [
                "2", .string(names.metaKey(topic)), .string(names.historyKey(topic)),
                .string(since?.epoch ?? ""), .string(since.map { String($0.offset) } ?? "-1"), .string(ttl),
            ]
            return link.client.send(command)
        }.flatMapThrowing { reply -> PositionReply in
            try Self.reply(reply, topic: topic, since: since, historySize: historySize, encode: encode)
        }
    }

    /// Reads the position script's reply: `[epoch, offset]`, and with `since` `[.., vouched, entries]`.
    static func reply(_ reply: RESPValue, topic: String, since: StreamPosition?, historySize: Int,
                      encode: (ClusterMessage) -> Publication) throws(RedisError) -> PositionReply {
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
            if message.offset > since.offset { publications.append(encode(message)) }
        }
        return PositionReply(position: position, recovery: .recovered(publications))
    }
}
