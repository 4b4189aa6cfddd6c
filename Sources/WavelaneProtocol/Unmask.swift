import NIOCore
import NIOWebSocket

/// RFC 6455 §5.3 unmasking, 8 bytes at a time. NIOWebSocket's `WebSocketFrame.unmaskedData` copies
/// the payload (it shares storage with the read buffer) and then unmasks it a byte at a time: that
/// loop alone was ~9% of server CPU in the inbound benchmark. Here the copy and the unmasking are one
/// pass.
public enum Unmask {
    /// A masking key as the 32-bit value of its four bytes loaded little-endian (key byte 0 lowest),
    /// the form `apply` takes.
    public static func word(_ key: WebSocketMaskingKey) -> UInt32 {
        UInt32(key[0]) | UInt32(key[1]) << 8 | UInt32(key[2]) << 16 | UInt32(key[3]) << 24
    }

    /// Writes `source` XOR the masking key (key byte `i % 4` for payload byte `i`) to `destination`,
    /// which holds at least `source.count` bytes. `key` as `word` makes it.
    public static func apply(_ source: UnsafeRawBufferPointer, to destination: UnsafeMutableRawPointer, key: UInt32) {
        let count = source.count
        guard count > 0, let src = source.baseAddress else { return }
        let key64 = UInt64(key) | UInt64(key) << 32
        var i = 0
        while i + 8 <= count {
            destination.storeBytes(of: src.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ key64.littleEndian,
                                   toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count {
            destination.storeBytes(of: source[i] ^ UInt8(truncatingIfNeeded: key >> (8 * UInt32(i & 3))),
                                   toByteOffset: i, as: UInt8.self)
            i += 1
        }
    }

    /// `data` XOR the masking key, in a buffer of its own.
    public static func copy(_ data: ByteBuffer, key: WebSocketMaskingKey,
                            allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        let count = data.readableBytes
        var out = allocator.buffer(capacity: count)
        guard count > 0 else { return out }
        let word = Self.word(key)
        _ = data.withUnsafeReadableBytes { src in
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { dst in
                Self.apply(src, to: dst.baseAddress!, key: word)
                return count
            }
        }
        return out
    }
}
