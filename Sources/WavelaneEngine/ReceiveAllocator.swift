// Receive-buffer sizes of a WebSocket connection, in a value small enough to stay inside the
// channel's `any RecvByteBufferAllocator`.

import NIOCore

/// The rule of NIO's `AdaptiveRecvByteBufferAllocator` — the next buffer doubles after a read that
/// filled it, halves after two reads in a row that used at most half of it, within 64 bytes and
/// 64 KiB — in 5 bytes instead of 33. A channel keeps its allocator as an existential, whose
/// inline buffer takes three words: NIO's allocator does not fit, so it lives in a heap box, which
/// each connection copies at its first read and keeps for life (64 bytes with malloc's header).
/// This one stays inline (`fitsInline`).
struct ReceiveAllocator: RecvByteBufferAllocator {
    static let minimum = 64
    static let maximum = 65536

    private var nextSize: UInt32
    /// The last read used at most half of the buffer.
    private var decreaseNow = false
    /// False: the size stays `initial` whatever the reads (`fixed(_:)`).
    private var adaptive = true

    /// `initial`: a power of 2 from `minimum` to `maximum`.
    init(initial: Int) {
        precondition(initial.nonzeroBitCount == 1 && (Self.minimum...Self.maximum).contains(initial), "initial: \(initial)")
        self.nextSize = UInt32(initial)
    }

    /// Buffers of `size` bytes for every read. NIO keeps a connection's receive buffer for reuse
    /// and grows it in place when the allocator asks for more; so a handshake read with growing
    /// buffers (an 8 KB upgrade request: 512 B, 1, 2, 4, 8 KB) would leave an 8 KB buffer with the
    /// connection for life (measured: 10.9 KB per idle connection against 3.4).
    static func fixed(_ size: Int) -> ReceiveAllocator {
        var allocator = ReceiveAllocator(initial: size)
        allocator.adaptive = false
        return allocator
    }

    /// Fits an existential's inline buffer: no heap box per channel.
    static var fitsInline: Bool { MemoryLayout<Self>.size <= 3 * MemoryLayout<Int>.size }

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: Int(self.nextSize))
    }

    func nextBufferSize() -> Int? {
        Int(self.nextSize)
    }

    mutating func record(actualReadBytes: Int) -> Bool {
        guard self.adaptive else { return false }
        let size = Int(self.nextSize)
        let lower = size >> 1
        let upper = size << 1
        if actualReadBytes <= lower && lower >= Self.minimum {
            if self.decreaseNow {
                self.nextSize = UInt32(lower)
                self.decreaseNow = false
            } else {
                self.decreaseNow = true
            }
        } else if actualReadBytes >= size && upper <= Self.maximum {
            self.nextSize = UInt32(upper)
            self.decreaseNow = false
            return true
        } else {
            self.decreaseNow = false
        }
        return false
    }
}
