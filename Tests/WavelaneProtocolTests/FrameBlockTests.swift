import NIOCore
import Testing
import WavelaneProtocol

/// Where a buffer's readable bytes are in memory.
private func address(_ buffer: ByteBuffer) -> UInt {
    buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
}

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

    @Test func aSliceSharesTheBlocksBytesAndLaterFramesLeaveItAlone() {
        var writer = FrameBlockWriter()
        let first = writer.append(frame(10, 1))!
        _ = writer.append(frame(20, 2))
        let slice = first.block.slice(0..<2)
        #expect(Array(slice.readableBytesView) == [UInt8](repeating: 1, count: 10) + [UInt8](repeating: 2, count: 20))
        // Frames appended after the slice was taken do not change it (they go past its end).
        for i in 0..<50 { _ = writer.append(frame(100, UInt8(3 + i))) }
        #expect(Array(slice.readableBytesView) == [UInt8](repeating: 1, count: 10) + [UInt8](repeating: 2, count: 20))
        let later = first.block.slice(2..<4)
        #expect(Array(later.readableBytesView) == [UInt8](repeating: 3, count: 100) + [UInt8](repeating: 4, count: 100))
        // One memory for both: the slices are views, not copies.
        #expect(address(later) == address(slice) + 30)
        #expect(first.block.size(of: 0..<4) == 230)
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
