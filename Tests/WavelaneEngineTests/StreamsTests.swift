import Testing
import WavelaneProtocol
@testable import WavelaneEngine

/// The single-instance offsets table: no entry for a topic never published, LRU eviction, epochs.
struct TopicOffsetsTests {
    private func table(limit: Int) -> TopicOffsets {
        let t = TopicOffsets(limit: limit)
        t.reset(epoch: "run", history: nil)
        return t
    }

    private func publish(_ t: TopicOffsets, _ topic: String) -> UInt64 { t.lock.withLock { t.nextLocked(topic) } }

    @Test func readingAPositionCreatesNothing() {
        let t = table(limit: 64)
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
        #expect(publish(t, "x") == 1)
        #expect(t.position(topic: "x", since: nil).position == StreamPosition(epoch: none.epoch, offset: 1))
        #expect(t.count == 1)
    }

    @Test func evictsTheLeastRecentlyUsedNeverAll() {
        let t = table(limit: 32)  // evicts 32 / 16 = 2 at a time
        for i in 0..<32 { #expect(publish(t, "t\(i)") == 1) }
        let oldEpoch = t.position(topic: "t31", since: nil).position.epoch
        _ = publish(t, "t0")  // t0 used again: t1 and t2 are now the least recently used
        _ = t.position(topic: "t1", since: nil)  // a position read is a use too: t2, t3 go
        #expect(publish(t, "new") == 1)
        #expect(t.count == 31)
        #expect(t.position(topic: "t0", since: nil).position.offset == 2)
        #expect(t.position(topic: "t1", since: nil).position.offset == 1)
        #expect(t.position(topic: "t2", since: nil).position.offset == 0)
        #expect(t.position(topic: "t3", since: nil).position.offset == 0)
        #expect(t.position(topic: "t4", since: nil).position.offset == 1)
        // t2 restarts at 1 under a new epoch, so a client holding the old stream's position is told.
        #expect(publish(t, "t2") == 1)
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
        for i in 0..<10_000 { _ = publish(t, "many:\(i)") }
        #expect(t.count <= 32 && t.count >= 30)
        for i in 9_980..<10_000 { #expect(t.position(topic: "many:\(i)", since: nil).position.offset == 1) }
    }
}
