import NIOCore
import NIOWebSocket

/// RFC 6455 §5.3 unmasking, 16 bytes at a time. NIOWebSocket's `WebSocketFrame.unmaskedData` copies
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
    /// which holds at least `source.count` bytes. `key` as `word` makes it. Returns whether every
    /// byte written is ASCII (below 0x80): the unmasking reads each byte anyway, so a text message's
    /// UTF-8 check can be skipped for an ASCII payload at the cost of one OR per 16 bytes.
    @discardableResult
    public static func apply(_ source: UnsafeRawBufferPointer, to destination: UnsafeMutableRawPointer, key: UInt32) -> Bool {
        let count = source.count
        guard count > 0, let src = source.baseAddress else { return true }
        // Key byte 0 is the lowest byte of `key` (little-endian loads): every lane of a 4-byte step
        // starting at a multiple of 4 sees the key unrotated.
        let key32 = key.littleEndian
        let key128 = unsafeBitCast(SIMD4<UInt32>(repeating: key32), to: SIMD16<UInt8>.self)
        var high = SIMD16<UInt8>(repeating: 0)
        var i = 0
        while i + 16 <= count {
            let v = src.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self) ^ key128
            destination.storeBytes(of: v, toByteOffset: i, as: SIMD16<UInt8>.self)
            high |= v
            i += 16
        }
        var tail: UInt32 = 0
        while i + 4 <= count {
            let v = src.loadUnaligned(fromByteOffset: i, as: UInt32.self) ^ key32
            destination.storeBytes(of: v, toByteOffset: i, as: UInt32.self)
            tail |= v  // the high bit of each byte stays where it is, whatever the byte order
            i += 4
        }
        while i < count {
            let v = source[i] ^ UInt8(truncatingIfNeeded: key >> (8 * UInt32(i & 3)))
            destination.storeBytes(of: v, toByteOffset: i, as: UInt8.self)
            tail |= UInt32(v)
            i += 1
        }
        return high.max() < 0x80 && tail & 0x8080_8080 == 0
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
