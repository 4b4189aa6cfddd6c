// A topic's stream on a single instance: its offsets, its epoch and (with `history_size`) its
// recent publications, plus presence. With `redis_url` all of this lives in Redis instead
// (Cluster/Broker.swift); the connection code sees the same `PositionReply` either way.

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
/// publication. A topic's epoch names one run of its offsets: the server's start plus a counter,
/// new whenever the topic's entry is (re)created. The table is bounded: when it reaches `limit`
/// topics, topics not published since the previous prune are forgotten (their offsets restart at 1
/// under a new epoch, which tells recovering clients).
final class TopicOffsets: @unchecked Sendable {
    let lock = NIOLock()
    private struct Entry {
        var offset: UInt64
        var generation: UInt32
        var incarnation: UInt64
    }
    private var offsets: [ByteString: Entry] = [:]
    private var generation: UInt32 = 0
    private var incarnations: UInt64 = 0
    private let limit: Int
    private var serverEpoch = ""
    /// Recent publications (single-instance mode with `history_size > 0`); under `lock`.
    private var history: TopicHistory<Publication>?

    init(limit: Int = 1 << 20) {
        self.limit = limit
    }

    private func entryLocked(_ topic: String) -> Entry {
        if let e = self.offsets[ByteString(topic)] { return e }
        if self.offsets.count >= self.limit {
            let current = self.generation
            self.offsets = self.offsets.filter { $0.value.generation == current }
            if self.offsets.count >= self.limit { self.offsets.removeAll() }
            self.generation &+= 1
        }
        self.incarnations &+= 1
        let e = Entry(offset: 0, generation: self.generation, incarnation: self.incarnations)
        self.offsets[ByteString(topic)] = e
        return e
    }

    /// The next offset of `topic`. Call with `lock` held (the caller also hands the publication to the
    /// event loops under it, so concurrent publishers keep per-topic order).
    func nextLocked(_ topic: String) -> UInt64 {
        var e = self.entryLocked(topic)
        e.offset += 1
        e.generation = self.generation
        self.offsets[ByteString(topic)] = e
        return e.offset
    }

    /// The topic's epoch and last offset (a topic never published gets its entry now, offset 0).
    func positionLocked(_ topic: String) -> StreamPosition {
        let e = self.entryLocked(topic)
        return StreamPosition(epoch: self.serverEpoch + "x" + String(e.incarnation, radix: 36), offset: e.offset)
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

    var count: Int { self.lock.withLock { self.offsets.count } }
    var historyBytes: Int { self.lock.withLock { self.history?.bytes ?? 0 } }

    /// A new run: `epoch` is the server's, `history` the in-memory history's bounds (nil: none).
    func reset(epoch: String, history: (perTopic: Int, maxBytes: Int, ttl: Double)?) {
        self.lock.withLock {
            self.offsets.removeAll()
            self.generation = 0
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

    /// Adds or updates a member; true when it is new.
    func join(topic: String, conn: UInt64, member: [UInt8]) -> Bool {
        self.members.withLockedValue { all in all[ByteString(topic), default: [:]].updateValue(member, forKey: conn) == nil }
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
