import Testing
import WavelaneProtocol

@Suite("TopicHistory")
struct TopicHistoryTests {
    private func offsets(_ lookup: TopicHistory<UInt64>.Lookup) -> [UInt64]? {
        if case .entries(let e) = lookup { return e }
        return nil
    }

    @Test func keepsTheLastEntriesPerTopicAndAnswersWhatCameAfter() {
        var h = TopicHistory<UInt64>(perTopic: 3, maxBytes: 1 << 20, ttl: 1000)
        for o in 1...5 as ClosedRange<UInt64> { h.append(topic: "a", offset: o, entry: o, size: 10, now: 0) }
        #expect(h.count == 3 && h.bytes == 30)
        #expect(offsets(h.entries(topic: "a", after: 2, top: 5)) == [3, 4, 5])
        #expect(offsets(h.entries(topic: "a", after: 4, top: 5)) == [5])
        #expect(offsets(h.entries(topic: "a", after: 5, top: 5)) == [])
        #expect(offsets(h.entries(topic: "a", after: 1, top: 5)) == nil)  // 2 is gone
        #expect(offsets(h.entries(topic: "b", after: 0, top: 1)) == nil)  // never kept
        #expect(offsets(h.entries(topic: "b", after: 0, top: 0)) == [])
    }

    @Test func expiresByAge() {
        var h = TopicHistory<UInt64>(perTopic: 100, maxBytes: 1 << 20, ttl: 100)
        h.append(topic: "a", offset: 1, entry: 1, size: 1, now: 0)
        h.append(topic: "b", offset: 1, entry: 1, size: 1, now: 50)
        h.append(topic: "a", offset: 2, entry: 2, size: 1, now: 120)  // a:1 is 120 old
        #expect(offsets(h.entries(topic: "a", after: 0, top: 2)) == nil)
        #expect(offsets(h.entries(topic: "a", after: 1, top: 2)) == [2])
        #expect(offsets(h.entries(topic: "b", after: 0, top: 1)) == [1])
        h.expire(now: 200)
        #expect(h.count == 1 && h.topicCount == 1)
        h.expire(now: 300)
        #expect(h.count == 0 && h.bytes == 0 && h.topicCount == 0)
    }

    @Test func theByteBoundDropsTheOldestOfAllTopics() {
        var h = TopicHistory<UInt64>(perTopic: 100, maxBytes: 100, ttl: 1 << 40)
        for o in 1...5 as ClosedRange<UInt64> { h.append(topic: "old", offset: o, entry: o, size: 10, now: Int64(o)) }
        for o in 1...6 as ClosedRange<UInt64> { h.append(topic: "new", offset: o, entry: o, size: 10, now: 10 + Int64(o)) }
        #expect(h.bytes <= 100)
        #expect(offsets(h.entries(topic: "old", after: 1, top: 5)) == [2, 3, 4, 5])
        #expect(offsets(h.entries(topic: "old", after: 0, top: 5)) == nil)
        #expect(offsets(h.entries(topic: "new", after: 0, top: 6)) == [1, 2, 3, 4, 5, 6])
    }

    @Test func restartedOffsetsResetTheTopic() {
        var h = TopicHistory<UInt64>(perTopic: 10, maxBytes: 1 << 20, ttl: 1000)
        for o in 1...4 as ClosedRange<UInt64> { h.append(topic: "a", offset: o, entry: o, size: 1, now: 0) }
        h.append(topic: "a", offset: 1, entry: 100, size: 1, now: 0)
        #expect(h.count == 1)
        #expect(offsets(h.entries(topic: "a", after: 0, top: 1)) == [100])
    }

    @Test func theOrderIndexStaysProportionalToWhatIsKept() {
        var h = TopicHistory<UInt64>(perTopic: 2, maxBytes: 1 << 30, ttl: 1 << 40)
        h.append(topic: "quiet", offset: 1, entry: 1, size: 1, now: 0)  // pins the front of the index
        for o in 1...100_000 as ClosedRange<UInt64> { h.append(topic: "busy", offset: o, entry: o, size: 1, now: 1) }
        #expect(h.count == 3)
        #expect(h.indexCount <= 2 * h.count + 1025)
        #expect(offsets(h.entries(topic: "busy", after: 99_998, top: 100_000)) == [99_999, 100_000])
        #expect(offsets(h.entries(topic: "quiet", after: 0, top: 1)) == [1])
    }
}
