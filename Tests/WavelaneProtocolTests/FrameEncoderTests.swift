import NIOCore
import NIOWebSocket
import Testing
import WavelaneProtocol

private let allocator = ByteBufferAllocator()

private func bytes(_ buffer: ByteBuffer) -> [UInt8] {
    Array(buffer.readableBytesView)
}

/// The frame for `count` payload bytes of `fill`, via the generic `bytes:` overload.
private func frameBytes(_ opcode: WebSocketOpcode, count: Int, fill: UInt8 = 0x61) -> [UInt8] {
    bytes(FrameEncoder.frame(opcode: opcode, bytes: [UInt8](repeating: fill, count: count), allocator: allocator))
}

@Suite("FrameEncoder headers")
struct FrameEncoderHeaderTests {
    @Test func headerSizes() {
        #expect(FrameEncoder.headerSize(payloadLength: 0) == 2)
        #expect(FrameEncoder.headerSize(payloadLength: 125) == 2)
        #expect(FrameEncoder.headerSize(payloadLength: 126) == 4)
        #expect(FrameEncoder.headerSize(payloadLength: 65535) == 4)
        #expect(FrameEncoder.headerSize(payloadLength: 65536) == 10)
        #expect(FrameEncoder.headerSize(payloadLength: 1 << 40) == 10)
    }

    @Test func emptyPayload() {
        #expect(frameBytes(.text, count: 0) == [0x81, 0x00])
        #expect(frameBytes(.binary, count: 0) == [0x82, 0x00])
    }

    @Test func payload125UsesSevenBitLength() {
        let f = frameBytes(.text, count: 125)
        #expect(f.count == 127)
        #expect(Array(f[0..<2]) == [0x81, 0x7D])
        #expect(f[2...].allSatisfy { $0 == 0x61 })
    }

    @Test func payload126UsesSixteenBitLength() {
        let f = frameBytes(.text, count: 126)
        #expect(f.count == 4 + 126)
        #expect(Array(f[0..<4]) == [0x81, 0x7E, 0x00, 0x7E])
        #expect(f[4...].allSatisfy { $0 == 0x61 })
    }

    @Test func payload65535UsesSixteenBitLength() {
        let f = frameBytes(.text, count: 65535)
        #expect(f.count == 4 + 65535)
        #expect(Array(f[0..<4]) == [0x81, 0x7E, 0xFF, 0xFF])
    }

    @Test func payload65536UsesSixtyFourBitLength() {
        let f = frameBytes(.binary, count: 65536, fill: 0xAB)
        #expect(f.count == 10 + 65536)
        #expect(Array(f[0..<10]) == [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00])
        #expect(f[10...].allSatisfy { $0 == 0xAB })
    }

    @Test func payloadLengthInvertsHeaderSize() {
        for n in [0, 1, 124, 125, 126, 127, 1000, 65534, 65535, 65536, 65537, 1 << 24] {
            #expect(FrameEncoder.payloadLength(ofFrameSize: FrameEncoder.headerSize(payloadLength: n) + n) == n, "payload \(n)")
        }
    }

    @Test func writeHeaderDirectly() {
        var b = allocator.buffer(capacity: 16)
        FrameEncoder.writeHeader(opcode: .binary, payloadLength: 0x0102_0304_0506, into: &b)
        #expect(bytes(b) == [0x82, 0x7F, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06])
        var c = allocator.buffer(capacity: 4)
        FrameEncoder.writeHeader(opcode: .text, payloadLength: 300, rsv1: true, into: &c)
        #expect(bytes(c) == [0xC1, 0x7E, 0x01, 0x2C])
    }

    @Test(arguments: [
        (WebSocketOpcode.continuation, UInt8(0x80)),
        (.text, 0x81), (.binary, 0x82), (.connectionClose, 0x88), (.ping, 0x89), (.pong, 0x8A),
    ])
    func opcodes(opcode: WebSocketOpcode, firstByte: UInt8) {
        let f = bytes(FrameEncoder.frame(opcode: opcode, bytes: [1, 2, 3], allocator: allocator))
        #expect(f == [firstByte, 0x03, 1, 2, 3])
    }

    @Test func allOverloadsAgree() {
        let payload: [UInt8] = Array(0..<200).map { UInt8($0) }
        let viaBytes = bytes(FrameEncoder.frame(opcode: .binary, bytes: payload, allocator: allocator))
        let viaPointer = payload.withUnsafeBytes { bytes(FrameEncoder.frame(opcode: .binary, payload: $0, allocator: allocator)) }
        var buffer = allocator.buffer(capacity: 200)
        buffer.writeBytes(payload)
        let viaBuffer = bytes(FrameEncoder.frame(opcode: .binary, payload: buffer, allocator: allocator))
        #expect(viaBytes == [0x82, 0x7E, 0x00, 0xC8] + payload)
        #expect(viaPointer == viaBytes)
        #expect(viaBuffer == viaBytes)
        // The source buffer is not consumed.
        #expect(buffer.readableBytes == 200)
    }

    @Test func bufferOverloadUsesReadableBytesOnly() {
        var buffer = allocator.buffer(capacity: 8)
        buffer.writeBytes([9, 9, 1, 2])
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(bytes(FrameEncoder.frame(opcode: .pong, payload: buffer, allocator: allocator)) == [0x8A, 0x02, 1, 2])
    }

    @Test func textFrame() {
        #expect(bytes(FrameEncoder.text("héllo", allocator: allocator)) == [0x81, 0x06] + Array("héllo".utf8))
        #expect(bytes(FrameEncoder.text("", allocator: allocator)) == [0x81, 0x00])
        let long = String(repeating: "€", count: 100)  // 300 bytes
        #expect(bytes(FrameEncoder.text(long, allocator: allocator)) == [0x81, 0x7E, 0x01, 0x2C] + Array(long.utf8))
    }

    @Test func parsedBackByAReferenceDecoder() {
        // A minimal independent RFC 6455 header parser: every length class round-trips.
        for count in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let f = bytes(FrameEncoder.frame(opcode: .binary, bytes: payload, allocator: allocator))
            #expect(f[0] == 0x82)
            #expect(f[1] & 0x80 == 0, "server frames are unmasked")
            var length = Int(f[1] & 0x7F)
            var offset = 2
            if length == 126 {
                length = Int(f[2]) << 8 | Int(f[3]); offset = 4
                #expect(length >= 126, "minimal encoding")
            } else if length == 127 {
                length = f[2..<10].reduce(0) { $0 << 8 | Int($1) }; offset = 10
                #expect(length > 0xFFFF, "minimal encoding")
            }
            #expect(length == count)
            #expect(Array(f[offset...]) == payload)
        }
    }
}

@Suite("FrameEncoder close frames")
struct FrameEncoderCloseTests {
    @Test func closeWithCodeAndReason() {
        let f = bytes(FrameEncoder.close(code: 1001, reason: "bye", allocator: allocator))
        #expect(f == [0x88, 0x05, 0x03, 0xE9, 0x62, 0x79, 0x65])
    }

    @Test func closeWithCodeOnly() {
        #expect(bytes(FrameEncoder.close(code: 1000, reason: "", allocator: allocator)) == [0x88, 0x02, 0x03, 0xE8])
        #expect(bytes(FrameEncoder.close(code: 4999, reason: "", allocator: allocator)) == [0x88, 0x02, 0x13, 0x87])
    }

    @Test func emptyClose() {
        #expect(bytes(FrameEncoder.emptyClose(allocator: allocator)) == [0x88, 0x00])
    }

    @Test func reasonOf123BytesIsKept() {
        let reason = String(repeating: "x", count: 123)
        let f = bytes(FrameEncoder.close(code: 1000, reason: reason, allocator: allocator))
        #expect(f.count == 2 + 125)
        #expect(Array(f[0..<4]) == [0x88, 0x7D, 0x03, 0xE8])
        #expect(Array(f[4...]) == Array(reason.utf8))
    }

    @Test func asciiReasonTruncatedTo123() {
        let reason = String(repeating: "y", count: 300)
        let f = bytes(FrameEncoder.close(code: 1011, reason: reason, allocator: allocator))
        #expect(f.count == 127)
        #expect(Array(f[0..<4]) == [0x88, 0x7D, 0x03, 0xF3])
        #expect(Array(f[4...]) == [UInt8](repeating: 0x79, count: 123))
    }

    /// The reason bytes of a close frame built by FrameEncoder.
    private func reasonBytes(_ reason: String) -> [UInt8] {
        let f = bytes(FrameEncoder.close(code: 1000, reason: reason, allocator: allocator))
        #expect(Int(f[1]) == f.count - 2)
        #expect(f[1] <= 125)
        return Array(f[4...])
    }

    @Test func twoByteCharactersTruncatedOnBoundary() {
        // "é" is 2 bytes: 62 of them = 124 bytes; 61 fit (122 bytes), the 62nd would split at 123.
        let r = reasonBytes(String(repeating: "é", count: 62))
        #expect(r.count == 122)
        #expect(r == Array(String(repeating: "é", count: 61).utf8))
    }

    @Test func threeByteCharactersTruncatedOnBoundary() {
        // "€" is 3 bytes: 41 × 3 = 123 exactly fits; 42 do not.
        #expect(reasonBytes(String(repeating: "€", count: 41)) == Array(String(repeating: "€", count: 41).utf8))
        #expect(reasonBytes(String(repeating: "€", count: 42)) == Array(String(repeating: "€", count: 41).utf8))
        // "a" + 41 × "€" = 124 bytes: cut back to "a" + 40 × "€" = 121 bytes.
        let r = reasonBytes("a" + String(repeating: "€", count: 41))
        #expect(r == Array(("a" + String(repeating: "€", count: 40)).utf8))
        #expect(r.count == 121)
    }

    @Test func fourByteCharactersTruncatedOnBoundary() {
        // "😀" is 4 bytes: 30 = 120 bytes, 31 = 124 bytes → 30 kept.
        #expect(reasonBytes(String(repeating: "😀", count: 31)) == Array(String(repeating: "😀", count: 30).utf8))
        // "abc" + 30 emoji = 123 bytes: kept whole.
        let exact = "abc" + String(repeating: "😀", count: 30)
        #expect(reasonBytes(exact) == Array(exact.utf8))
        // "ab" + 31 emoji = 126 bytes: cut after 30 emoji (122 bytes) since the 31st would end at 126.
        #expect(reasonBytes("ab" + String(repeating: "😀", count: 31)) == Array(("ab" + String(repeating: "😀", count: 30)).utf8))
    }

    @Test func truncatedReasonIsAlwaysValidUTF8() {
        let pieces = ["a", "é", "€", "😀", "ß", "中"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var s = ""
            for _ in 0..<Int.random(in: 30...90, using: &rng) { s += pieces.randomElement(using: &rng)! }
            let r = reasonBytes(s)
            #expect(r.count <= 123)
            #expect(String(validating: r, as: UTF8.self) != nil)
            #expect(Array(s.utf8).starts(with: r))
            // Maximal: the next scalar would not have fitted.
            let full = Array(s.utf8)
            if full.count > 123 {
                #expect(r.count > 123 - 4)
                #expect((full[r.count] & 0xC0) != 0x80)
            } else {
                #expect(r == full)
            }
        }
    }

    @Test func truncatedUTF8Directly() {
        #expect(FrameEncoder.truncatedUTF8("héllo", maxBytes: 2) == [0x68])
        #expect(FrameEncoder.truncatedUTF8("héllo", maxBytes: 3) == Array("hé".utf8))
        #expect(FrameEncoder.truncatedUTF8("€", maxBytes: 2) == [])
        #expect(FrameEncoder.truncatedUTF8("abc", maxBytes: 3) == Array("abc".utf8))
        #expect(FrameEncoder.truncatedUTF8("", maxBytes: 0) == [])
    }
}
