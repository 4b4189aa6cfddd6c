import NIOCore

/// A block of consecutive publication frames, shared by every connection they go to. Each
/// publication's frame is appended once (by the one publisher that numbers publications); a
/// connection whose socket is backed up then queues a *run* of a block — `(block, start..<end)` —
/// instead of one entry per frame, so a backlog of P publications to C connections costs
/// O(P + C) memory, not O(P × C) (issue #12: 1,000 × 10,000 fan-out peaked at ~800 MB of queue
/// entries before).
///
/// Thread safety: slots are written once, by `append`, before the block is handed to other
/// threads together with the slot's index (an event-loop hop, which orders the memory); a slot is
/// never written again, so readers of earlier slots never race with the writer of later ones.
public final class FrameBlock: @unchecked Sendable {
    /// Frames per block.
    public static let capacity = 256
    /// A block is closed once its frames hold this many bytes (it is retained while any connection
    /// still queues one of its frames).
    public static let byteLimit = 64 * 1024
    /// Larger frames are not put in blocks (they go out as their own buffer, and one of them must
    /// not keep a block alive).
    public static let maxFrame = 1024

    /// The frames' bytes, back to back: a run of consecutive frames is one contiguous range. A
    /// buffer so that runs can go to sockets as slices of it (`slice(_:)`), shared by every
    /// connection they go to. It is written only through `bytes` (never through its own API, so
    /// it is never copied or moved), each byte once, before any slice covers it; its writer index
    /// is at its end, so slices may cover any written range.
    private let storage: ByteBuffer
    /// `storage`'s memory, for `append`.
    private let bytes: UnsafeMutableRawPointer
    /// `offsets[i] ..< offsets[i + 1]`: frame `i`'s bytes (`offsets[0] == 0`).
    private let offsets: UnsafeMutablePointer<Int32>
    /// Frames written so far; read only by the appending thread.
    private var count = 0

    public init() {
        var storage = ByteBufferAllocator().buffer(capacity: Self.byteLimit + Self.maxFrame)
        let capacity = storage.capacity
        // A new buffer is uniquely referenced: its memory is neither copied here nor moved later
        // (no write through the buffer's API ever asks it to grow).
        self.bytes = storage.withUnsafeMutableWritableBytes { $0.baseAddress! }
        storage.moveWriterIndex(forwardBy: capacity)
        self.storage = storage
        self.offsets = .allocate(capacity: Self.capacity + 1)
        self.offsets[0] = 0
    }

    deinit {
        self.offsets.deallocate()
    }

    /// The frame in slot `index` (written before this block reached the caller with that index), as
    /// a new buffer (the queue's slow paths; the hot path copies runs with `copyFrames`).
    public subscript(index: Int) -> ByteBuffer {
        precondition(index >= 0 && index < Self.capacity)
        let start = Int(self.offsets[index])
        return ByteBuffer(bytes: UnsafeRawBufferPointer(start: self.bytes + start, count: Int(self.offsets[index + 1]) - start))
    }

    /// The size of the frame in slot `index`.
    @inline(__always)
    public func size(at index: Int) -> Int {
        Int(self.offsets[index + 1] &- self.offsets[index])
    }

    /// The size of frames `range` (all written).
    @inline(__always)
    public func size(of range: Range<Int>) -> Int {
        Int(self.offsets[range.upperBound] &- self.offsets[range.lowerBound])
    }

    /// Frames `range` (all written) as one buffer sharing this block's memory: no copy, and every
    /// connection that writes them shares the bytes (the block lives while any slice does).
    public func slice(_ range: Range<Int>) -> ByteBuffer {
        precondition(range.lowerBound >= 0 && range.lowerBound < range.upperBound && range.upperBound <= Self.capacity)
        let start = Int(self.offsets[range.lowerBound])
        return self.storage.getSlice(at: start, length: Int(self.offsets[range.upperBound]) - start)!
    }

    /// Copies frames `start..<end` (all written) to the end of `buffer` with one copy, as many as
    /// fit in `room` bytes but at least one; returns how many frames and bytes it copied.
    public func copyFrames(_ start: Int, _ end: Int, room: Int, into buffer: inout ByteBuffer) -> (frames: Int, bytes: Int) {
        precondition(start >= 0 && start < end && end <= Self.capacity)
        let first = Int(self.offsets[start])
        var last = start + 1
        while last < end && Int(self.offsets[last + 1]) - first <= room { last += 1 }
        let count = Int(self.offsets[last]) - first
        buffer.writeBytes(UnsafeRawBufferPointer(start: self.bytes + first, count: count))
        return (last - start, count)
    }

    /// Appends a frame; nil when the block is full.
    func append(_ frame: ByteBuffer) -> Int? {
        let used = Int(self.offsets[self.count])
        guard self.count < Self.capacity, used < Self.byteLimit, frame.readableBytes <= Self.maxFrame else { return nil }
        frame.withUnsafeReadableBytes { raw in
            if let base = raw.baseAddress { (self.bytes + used).copyMemory(from: base, byteCount: raw.count) }
        }
        self.offsets[self.count + 1] = Int32(used + frame.readableBytes)
        self.count += 1
        return self.count - 1
    }
}

/// Where a frame sits in a `FrameBlock`: a queued frame with an origin can join the run before it.
public struct FrameOrigin: Sendable {
    public let block: FrameBlock
    public let index: Int

    public init(block: FrameBlock, index: Int) {
        self.block = block
        self.index = index
    }
}

/// Appends publication frames to the current block, opening a new one when it is full. Used by
/// the one publisher that numbers publications (under its lock).
public struct FrameBlockWriter {
    private var current = FrameBlock()

    public init() {}

    /// Records `frame` and says where it is; nil for a frame too large for blocks.
    public mutating func append(_ frame: ByteBuffer) -> FrameOrigin? {
        guard frame.readableBytes <= FrameBlock.maxFrame else { return nil }
        if let index = self.current.append(frame) { return FrameOrigin(block: self.current, index: index) }
        self.current = FrameBlock()
        return FrameOrigin(block: self.current, index: self.current.append(frame)!)
    }
}
