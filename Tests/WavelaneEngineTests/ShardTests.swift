import Testing
import WavelaneProtocol
@testable import WavelaneEngine

@Suite("TopicOffsets")
struct TopicOffsetsTests {
    private func next(_ o: TopicOffsets, _ topic: String) -> UInt64 {
        o.lock.withLock { o.nextLocked(topic) }
    }

    @Test func offsetsStartAtOneAndGrowPerTopic() {
        let o = TopicOffsets()
        #expect(next(o, "a") == 1)
        #expect(next(o, "a") == 2)
        #expect(next(o, "b") == 1)
        #expect(next(o, "a") == 3)
        #expect(o.count == 2)
        o.reset(epoch: "e", history: nil)
        #expect(o.count == 0)
        #expect(next(o, "a") == 1)
    }

    @Test func aTopicsEpochChangesWhenItsOffsetsRestart() {
        let o = TopicOffsets(limit: 2)
        o.reset(epoch: "srv", history: nil)
        let first = o.lock.withLock { o.positionLocked("a") }
        #expect(first.offset == 0 && first.epoch.hasPrefix("srv"))
        #expect(next(o, "a") == 1)
        #expect(o.lock.withLock { o.positionLocked("a") } == StreamPosition(epoch: first.epoch, offset: 1))
        // Two more topics push "a" out of the table: it restarts, under a new epoch.
        _ = next(o, "b")
        _ = next(o, "c")
        let again = o.lock.withLock { o.positionLocked("a") }
        #expect(again.offset == 0 && again.epoch != first.epoch)
    }

    @Test func readingAPositionCreatesNothing() {
        let t = TopicOffsets(limit: 64)
        t.reset(epoch: "run", history: nil)
        for i in 0..<5_000 {
            let reply = t.position(topic: "never:\(i)", since: nil)
            #expect(reply.position.offset == 0)
        }
        #expect(t.count == 0)
        // Recovering from offset 0 of a topic that still has no stream: up to date.
        let none = t.position(topic: "x", since: nil).position
        guard case .recovered(let missed) = t.position(topic: "x", since: none).recovery else {
            Issue.record("not recovered")
            return
        }
        #expect(missed.isEmpty && t.count == 0)
        // The first publication continues the stream that position named (same epoch, offset 1).
        #expect(next(t, "x") == 1)
        #expect(t.position(topic: "x", since: nil).position == StreamPosition(epoch: none.epoch, offset: 1))
        #expect(t.count == 1)
    }

    @Test func evictsTheLeastRecentlyUsedNeverAll() {
        let t = TopicOffsets(limit: 32)  // evicts 32 / 16 = 2 at a time
        t.reset(epoch: "run", history: nil)
        for i in 0..<32 { #expect(next(t, "t\(i)") == 1) }
        let oldEpoch = t.position(topic: "t31", since: nil).position.epoch
        _ = next(t, "t0")  // t0 used again: t1 and t2 are now the least recently used
        _ = t.position(topic: "t1", since: nil)  // a position read is a use too: t2, t3 go
        #expect(next(t, "new") == 1)
        #expect(t.count == 31)
        #expect(t.position(topic: "t0", since: nil).position.offset == 2)
        #expect(t.position(topic: "t1", since: nil).position.offset == 1)
        #expect(t.position(topic: "t2", since: nil).position.offset == 0)
        #expect(t.position(topic: "t3", since: nil).position.offset == 0)
        #expect(t.position(topic: "t4", since: nil).position.offset == 1)
        // t2 restarts at 1 under a new epoch, so a client holding the old stream's position is told.
        #expect(next(t, "t2") == 1)
        let restarted = t.position(topic: "t2", since: StreamPosition(epoch: oldEpoch, offset: 1))
        #expect(restarted.position.epoch != oldEpoch)
        guard case .failed(let why) = restarted.recovery else {
            Issue.record("recovered across an eviction")
            return
        }
        #expect(why.hasPrefix("epoch changed"))
        // Untouched survivors keep their epoch and offsets.
        #expect(t.position(topic: "t1", since: nil).position.epoch == oldEpoch)
        // Many more topics than the limit: bounded, and the most recent ones are all still there.
        for i in 0..<10_000 { _ = next(t, "many:\(i)") }
        #expect(t.count <= 32 && t.count >= 30)
        for i in 9_980..<10_000 { #expect(t.position(topic: "many:\(i)", since: nil).position.offset == 1) }
    }
}
