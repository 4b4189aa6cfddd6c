import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
@testable import WavelaneEngine

/// Behind the reader: the frames and errors it passed on; optionally closes the channel at a frame.
private final class Collector: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame

    var frames: [(opcode: WebSocketOpcode, fin: Bool, payload: [UInt8])] = []
    var errors: [Error] = []
    var closeAtFrame: Int?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        let payload = Array(frame.unmaskedData.readableBytesView)
        self.frames.append((frame.opcode, frame.fin, payload))
        if self.frames.count == self.closeAtFrame { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.errors.append(error)
    }
}

/// `reader` (a `FrameReader` or NIO's `ByteToMessageHandler`) and a collector in an `EmbeddedChannel`.
private func pipeline(_ reader: ChannelHandler) throws -> (EmbeddedChannel, Collector) {
    let channel = EmbeddedChannel()
    let collector = Collector()
    try channel.pipeline.syncOperations.addHandler(reader)
    try channel.pipeline.syncOperations.addHandler(collector)
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    return (channel, collector)
}

/// A masked client frame.
private func clientFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
    let mask: [UInt8] = [0x0A, 0x0B, 0x0C, 0x0D]
    var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
    if payload.count < 126 {
        out.append(0x80 | UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
        out += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
        out.append(0x80 | 127)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((payload.count >> shift) & 0xFF)) }
    }
    out += mask
    for (i, byte) in payload.enumerated() { out.append(byte ^ mask[i % 4]) }
    return out
}

private func feed(_ channel: EmbeddedChannel, _ chunks: [[UInt8]]) throws {
    for chunk in chunks { try channel.writeInbound(ByteBuffer(bytes: chunk)) }
}

@Suite("FrameReader: NIO's frame decoder without ByteToMessageHandler")
struct FrameReaderTests {
    @Test func framesOfOneReadAndFramesSplitByteByByte() throws {
        let (channel, out) = try pipeline(FrameReader(maxFrameSize: 1 << 16))
        try feed(channel, [clientFrame(0x1, Array("one".utf8)) + clientFrame(0x2, [1, 2, 3]) + clientFrame(0x9, [])])
        #expect(out.frames.map(\.payload) == [Array("one".utf8), [1, 2, 3], []])
        #expect(out.frames.map(\.opcode) == [.text, .binary, .ping])
        try feed(channel, clientFrame(0x1, Array("split".utf8)).map { [$0] })
        #expect(out.frames.last?.payload == Array("split".utf8))
        #expect(out.frames.count == 4)
        #expect(out.errors.isEmpty)
    }

    @Test func aLargeFrameAcrossManyReads() throws {
        let (channel, out) = try pipeline(FrameReader(maxFrameSize: 1 << 20))
        let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let bytes = clientFrame(0x2, payload) + clientFrame(0x1, Array("after".utf8))
        try feed(channel, stride(from: 0, to: bytes.count, by: 1000).map { Array(bytes[$0..<min($0 + 1000, bytes.count)]) })
        #expect(out.frames.count == 2)
        #expect(out.frames.first?.payload == payload)
        #expect(out.frames.last?.payload == Array("after".utf8))
    }

    @Test func aTooLongFrameIsAnErrorAndLaterBytesAreRefused() throws {
        let (channel, out) = try pipeline(FrameReader(maxFrameSize: 10))
        try feed(channel, [clientFrame(0x1, Array(repeating: 65, count: 20))])
        #expect(out.frames.isEmpty)
        #expect(out.errors.count == 1)
        #expect(out.errors.first as? NIOWebSocketError == .invalidFrameLength)
        try feed(channel, [clientFrame(0x1, [66])])
        #expect(out.frames.isEmpty)
        #expect(out.errors.count == 2)
        if case .dataReceivedInErrorState = out.errors.last as? ByteToMessageDecoderError {} else {
            Issue.record("expected dataReceivedInErrorState, got \(String(describing: out.errors.last))")
        }
    }

    @Test func noFramesAfterTheConsumerClosed() throws {
        let (channel, out) = try pipeline(FrameReader(maxFrameSize: 1 << 16))
        out.closeAtFrame = 1
        try feed(channel, [clientFrame(0x8, [0x03, 0xE8]) + clientFrame(0x1, Array("late".utf8))])
        #expect(out.frames.count == 1)
        #expect(!channel.isActive)
    }

    /// Random frames cut at random points: the same frames, in the same order, as NIO's
    /// `ByteToMessageHandler(WebSocketFrameDecoder)` gives for the same reads.
    @Test func sameFramesAsByteToMessageHandler() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let size = [0, 1, 125, 126, 200, 65_535, 65_536, 70_000].randomElement(using: &rng)!
                let seed = Int.random(in: 1...255, using: &rng)
                let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* seed &+ seed) }
                let opcode: UInt8 = [0x1, 0x2, 0x0].randomElement(using: &rng)!
                bytes += clientFrame(opcode, payload, fin: Bool.random(using: &rng))
            }
            var chunks: [[UInt8]] = []
            var i = 0
            while i < bytes.count {
                let n = min(bytes.count - i, [1, 7, 100, 1024, 4096, 65_536].randomElement(using: &rng)!)
                chunks.append(Array(bytes[i..<(i + n)]))
                i += n
            }
            let (ours, oursOut) = try pipeline(FrameReader(maxFrameSize: 1 << 17))
            let (nios, niosOut) = try pipeline(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 17)))
            try feed(ours, chunks)
            try feed(nios, chunks)
            #expect(oursOut.frames.count == niosOut.frames.count)
            #expect(oursOut.frames.map(\.payload) == niosOut.frames.map(\.payload))
            #expect(oursOut.frames.map(\.opcode) == niosOut.frames.map(\.opcode))
            #expect(oursOut.frames.map(\.fin) == niosOut.frames.map(\.fin))
            #expect(oursOut.errors.isEmpty && niosOut.errors.isEmpty)
        }
    }
}
