import NIOCore
import Testing
import WavelaneProtocol

private func frame(_ size: Int, _ tag: UInt8 = 0) -> ByteBuffer {
    ByteBuffer(bytes: [UInt8](repeating: tag, count: size))
}

private func tags(_ queue: inout SendQueue) -> [UInt8] {
    var out: [UInt8] = []
    while let item = queue.dequeue() { out.append(item.frame.getInteger(at: item.frame.readerIndex)!) }
    return out
}

struct SendQueueTests {
    @Test func priorityOrderAndNames() {
        #expect(Priority.critical < Priority.high)
        #expect(Priority.high < Priority.normal)
        #expect(Priority.normal < Priority.low)
        #expect(Priority.low < Priority.background)
        #expect(Priority.allCases.map(\.name) == ["critical", "high", "normal", "low", "background"])
    }

    @Test func dequeuesHighestPriorityFirstFIFOWithin() {
        var queue = SendQueue(maxBytes: 1000)
        #expect(queue.enqueue(frame(10, 1), priority: .low) == .queued(SendQueue.Dropped()))
        _ = queue.enqueue(frame(10, 2), priority: .normal)
        _ = queue.enqueue(frame(10, 3), priority: .critical)
        _ = queue.enqueue(frame(10, 4), priority: .normal)
        _ = queue.enqueue(frame(10, 5), priority: .background)
        _ = queue.enqueue(frame(10, 6), priority: .high)
        #expect(queue.count == 6)
        #expect(queue.bytes == 60)
        #expect(tags(&queue) == [3, 6, 2, 4, 1, 5])
        #expect(queue.isEmpty)
        #expect(queue.bytes == 0)
        #expect(queue.dequeue() == nil)
    }

    @Test func fullQueueDropsLowestPriorityOldestFirst() {
        var queue = SendQueue(maxBytes: 30)
        _ = queue.enqueue(frame(10, 1), priority: .low)
        _ = queue.enqueue(frame(10, 2), priority: .background)
        _ = queue.enqueue(frame(10, 3), priority: .low)
        let outcome = queue.enqueue(frame(10, 4), priority: .normal)
        var expected = SendQueue.Dropped()
        expected.count = 1
        expected.bytes = 10
        expected.byPriority[Int(Priority.background.rawValue)] = 1
        #expect(outcome == .queued(expected))
        let next = queue.enqueue(frame(10, 5), priority: .high)
        var expectedLow = SendQueue.Dropped()
        expectedLow.count = 1
        expectedLow.bytes = 10
        expectedLow.byPriority[Int(Priority.low.rawValue)] = 1
        #expect(next == .queued(expectedLow))  // the older low one (tag 1)
        #expect(queue.bytes == 30)
        #expect(tags(&queue) == [5, 4, 3])
    }

    @Test func aMessageBelowEverythingQueuedDropsItself() {
        var queue = SendQueue(maxBytes: 20)
        _ = queue.enqueue(frame(10, 1), priority: .high)
        _ = queue.enqueue(frame(10, 2), priority: .high)
        guard case .queued(let dropped) = queue.enqueue(frame(10, 3), priority: .background) else {
            Issue.record("expected queued")
            return
        }
        #expect(dropped.count == 1)
        #expect(dropped.byPriority[Int(Priority.background.rawValue)] == 1)
        #expect(tags(&queue) == [1, 2])
    }

    @Test func criticalIsNeverDroppedOverflowInstead() {
        var queue = SendQueue(maxBytes: 20)
        _ = queue.enqueue(frame(10, 1), priority: .normal)
        _ = queue.enqueue(frame(10, 2), priority: .critical)
        guard case .overflow(let dropped) = queue.enqueue(frame(15, 3), priority: .critical) else {
            Issue.record("expected overflow")
            return
        }
        #expect(dropped.count == 1)
        #expect(dropped.bytes == 10)
        #expect(dropped.byPriority[Int(Priority.normal.rawValue)] == 1)
        #expect(queue.bytes == 25)
        #expect(tags(&queue) == [2, 3])
    }

    @Test func keyReplacesQueuedMessageInPlace() {
        var queue = SendQueue(maxBytes: 1000)
        _ = queue.enqueue(frame(10, 1), priority: .normal, key: "cursor")
        _ = queue.enqueue(frame(10, 2), priority: .normal)
        #expect(queue.enqueue(frame(25, 3), priority: .normal, key: "cursor") == .coalesced)
        #expect(queue.count == 2)
        #expect(queue.bytes == 35)
        // The replacement keeps the replaced message's place.
        #expect(tags(&queue) == [3, 2])
    }

    @Test func keyCoalescesOnlyWithinItsPriority() {
        var queue = SendQueue(maxBytes: 1000)
        _ = queue.enqueue(frame(10, 1), priority: .low, key: "k")
        #expect(queue.enqueue(frame(10, 2), priority: .high, key: "k") == .queued(SendQueue.Dropped()))
        #expect(queue.enqueue(frame(10, 3), priority: .low, key: "other") == .queued(SendQueue.Dropped()))
        #expect(tags(&queue) == [2, 1, 3])
    }

    @Test func droppedMerges() {
        var a = SendQueue.Dropped()
        #expect(a.isEmpty)
        var b = SendQueue.Dropped()
        b.count = 2
        b.bytes = 30
        b.byPriority[1] = 2
        a.merge(b)
        a.merge(b)
        #expect(a.count == 4)
        #expect(a.bytes == 60)
        #expect(a.byPriority == [0, 4, 0, 0, 0])
        #expect(!a.isEmpty)
    }

    @Test func removeAllEmpties() {
        var queue = SendQueue(maxBytes: 100)
        _ = queue.enqueue(frame(10), priority: .normal)
        _ = queue.enqueue(frame(10), priority: .critical)
        queue.removeAll()
        #expect(queue.isEmpty)
        #expect(queue.bytes == 0)
        #expect(queue.count == 0)
        #expect(queue.dequeue() == nil)
    }

    // Runs of shared publication frames (FrameBlock): a backlog of consecutive publications is one
    // entry per block, delivered frame by frame in order, dropped frame by frame.
    @Test func consecutiveBlockFramesAreOneRun() {
        var writer = FrameBlockWriter()
        var queue = SendQueue(maxBytes: 1 << 20)
        var origins: [FrameOrigin] = []
        for i in 0..<100 {
            let f = frame(10, UInt8(i))
            let origin = writer.append(f)!
            origins.append(origin)
            #expect(queue.enqueue(f, priority: .normal, origin: origin) == .queued(SendQueue.Dropped()))
        }
        #expect(queue.entryCount == 1)
        #expect(queue.count == 100)
        #expect(queue.bytes == 1000)
        #expect(tags(&queue) == (0..<100).map { UInt8($0) })
        #expect(queue.bytes == 0)
        #expect(queue.entryCount == 0)
    }

    @Test func aGapAnotherPriorityOrAPlainFrameStartsANewEntry() {
        var writer = FrameBlockWriter()
        var queue = SendQueue(maxBytes: 1 << 20)
        let o = (0..<6).map { i in (frame(10, UInt8(i)), writer.append(frame(10, UInt8(i)))!) }
        _ = queue.enqueue(o[0].0, priority: .normal, origin: o[0].1)
        _ = queue.enqueue(o[1].0, priority: .normal, origin: o[1].1)
        _ = queue.enqueue(o[3].0, priority: .normal, origin: o[3].1)  // gap: 2 went elsewhere
        #expect(queue.entryCount == 2)
        _ = queue.enqueue(frame(10, 50), priority: .normal)  // a plain frame
        _ = queue.enqueue(o[4].0, priority: .normal, origin: o[4].1)  // not after 3 any more
        #expect(queue.entryCount == 4)
        _ = queue.enqueue(o[5].0, priority: .high, origin: o[5].1)
        #expect(queue.entryCount == 5)
        #expect(tags(&queue) == [5, 0, 1, 3, 50, 4])
    }

    @Test func dropsTakeTheOldestFramesOfARun() {
        var writer = FrameBlockWriter()
        var queue = SendQueue(maxBytes: 35)
        var last: SendQueue.Outcome = .coalesced
        for i in 0..<5 {
            let f = frame(10, UInt8(i))
            last = queue.enqueue(f, priority: .low, origin: writer.append(f)!)
        }
        var expected = SendQueue.Dropped()
        expected.count = 1
        expected.bytes = 10
        expected.byPriority[Int(Priority.low.rawValue)] = 1
        #expect(last == .queued(expected))
        #expect(queue.count == 3)
        #expect(queue.entryCount == 1)
        #expect(tags(&queue) == [2, 3, 4])
    }

    @Test func runsFollowTheSameOrderAsSingleFramesProperty() {
        // The same random sequence queued with and without origins dequeues identically.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var writer = FrameBlockWriter()
            var withRuns = SendQueue(maxBytes: 400)
            var plain = SendQueue(maxBytes: 400)
            var tag: UInt8 = 0
            for _ in 0..<Int.random(in: 1...60, using: &rng) {
                let f = frame(Int.random(in: 1...30, using: &rng), tag)
                tag &+= 1
                let priority = Priority(rawValue: UInt8.random(in: 1...4, using: &rng))!
                let origin = writer.append(f)!
                let skip = Bool.random(using: &rng) && Bool.random(using: &rng)
                if skip { continue }  // a publication this connection does not take
                #expect(withRuns.enqueue(f, priority: priority, origin: origin) == plain.enqueue(f, priority: priority))
                if Int.random(in: 0..<5, using: &rng) == 0 { #expect(withRuns.dequeue()?.frame == plain.dequeue()?.frame) }
            }
            #expect(withRuns.bytes == plain.bytes)
            #expect(tags(&withRuns) == tags(&plain))
        }
    }

    @Test func sparseFramesDoNotKeepABlockAliveEach() {
        // One queued frame per block (a rarely published topic among busy ones): runs are bounded
        // like the bytes (maxBytes / FrameBlock.byteLimit + 1), the rest is queued frame by frame.
        let maxBytes = 4 * FrameBlock.byteLimit
        var queue = SendQueue(maxBytes: maxBytes)
        var writer = FrameBlockWriter()
        var expected: [UInt8] = []
        for i in 0..<40 {
            let mine = frame(10, UInt8(i))
            let origin = writer.append(mine)!
            _ = queue.enqueue(mine, priority: .normal, origin: origin)
            expected.append(UInt8(i))
            // The rest of the block goes to other topics.
            while let other = writer.append(frame(FrameBlock.maxFrame, 0xEE)), other.block === origin.block {}
        }
        #expect(queue.runCount == maxBytes / FrameBlock.byteLimit + 1)
        #expect(queue.entryCount == 40)
        #expect(tags(&queue) == expected)
        #expect(queue.runCount == 0)
    }

    @Test func dequeueRunTakesAWholeRunOfMinBytesHighestPriorityFirst() {
        var q = SendQueue(maxBytes: 1 << 20)
        var writer = FrameBlockWriter()
        let low = (0..<10).map { _ in writer.append(ByteBuffer(repeating: 1, count: 100))! }
        for o in low { _ = q.enqueue(o.block[o.index], priority: .low, origin: o) }
        #expect(q.dequeueRun(minBytes: 1001) == nil, "1,000 bytes is below the minimum")
        let high = (0..<5).map { _ in writer.append(ByteBuffer(repeating: 2, count: 100))! }
        for o in high { _ = q.enqueue(o.block[o.index], priority: .high, origin: o) }
        // The open run (high) is next: taken whole, tail included.
        let first = q.dequeueRun(minBytes: 500)
        #expect(first?.frames == 10..<15 && first?.block === high[0].block)
        #expect(q.count == 10 && q.bytes == 1000)
        // Then the low run; the queue is empty after it and a new run opens cleanly.
        let second = q.dequeueRun(minBytes: 500)
        #expect(second?.frames == 0..<10)
        #expect(q.isEmpty && q.bytes == 0 && q.runCount == 0)
        let again = writer.append(ByteBuffer(repeating: 3, count: 100))!
        _ = q.enqueue(again.block[again.index], priority: .normal, origin: again)
        #expect(q.dequeueRun(minBytes: 100)?.frames == 15..<16)
        #expect(q.isEmpty)
    }

    @Test func dequeueRunLeavesAPlainFrameToTheOthers() {
        var q = SendQueue(maxBytes: 1 << 20)
        _ = q.enqueue(ByteBuffer(repeating: 1, count: 5000), priority: .normal)
        #expect(q.dequeueRun(minBytes: 1) == nil)
        #expect(q.count == 1)
    }
}
