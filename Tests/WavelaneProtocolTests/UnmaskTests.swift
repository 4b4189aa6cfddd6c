import NIOCore
import NIOWebSocket
import Testing
import WavelaneProtocol

struct UnmaskTests {
    @Test func matchesNIOsByteLoopForEveryLengthAndOffset() {
        var rng = SystemRandomNumberGenerator()
        for length in 0..<80 {
            for _ in 0..<8 {
                let key = WebSocketMaskingKey((0..<4).map { _ in UInt8.random(in: 0...255, using: &rng) })!
                let bytes = (0..<(length + 7)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                // The payload starts at a random offset of its buffer (unaligned loads).
                let skip = Int.random(in: 0...7, using: &rng)
                var buffer = ByteBuffer(bytes: bytes)
                buffer.moveReaderIndex(forwardBy: skip)
                buffer = buffer.getSlice(at: buffer.readerIndex, length: length)!
                let frame = WebSocketFrame(fin: true, opcode: .binary, maskKey: key, data: buffer)
                #expect(ClientFrame(frame).payload == frame.unmaskedData)
                #expect(Array(Unmask.copy(ClientFrame(frame).payload, key: key).readableBytesView) == Array(buffer.readableBytesView))
            }
        }
    }

    @Test func unmaskedFrameIsItsPayload() {
        let frame = WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "hello"))
        #expect(ClientFrame(frame).payload == ByteBuffer(string: "hello"))
    }

    @Test func knownVectorFromRFC6455() {
        // RFC 6455 §5.7: a masked "Hello" with key 37 fa 21 3d.
        let key = WebSocketMaskingKey([0x37, 0xfa, 0x21, 0x3d])!
        let masked = ByteBuffer(bytes: [0x7f, 0x9f, 0x4d, 0x51, 0x58])
        #expect(Unmask.copy(masked, key: key) == ByteBuffer(string: "Hello"))
    }
}
