import NIOCore
import Testing
import WavelaneProtocol

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
}
