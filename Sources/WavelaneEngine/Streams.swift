// A topic's stream on a single instance: its offsets, its epoch and (with `history_size`) its
// recent publications, plus presence. With `redis_url` all of this lives in Redis instead
// (Delivery/RedisDelivery.swift, Cluster/); the connection code sees the same `PositionReply` either way.

import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

/// What a positioned subscription learns: where the stream is, and what the client missed.
struct PositionReply {
    enum Recovery {
        /// Nothing was asked.
        case none
        /// The publications after the client's offset, oldest first (maybe none).
        case recovered([Publication])
        case failed(String)
    }

    var position: StreamPosition
    var recovery: Recovery

    /// The common checks of a recovery request against the stream's current position; nil when
    /// the history has to be read.
    static func check(_ since: StreamPosition, against position: StreamPosition) -> PositionReply? {
        if since.epoch != position.epoch { return PositionReply(position: position, recovery: .failed("epoch changed: the stream was reset")) }
        if since.offset > position.offset {
            return PositionReply(position: position, recovery: .failed("offset \(since.offset) is ahead of the stream (\(position.offset))"))
        }
        if since.offset == position.offset { return PositionReply(position: position, recovery: .recovered([])) }
        return nil
    }

    static func gone(_ since: StreamPosition, _ position: StreamPosition) -> PositionReply {
        PositionReply(position: position, recovery: .failed("history no longer reaches back to offset \(since.offset + 1)"))
    }
}

/// Per-topic offsets and epochs, and the in-memory history. Offsets start at 1 and grow by one per
/// publication. Only a published topic has an entry: reading the position of any other (a client
/// can subscribe to as many names as it likes) creates nothing and answers offset 0.
///
/// A topic's epoch is the server's start plus the table's era. The era changes only when entries
/// are evicted, so a topic's stream (its run of offsets) is named by (topic, era): an unpublished
/// topic read in era k and first published in era k has the same epoch, and a client subscribed
/// before the first publication recovers it. After an eviction the era is new, so an evicted and
/// re-created topic (offsets restarting at 1) has another epoch, which tells recovering clients.
///
/// The table is bounded: at `limit` topics the least recently used (published or positioned)
/// 1/16 of them are forgotten, never all.
final class TopicOffsets: @unchecked Sendable {
    let lock = NIOLock()
    /// The entries form a doubly linked list in `slots`, least recently used first.
    private struct Slot {
        var topic: ByteString
        var offset: UInt64
        var era: UInt64
        var prev: Int
        var next: Int
    }
    private var index: [ByteString: Int] = [:]
    private var slots: [Slot] = []
    private var free: [Int] = []
    private var head = -1
    private var tail = -1
    private var era: UInt64 = 0
    let limit: Int
    private var serverEpoch = ""
    /// Recent publications (single-instance mode with `history_size > 0`); under `lock`.
    private var history: TopicHistory<Publication>?

    init(limit: Int = 1 << 20) {
        self.limit = max(1, limit)
    }

    private func unlink(_ i: Int) {
        let s = self.slots[i]
        if s.prev >= 0 { self.slots[s.prev].next = s.next } else { self.head = s.next }
        if s.next >= 0 { self.slots[s.next].prev = s.prev } else { self.tail = s.prev }
    }

    private func pushBack(_ i: Int) {
        self.slots[i].prev = self.tail
        self.slots[i].next = -1
        if self.tail >= 0 { self.slots[self.tail].next = i } else { self.head = i }
        self.tail = i
    }

    /// Marks an entry most recently used.
    private func touch(_ i: Int) {
        guard i != self.tail else { return }
        self.unlink(i)
        self.pushBack(i)
    }

    /// Forgets the least recently used 1/16 of the table (at least one) and starts a new era.
    private func evictLocked() {
        let n = max(1, self.limit / 16)
        for _ in 0..<n where self.head >= 0 {
            let i = self.head
            self.unlink(i)
            let topic = self.slots[i].topic
            self.index[topic] = nil
            self.history?.reset(topic: topic.string)
            self.slots[i].topic = ""
            self.free.append(i)
        }
        self.era &+= 1
    }

    private func epoch(_ era: UInt64) -> String { self.serverEpoch + "x" + String(era, radix: 36) }

    /// The next offset of `topic`. Call with `lock` held (the caller also hands the publication to the
    /// event loops under it, so concurrent publishers keep per-topic order).
    func nextLocked(_ name: String) -> UInt64 {
        let topic = ByteString(name)
        if let i = self.index[topic] {
            self.slots[i].offset += 1
            self.touch(i)
            return self.slots[i].offset
        }
        if self.index.count >= self.limit { self.evictLocked() }
        let slot = Slot(topic: topic, offset: 1, era: self.era, prev: -1, next: -1)
        let i: Int
        if let reused = self.free.popLast() {
            i = reused
            self.slots[i] = slot
        } else {
            i = self.slots.count
            self.slots.append(slot)
        }
        self.index[topic] = i
        self.pushBack(i)
        return 1
    }

    /// The topic's epoch and last offset; a topic without an entry is at offset 0 of the current
    /// era, and stays without one.
    func positionLocked(_ topic: String) -> StreamPosition {
        guard let i = self.index[ByteString(topic)] else { return StreamPosition(epoch: self.epoch(self.era), offset: 0) }
        self.touch(i)
        return StreamPosition(epoch: self.epoch(self.slots[i].era), offset: self.slots[i].offset)
    }

    func recordLocked(_ publication: Publication) {
        guard self.history != nil else { return }
        let size = publication.frame.readableBytes + (publication.compressedFrame?.readableBytes ?? 0) + 96
        self.history!.append(topic: publication.topic, offset: publication.offset, entry: publication, size: size,
                             now: NIODeadline.now().uptimeNanoseconds.toInt64)
    }

    /// Position and, when `since` is given, the publications after it (single-instance mode).
    func position(topic: String, since: StreamPosition?) -> PositionReply {
        self.lock.withLock {
            let position = self.positionLocked(topic)
            guard let since else { return PositionReply(position: position, recovery: .none) }
            if let answer = PositionReply.check(since, against: position) { return answer }
            guard self.history != nil else { return PositionReply(position: position, recovery: .failed("history is off on this server")) }
            self.history!.expire(now: NIODeadline.now().uptimeNanoseconds.toInt64)
            switch self.history!.entries(topic: topic, after: since.offset, top: position.offset) {
            case .entries(let publications): return PositionReply(position: position, recovery: .recovered(publications))
            case .gone: return PositionReply.gone(since, position)
            }
        }
    }

    var count: Int { self.lock.withLock { self.index.count } }
    var historyBytes: Int { self.lock.withLock { self.history?.bytes ?? 0 } }

    /// A new run: `epoch` is the server's, `history` the in-memory history's bounds (nil: none).
    func reset(epoch: String, history: (perTopic: Int, maxBytes: Int, ttl: Double)?) {
        self.lock.withLock {
            self.index.removeAll()
            self.slots.removeAll()
            self.free.removeAll()
            self.head = -1
            self.tail = -1
            self.era = 0
            self.serverEpoch = epoch
            self.history = history.map {
                TopicHistory(perTopic: $0.perTopic, maxBytes: $0.maxBytes, ttl: Int64($0.ttl * 1e9))
            }
        }
    }
}

private extension UInt64 {
    var toInt64: Int64 { Int64(truncatingIfNeeded: self) }
}

/// Presence on a single instance: members per exact topic, in memory.
final class LocalPresence: @unchecked Sendable {
    private let members = NIOLockedValueBox<[ByteString: [UInt64: [UInt8]]]>([:])

    enum Join { case joined, updated, full }

    /// Adds or updates a member; a new one only while the topic has fewer than `limit`.
    func join(topic: String, conn: UInt64, member: [UInt8], limit: Int) -> Join {
        let key = ByteString(topic)
        return self.members.withLockedValue { all in
            if all[key]?[conn] != nil {
                all[key]![conn] = member
                return .updated
            }
            if (all[key]?.count ?? 0) >= limit { return .full }
            all[key, default: [:]][conn] = member
            return .joined
        }
    }

    /// Removes a member; returns it when it was there.
    func leave(topic: String, conn: UInt64) -> [UInt8]? {
        self.members.withLockedValue { all in
            let gone = all[ByteString(topic)]?.removeValue(forKey: conn)
            if all[ByteString(topic)]?.isEmpty == true { all[ByteString(topic)] = nil }
            return gone
        }
    }

    func members(of topic: String) -> [[UInt8]] {
        self.members.withLockedValue { all in all[ByteString(topic)].map { $0.sorted { $0.key < $1.key }.map(\.value) } ?? [] }
    }

    func removeAll() { self.members.withLockedValue { $0.removeAll() } }
}
