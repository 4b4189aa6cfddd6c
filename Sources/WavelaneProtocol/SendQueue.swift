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
        // Allocated on the first non-zero count: a `Dropped` is made per enqueue, and almost every
        // one stays empty. (Kept one word wide: with five stored counts inline, the release build
        // returned `Outcome.queued(Dropped)` with `count` and `bytes` zeroed — caught by
        // test_backpressure's slow consumers; EngineEventsTests/SendQueueTests cover the values.)
        private var values: [Int] = []

        public init() {}

        public init(arrayLiteral elements: Int...) {
            precondition(elements.count <= Priority.allCases.count)
            for (i, v) in elements.enumerated() { self[i] = v }
        }

        public subscript(index: Int) -> Int {
            get { self.values.isEmpty ? 0 : self.values[index] }
            set {
                if self.values.isEmpty {
                    if newValue == 0 { return }
                    self.values = [Int](repeating: 0, count: Priority.allCases.count)
                }
                self.values[index] = newValue
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
        /// For the open run (`SendQueue.tail`), stale: the tail's `end` is the truth until sealed.
        var end = 0
    }

    /// The open run: the last entry of `level`, a run of the block `block` whose true end is `end`.
    /// Kept beside the entries, so the common case — the next frame of the same block — costs two
    /// comparisons and an add, without touching (or retaining) any entry.
    private struct Tail {
        var level: Int
        var block: ObjectIdentifier
        var end: Int
    }

    public let maxBytes: Int
    /// One FIFO per priority, made on the first enqueue (an idle connection holds none).
    private var levels: [CircularBuffer<Entry>] = []
    private var tail: Tail?
    /// Run entries queued. Each keeps a whole block (~65 KB) alive however few of its frames it
    /// holds, so their number is bounded like the bytes: past `maxRuns`, a frame is queued on its
    /// own (a client reading nothing on a rarely published topic, one frame per block, must not
    /// keep a block alive per queued frame).
    public private(set) var runCount = 0
    private let maxRuns: Int
    public private(set) var bytes = 0
    /// Frames queued (a run counts each of its frames).
    public private(set) var count = 0

    public init(maxBytes: Int) {
        self.maxBytes = maxBytes
        self.maxRuns = max(2, maxBytes / FrameBlock.byteLimit + 1)
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
        if key == nil, let origin, let tail = self.tail, tail.level == level, tail.end == origin.index,
           tail.block == ObjectIdentifier(origin.block) {
            self.tail!.end += 1
        } else {
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
            } else if let origin, self.runCount < self.maxRuns {
                self.append(Entry(block: origin.block, start: origin.index, end: origin.index + 1), level: level)
                self.tail = Tail(level: level, block: ObjectIdentifier(origin.block), end: origin.index + 1)
                self.runCount += 1
            } else {
                self.append(Entry(frame: frame), level: level)
            }
        }
        self.bytes += size
        self.count += 1
        return self.dropToBound()
    }

    /// Queues frames `start..<end` of `block` at `priority` as one run, as `enqueue` would one by
    /// one (joining the open run when they follow it). Nil when they cannot be held as a run (past
    /// `maxRuns`): enqueue them one by one then.
    public mutating func enqueueRun(_ block: FrameBlock, _ start: Int, _ end: Int, priority: Priority) -> Outcome? {
        precondition(start < end)
        let level = Int(priority.rawValue)
        if let tail = self.tail, tail.level == level, tail.end == start, tail.block == ObjectIdentifier(block) {
            self.tail!.end = end
        } else {
            guard self.runCount < self.maxRuns else { return nil }
            if self.levels.isEmpty {
                self.levels = Priority.allCases.map { _ in CircularBuffer<Entry>(initialCapacity: 4) }
            }
            self.append(Entry(block: block, start: start, end: end), level: level)
            self.tail = Tail(level: level, block: ObjectIdentifier(block), end: end)
            self.runCount += 1
        }
        self.bytes += block.size(of: start..<end)
        self.count += end - start
        return self.dropToBound()
    }

    /// Drops oldest-first from the lowest priority up, never critical, until within the bound.
    private mutating func dropToBound() -> Outcome {
        var dropped = Dropped()
        var lowest = Priority.allCases.count - 1
        while self.bytes > self.maxBytes && lowest > 0 {
            if let size = self.dropFirst(level: lowest) {
                dropped.add(bytes: size, priority: Priority(rawValue: UInt8(lowest))!)
            } else {
                lowest -= 1
            }
        }
        return self.bytes > self.maxBytes ? .overflow(dropped) : .queued(dropped)
    }

    /// Appends an entry; the open run, if any, is sealed (its end written into its entry).
    private mutating func append(_ entry: Entry, level: Int) {
        if let tail = self.tail {
            let last = self.levels[tail.level].index(before: self.levels[tail.level].endIndex)
            self.levels[tail.level].modify(last) { $0.end = tail.end }
            self.tail = nil
        }
        self.levels[level].append(entry)
    }

    /// The true end of the first entry of `level` if it is the open run.
    @inline(__always)
    private func openEnd(level: Int) -> Int? {
        guard let tail = self.tail, tail.level == level, self.levels[level].count == 1 else { return nil }
        return tail.end
    }

    /// Removes the first entry of `level` (it is done).
    private mutating func removeFirst(level: Int) {
        if self.levels[level].removeFirst().block != nil { self.runCount -= 1 }
        if self.levels[level].isEmpty && self.tail?.level == level { self.tail = nil }
    }

    /// The size of the frame `dequeue` would return next (nil: the queue is empty).
    public var nextFrameSize: Int? {
        guard self.count > 0 else { return nil }
        for level in self.levels.indices {
            guard let first = self.levels[level].first else { continue }
            if let block = first.block { return block.size(at: first.start) }
            return first.frame!.readableBytes
        }
        return nil
    }

    /// The next message to write: highest priority first, FIFO within a priority.
    public mutating func dequeue() -> Item? {
        guard self.count > 0 else { return nil }
        for level in self.levels.indices where !self.levels[level].isEmpty {
            let openEnd = self.openEnd(level: level)
            let (frame, key, done) = self.levels[level].modify(self.levels[level].startIndex) { entry -> (ByteBuffer, String?, Bool) in
                guard let block = entry.block else { return (entry.frame!, entry.key, true) }
                let frame = block[entry.start]
                entry.start += 1
                return (frame, nil, entry.start == (openEnd ?? entry.end))
            }
            if done { self.removeFirst(level: level) }
            self.bytes -= frame.readableBytes
            self.count -= 1
            return Item(frame: frame, priority: Priority(rawValue: UInt8(level))!, key: key)
        }
        return nil
    }

    /// Takes the next entry off the queue (highest priority first) if it is a run of at least
    /// `minBytes` bytes: the whole run, as its block and frames.
    public mutating func dequeueRun(minBytes: Int) -> (block: FrameBlock, frames: Range<Int>)? {
        guard self.count > 0 else { return nil }
        guard let level = self.levels.indices.first(where: { !self.levels[$0].isEmpty }),
              let block = self.levels[level].first!.block else { return nil }
        let start = self.levels[level].first!.start
        let end = self.openEnd(level: level) ?? self.levels[level].first!.end
        let size = block.size(of: start..<end)
        guard size >= minBytes else { return nil }
        self.removeFirst(level: level)
        self.bytes -= size
        self.count -= end - start
        return (block, start..<end)
    }

    /// Drops the oldest frame of `level`; returns its size (nil: the level is empty).
    private mutating func dropFirst(level: Int) -> Int? {
        guard !self.levels[level].isEmpty else { return nil }
        let openEnd = self.openEnd(level: level)
        let (size, done) = self.levels[level].modify(self.levels[level].startIndex) { entry -> (Int, Bool) in
            guard let block = entry.block else { return (entry.frame!.readableBytes, true) }
            let size = block.size(at: entry.start)
            entry.start += 1
            return (size, entry.start == (openEnd ?? entry.end))
        }
        if done { self.removeFirst(level: level) }
        self.bytes -= size
        self.count -= 1
        return size
    }

    /// Moves frames of at most `maxFrame` bytes from the front of the queue (highest priority
    /// first) to the end of `buffer` until it holds `limit` bytes, the queue is empty, or a larger
    /// frame is next. A run's frames go with one copy from their block. Returns the frames and
    /// bytes moved.
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
            let openEnd = self.openEnd(level: level)
            let (n, b, done) = self.levels[level].modify(self.levels[level].startIndex) { entry -> (Int, Int, Bool) in
                if let block = entry.block {
                    let end = openEnd ?? entry.end
                    let (n, b) = block.copyFrames(entry.start, end, room: limit - buffer.readableBytes, into: &buffer)
                    entry.start += n
                    return (n, b, entry.start == end)
                }
                guard entry.frame!.readableBytes <= maxFrame else { return (0, 0, false) }
                return (1, buffer.writeImmutableBuffer(entry.frame!), true)
            }
            frames += n
            bytes += b
            if done {
                self.removeFirst(level: level)
            } else if n == 0 {
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
        self.runCount = 0
        self.bytes = 0
        self.count = 0
    }
}
