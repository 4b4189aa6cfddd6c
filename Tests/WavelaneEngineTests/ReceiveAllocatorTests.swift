// Tests of Sources/WavelaneEngine/ReceiveAllocator.swift: NIO's adaptive receive-buffer sizes,
// without a heap box per channel.

import NIOCore
import Testing
@testable import WavelaneEngine

@Suite("ReceiveAllocator")
struct ReceiveAllocatorTests {
    @Test func fitsAnExistentialsInlineBuffer() {
        #expect(ReceiveAllocator.fitsInline)
        #expect(ServerCore.receiveAllocator.nextBufferSize() == 512)
    }

    @Test func sizesAsNIOsAdaptiveAllocator() {
        var ours = ReceiveAllocator(initial: 512)
        var nio = AdaptiveRecvByteBufferAllocator(minimum: ReceiveAllocator.minimum, initial: 512,
                                                  maximum: ReceiveAllocator.maximum)
        var generator = SystemRandomNumberGenerator()
        // Runs of full reads (up to the maximum), small reads (down to the minimum) and mixed ones.
        for step in 0..<5_000 {
            let size = nio.nextBufferSize()!
            let read: Int
            switch (step / 50) % 3 {
            case 0: read = size
            case 1: read = Int.random(in: 1...max(1, size / 2), using: &generator)
            default: read = Int.random(in: 1...size, using: &generator)
            }
            let (oursMayGrow, nioMayGrow) = (ours.record(actualReadBytes: read), nio.record(actualReadBytes: read))
            #expect(oursMayGrow == nioMayGrow)
            #expect(ours.nextBufferSize() == nio.nextBufferSize())
            #expect(ours.buffer(allocator: ByteBufferAllocator()).capacity == nio.buffer(allocator: ByteBufferAllocator()).capacity)
        }
    }

    @Test func staysWithinItsBounds() {
        var allocator = ReceiveAllocator(initial: 512)
        for _ in 0..<40 { _ = allocator.record(actualReadBytes: 1 << 20) }
        #expect(allocator.nextBufferSize() == ReceiveAllocator.maximum)
        let mayGrow = allocator.record(actualReadBytes: 1 << 20)
        #expect(!mayGrow)
        for _ in 0..<40 { _ = allocator.record(actualReadBytes: 1) }
        #expect(allocator.nextBufferSize() == ReceiveAllocator.minimum)
    }

    @Test func aFixedOneNeverChangesSize() {
        var allocator = ReceiveAllocator.fixed(512)
        #expect(ReceiveAllocator.fitsInline)
        for read in [512, 512, 512, 1, 1, 1, 512] {
            let mayGrow = allocator.record(actualReadBytes: read)
            #expect(!mayGrow)
            #expect(allocator.nextBufferSize() == 512)
        }
        #expect(ServerCore.handshakeReceiveAllocator.nextBufferSize() == 512)
    }
}
