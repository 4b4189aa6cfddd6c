import NIOCore
import NIOWebSocket

/// Encodes server-to-client WebSocket frames (RFC 6455 §5.2: FIN set, unmasked) into one
/// contiguous `ByteBuffer`: header then payload. The result is immutable once built, so a
/// publication is encoded once and the same bytes are written to every subscriber.
public enum FrameEncoder {
    /// Size of the header for a payload of `length` bytes.
    @inlinable
    public static func headerSize(payloadLength length: Int) -> Int {
        if length <= 125 { return 2 }
        if length <= 0xFFFF { return 4 }
        return 10
    }

    /// The payload length of a complete frame of `frameSize` bytes (inverse of `headerSize`).
    @inlinable
    public static func payloadLength(ofFrameSize frameSize: Int) -> Int {
        if frameSize - 2 <= 125 { return frameSize - 2 }
        if frameSize - 4 <= 0xFFFF { return frameSize - 4 }
        return frameSize - 10
    }

    /// Writes a frame header for a final, unmasked frame.
    @inlinable
    public static func writeHeader(opcode: WebSocketOpcode, payloadLength length: Int, rsv1: Bool = false,
                                   into buffer: inout ByteBuffer) {
        let first: UInt8 = 0x80 | (rsv1 ? 0x40 : 0) | UInt8(webSocketOpcode: opcode)
        if length <= 125 {
            buffer.writeMultipleIntegers(first, UInt8(length))
        } else if length <= 0xFFFF {
            buffer.writeMultipleIntegers(first, UInt8(126), UInt16(length))
        } else {
            buffer.writeMultipleIntegers(first, UInt8(127), UInt64(length))
        }
    }

    /// A complete frame carrying `payload`.
    public static func frame(opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer,
                             allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: headerSize(payloadLength: payload.count) + payload.count)
        writeHeader(opcode: opcode, payloadLength: payload.count, into: &buffer)
        buffer.writeBytes(payload)
        return buffer
    }

    public static func frame<Bytes: Collection>(opcode: WebSocketOpcode, bytes payload: Bytes,
                                                allocator: ByteBufferAllocator) -> ByteBuffer
    where Bytes.Element == UInt8 {
        var buffer = allocator.buffer(capacity: headerSize(payloadLength: payload.count) + payload.count)
        writeHeader(opcode: opcode, payloadLength: payload.count, into: &buffer)
        buffer.writeBytes(payload)
        return buffer
    }

    public static func frame(opcode: WebSocketOpcode, payload: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: headerSize(payloadLength: payload.readableBytes) + payload.readableBytes)
        writeHeader(opcode: opcode, payloadLength: payload.readableBytes, into: &buffer)
        var payload = payload
        buffer.writeBuffer(&payload)
        return buffer
    }

    /// A text frame of `text`.
    public static func text(_ text: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var text = text
        return text.withUTF8 { frame(opcode: .text, payload: UnsafeRawBufferPointer($0), allocator: allocator) }
    }

    /// A close frame with a status code and a reason (truncated to fit the 125-byte control
    /// frame limit on a character boundary).
    public static func close(code: UInt16, reason: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        let reasonBytes = truncatedUTF8(reason, maxBytes: 123)
        var buffer = allocator.buffer(capacity: 4 + reasonBytes.count)
        writeHeader(opcode: .connectionClose, payloadLength: 2 + reasonBytes.count, into: &buffer)
        buffer.writeInteger(code)
        buffer.writeBytes(reasonBytes)
        return buffer
    }

    /// A close frame with no payload (answers a close frame that carried no status code).
    public static func emptyClose(allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 2)
        writeHeader(opcode: .connectionClose, payloadLength: 0, into: &buffer)
        return buffer
    }

    /// The longest prefix of `s` that is at most `maxBytes` of UTF-8 and ends on a character.
    public static func truncatedUTF8(_ s: String, maxBytes: Int) -> [UInt8] {
        let utf8 = Array(s.utf8)
        if utf8.count <= maxBytes { return utf8 }
        var end = maxBytes
        // Step back over continuation bytes (10xxxxxx) to a character start.
        while end > 0 && (utf8[end] & 0xC0) == 0x80 { end -= 1 }
        return Array(utf8[0..<end])
    }
}
