import Testing
import WavelaneProtocol

@Suite("Topic.validate")
struct TopicValidateTests {
    @Test func empty() {
        #expect(Topic.validate("", maxLength: 10, allowWildcards: true) == .empty)
        #expect(Topic.validate("", maxLength: 10, allowWildcards: false) == .empty)
    }

    @Test func lengthIsCountedInUTF8Bytes() {
        #expect(Topic.validate("abcde", maxLength: 5, allowWildcards: false) == nil)
        #expect(Topic.validate("abcdef", maxLength: 5, allowWildcards: false) == .tooLong(max: 5))
        // 3 × "é" = 6 bytes although 3 characters.
        #expect(Topic.validate("ééé", maxLength: 5, allowWildcards: false) == .tooLong(max: 5))
        #expect(Topic.validate("éé", maxLength: 5, allowWildcards: false) == nil)
        #expect(Topic.validate("😀", maxLength: 4, allowWildcards: false) == nil)
        #expect(Topic.validate("😀", maxLength: 3, allowWildcards: false) == .tooLong(max: 3))
    }

    @Test(arguments: ["\u{0}", "a\nb", "tab\there", "\r", "del\u{7F}", "esc\u{1B}", "\u{1F}x"])
    func controlCharacters(topic: String) {
        #expect(Topic.validate(topic, maxLength: 100, allowWildcards: true) == .controlCharacter)
        #expect(Topic.validate(topic, maxLength: 100, allowWildcards: false) == .controlCharacter)
    }

    @Test func wildcards() {
        for t in ["*", "user:*", "a?c", "*:*", "x*y?z"] {
            #expect(Topic.validate(t, maxLength: 100, allowWildcards: true) == nil, "\(t)")
            #expect(Topic.validate(t, maxLength: 100, allowWildcards: false) == .wildcardNotAllowed, "\(t)")
        }
    }

    @Test func ordinaryTopicsAccepted() {
        for t in ["chat", "user:42:events", "room/1", "a b", "日本語:トピック", "emoji😀", "~!@#$%^&()[]{}"] {
            #expect(Topic.validate(t, maxLength: 256, allowWildcards: false) == nil, "\(t)")
        }
    }

    @Test func messages() {
        #expect(Topic.ValidationError.empty.message == "topic is empty")
        #expect(Topic.ValidationError.tooLong(max: 7).message == "topic is longer than 7 bytes")
        #expect(Topic.ValidationError.controlCharacter.message == "topic contains a control character")
        #expect(Topic.ValidationError.wildcardNotAllowed.message == "a published topic cannot contain '*' or '?'")
    }

    @Test func isPattern() {
        #expect(Topic.isPattern("a*"))
        #expect(Topic.isPattern("?"))
        #expect(!Topic.isPattern("plain:topic"))
        #expect(!Topic.isPattern(""))
    }
}

@Suite("GlobPattern")
struct GlobPatternTests {
    private func match(_ pattern: String, _ topic: String) -> Bool { GlobPattern(pattern).matches(topic) }

    @Test func middleStar() {
        #expect(match("user:*:events", "user:42:events"))
        #expect(match("user:*:events", "user::events"))
        #expect(match("user:*:events", "user:a:b:events"), "* crosses ':'")
        #expect(!match("user:*:events", "user:42:event"))
        #expect(!match("user:*:events", "user:42:eventsx"))
        #expect(!match("user:*:events", "users:42:events"))
        #expect(!match("user:*:events", "user:42"))
    }

    @Test func starAlone() {
        #expect(match("*", "anything"))
        #expect(match("*", "a"))
        #expect(match("*", ""))
        #expect(match("*", "with:colons:and/slashes"))
    }

    @Test func questionMark() {
        #expect(match("a?c", "abc"))
        #expect(match("a?c", "a:c"))
        #expect(!match("a?c", "ac"))
        #expect(!match("a?c", "abbc"))
        #expect(!match("a?c", "abd"))
        #expect(match("???", "xyz"))
        #expect(!match("???", "xy"))
        #expect(!match("???", "wxyz"))
    }

    @Test func questionMarkMatchesOneUnicodeScalar() {
        #expect(match("a?c", "a\u{E9}c"), "é (precomposed) is one scalar")
        #expect(match("a?c", "a😀c"), "a 4-byte scalar is one ?")
        #expect(match("a?c", "a中c"))
        #expect(!match("a?c", "a\u{65}\u{301}c"), "e + combining accent is two scalars")
        #expect(match("a??c", "a\u{65}\u{301}c"))
        #expect(match("?:*", "ü:x"))
        #expect(match("*😀", "hello😀"))
        #expect(!match("*😀", "hello😁"))
    }

    @Test func starColonStar() {
        #expect(match("*:*", "a:b"))
        #expect(match("*:*", ":"))
        #expect(match("*:*", "a:b:c"))
        #expect(!match("*:*", "ab"))
    }

    @Test func leadingAndTrailingStars() {
        #expect(match("*:events", "user:1:events"))
        #expect(match("*:events", ":events"))
        #expect(!match("*:events", "user:1:events:x"))
        #expect(match("user:*", "user:"))
        #expect(match("user:*", "user:1:2"))
        #expect(!match("user:*", "user"))
        #expect(!match("user:*", "xuser:1"))
        #expect(match("*mid*", "mid"))
        #expect(match("*mid*", "a-mid-b"))
        #expect(!match("*mid*", "mi-d"))
    }

    @Test func consecutiveStars() {
        #expect(match("a**b", "ab"))
        #expect(match("a**b", "axyzb"))
        #expect(!match("a**b", "axyz"))
        #expect(match("***", "abc"))
        #expect(match("**", ""))
        #expect(match("a*?*b", "axb"))
        #expect(!match("a*?*b", "ab"), "?* needs at least one character")
    }

    @Test func backtracking() {
        #expect(match("*ab", "aab"))
        #expect(match("a*b*c", "a-b-b-c"))
        #expect(match("*a*b", "xxaxxbxxb"))
        #expect(!match("*a*b", "xxaxxbxxc"))
        #expect(match("*:x:*:y", "1:x:2:x:3:y"))
    }

    @Test func exactPatterns() {
        #expect(match("plain", "plain"))
        #expect(!match("plain", "plai"))
        #expect(!match("plain", "plainer"))
        #expect(!match("plain", "Plain"))
    }

    @Test func pathologicalPatternIsFast() {
        let text = String(repeating: "a", count: 20_000)
        let clock = ContinuousClock()
        let start = clock.now
        #expect(!match("a*a*a*a*a*b", text))
        #expect(match("a*a*a*a*a*", text))
        #expect(!match("*a*a*a*a*a*a*a*a*a*b", text))
        let elapsed = clock.now - start
        #expect(elapsed < .seconds(2), "took \(elapsed)")
    }

    @Test func equalityAndHashingByPatternString() {
        #expect(GlobPattern("a*") == GlobPattern("a*"))
        #expect(GlobPattern("a*") != GlobPattern("a?"))
        #expect(Set([GlobPattern("x"), GlobPattern("x"), GlobPattern("y")]).count == 2)
        #expect(GlobPattern("a*").pattern == "a*")
    }
}

/// A reference wrapper so mutating calls can sit inside `#expect`.
private final class Index {
    var inner = TopicIndex<Int>()
    @discardableResult func subscribe(_ s: Int, to t: String) -> Bool { self.inner.subscribe(s, to: t) }
    @discardableResult func unsubscribe(_ s: Int, from t: String) -> Bool { self.inner.unsubscribe(s, from: t) }
    var topicCount: Int { self.inner.topicCount }
    func subscriberCount(of t: String) -> Int { self.inner.subscriberCount(of: t) }
}

@Suite("TopicIndex")
struct TopicIndexTests {
    private func subscribers(_ index: Index, _ topic: String) -> [Int] {
        var out: [Int] = []
        index.inner.forEachSubscriber(of: topic) { out.append($0) }
        return out
    }

    @Test func subscribeAndUnsubscribeReturnValues() {
        let index = Index()
        #expect(index.subscribe(1, to: "chat"))
        #expect(!index.subscribe(1, to: "chat"), "already subscribed")
        #expect(index.subscribe(2, to: "chat"))
        #expect(index.subscribe(1, to: "user:*"))
        #expect(!index.subscribe(1, to: "user:*"))
        #expect(index.subscribe(2, to: "user:*"))
        #expect(index.topicCount == 2)

        #expect(index.unsubscribe(1, from: "chat"))
        #expect(!index.unsubscribe(1, from: "chat"), "no longer subscribed")
        #expect(!index.unsubscribe(3, from: "chat"), "never subscribed")
        #expect(!index.unsubscribe(1, from: "nope"), "unknown topic")
        #expect(!index.unsubscribe(3, from: "user:*"), "known pattern, unknown subscriber")
        #expect(!index.unsubscribe(1, from: "other:*"), "unknown pattern")
        #expect(index.topicCount == 2)
        #expect(index.unsubscribe(1, from: "user:*"))
        #expect(!index.unsubscribe(1, from: "user:*"))
        #expect(index.topicCount == 2)
        #expect(subscribers(index, "chat") == [2])
        #expect(subscribers(index, "user:9") == [2])
    }

    @Test func exactAndPatternDelivery() {
        let index = Index()
        index.subscribe(1, to: "user:42:events")
        index.subscribe(2, to: "user:*:events")
        index.subscribe(3, to: "room:?")
        #expect(Set(subscribers(index, "user:42:events")) == [1, 2])
        #expect(subscribers(index, "user:7:events") == [2])
        #expect(subscribers(index, "room:1") == [3])
        #expect(subscribers(index, "room:12").isEmpty)
        #expect(subscribers(index, "nothing").isEmpty)
        #expect(index.subscriberCount(of: "user:42:events") == 2)
        #expect(index.subscriberCount(of: "zzz") == 0)
    }

    @Test func eachSubscriberVisitedOnce() {
        let index = Index()
        // Subscriber 1: exact + three patterns that all match; subscriber 2: two patterns; 3: exact only.
        index.subscribe(1, to: "user:42:events")
        index.subscribe(1, to: "user:*:events")
        index.subscribe(1, to: "*")
        index.subscribe(1, to: "user:??:*")
        index.subscribe(2, to: "*:events")
        index.subscribe(2, to: "user:*")
        index.subscribe(3, to: "user:42:events")
        let visited = subscribers(index, "user:42:events")
        #expect(visited.count == 3)
        #expect(Set(visited) == [1, 2, 3])
        #expect(index.subscriberCount(of: "user:42:events") == 3)
        // Only patterns match here.
        let viaPatterns = subscribers(index, "user:99:events")
        #expect(viaPatterns.sorted() == [1, 2])
    }

    @Test func removingLastSubscriberCleansUp() {
        let index = Index()
        #expect(index.topicCount == 0)
        index.subscribe(1, to: "a")
        index.subscribe(2, to: "a")
        index.subscribe(1, to: "b:*")
        index.subscribe(2, to: "b:*")
        index.subscribe(1, to: "c?")
        #expect(index.topicCount == 3)
        #expect(index.unsubscribe(1, from: "a"))
        #expect(index.topicCount == 3)
        #expect(index.unsubscribe(2, from: "a"))
        #expect(index.topicCount == 2)
        #expect(index.unsubscribe(1, from: "b:*"))
        #expect(index.unsubscribe(2, from: "b:*"))
        #expect(index.unsubscribe(1, from: "c?"))
        #expect(index.topicCount == 0)
        #expect(subscribers(index, "a").isEmpty)
        #expect(subscribers(index, "b:1").isEmpty)
        #expect(subscribers(index, "cx").isEmpty)
        // Re-subscribing after cleanup works and reports a new subscription.
        #expect(index.subscribe(1, to: "b:*"))
        #expect(subscribers(index, "b:1") == [1])
    }

    @Test func manySubscribers() {
        let index = Index()
        for i in 0..<1000 { index.subscribe(i, to: i.isMultiple(of: 2) ? "even" : "odd:*") }
        #expect(index.subscriberCount(of: "even") == 500)
        #expect(index.subscriberCount(of: "odd:x") == 500)
        #expect(index.topicCount == 2)
        for i in 0..<1000 { #expect(index.unsubscribe(i, from: i.isMultiple(of: 2) ? "even" : "odd:*")) }
        #expect(index.topicCount == 0)
    }
}

@Suite struct TopicC1ControlTests {
    @Test func c1ControlCharactersAreRefused() {
        #expect(Topic.validate("a\u{85}b", maxLength: 64, allowWildcards: true) == .controlCharacter)
        #expect(Topic.validate("a\u{9F}", maxLength: 64, allowWildcards: false) == .controlCharacter)
        // Other characters encoded with a C2 lead byte are fine (U+00A0...U+00BF).
        #expect(Topic.validate("a\u{A9}b", maxLength: 64, allowWildcards: false) == nil)
    }
}
