import NIOCore
import Testing
import WavelaneProtocol

private func frame(_ size: Int, _ tag: UInt8) -> ByteBuffer {
    ByteBuffer(bytes: [UInt8](repeating: tag, count: size))
}

struct FrameBlockTests {
    @Test func writerFillsABlockThenOpensTheNext() {
        var writer = FrameBlockWriter()
        var origins: [FrameOrigin] = []
        for i in 0..<(FrameBlock.capacity + 3) { origins.append(writer.append(frame(10, UInt8(i & 0xFF)))!) }
        #expect(origins[0].index == 0)
        #expect(origins[FrameBlock.capacity - 1].index == FrameBlock.capacity - 1)
        #expect(origins[FrameBlock.capacity - 1].block === origins[0].block)
        #expect(origins[FrameBlock.capacity].block !== origins[0].block)
        #expect(origins[FrameBlock.capacity].index == 0)
        for (i, origin) in origins.enumerated() {
            #expect(origin.block[origin.index] == frame(10, UInt8(i & 0xFF)))
        }
    }

    @Test func aBlockClosesAtItsByteLimitAndLargeFramesStayOut() {
        var writer = FrameBlockWriter()
        #expect(writer.append(frame(FrameBlock.maxFrame + 1, 1)) == nil)
        let perBlock = (FrameBlock.byteLimit + FrameBlock.maxFrame - 1) / FrameBlock.maxFrame
        let first = writer.append(frame(FrameBlock.maxFrame, 0))!
        var last = first
        for _ in 1..<perBlock { last = writer.append(frame(FrameBlock.maxFrame, 0))! }
        #expect(last.block === first.block)
        let next = writer.append(frame(1, 2))!
        #expect(next.block !== first.block)
        #expect(next.index == 0)
    }

    @Test func framesOutliveTheWriterWhileReferenced() {
        var writer: FrameBlockWriter? = FrameBlockWriter()
        let origin = writer!.append(frame(5, 7))!
        writer = nil
        #expect(origin.block[origin.index] == frame(5, 7))
    }
}
