import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
import WavelaneProtocol

/// A client frame's bytes; masked with 0A 0B 0C 0D unless told.
private func clientFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, masked: Bool = true) -> [UInt8] {
    let mask: [UInt8] = [0x0A, 0x0B, 0x0C, 0x0D]
    let maskBit: UInt8 = masked ? 0x80 : 0
    var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
    if payload.count < 126 {
        out.append(maskBit | UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
        out += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
        out.append(maskBit | 127)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((payload.count >> shift) & 0xFF)) }
    }
    if masked { out += mask }
    for (i, byte) in payload.enumerated() { out.append(masked ? byte ^ mask[i % 4] : byte) }
    return out
}

/// A frame as compared here: the header's first byte, whether it was masked, the unmasked payload.
private struct Seen: Equatable {
    var firstByte: UInt8
    var masked: Bool
    var payload: [UInt8]
}

private func seen(_ frame: ClientFrame) -> Seen {
    Seen(firstByte: frame.firstByte, masked: frame.masked, payload: Array(frame.payload.readableBytesView))
}

/// Feeds `chunks` as reads; returns the frames and the error that stopped the reader, if any.
private func read(_ chunks: [[UInt8]], maxFrameSize: Int, reader: inout FrameReader) -> ([Seen], FrameReader.Error?) {
    var buffers = PayloadBuffers(count: 2)
    var frames: [Seen] = []
    for chunk in chunks {
        reader.receive(ByteBuffer(bytes: chunk), buffers: &buffers, allocator: ByteBufferAllocator())
        do throws(FrameReader.Error) {
            while let frame = try reader.next() { frames.append(seen(frame)) }
        } catch {
            return (frames, error)
        }
        reader.endRead(buffers: &buffers, allocator: ByteBufferAllocator())
    }
    return (frames, nil)
}

private func read(_ chunks: [[UInt8]], maxFrameSize: Int = 1 << 20) -> ([Seen], FrameReader.Error?) {
    var reader = FrameReader(maxFrameSize: maxFrameSize)
    return read(chunks, maxFrameSize: maxFrameSize, reader: &reader)
}

/// NIO's `ByteToMessageHandler(WebSocketFrameDecoder)` on the same reads, for the differential test.
private final class Collector: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    var frames: [Seen] = []
    var error: Error?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        self.frames.append(seen(ClientFrame(frame)))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if self.error == nil { self.error = error }
    }
}

private func readWithNIO(_ chunks: [[UInt8]], maxFrameSize: Int) throws -> ([Seen], NIOWebSocketError?) {
    let channel = EmbeddedChannel()
    let collector = Collector()
    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)))
    try channel.pipeline.syncOperations.addHandler(collector)
    for chunk in chunks {
        try channel.writeInbound(ByteBuffer(bytes: chunk))
        if collector.error != nil { break }
    }
    _ = try? channel.finish()
    return (collector.frames, collector.error as? NIOWebSocketError)
}

@Suite("FrameReader: client bytes to frames (RFC 6455 §5.2)")
struct FrameReaderTests {
    @Test func framesOfOneReadAndFramesSplitByteByByte() {
        var reader = FrameReader(maxFrameSize: 1 << 16)
        let (first, error) = read([clientFrame(0x1, Array("one".utf8)) + clientFrame(0x2, [1, 2, 3]) + clientFrame(0x9, [])],
                                  maxFrameSize: 1 << 16, reader: &reader)
        #expect(error == nil)
        #expect(first.map(\.payload) == [Array("one".utf8), [1, 2, 3], []])
        #expect(first.map(\.firstByte) == [0x81, 0x82, 0x89])
        #expect(first.allSatisfy { $0.masked })
        let (split, _) = read(clientFrame(0x1, Array("split".utf8)).map { [$0] }, maxFrameSize: 1 << 16, reader: &reader)
        #expect(split.map(\.payload) == [Array("split".utf8)])
        #expect(reader.bufferedBytes == 0)
    }

    @Test func framesSayWhetherTheirPayloadIsAllASCII() {
        var reader = FrameReader(maxFrameSize: 1 << 16)
        var buffers = PayloadBuffers(count: 2)
        let long = Array(String(repeating: "ascii only, ", count: 20).utf8)
        var withHigh = long
        withHigh[137] = 0xC3
        // one read: ASCII, ASCII with one high byte, empty, unmasked ASCII (not scanned: unknown)
        let bytes = clientFrame(0x1, long) + clientFrame(0x1, withHigh) + clientFrame(0x1, []) + clientFrame(0x1, long, masked: false)
        reader.receive(ByteBuffer(bytes: bytes), buffers: &buffers, allocator: ByteBufferAllocator())
        var flags: [Bool] = []
        var payloads: [[UInt8]] = []
        while let frame = try? reader.next() {
            flags.append(frame.ascii)
            payloads.append(Array(frame.payload.readableBytesView))
        }
        reader.endRead(buffers: &buffers, allocator: ByteBufferAllocator())
        #expect(flags == [true, false, true, false])
        #expect(payloads == [long, withHigh, [], long])
        // a frame completed by a later read is scanned when it is complete
        let split = clientFrame(0x1, long)
        var late: [Bool] = []
        for part in [Array(split[..<50]), Array(split[50...])] {
            reader.receive(ByteBuffer(bytes: part), buffers: &buffers, allocator: ByteBufferAllocator())
            while let frame = try? reader.next() { late.append(frame.ascii) }
            reader.endRead(buffers: &buffers, allocator: ByteBufferAllocator())
        }
        #expect(late == [true])
    }

    @Test func unmaskedFramesAndEveryLengthEncoding() {
        for size in [0, 125, 126, 65_535, 65_536] {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let (frames, error) = read([clientFrame(0x2, payload, masked: false)])
            #expect(error == nil)
            #expect(frames == [Seen(firstByte: 0x82, masked: false, payload: payload)])
        }
    }

    @Test func aLargeFrameAcrossManyReadsHoldsOnlyItsOwnBytes() {
        var reader = FrameReader(maxFrameSize: 1 << 20)
        let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let bytes = clientFrame(0x2, payload) + clientFrame(0x1, Array("after".utf8))
        var frames: [Seen] = []
        for start in stride(from: 0, to: bytes.count, by: 1000) {
            let (got, error) = read([Array(bytes[start..<min(start + 1000, bytes.count)])], maxFrameSize: 1 << 20, reader: &reader)
            #expect(error == nil)
            frames += got
            // Between reads: the bytes of the incomplete frame, nothing more (its header is 14 bytes).
            let fed = min(start + 1000, bytes.count)
            #expect(reader.bufferedBytes == [fed, fed - (14 + payload.count), 0][frames.count])
        }
        #expect(frames.map(\.payload) == [payload, Array("after".utf8)])
    }

    @Test func aTooLongFrameIsAnErrorAtItsHeaderAndLaterBytesAreRefused() {
        var reader = FrameReader(maxFrameSize: 10)
        // The 16-bit length says 1,000: refused with the header, the payload never waited for.
        let (frames, error) = read([[0x82, 0x80 | 126, 0x03, 0xE8]], maxFrameSize: 10, reader: &reader)
        #expect(frames.isEmpty)
        #expect(error == .frameTooLong)
        #expect(reader.failed)
        var buffers = PayloadBuffers()
        reader.receive(ByteBuffer(bytes: clientFrame(0x1, [66])), buffers: &buffers, allocator: ByteBufferAllocator())
        #expect((try? reader.next()) == nil)
        #expect(reader.bufferedBytes == 0)
    }

    @Test func lengthLimitsAndControlFrameRules() {
        // 11 bytes against a limit of 10; the 64-bit length with its top bit set; control frames.
        #expect(read([clientFrame(0x1, Array(repeating: 65, count: 11))], maxFrameSize: 10).1 == .frameTooLong)
        #expect(read([clientFrame(0x1, Array(repeating: 65, count: 10))], maxFrameSize: 10).1 == nil)
        #expect(read([[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]]).1 == .frameTooLong)
        #expect(read([[0x82, 0xFF, 0, 0, 0, 0, 0, 0x20, 0, 0]], maxFrameSize: 1 << 20).1 == .frameTooLong)
        #expect(read([clientFrame(0x9, [1], fin: false)]).1 == .fragmentedControlFrame)
        #expect(read([clientFrame(0x8, Array(repeating: 0, count: 126))]).1 == .controlFrameTooLong)
        #expect(read([clientFrame(0xA, Array(repeating: 0, count: 125))]).1 == nil)
    }

    @Test func stopDropsWhatIsHeld() {
        var reader = FrameReader(maxFrameSize: 1 << 16)
        let (_, error) = read([Array(clientFrame(0x1, Array("partial".utf8)).prefix(5))], maxFrameSize: 1 << 16, reader: &reader)
        #expect(error == nil)
        #expect(reader.bufferedBytes == 5)
        reader.stop()
        #expect(reader.bufferedBytes == 0)
        var buffers = PayloadBuffers()
        reader.receive(ByteBuffer(bytes: clientFrame(0x1, [66])), buffers: &buffers, allocator: ByteBufferAllocator())
        #expect((try? reader.next()) == nil)
    }

    @Test func payloadsOutliveTheirReadAndABufferIsReusedOnlyOnceFree() {
        var reader = FrameReader(maxFrameSize: 1 << 16)
        var buffers = PayloadBuffers(count: 2)
        var kept: [ClientFrame] = []
        // Each read's payloads are kept (as events in the queue would be) for four reads.
        for round in 0..<40 {
            let text = String(repeating: Character(UnicodeScalar(UInt8(65 + round % 26))), count: 50 + round)
            reader.receive(ByteBuffer(bytes: clientFrame(0x1, Array(text.utf8)) + clientFrame(0x2, [UInt8(round)])),
                           buffers: &buffers, allocator: ByteBufferAllocator())
            while let frame = try? reader.next() { kept.append(frame) }
            reader.endRead(buffers: &buffers, allocator: ByteBufferAllocator())
            #expect(buffers.kept <= 2)
            if kept.count > 8 { kept.removeFirst(2) }
            // Every payload still held reads as it was sent: no reuse overwrote it.
            for (i, frame) in kept.enumerated() where i % 2 == 1 {
                let r = round - (kept.count - 1 - i) / 2
                #expect(Array(frame.payload.readableBytesView) == [UInt8(r)])
                let expected = String(repeating: Character(UnicodeScalar(UInt8(65 + r % 26))), count: 50 + r)
                #expect(String(buffer: kept[i - 1].payload) == expected)
            }
        }
    }

    /// Random frames, some breaking a rule, cut at random points: the same frames in the same order
    /// and the same error as NIO's `ByteToMessageHandler(WebSocketFrameDecoder)` for the same reads.
    @Test func sameFramesAndErrorsAsNIOsDecoder() throws {
        var rng = SystemRandomNumberGenerator()
        let maxFrameSize = 1 << 17
        for _ in 0..<200 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let size = [0, 1, 125, 126, 200, 65_535, 65_536, 70_000, 140_000].randomElement(using: &rng)!
                let seed = Int.random(in: 1...255, using: &rng)
                let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* seed &+ seed) }
                let opcode: UInt8 = [0x1, 0x2, 0x0, 0x3, 0x8, 0x9, 0xA, 0xB].randomElement(using: &rng)!
                let flags: UInt8 = [0, 0x40, 0x70].randomElement(using: &rng)!
                var frame = clientFrame(opcode, payload, fin: Bool.random(using: &rng), masked: Int.random(in: 0..<8, using: &rng) > 0)
                frame[0] |= flags
                bytes += frame
            }
            var chunks: [[UInt8]] = []
            var i = 0
            while i < bytes.count {
                let n = min(bytes.count - i, [1, 7, 100, 1024, 4096, 65_536].randomElement(using: &rng)!)
                chunks.append(Array(bytes[i..<(i + n)]))
                i += n
            }
            let (ours, ourError) = read(chunks, maxFrameSize: maxFrameSize)
            let (nios, nioError) = try readWithNIO(chunks, maxFrameSize: maxFrameSize)
            #expect(ours == nios)
            switch (ourError, nioError) {
            case (nil, nil), (.frameTooLong, .invalidFrameLength), (.fragmentedControlFrame, .fragmentedControlFrame),
                 (.controlFrameTooLong, .multiByteControlFrameLength):
                break
            default:
                Issue.record("errors differ: ours \(String(describing: ourError)), NIO's \(String(describing: nioError))")
            }
        }
    }
}
