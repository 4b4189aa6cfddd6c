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

    private let slots: UnsafeMutablePointer<ByteBuffer>
    /// Slots written so far; read only by the appending thread (and `deinit`).
    private var count = 0
    private var bytes = 0

    public init() {
        self.slots = .allocate(capacity: Self.capacity)
    }

    deinit {
        self.slots.deinitialize(count: self.count)
        self.slots.deallocate()
    }

    /// The frame in slot `index` (written before this block reached the caller with that index).
    @inlinable public subscript(index: Int) -> ByteBuffer { self.frame(at: index) }

    @usableFromInline func frame(at index: Int) -> ByteBuffer {
        precondition(index >= 0 && index < Self.capacity)
        return self.slots[index]
    }

    /// Copies the frame in slot `index` to the end of `buffer` (read in place: no retain of the
    /// frame's storage); returns its size.
    @discardableResult
    public func copyFrame(at index: Int, into buffer: inout ByteBuffer) -> Int {
        precondition(index >= 0 && index < Self.capacity)
        return self.slots[index].withUnsafeReadableBytes { buffer.writeBytes($0) }
    }

    /// Appends a frame; nil when the block is full (or the frame is too large for blocks).
    func append(_ frame: ByteBuffer) -> Int? {
        guard self.count < Self.capacity, self.bytes < Self.byteLimit else { return nil }
        (self.slots + self.count).initialize(to: frame)
        self.bytes += frame.readableBytes
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
