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
/// queued message with the same key in place, keeping its position). Consecutive publication
/// frames of one `FrameBlock` are held as one run (`FrameOrigin`), so a long backlog of shared
/// publications costs a few entries, not one per frame. A pure data structure.
public struct SendQueue {
    public struct Item {
        public var frame: ByteBuffer
        public var priority: Priority
        public var key: String?
    }

    /// Counts per priority, without an allocation (indexed by `Priority.rawValue`).
    public struct PerPriority: Equatable, Sendable, ExpressibleByArrayLiteral {
        private var values: (Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0)

        public init() {}

        public init(arrayLiteral elements: Int...) {
            precondition(elements.count <= Priority.allCases.count)
            for (i, v) in elements.enumerated() { self[i] = v }
        }

        public subscript(index: Int) -> Int {
            get {
                switch index {
                case 0: return self.values.0
                case 1: return self.values.1
                case 2: return self.values.2
                case 3: return self.values.3
                default: return self.values.4
                }
            }
            set {
                switch index {
                case 0: self.values.0 = newValue
                case 1: self.values.1 = newValue
                case 2: self.values.2 = newValue
                case 3: self.values.3 = newValue
                default: self.values.4 = newValue
                }
            }
        }

        public var indices: Range<Int> { 0..<Priority.allCases.count }

        public static func == (a: PerPriority, b: PerPriority) -> Bool {
            a.indices.allSatisfy { a[$0] == b[$0] }
        }
    }

    /// What `enqueue` had to drop to stay within the bound.
    public struct Dropped: Equatable, Sendable {
        public var count = 0
        public var bytes = 0
        public var byPriority = PerPriority()
        public var isEmpty: Bool { self.count == 0 }

        public init() {}

        mutating func add(bytes: Int, priority: Priority) {
            self.count += 1
            self.bytes += bytes
            self.byPriority[Int(priority.rawValue)] += 1
        }

        public mutating func merge(_ other: Dropped) {
            guard !other.isEmpty else { return }
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

    /// One queued frame (`frame`), or a run `block[start..<end]` (`block` set, `frame` nil).
    struct Entry {
        var frame: ByteBuffer?
        var key: String?
        var block: FrameBlock?
        var start = 0
        var end = 0
    }

    /// The open run: the last entry of `level` is a run of the block `block` ending at `end`. Kept
    /// beside the entries so the common case — the next frame of the same block — is checked
    /// without reading (and retaining) the entry.
    private struct Tail {
        var level: Int
        var block: ObjectIdentifier
        var end: Int
    }

    public let maxBytes: Int
    /// One FIFO per priority, made on the first enqueue (an idle connection holds none).
    private var levels: [CircularBuffer<Entry>] = []
    private var tail: Tail?
    public private(set) var bytes = 0
    /// Frames queued (a run counts each of its frames).
    public private(set) var count = 0

    public init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    @inlinable public var isEmpty: Bool { self.count == 0 }

    /// Queued entries (a run of frames is one entry): what the queue costs in memory.
    public var entryCount: Int { self.levels.reduce(0) { $0 + $1.count } }

    /// Queues one frame. `origin`: where the frame sits in a shared `FrameBlock`; the frame then
    /// joins the run before it when it is the next frame of the same block.
    public mutating func enqueue(_ frame: ByteBuffer, priority: Priority, key: String? = nil,
                                 origin: FrameOrigin? = nil) -> Outcome {
        let size = frame.readableBytes
        let level = Int(priority.rawValue)
        if self.levels.isEmpty {
            self.levels = Priority.allCases.map { _ in CircularBuffer<Entry>(initialCapacity: 4) }
        }
        if let key {
            if let index = self.levels[level].firstIndex(where: { $0.key?.bytesEqual(key) == true }) {
                let old = self.levels[level].modify(index) { entry -> Int in
                    defer { entry.frame = frame }
                    return entry.frame?.readableBytes ?? 0
                }
                self.bytes += size - old
                return .coalesced
            }
            self.append(Entry(frame: frame, key: key), level: level)
        } else if let origin {
            if let tail = self.tail, tail.level == level, tail.block == ObjectIdentifier(origin.block),
               tail.end == origin.index {
                let last = self.levels[level].index(before: self.levels[level].endIndex)
                self.levels[level].modify(last) { $0.end += 1 }
                self.tail!.end += 1
            } else {
                self.append(Entry(block: origin.block, start: origin.index, end: origin.index + 1), level: level)
                self.tail = Tail(level: level, block: ObjectIdentifier(origin.block), end: origin.index + 1)
            }
        } else {
            self.append(Entry(frame: frame), level: level)
        }
        self.bytes += size
        self.count += 1
        var dropped = Dropped()
        // Drop oldest-first from the lowest priority up, never critical, until within bound.
        var lowest = Priority.allCases.count - 1
        while self.bytes > self.maxBytes && lowest > 0 {
            if let item = self.popFirst(level: lowest) {
                dropped.add(bytes: item.frame.readableBytes, priority: item.priority)
            } else {
                lowest -= 1
            }
        }
        return self.bytes > self.maxBytes ? .overflow(dropped) : .queued(dropped)
    }

    /// Appends an entry that is not a continued run (the level's open run, if any, ends).
    private mutating func append(_ entry: Entry, level: Int) {
        if self.tail?.level == level { self.tail = nil }
        self.levels[level].append(entry)
    }

    /// The next message to write: highest priority first, FIFO within a priority.
    public mutating func dequeue() -> Item? {
        guard self.count > 0 else { return nil }
        for level in self.levels.indices {
            if let item = self.popFirst(level: level) { return item }
        }
        return nil
    }

    private mutating func popFirst(level: Int) -> Item? {
        guard !self.levels[level].isEmpty else { return nil }
        let first = self.levels[level].startIndex
        let (frame, key, done) = self.levels[level].modify(first) { entry -> (ByteBuffer, String?, Bool) in
            guard let block = entry.block else { return (entry.frame!, entry.key, true) }
            let frame = block[entry.start]
            entry.start += 1
            return (frame, nil, entry.start == entry.end)
        }
        if done {
            self.levels[level].removeFirst()
            if self.levels[level].isEmpty && self.tail?.level == level { self.tail = nil }
        }
        self.bytes -= frame.readableBytes
        self.count -= 1
        return Item(frame: frame, priority: Priority(rawValue: UInt8(level))!, key: key)
    }

    /// Moves frames of at most `maxFrame` bytes from the front of the queue (highest priority
    /// first) to the end of `buffer` until it holds `limit` bytes, the queue is empty, or a larger
    /// frame is next. Runs are copied straight from their block. Returns the frames and bytes moved.
    public mutating func moveFrames(into buffer: inout ByteBuffer, limit: Int, maxFrame: Int) -> (frames: Int, bytes: Int) {
        precondition(FrameBlock.maxFrame <= maxFrame, "block frames are always small enough to move")
        var frames = 0
        var bytes = 0
        var level = 0
        while self.count - frames > 0 && level < self.levels.count && buffer.readableBytes < limit {
            if self.levels[level].isEmpty {
                level += 1
                continue
            }
            let first = self.levels[level].startIndex
            let (n, b, done) = self.levels[level].modify(first) { entry -> (Int, Int, Bool) in
                if let block = entry.block {
                    var n = 0
                    var b = 0
                    while entry.start < entry.end && buffer.readableBytes < limit {
                        b += block.copyFrame(at: entry.start, into: &buffer)
                        entry.start += 1
                        n += 1
                    }
                    return (n, b, entry.start == entry.end)
                }
                guard entry.frame!.readableBytes <= maxFrame else { return (0, 0, false) }
                return (1, buffer.writeImmutableBuffer(entry.frame!), true)
            }
            frames += n
            bytes += b
            if done {
                self.levels[level].removeFirst()
                if self.levels[level].isEmpty && self.tail?.level == level { self.tail = nil }
            } else if n == 0 || buffer.readableBytes < limit {
                break  // a large frame is next
            }
        }
        self.count -= frames
        self.bytes -= bytes
        return (frames, bytes)
    }

    public mutating func removeAll() {
        for i in self.levels.indices { self.levels[i].removeAll() }
        self.tail = nil
        self.bytes = 0
        self.count = 0
    }
}
