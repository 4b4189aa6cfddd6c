import NIOCore
import Testing
import WavelaneProtocol

/// Where a buffer's readable bytes are in memory.
private func address(_ buffer: ByteBuffer) -> UInt {
    buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
}

private func frame(_ size: Int, _ tag: UInt8 = 0) -> ByteBuffer {
    ByteBuffer(bytes: [UInt8](repeating: tag, count: size))
}

private func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

private func written(_ writes: Outbox.Writes) -> [[UInt8]] {
    switch writes {
    case .none: return []
    case .one(let a): return [bytes(a)]
    case .two(let a, let b): return [bytes(a), bytes(b)]
    }
}

struct OutboxTests {
    @Test func writableSocketWritesNow() {
        var outbox = Outbox(maxQueuedBytes: 100)
        #expect(outbox.send(frame(10), priority: .low, key: nil, writable: true, draining: false) == .writeNow)
        #expect(outbox.isQueueEmpty)
    }

    @Test func unwritableSocketQueues() {
        var outbox = Outbox(maxQueuedBytes: 100)
        #expect(outbox.send(frame(10, 1), priority: .normal, key: nil, writable: false, draining: false) == .queued(dropped: SendQueue.Dropped()))
        // Once something is queued, later frames queue behind it even when the socket takes more.
        #expect(outbox.send(frame(10, 2), priority: .normal, key: nil, writable: true, draining: false) == .queued(dropped: SendQueue.Dropped()))
        #expect(outbox.queuedBytes == 20)
        #expect(outbox.queuedCount == 2)
        #expect(outbox.nextQueued().map(bytes) == [UInt8](repeating: 1, count: 10))
        #expect(outbox.nextQueued().map(bytes) == [UInt8](repeating: 2, count: 10))
        #expect(outbox.nextQueued() == nil)
        #expect(outbox.isQueueEmpty)
    }

    @Test func drainingQueuesEvenWhenWritable() {
        var outbox = Outbox(maxQueuedBytes: 100)
        #expect(outbox.send(frame(10), priority: .normal, key: nil, writable: true, draining: true) == .queued(dropped: SendQueue.Dropped()))
    }

    @Test func coalescingKeyReplacesQueued() {
        var outbox = Outbox(maxQueuedBytes: 100)
        _ = outbox.send(frame(10, 1), priority: .normal, key: "k", writable: false, draining: false)
        #expect(outbox.send(frame(12, 2), priority: .normal, key: "k", writable: false, draining: false) == .coalesced)
        #expect(outbox.queuedBytes == 12)
        #expect(outbox.takeDropReport() == nil)
    }

    @Test func dropsAreCountedOnceAndReportedOnce() {
        var outbox = Outbox(maxQueuedBytes: 20)
        _ = outbox.send(frame(10), priority: .low, key: nil, writable: false, draining: false)
        _ = outbox.send(frame(10), priority: .background, key: nil, writable: false, draining: false)
        guard case .queued(let dropped) = outbox.send(frame(10), priority: .high, key: nil, writable: false, draining: false) else {
            Issue.record("expected queued")
            return
        }
        #expect(dropped.count == 1)
        #expect(dropped.byPriority[Int(Priority.background.rawValue)] == 1)
        _ = outbox.send(frame(10), priority: .high, key: nil, writable: false, draining: false)  // drops the low one
        let report = outbox.takeDropReport()
        #expect(report?.count == 2)
        #expect(report?.bytes == 20)
        #expect(report?.byPriority == [0, 0, 0, 1, 1])
        #expect(outbox.takeDropReport() == nil)
    }

    @Test func overflowWhenOnlyCriticalRemains() {
        var outbox = Outbox(maxQueuedBytes: 15)
        _ = outbox.send(frame(10), priority: .normal, key: nil, writable: false, draining: false)
        // The first critical frame fits once the normal one is dropped...
        guard case .queued(let dropped) = outbox.send(frame(10), priority: .critical, key: nil, writable: false, draining: false) else {
            Issue.record("expected queued")
            return
        }
        #expect(dropped.count == 1)
        #expect(dropped.byPriority[Int(Priority.normal.rawValue)] == 1)
        // ...the second cannot fit: nothing droppable is left.
        guard case .overflow(let none) = outbox.send(frame(10), priority: .critical, key: nil, writable: false, draining: false) else {
            Issue.record("expected overflow")
            return
        }
        #expect(none.isEmpty)
        #expect(outbox.queuedBytes == 20)
        #expect(outbox.unreportedDrops.count == 1)
    }

    @Test func smallFramesAreCoalescedUntilSpilled() {
        var outbox = Outbox(maxQueuedBytes: 100)
        #expect(written(outbox.write(frame(3, 1))).isEmpty)
        #expect(written(outbox.write(frame(2, 2))).isEmpty)
        #expect(outbox.bufferedBytes == 5)
        #expect(outbox.spill().map(bytes) == [1, 1, 1, 2, 2])
        #expect(outbox.spill() == nil)
        #expect(outbox.bufferedBytes == 0)
    }

    @Test func largeFrameGoesAfterWhatWasCoalescedWithoutCopy() {
        var outbox = Outbox(maxQueuedBytes: 100)
        _ = outbox.write(frame(3, 1))
        let large = frame(Outbox.coalesceMaxFrame + 1, 9)
        #expect(written(outbox.write(large)) == [[1, 1, 1], bytes(large)])
        #expect(written(outbox.write(large)) == [bytes(large)])
        // A frame of exactly the limit is still coalesced.
        #expect(written(outbox.write(frame(Outbox.coalesceMaxFrame))).isEmpty)
    }

    @Test func fullCoalescingBufferIsHandedOver() {
        var outbox = Outbox(maxQueuedBytes: 100)
        let count = Outbox.coalesceLimit / Outbox.coalesceMaxFrame
        for _ in 1..<count { #expect(written(outbox.write(frame(Outbox.coalesceMaxFrame))).isEmpty) }
        let out = written(outbox.write(frame(Outbox.coalesceMaxFrame)))
        #expect(out.count == 1)
        #expect(out.first?.count == Outbox.coalesceLimit)
        #expect(outbox.bufferedBytes == 0)
    }

    @Test func slowConsumerRule() {
        var outbox = Outbox(maxQueuedBytes: 100)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(!outbox.isSlowConsumer(now: t0 + .seconds(100), timeout: .seconds(1)))
        outbox.writabilityChanged(writable: false, now: t0)
        outbox.writabilityChanged(writable: false, now: t0 + .milliseconds(500))  // the first time counts
        #expect(outbox.unwritableSince == t0)
        #expect(!outbox.isSlowConsumer(now: t0 + .seconds(1), timeout: .seconds(1)))
        #expect(outbox.isSlowConsumer(now: t0 + .milliseconds(1001), timeout: .seconds(1)))
        outbox.writabilityChanged(writable: true, now: t0 + .seconds(2))
        #expect(outbox.unwritableSince == nil)
        #expect(!outbox.isSlowConsumer(now: t0 + .seconds(10), timeout: .seconds(1)))
    }

    @Test func removeAllReturnsQueuedBytes() {
        var outbox = Outbox(maxQueuedBytes: 100)
        _ = outbox.send(frame(10), priority: .normal, key: nil, writable: false, draining: false)
        _ = outbox.send(frame(7), priority: .low, key: nil, writable: false, draining: false)
        _ = outbox.write(frame(3))
        #expect(outbox.removeAll() == 17)
        #expect(outbox.isQueueEmpty)
        #expect(outbox.spill() == nil)
    }

    /// Drains the queue the way the connection does (as if the socket took everything) and returns
    /// the bytes handed to the channel, in order, plus the frames and bytes reported.
    private func drainAll(_ outbox: inout Outbox) -> (out: [UInt8], buffers: Int, frames: Int, bytes: Int) {
        var out: [UInt8] = []
        var buffers = 0
        var frames = 0
        var total = 0
        while !outbox.isQueueEmpty {
            let (writes, f, b) = outbox.writeQueued()
            for chunk in written(writes) {
                out += chunk
                buffers += 1
            }
            frames += f
            total += b
        }
        if let rest = outbox.spill() {
            out += bytes(rest)
            buffers += 1
        }
        return (out, buffers, frames, total)
    }

    @Test func writeQueuedKeepsPriorityAndFIFOOrderAcrossRunsPlainAndLargeFrames() {
        var outbox = Outbox(maxQueuedBytes: 1 << 20)
        var writer = FrameBlockWriter()
        var expectedNormal: [UInt8] = []
        for i in 0..<40 {  // a run of 40 publications
            let f = frame(100, UInt8(i))
            _ = outbox.send(f, priority: .normal, key: nil, origin: writer.append(f), writable: false, draining: false)
            expectedNormal += bytes(f)
        }
        let large = frame(Outbox.coalesceMaxFrame + 500, 200)
        _ = outbox.send(large, priority: .normal, key: nil, writable: false, draining: false)
        let plain = frame(10, 201)
        _ = outbox.send(plain, priority: .normal, key: nil, writable: false, draining: false)
        let urgent = frame(20, 202)
        _ = outbox.send(urgent, priority: .high, key: nil, writable: false, draining: false)
        let expected = bytes(urgent) + expectedNormal + bytes(large) + bytes(plain)
        let drained = drainAll(&outbox)
        #expect(drained.out == expected)
        #expect(drained.frames == 43)
        #expect(drained.bytes == expected.count)
        #expect(outbox.queuedBytes == 0)
    }

    @Test func aQueuedRunOfSliceMinGoesWholeAsASliceOfItsBlock() {
        var writer = FrameBlockWriter()
        let frames = (0..<60).map { frame(100, UInt8($0)) }  // 6,000 bytes, one block
        let origins = frames.map { writer.append($0)! }
        var outboxes = [Outbox(maxQueuedBytes: 1 << 20), Outbox(maxQueuedBytes: 1 << 20)]
        var storages: [UInt] = []
        for i in outboxes.indices {
            for (f, o) in zip(frames, origins) {
                _ = outboxes[i].send(f, priority: .normal, key: nil, origin: o, writable: false, draining: false)
            }
            #expect(outboxes[i].queuedEntries == 1)
            let (writes, n, moved) = outboxes[i].writeQueued()
            guard case .one(let slice) = writes else {
                Issue.record("one buffer expected")
                return
            }
            #expect(bytes(slice) == frames.flatMap(bytes))
            #expect(n == 60 && moved == 6000)
            #expect(outboxes[i].queuedBytes == 0 && outboxes[i].isQueueEmpty)
            storages.append(address(slice))
        }
        // Both connections write the block's own bytes: no copy each.
        #expect(storages[0] == storages[1])
    }

    @Test func aQueuedRunBelowSliceMinIsCopiedIntoTheCoalescingBuffer() {
        var outbox = Outbox(maxQueuedBytes: 1 << 20)
        var writer = FrameBlockWriter()
        let frames = (0..<30).map { frame(100, UInt8($0)) }  // 3,000 bytes
        for f in frames { _ = outbox.send(f, priority: .normal, key: nil, origin: writer.append(f), writable: false, draining: false) }
        let (writes, n, moved) = outbox.writeQueued()
        #expect(written(writes).isEmpty)  // still room in the coalescing buffer
        #expect(n == 30 && moved == 3000)
        #expect(outbox.spill().map(bytes) == frames.flatMap(bytes))
    }

    @Test func writeRunSlicesFromSliceMinAfterWhatWasCoalesced() {
        var outbox = Outbox(maxQueuedBytes: 1 << 20)
        var writer = FrameBlockWriter()
        let frames = (0..<50).map { frame(100, UInt8($0)) }
        let first = writer.append(frames[0])!
        for f in frames.dropFirst() { _ = writer.append(f) }
        // 30 frames, 3,000 bytes: copied.
        var (writes, n, moved) = outbox.writeRun(first.block, 0, 30)
        #expect(written(writes).isEmpty && n == 30 && moved == 3000)
        _ = outbox.write(frame(10, 0xEE))  // something of the connection's own in between
        // 20 frames would be 2,000 bytes: copied too.
        (writes, n, moved) = outbox.writeRun(first.block, 30, 50)
        #expect(written(writes).isEmpty && n == 20)
        let copied = outbox.spill().map(bytes)
        #expect(copied == frames[0..<30].flatMap(bytes) + bytes(frame(10, 0xEE)) + frames[30..<50].flatMap(bytes))
        // 50 frames, 5,000 bytes: the coalesced frame, then one slice of the block.
        _ = outbox.write(frame(10, 0xAB))
        (writes, n, moved) = outbox.writeRun(first.block, 0, 50)
        #expect(written(writes) == [bytes(frame(10, 0xAB)), frames.flatMap(bytes)])
        #expect(n == 50 && moved == 5000)
        #expect(outbox.bufferedBytes == 0)
    }

    @Test func writeQueuedHandsLargeFramesOverOneByOne() {
        var outbox = Outbox(maxQueuedBytes: 1 << 20)
        let large = (0..<3).map { frame(Outbox.coalesceMaxFrame + 10, UInt8($0)) }
        for f in large { _ = outbox.send(f, priority: .normal, key: nil, writable: false, draining: false) }
        for f in large {
            let (writes, frames, moved) = outbox.writeQueued()
            #expect(written(writes) == [bytes(f)])
            #expect(frames == 1 && moved == f.readableBytes)
            #expect(outbox.spill() == nil)
        }
        #expect(outbox.isQueueEmpty)
    }

    @Test func nextFrameSizeFollowsPriorityAndRuns() {
        var queue = SendQueue(maxBytes: 1 << 20)
        var writer = FrameBlockWriter()
        #expect(queue.nextFrameSize == nil)
        let small = frame(7, 1)
        _ = queue.enqueue(small, priority: .low, origin: writer.append(small))
        #expect(queue.nextFrameSize == 7)
        _ = queue.enqueue(frame(3000, 2), priority: .high)
        #expect(queue.nextFrameSize == 3000)
        _ = queue.dequeue()
        #expect(queue.nextFrameSize == 7)
        _ = queue.dequeue()
        #expect(queue.nextFrameSize == nil)
    }
}
