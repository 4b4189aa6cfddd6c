import Testing
import WavelaneProtocol

@Suite("StreamDedup")
struct StreamDedupTests {
    @Test func firstMessageOfATopicIsDeliveredWithNothingMissed() {
        var dedup = StreamDedup()
        #expect(dedup.admit(topic: "a", epoch: "e1", offset: 7) == .deliver(missed: 0))
        #expect(dedup.count == 1)
    }

    @Test func secondCopyAndOlderOffsetsAreDuplicates() {
        var dedup = StreamDedup()
        #expect(dedup.admit(topic: "a", epoch: "e1", offset: 1) == .deliver(missed: 0))
        #expect(dedup.admit(topic: "a", epoch: "e1", offset: 2) == .deliver(missed: 0))
        #expect(dedup.admit(topic: "a", epoch: "e1", offset: 2) == .duplicate)  // through the pattern too
        #expect(dedup.admit(topic: "a", epoch: "e1", offset: 1) == .duplicate)
        #expect(dedup.admit(topic: "a", epoch: "e1", offset: 3) == .deliver(missed: 0))
    }

    @Test func aGapInOneEpochCountsTheMissingOffsets() {
        var dedup = StreamDedup()
        _ = dedup.admit(topic: "a", epoch: "e1", offset: 4)
        #expect(dedup.admit(topic: "a", epoch: "e1", offset: 9) == .deliver(missed: 4))
        #expect(dedup.admit(topic: "a", epoch: "e1", offset: 10) == .deliver(missed: 0))
    }

    @Test func aNewEpochStartsOverAndCountsWhatCameBeforeItsFirstMessageHere() {
        var dedup = StreamDedup()
        _ = dedup.admit(topic: "a", epoch: "e1", offset: 50)
        #expect(dedup.admit(topic: "a", epoch: "e2", offset: 1) == .deliver(missed: 0))
        #expect(dedup.admit(topic: "a", epoch: "e2", offset: 1) == .duplicate)
        #expect(dedup.admit(topic: "a", epoch: "e3", offset: 5) == .deliver(missed: 4))
        // A lower offset in a new epoch is new, not a duplicate.
        #expect(dedup.admit(topic: "a", epoch: "e4", offset: 1) == .deliver(missed: 0))
    }

    @Test func topicsAreKeptApartByTheirBytes() {
        var dedup = StreamDedup()
        _ = dedup.admit(topic: ByteString("caf\u{E9}"), epoch: "e", offset: 3)
        #expect(dedup.admit(topic: ByteString("cafe\u{301}"), epoch: "e", offset: 3) == .deliver(missed: 0))
        #expect(dedup.admit(topic: ByteString("caf\u{E9}"), epoch: "e", offset: 3) == .duplicate)
    }

    @Test func forgottenTopicsStartOver() {
        var dedup = StreamDedup()
        _ = dedup.admit(topic: "a", epoch: "e", offset: 3)
        _ = dedup.admit(topic: "b", epoch: "e", offset: 3)
        dedup.forget("a")
        #expect(dedup.count == 1)
        #expect(dedup.admit(topic: "a", epoch: "e", offset: 3) == .deliver(missed: 0))
        #expect(dedup.admit(topic: "b", epoch: "e", offset: 3) == .duplicate)
        dedup.forgetAll()
        #expect(dedup.count == 0)
        #expect(dedup.admit(topic: "b", epoch: "e", offset: 3) == .deliver(missed: 0))
    }

    @Test func atTheLimitANewTopicClearsTheTableButAKnownOneDoesNot() {
        var dedup = StreamDedup(limit: 2)
        _ = dedup.admit(topic: "a", epoch: "e", offset: 1)
        _ = dedup.admit(topic: "b", epoch: "e", offset: 1)
        #expect(dedup.admit(topic: "a", epoch: "e", offset: 2) == .deliver(missed: 0))
        #expect(dedup.count == 2)
        #expect(dedup.admit(topic: "c", epoch: "e", offset: 1) == .deliver(missed: 0))
        #expect(dedup.count == 1)
        // "a" was forgotten: its old copy gets through again (never a lost message).
        #expect(dedup.admit(topic: "a", epoch: "e", offset: 2) == .deliver(missed: 0))
    }

    @Test func hugeGapsDoNotOverflow() {
        var dedup = StreamDedup()
        _ = dedup.admit(topic: "a", epoch: "e", offset: 0)
        #expect(dedup.admit(topic: "a", epoch: "e", offset: .max) == .deliver(missed: .max - 1))
        #expect(dedup.admit(topic: "a", epoch: "f", offset: .max) == .deliver(missed: .max - 1))
    }
}
