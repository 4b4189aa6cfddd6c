import NIOCore

/// How urgent an outbound message is. When a connection's send queue is full, the lowest
/// priorities are dropped first; `critical` is never dropped (the connection is closed instead).
public enum Priority: UInt8, CaseIterable, Sendable, Comparable {
    case critical = 0
    case high = 1
    case normal = 2
    case low = 3
    case background = 4

    public static func < (a: Priority, b: Priority) -> Bool { a.rawValue < b.rawValue }

    public var name: String {
        switch self {
        case .critical: return "critical"
        case .high: return "high"
        case .normal: return "normal"
        case .low: return "low"
        case .background: return "background"
        }
    }
}

/// A connection's outbound queue for the time its socket cannot take more: bounded in bytes, one
/// FIFO per priority, with a latest-state-wins lane (a message with a coalescing key replaces the
/// queued message with the same key in place, keeping its position). A pure data structure.
public struct SendQueue {
    public struct Item {
        public var frame: ByteBuffer
        public var priority: Priority
        public var key: String?
    }

    /// What `enqueue` had to drop to stay within the bound.
    public struct Dropped: Equatable, Sendable {
        public var count = 0
        public var bytes = 0
        public var byPriority = [Int](repeating: 0, count: Priority.allCases.count)
        public var isEmpty: Bool { self.count == 0 }

        public init() {}

        mutating func add(_ item: Item) {
            self.count += 1
            self.bytes += item.frame.readableBytes
            self.byPriority[Int(item.priority.rawValue)] += 1
        }

        public mutating func merge(_ other: Dropped) {
            self.count += other.count
            self.bytes += other.bytes
            for i in self.byPriority.indices { self.byPriority[i] += other.byPriority[i] }
        }
    }

    public enum Outcome: Equatable {
        /// Queued (possibly after dropping lower-priority messages, or the new message itself).
        case queued(Dropped)
        /// Replaced a queued message with the same key.
        case coalesced
        /// Even after dropping everything droppable the queue is over its bound: only critical
        /// messages remain. The connection should be closed.
        case overflow(Dropped)
    }

    public let maxBytes: Int
    private var levels: [CircularBuffer<Item>]
    public private(set) var bytes = 0
    public private(set) var count = 0

    public init(maxBytes: Int) {
        self.maxBytes = maxBytes
        self.levels = Priority.allCases.map { _ in CircularBuffer<Item>(initialCapacity: 4) }
    }

    @inlinable public var isEmpty: Bool { self.count == 0 }

    public mutating func enqueue(_ frame: ByteBuffer, priority: Priority, key: String? = nil) -> Outcome {
        let size = frame.readableBytes
        if let key {
            let level = Int(priority.rawValue)
            if let index = self.levels[level].firstIndex(where: { $0.key?.bytesEqual(key) == true }) {
                self.bytes += size - self.levels[level][index].frame.readableBytes
                self.levels[level][index].frame = frame
                return .coalesced
            }
        }
        self.levels[Int(priority.rawValue)].append(Item(frame: frame, priority: priority, key: key))
        self.bytes += size
        self.count += 1
        var dropped = Dropped()
        // Drop oldest-first from the lowest priority up, never critical, until within bound.
        var level = Priority.allCases.count - 1
        while self.bytes > self.maxBytes && level > 0 {
            if let item = self.levels[level].popFirst() {
                self.bytes -= item.frame.readableBytes
                self.count -= 1
                dropped.add(item)
            } else {
                level -= 1
            }
        }
        return self.bytes > self.maxBytes ? .overflow(dropped) : .queued(dropped)
    }

    /// The next message to write: highest priority first, FIFO within a priority.
    public mutating func dequeue() -> Item? {
        for level in self.levels.indices {
            if let item = self.levels[level].popFirst() {
                self.bytes -= item.frame.readableBytes
                self.count -= 1
                return item
            }
        }
        return nil
    }

    public mutating func removeAll() {
        for i in self.levels.indices { self.levels[i].removeAll() }
        self.bytes = 0
        self.count = 0
    }
}
