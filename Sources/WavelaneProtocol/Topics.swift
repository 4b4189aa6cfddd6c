/// Topic names and glob subscriptions.
///
/// A topic is 1...maxLength bytes of UTF-8 with no control characters. A subscription is a topic or
/// a glob pattern: `*` matches any run of characters (including none and including `:`), `?`
/// matches exactly one character. `user:*:events` matches `user:42:events`.
public enum Topic {
    public enum ValidationError: Error, Equatable, Sendable {
        case empty
        case tooLong(max: Int)
        case controlCharacter
        case wildcardNotAllowed

        public var message: String {
            switch self {
            case .empty: return "topic is empty"
            case .tooLong(let max): return "topic is longer than \(max) bytes"
            case .controlCharacter: return "topic contains a control character"
            case .wildcardNotAllowed: return "a published topic cannot contain '*' or '?'"
            }
        }
    }

    /// Validates a subscription (globs allowed) or, with `allowWildcards: false`, a topic to publish to.
    public static func validate(_ topic: String, maxLength: Int, allowWildcards: Bool) -> ValidationError? {
        let utf8 = topic.utf8
        if utf8.isEmpty { return .empty }
        if utf8.count > maxLength { return .tooLong(max: maxLength) }
        var previous: UInt8 = 0
        for b in utf8 {
            if b < 0x20 || b == 0x7F { return .controlCharacter }
            // C1 controls U+0080...U+009F are C2 80...C2 9F in UTF-8.
            if previous == 0xC2 && b >= 0x80 && b <= 0x9F { return .controlCharacter }
            if !allowWildcards && (b == UInt8(ascii: "*") || b == UInt8(ascii: "?")) { return .wildcardNotAllowed }
            previous = b
        }
        return nil
    }

    /// Whether a subscription string is a glob pattern rather than an exact topic.
    public static func isPattern(_ subscription: String) -> Bool {
        subscription.utf8.contains { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") }
    }
}

/// A compiled glob pattern over Unicode scalars (so `?` is one character, not one byte).
public struct GlobPattern: Hashable, Sendable {
    public let pattern: String
    private let scalars: [Unicode.Scalar]
    /// The literal prefix before the first wildcard: a cheap pre-filter.
    private let literalPrefix: [Unicode.Scalar]

    public init(_ pattern: String) {
        self.pattern = pattern
        self.scalars = Array(pattern.unicodeScalars)
        self.literalPrefix = Array(self.scalars.prefix { $0 != "*" && $0 != "?" })
    }

    public static func == (a: GlobPattern, b: GlobPattern) -> Bool { a.pattern == b.pattern }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.pattern) }

    /// Iterative glob match with single-star backtracking: O(n·m) worst case, no recursion.
    public func matches(_ topic: String) -> Bool {
        if !topic.unicodeScalars.starts(with: self.literalPrefix) { return false }
        let text = Array(topic.unicodeScalars)
        let p = self.scalars
        var ti = 0, pi = 0
        var starP = -1, starT = 0
        while ti < text.count {
            if pi < p.count && (p[pi] == "?" || (p[pi] != "*" && p[pi] == text[ti])) {
                ti += 1; pi += 1
            } else if pi < p.count && p[pi] == "*" {
                starP = pi; starT = ti; pi += 1
            } else if starP >= 0 {
                pi = starP + 1; starT += 1; ti = starT
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

/// Which subscribers want which topics: exact subscriptions in a dictionary, glob patterns in a
/// list matched per publication. A pure data structure; the engine keeps one per event loop, so it
/// is only ever touched from one thread.
public struct TopicIndex<Subscriber: Hashable> {
    private var exact: [String: Set<Subscriber>] = [:]
    private var patterns: [String: (glob: GlobPattern, subscribers: Set<Subscriber>)] = [:]

    public init() {}

    public var topicCount: Int { self.exact.count + self.patterns.count }

    /// Adds a subscription; returns false if it already existed.
    @discardableResult
    public mutating func subscribe(_ subscriber: Subscriber, to subscription: String) -> Bool {
        if Topic.isPattern(subscription) {
            if var entry = self.patterns[subscription] {
                let inserted = entry.subscribers.insert(subscriber).inserted
                self.patterns[subscription] = entry
                return inserted
            }
            self.patterns[subscription] = (GlobPattern(subscription), [subscriber])
            return true
        }
        return self.exact[subscription, default: []].insert(subscriber).inserted
    }

    /// Removes a subscription; returns false if there was none.
    @discardableResult
    public mutating func unsubscribe(_ subscriber: Subscriber, from subscription: String) -> Bool {
        if Topic.isPattern(subscription) {
            guard var entry = self.patterns[subscription], entry.subscribers.remove(subscriber) != nil else { return false }
            self.patterns[subscription] = entry.subscribers.isEmpty ? nil : entry
            return true
        }
        guard var set = self.exact[subscription], set.remove(subscriber) != nil else { return false }
        self.exact[subscription] = set.isEmpty ? nil : set
        return true
    }

    /// Whether any subscriber holds exactly this subscription (a topic or a glob pattern).
    public func hasSubscribers(_ subscription: String) -> Bool {
        if Topic.isPattern(subscription) { return self.patterns[subscription] != nil }
        return self.exact[subscription] != nil
    }

    /// Calls `body` once for every subscriber of `topic` (a subscriber matched by several
    /// subscriptions is visited once).
    public func forEachSubscriber(of topic: String, _ body: (Subscriber) -> Void) {
        let direct = self.exact[topic]
        if self.patterns.isEmpty {
            direct?.forEach(body)
            return
        }
        var seen = direct ?? []
        direct?.forEach(body)
        for (_, entry) in self.patterns where entry.glob.matches(topic) {
            for s in entry.subscribers where seen.insert(s).inserted {
                body(s)
            }
        }
    }

    /// Number of subscribers of `topic` (exact and glob).
    public func subscriberCount(of topic: String) -> Int {
        var n = 0
        self.forEachSubscriber(of: topic) { _ in n += 1 }
        return n
    }
}
