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

    @Test func boundedTableForgetsStaleTopics() {
        let o = TopicOffsets(limit: 3)
        #expect(next(o, "a") == 1)
        #expect(next(o, "b") == 1)
        #expect(next(o, "c") == 1)
        // A fourth topic: everything was published in the current generation, so the table is cleared.
        #expect(next(o, "d") == 1)
        #expect(o.count == 1)
        #expect(next(o, "a") == 1, "forgotten: restarts at 1")
        #expect(next(o, "d") == 2)
        #expect(next(o, "e") == 1)
        #expect(o.count == 3)
        // Known topics never trigger a prune.
        #expect(next(o, "e") == 2)
        #expect(o.count == 3)
        // A new one prunes topics not published since the last prune (none here: all three are recent).
        #expect(next(o, "f") == 1)
        // ...so the fallback clears the whole table again: only "f" remains.
        #expect(o.count == 1)
        #expect(next(o, "d") == 1)
    }
}
