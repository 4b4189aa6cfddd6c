/// The recent publications of many topics, in memory, for recovery on a single instance (with
/// Redis the history lives there: docs/delivery.md). A pure data structure; the caller locks.
///
/// Bounds: at most `perTopic` entries per topic, entries older than `ttl` are dropped, and the
/// total size stays under `maxBytes`, the oldest entries of all topics going first. One global
/// FIFO orders every entry by insertion, so each bound is enforced in O(1) per dropped entry.
public struct TopicHistory<Entry> {
    public let perTopic: Int
    public let maxBytes: Int
    /// Entry lifetime, in the caller's clock units (the engine uses nanoseconds).
    public let ttl: Int64

    private struct Stored {
        var offset: UInt64
        var entry: Entry
        var size: Int
        var time: Int64
    }

    /// Per topic, its entries oldest first; offsets are contiguous within a ring.
    private var rings: [ByteString: Ring] = [:]
    /// Every stored (topic, offset), oldest first. Entries already dropped by a per-topic bound are
    /// skipped lazily when they reach the front.
    private var order: [(topic: String, offset: UInt64)] = []
    private var orderHead = 0
    public private(set) var bytes = 0
    public private(set) var count = 0

    private struct Ring {
        var items: [Stored] = []
        var head = 0
        var isEmpty: Bool { self.head == self.items.count }
        var first: Stored? { self.isEmpty ? nil : self.items[self.head] }
        var live: ArraySlice<Stored> { self.items[self.head...] }
        mutating func popFirst() -> Stored {
            let s = self.items[self.head]
            self.head += 1
            if self.head > 64 && self.head * 2 > self.items.count {
                self.items.removeFirst(self.head)
                self.head = 0
            }
            return s
        }
    }

    public init(perTopic: Int, maxBytes: Int, ttl: Int64) {
        self.perTopic = max(1, perTopic)
        self.maxBytes = max(1, maxBytes)
        self.ttl = ttl
    }

    public var topicCount: Int { self.rings.count }

    /// Records a publication. `offset` must be the topic's next offset after the previous call for
    /// that topic (a topic whose offsets restarted must be `reset` first).
    public mutating func append(topic: String, offset: UInt64, entry: Entry, size: Int, now: Int64) {
        if let last = self.rings[ByteString(topic)]?.items.last, !self.rings[ByteString(topic)]!.isEmpty, last.offset + 1 != offset {
            self.reset(topic: topic)
        }
        self.rings[ByteString(topic), default: Ring()].items.append(Stored(offset: offset, entry: entry, size: size, time: now))
        self.order.append((topic, offset))
        self.bytes += size
        self.count += 1
        while self.rings[ByteString(topic)]!.live.count > self.perTopic { self.dropFirst(of: topic) }
        self.expire(now: now)
        while self.bytes > self.maxBytes, self.popOldest() {}
        // Entries dropped by the per-topic bound stay in `order` until they reach its front;
        // compact when they are the majority, so `order` stays O(count).
        if self.order.count - self.orderHead > 2 * self.count + 1024 { self.compactOrder() }
    }

    private mutating func compactOrder() {
        var kept: [(topic: String, offset: UInt64)] = []
        kept.reserveCapacity(self.count)
        for i in self.orderHead..<self.order.count {
            let (topic, offset) = self.order[i]
            if let ring = self.rings[ByteString(topic)], let first = ring.first, let last = ring.live.last,
               first.offset <= offset, offset <= last.offset {
                kept.append((topic, offset))
            }
        }
        self.order = kept
        self.orderHead = 0
    }

    /// Size of the insertion-order index (for tests of the bound).
    public var indexCount: Int { self.order.count - self.orderHead }

    /// Drops entries older than the TTL.
    public mutating func expire(now: Int64) {
        while self.orderHead < self.order.count {
            let (topic, offset) = self.order[self.orderHead]
            guard let first = self.rings[ByteString(topic)]?.first, first.offset == offset else {
                self.advanceOrder()  // already dropped
                continue
            }
            guard now - first.time > self.ttl else { break }
            self.dropFirst(of: topic)
            self.advanceOrder()
        }
    }

    /// Forgets a topic's history (its offsets restarted).
    public mutating func reset(topic: String) {
        guard let ring = self.rings.removeValue(forKey: ByteString(topic)) else { return }
        for s in ring.live {
            self.bytes -= s.size
            self.count -= 1
        }
    }

    public enum Lookup {
        /// The entries after the given offset, oldest first (maybe none).
        case entries([Entry])
        /// The history does not reach back to the offset after the given one.
        case gone
    }

    /// What came after `offset`, given the topic's current last offset `top`.
    public func entries(topic: String, after offset: UInt64, top: UInt64) -> Lookup {
        if offset >= top { return .entries([]) }
        guard let ring = self.rings[ByteString(topic)], let first = ring.first, ring.live.last?.offset == top,
              first.offset <= offset + 1 else { return .gone }
        let start = ring.head + Int(offset + 1 - first.offset)
        return .entries(ring.items[start...].map(\.entry))
    }

    private mutating func dropFirst(of topic: String) {
        let s = self.rings[ByteString(topic)]!.popFirst()
        self.bytes -= s.size
        self.count -= 1
        if self.rings[ByteString(topic)]!.isEmpty { self.rings[ByteString(topic)] = nil }
    }

    /// Drops the oldest entry of all; false when empty.
    private mutating func popOldest() -> Bool {
        while self.orderHead < self.order.count {
            let (topic, offset) = self.order[self.orderHead]
            self.advanceOrder()
            if let first = self.rings[ByteString(topic)]?.first, first.offset == offset {
                self.dropFirst(of: topic)
                return true
            }
        }
        return false
    }

    private mutating func advanceOrder() {
        self.orderHead += 1
        if self.orderHead > 1024 && self.orderHead * 2 > self.order.count {
            self.order.removeFirst(self.orderHead)
            self.orderHead = 0
        }
    }
}
