import Testing
import WavelaneProtocol

@Suite("TopicIndex glob trie")
struct TopicIndexTrieTests {
    private func subscribers(_ index: TopicIndex<Int>, _ topic: String) -> Set<Int> {
        var out = Set<Int>()
        index.forEachSubscriber(of: topic) { #expect(out.insert($0).inserted, "visited twice") }
        return out
    }

    /// The trie finds exactly the subscribers GlobPattern.matches says (randomised, fixed seed).
    @Test func matchesWhatGlobPatternMatches() {
        var rng = SplitMix(seed: 42)
        let pieces = ["a", "b", "ab", ":", ":", "é", "日", "*", "?", "x:y", "😀"]
        func word(_ n: Int, wild: Bool) -> String {
            var s = ""
            for _ in 0..<(1 + Int(rng.next() % UInt64(n))) {
                let p = pieces[Int(rng.next() % UInt64(pieces.count))]
                if !wild && (p == "*" || p == "?") { s += "a" } else { s += p }
            }
            return s
        }
        var index = TopicIndex<Int>()
        var patterns: [(Int, String)] = []
        for i in 0..<400 {
            let p = word(6, wild: true)
            index.subscribe(i, to: p)
            patterns.append((i, p))
        }
        var hits = 0
        for _ in 0..<2000 {
            let topic = word(7, wild: false)
            var expected = Set<Int>()
            for (i, p) in patterns where (Topic.isPattern(p) ? GlobPattern(p).matches(topic) : p.bytesEqual(topic)) {
                expected.insert(i)
            }
            hits += expected.count
            #expect(subscribers(index, topic) == expected, "topic \(topic)")
        }
        #expect(hits > 500, "the sample must exercise matches")
    }

    @Test func segmentsAndTails() {
        var index = TopicIndex<Int>()
        index.subscribe(1, to: "room:*")
        index.subscribe(2, to: "feed:*:7")
        index.subscribe(3, to: "*:7")
        index.subscribe(4, to: "room:1:?")
        index.subscribe(5, to: "ro*m:1")
        #expect(subscribers(index, "room:1") == [1, 5])
        #expect(subscribers(index, "room:1:x") == [1, 4])
        #expect(subscribers(index, "room:") == [1])
        #expect(subscribers(index, "feed:a:b:7") == [2, 3])
        #expect(subscribers(index, "feed::7") == [2, 3])
        #expect(subscribers(index, "feed:7") == [3])
        #expect(subscribers(index, "feed:a:77") == [])
        #expect(subscribers(index, "roXYm:1") == [5])
        #expect(subscribers(index, "roomy:1") == [])
    }

    @Test func unsubscribeGivesNodesBack() {
        var index = TopicIndex<Int>()
        #expect(index.nodeCount == 1)
        for round in 0..<3 {
            for i in 0..<500 {
                index.subscribe(i, to: "a\(i):b:c\(round):*")
                index.subscribe(i, to: "feed:*:\(i)")
            }
            #expect(index.patternCount == 1000)
            #expect(index.nodeCount > 1000)
            for i in 0..<500 {
                let removedA = index.unsubscribe(i, from: "a\(i):b:c\(round):*")
                let removedFeed = index.unsubscribe(i, from: "feed:*:\(i)")
                #expect(removedA && removedFeed)
            }
            #expect(index.patternCount == 0)
            #expect(index.nodeCount == 1, "round \(round)")
            #expect(subscribers(index, "feed:x:1") == [])
        }
    }

    @Test func identityIsBytes() {
        var index = TopicIndex<Int>()
        index.subscribe(1, to: "room:cafe\u{301}")
        index.subscribe(2, to: "room:caf\u{E9}")
        index.subscribe(3, to: "cafe\u{301}:*")
        #expect(subscribers(index, "room:caf\u{E9}") == [2])
        #expect(subscribers(index, "room:cafe\u{301}") == [1])
        #expect(subscribers(index, "caf\u{E9}:x") == [])
        #expect(subscribers(index, "cafe\u{301}:x") == [3])
        #expect(index.hasSubscribers("room:caf\u{E9}"))
        index.unsubscribe(2, from: "room:caf\u{E9}")
        #expect(!index.hasSubscribers("room:caf\u{E9}"))
        #expect(index.hasSubscribers("room:cafe\u{301}"))
    }
}
