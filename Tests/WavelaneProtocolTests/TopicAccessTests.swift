import Testing
import WavelaneProtocol

@Suite("TopicAccess")
struct TopicAccessTests {
    @Test func ownSpaceExactTopics() {
        #expect(TopicAccess.isOwnSpace("user:eve", sub: "eve"))
        #expect(TopicAccess.isOwnSpace("user:eve:inbox", sub: "eve"))
        #expect(TopicAccess.isOwnSpace("user:eve:a:b", sub: "eve"))
        #expect(!TopicAccess.isOwnSpace("user:eve2", sub: "eve"))
        #expect(!TopicAccess.isOwnSpace("user:bob:inbox", sub: "eve"))
        #expect(!TopicAccess.isOwnSpace("user:ev", sub: "eve"))
        #expect(!TopicAccess.isOwnSpace("xuser:eve:inbox", sub: "eve"))
    }

    @Test func ownSpaceGlobsMustStayInside() {
        #expect(TopicAccess.isOwnSpace("user:eve:*", sub: "eve"))
        #expect(TopicAccess.isOwnSpace("user:eve:?", sub: "eve"))
        #expect(TopicAccess.isOwnSpace("user:eve:in*", sub: "eve"))
        #expect(!TopicAccess.isOwnSpace("user:eve*", sub: "eve"), "matches user:evex")
        #expect(!TopicAccess.isOwnSpace("user:eve?inbox", sub: "eve"))
        #expect(!TopicAccess.isOwnSpace("user:*", sub: "eve"))
        #expect(!TopicAccess.isOwnSpace("*", sub: "eve"))
        #expect(!TopicAccess.isOwnSpace("user:bob:*", sub: "eve"))
    }

    @Test func anonymousAndOddSubsHaveNoSpace() {
        #expect(!TopicAccess.isOwnSpace("user::inbox", sub: nil))
        #expect(!TopicAccess.isOwnSpace("user::inbox", sub: ""))
        #expect(!TopicAccess.isOwnSpace("user:e*:x", sub: "e*"))
        #expect(!TopicAccess.isOwnSpace("user:e*:*", sub: "e*"))
        #expect(!TopicAccess.isOwnSpace("user:e?:x", sub: "e?"))
        // "bob:x"'s space would be inside bob's: a sub with ':' gets none.
        #expect(!TopicAccess.isOwnSpace("user:bob:x:inbox", sub: "bob:x"))
    }

    @Test func ownSpaceComparesBytes() {
        let nfc = "Jos\u{E9}", nfd = "Jose\u{301}"
        #expect(TopicAccess.isOwnSpace("user:\(nfc):inbox", sub: nfc))
        #expect(!TopicAccess.isOwnSpace("user:\(nfd):inbox", sub: nfc))
        #expect(!TopicAccess.isOwnSpace("user:\(nfc):inbox", sub: nfd))
    }

    @Test func coversExactTopics() {
        #expect(TopicAccess.covers("room:*", "room:1"))
        #expect(TopicAccess.covers("room:*", "room:"))
        #expect(TopicAccess.covers("room:?", "room:1"))
        #expect(TopicAccess.covers("room:?", "room:é"), "? is one character, not one byte")
        #expect(!TopicAccess.covers("room:?", "room:12"))
        #expect(!TopicAccess.covers("room:*", "rooms:1"))
        #expect(TopicAccess.covers("*", "anything:at:all"))
        #expect(TopicAccess.covers("a:b", "a:b"))
        #expect(!TopicAccess.covers("caf\u{E9}:*", "cafe\u{301}:1"), "bytes, not canonical equivalence")
    }

    @Test func coversGlobsOnlyWhenContained() {
        #expect(TopicAccess.covers("room:*", "room:*"))
        #expect(TopicAccess.covers("room:*", "room:1:*"))
        #expect(TopicAccess.covers("room:*", "room:?"))
        #expect(TopicAccess.covers("room:?", "room:?"))
        #expect(!TopicAccess.covers("room:?", "room:*"))
        #expect(!TopicAccess.covers("room:?", "room:??"))
        #expect(!TopicAccess.covers("room:*", "*"))
        #expect(!TopicAccess.covers("room:*", "room*"))
        #expect(!TopicAccess.covers("room:*", "r*"))
        #expect(!TopicAccess.covers("room:*:x", "room:*"))
        #expect(TopicAccess.covers("room:*:x", "room:*:x"))
        #expect(TopicAccess.covers("room:*:x", "room:a*b:x"))
        #expect(TopicAccess.covers("*", "*"))
        #expect(TopicAccess.covers("*", "user:bob:*"))
        #expect(!TopicAccess.covers("a*", "*"))
    }

    @Test func coverageIsSound() {
        // Whatever `covers` accepts, every sampled topic of the glob must match the pattern.
        var rng = SplitMix(seed: 7)
        let alphabet: [String] = ["a", "b", ":", "é"]
        let wild: [String] = ["a", "b", ":", "é", "*", "?"]
        func word(_ from: [String], _ maxLen: Int) -> String {
            var s = ""
            for _ in 0..<Int(rng.next() % UInt64(maxLen + 1)) { s += from[Int(rng.next() % UInt64(from.count))] }
            return s
        }
        var accepted = 0
        for _ in 0..<3000 {
            let p = word(wild, 5), g = word(wild, 5)
            guard !p.isEmpty, !g.isEmpty, TopicAccess.covers(p, g) else { continue }
            accepted += 1
            let gp = GlobPattern(g), pp = GlobPattern(p)
            for _ in 0..<60 {
                let t = word(alphabet, 6)
                if gp.matches(t) { #expect(pp.matches(t), "\(p) covers \(g) but not \(t)") }
            }
        }
        #expect(accepted > 100)
    }

    @Test func grantsOwnSpaceOrClientTopics() {
        let none = TopicAccess()
        #expect(none.grants("user:eve:inbox", sub: "eve"))
        #expect(!none.grants("room:1", sub: "eve"))
        #expect(!none.grants("*", sub: "eve"))
        let rooms = TopicAccess(clientTopics: ["room:*", "prices:?"])
        #expect(rooms.grants("room:1", sub: nil))
        #expect(rooms.grants("room:*", sub: nil))
        #expect(rooms.grants("prices:x", sub: nil))
        #expect(!rooms.grants("prices:*", sub: nil))
        #expect(!rooms.grants("*", sub: "eve"))
        #expect(!rooms.grants("user:bob:inbox", sub: "eve"))
        #expect(TopicAccess(clientTopics: ["*"]).grants("*", sub: nil))
    }
}

/// A small deterministic generator (fixed seeds: the randomised tests are reproducible).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
