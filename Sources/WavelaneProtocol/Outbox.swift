import NIOCore

/// Everything a connection holds on its way out, as a pure value (no channel): the coalescing
/// buffer of small frames, the bounded priority `SendQueue` for when the socket cannot take more,
/// the drops not yet reported to the application, and how long the socket has been unwritable
/// (the slow-consumer rule). The channel handler asks it what to do and performs the answer.
public struct Outbox {
    /// Frames up to this size are copied into one buffer and handed to the channel together: a
    /// 100-byte copy costs far less than NIO's per-write bookkeeping, which dominated fan-out
    /// profiles. Larger frames go out as the shared buffer itself (no copy).
    public static let coalesceMaxFrame = 1024
    /// The coalescing buffer is handed over once it holds this much.
    public static let coalesceLimit = 16 * 1024
    /// Runs of shared publication frames (`FrameBlock`) of at least this many bytes go to the
    /// channel as slices of their block, not copies: no per-connection memory for them, and one
    /// `writev` takes a whole run (up to a block, 64 KB) where copies are handed over 16 KB at a
    /// time. Smaller runs are copied (a slice keeps its whole block alive: at least 1/16 of it is
    /// then being written).
    public static let sliceMin = 4096

    /// What `send` decided for one frame.
    public enum Decision: Equatable {
        /// The socket takes it and nothing is queued before it: `write(_:)` it now.
        case writeNow
        /// Held in the send queue (`dropped`: what had to go to stay within the bound).
        case queued(dropped: SendQueue.Dropped)
        /// Replaced the queued frame with the same coalescing key.
        case coalesced
        /// Over the bound with only critical frames left: close the connection (slow consumer).
        case overflow(dropped: SendQueue.Dropped)
    }

    /// Buffers to hand to the channel, in this order (not flushed).
    public enum Writes {
        case none
        case one(ByteBuffer)
        case two(ByteBuffer, ByteBuffer)
    }

    // The hot path (`send` while writable, `write`, `spill`) is inlinable: it runs once per
    // delivered frame, from the engine's module.
    /// Where coalescing buffers come from: one allocator for every outbox, not one stored in each
    /// (four function pointers, 32 bytes per connection).
    @usableFromInline static let allocator = ByteBufferAllocator()
    @usableFromInline var coalesced: ByteBuffer?
    @usableFromInline var queue: SendQueue
    /// Drops not yet reported to the application.
    public private(set) var unreportedDrops = SendQueue.Dropped()
    /// Since when the socket has not taken more (nil: it is writable).
    public private(set) var unwritableSince: NIODeadline?

    public init(maxQueuedBytes: Int) {
        self.queue = SendQueue(maxBytes: maxQueuedBytes)
    }

    /// Bytes waiting in the send queue.
    public var queuedBytes: Int { self.queue.bytes }
    public var queuedCount: Int { self.queue.count }
    /// Entries in the send queue (a run of shared publication frames is one).
    public var queuedEntries: Int { self.queue.entryCount }
    @inlinable public var isQueueEmpty: Bool { self.queue.isEmpty }
    /// Bytes in the coalescing buffer, not yet handed to the channel.
    public var bufferedBytes: Int { self.coalesced?.readableBytes ?? 0 }

    /// Decides where one complete frame goes. `writable`: the channel takes more (asked only when
    /// nothing is queued: a backed-up connection never looks at its channel); `draining`: a
    /// graceful stop waits for the queue, so new frames queue behind it. `origin`: where the frame
    /// sits in a shared `FrameBlock`, so that it can join a queued run.
    @inlinable @inline(__always)
    public mutating func send(_ frame: ByteBuffer, priority: Priority, key: String?, origin: FrameOrigin? = nil,
                              writable: @autoclosure () -> Bool, draining: Bool) -> Decision {
        if self.queue.isEmpty && !draining && writable() { return .writeNow }
        return self.enqueue(frame, priority: priority, key: key, origin: origin)
    }

    @usableFromInline
    mutating func enqueue(_ frame: ByteBuffer, priority: Priority, key: String?, origin: FrameOrigin?) -> Decision {
        self.decision(self.queue.enqueue(frame, priority: priority, key: key, origin: origin))
    }

    /// What the send queue did with a frame or run, as `send` reports it (drops recorded for the
    /// next report).
    private mutating func decision(_ outcome: SendQueue.Outcome) -> Decision {
        switch outcome {
        case .coalesced:
            return .coalesced
        case .queued(let dropped):
            self.unreportedDrops.merge(dropped)
            return .queued(dropped: dropped)
        case .overflow(let dropped):
            self.unreportedDrops.merge(dropped)
            return .overflow(dropped: dropped)
        }
    }

    /// Takes a frame for the channel: small frames are coalesced (handed over when the buffer is
    /// full), a large one is handed over after whatever was coalesced before it.
    @inlinable @inline(__always)
    public mutating func write(_ frame: ByteBuffer) -> Writes {
        if frame.readableBytes <= Self.coalesceMaxFrame {
            if self.coalesced == nil { self.coalesced = Self.allocator.buffer(capacity: 4096) }
            var frame = frame
            self.coalesced!.writeBuffer(&frame)
            if self.coalesced!.readableBytes >= Self.coalesceLimit, let full = self.spill() { return .one(full) }
            return .none
        }
        return self.afterCoalesced(frame)
    }

    /// Queues frames `start..<end` of a shared block as one run (`SendQueue.enqueueRun`); nil
    /// when the queue holds too many runs: `send` them one by one then.
    public mutating func enqueueRun(_ block: FrameBlock, _ start: Int, _ end: Int, priority: Priority) -> Decision? {
        self.queue.enqueueRun(block, start, end, priority: priority).map { self.decision($0) }
    }

    /// Takes frames `start..<end` of a shared block for the channel (the socket takes data and
    /// nothing is queued): all of them as one slice of the block when they hold at least
    /// `sliceMin` bytes (after what was coalesced before them); else as many as fit in the
    /// coalescing buffer below `coalesceLimit` (at least one), copied there with one copy, a full
    /// buffer being handed over. Returns the buffers to hand over and how many frames and bytes
    /// it took; the caller asks again for the rest while the channel stays writable.
    public mutating func writeRun(_ block: FrameBlock, _ start: Int, _ end: Int) -> (writes: Writes, frames: Int, bytes: Int) {
        let size = block.size(of: start..<end)
        if size >= Self.sliceMin {
            return (self.afterCoalesced(block.slice(start..<end)), end - start, size)
        }
        if self.coalesced == nil {
            let wanted = max(4096, block.size(of: start..<end))
            self.coalesced = Self.allocator.buffer(capacity: min(wanted, Self.coalesceLimit + Self.coalesceMaxFrame))
        }
        let room = Self.coalesceLimit - self.coalesced!.readableBytes
        let (frames, bytes) = block.copyFrames(start, end, room: room, into: &self.coalesced!)
        if self.coalesced!.readableBytes >= Self.coalesceLimit, let full = self.spill() { return (.one(full), frames, bytes) }
        return (.none, frames, bytes)
    }

    /// `buffer` for the channel, after the frames coalesced before it (if there are any): the
    /// one place a buffer that is not coalesced is handed over, so nothing overtakes those frames.
    @usableFromInline
    mutating func afterCoalesced(_ buffer: ByteBuffer) -> Writes {
        guard let before = self.spill(), before.readableBytes > 0 else { return .one(buffer) }
        return .two(before, buffer)
    }

    /// The coalesced small frames, to hand to the channel now (before a flush or a close frame).
    @inlinable @inline(__always)
    public mutating func spill() -> ByteBuffer? {
        guard let buffer = self.coalesced else { return nil }
        self.coalesced = nil
        return buffer
    }

    /// Hands queued frames over, highest priority first: a queued run of at least `sliceMin`
    /// bytes goes whole as a slice of its block; small frames are copied into the coalescing
    /// buffer (straight from shared publication blocks) until it holds `coalesceLimit` bytes; a
    /// large one goes as itself; either after what was coalesced before it. Returns the buffers for the
    /// channel (`.none`: all of it still fits in the coalescing buffer) and the frames and bytes
    /// taken from the queue.
    public mutating func writeQueued() -> (writes: Writes, frames: Int, bytes: Int) {
        if let (block, run) = self.queue.dequeueRun(minBytes: Self.sliceMin) {
            let slice = block.slice(run)
            return (self.afterCoalesced(slice), run.count, slice.readableBytes)
        }
        var frames = 0
        var bytes = 0
        if let next = self.queue.nextFrameSize, next <= Self.coalesceMaxFrame {
            // A buffer is made only when small frames are next (a stream of large frames needs none).
            if self.coalesced == nil {
                self.coalesced = Self.allocator.buffer(capacity: Self.coalesceLimit + Self.coalesceMaxFrame)
            }
            (frames, bytes) = self.queue.moveFrames(into: &self.coalesced!, limit: Self.coalesceLimit,
                                                    maxFrame: Self.coalesceMaxFrame)
            if self.coalesced!.readableBytes >= Self.coalesceLimit, let full = self.spill() { return (.one(full), frames, bytes) }
        }
        guard let large = self.queue.dequeue()?.frame else { return (.none, frames, bytes) }
        return (self.afterCoalesced(large), frames + 1, bytes + large.readableBytes)
    }

    /// The next queued frame to write: highest priority first.
    public mutating func nextQueued() -> ByteBuffer? {
        self.queue.dequeue()?.frame
    }

    /// The socket's writability changed at `now`.
    public mutating func writabilityChanged(writable: Bool, now: NIODeadline) {
        if writable {
            self.unwritableSince = nil
        } else if self.unwritableSince == nil {
            self.unwritableSince = now
        }
    }

    /// A slow consumer: the socket has taken nothing for longer than `timeout`.
    public func isSlowConsumer(now: NIODeadline, timeout: TimeAmount) -> Bool {
        guard let since = self.unwritableSince else { return false }
        return now - since > timeout
    }

    /// The drops since the last report, once (nil: none).
    public mutating func takeDropReport() -> SendQueue.Dropped? {
        guard !self.unreportedDrops.isEmpty else { return nil }
        defer { self.unreportedDrops = SendQueue.Dropped() }
        return self.unreportedDrops
    }

    /// Forgets everything (the connection is gone). Returns the bytes the send queue held.
    public mutating func removeAll() -> Int {
        let bytes = self.queue.bytes
        self.queue.removeAll()
        self.coalesced = nil
        return bytes
    }
}
