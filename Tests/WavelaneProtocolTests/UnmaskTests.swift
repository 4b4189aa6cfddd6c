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

    @Test func applyTellsWhetherEveryByteWrittenIsASCII() {
        var rng = SystemRandomNumberGenerator()
        let key = WebSocketMaskingKey([0x37, 0xfa, 0x21, 0x3d])!
        let word = Unmask.word(key)
        for length in 0..<70 {
            // ASCII throughout, then one byte of 0x80 or more at each position (in the 16-byte
            // steps, the 4-byte steps and the byte tail alike).
            for high in [-1] + Array(0..<length) {
                let plain = (0..<length).map { i in i == high ? UInt8.random(in: 0x80...0xFF, using: &rng) : UInt8.random(in: 0...0x7F, using: &rng) }
                let masked = plain.enumerated().map { $1 ^ key[$0 % 4] }
                var out = [UInt8](repeating: 0, count: length)
                let ascii = masked.withUnsafeBytes { src in out.withUnsafeMutableBytes { Unmask.apply(src, to: $0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, key: word) } }
                #expect(out == plain)
                #expect(ascii == (high < 0), "length \(length), high byte at \(high)")
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
