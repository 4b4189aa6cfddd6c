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

/// A compiled glob pattern over Unicode scalars (so `?` is one character, not one byte). Its
/// identity is its UTF-8 bytes (`ByteString`), never Unicode equivalence.
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

    public static func == (a: GlobPattern, b: GlobPattern) -> Bool { a.pattern.bytesEqual(b.pattern) }
    public func hash(into hasher: inout Hasher) { hasher.combine(ByteString(self.pattern)) }

    /// Iterative glob match with single-star backtracking: O(n·m) worst case, no recursion.
    /// (The reference semantics; `TopicIndex` matches the same language on bytes.)
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

/// Glob matching on UTF-8 bytes, without allocation: `*` matches any run of bytes (whole
/// characters), `?` exactly one character (one scalar: 1 to 4 bytes).
public enum GlobMatcher {
    @inline(__always)
    static func scalarLength(_ lead: UInt8) -> Int {
        lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
    }

    /// Whether the glob `p` matches all of `t` (both valid UTF-8).
    public static func matches(_ p: UnsafeBufferPointer<UInt8>, _ t: UnsafeBufferPointer<UInt8>) -> Bool {
        let star = UInt8(ascii: "*"), question = UInt8(ascii: "?")
        var ti = 0, pi = 0
        var starP = -1, starT = 0
        while ti < t.count {
            if pi < p.count {
                let pb = p[pi]
                if pb == question {
                    ti = min(t.count, ti + scalarLength(t[ti])); pi += 1
                    continue
                }
                if pb == star {
                    starP = pi; starT = ti; pi += 1
                    continue
                }
                if pb == t[ti] {
                    ti += 1; pi += 1
                    continue
                }
            }
            guard starP >= 0 else { return false }
            pi = starP + 1
            starT = min(t.count, starT + scalarLength(t[starT]))
            ti = starT
        }
        while pi < p.count && p[pi] == star { pi += 1 }
        return pi == p.count
    }
}

/// Which subscribers want which topics. Exact subscriptions are a dictionary keyed by the topic's
/// bytes. Glob patterns live in a trie over `:` segments: a pattern's literal leading segments
/// (those before its first segment with a wildcard) are edges, and the rest of the pattern hangs
/// at the node they lead to, filed under its last segment when that one is literal (`feed:*:7`
/// hangs at `feed` under `7`). A publication walks the edges its own segments spell and examines
/// only the patterns hanging on that path whose last segment is its own or a wildcard: patterns
/// that share neither prefix nor suffix with the topic cost nothing (issue 10, item 2).
///
/// A pure data structure; the engine keeps one per event loop, so it is only ever touched from
/// one thread.
public struct TopicIndex<Subscriber: Hashable> {
    @usableFromInline var exact: [ByteString: Set<Subscriber>] = [:]

    private struct Glob {
        var pattern: [UInt8]
        /// Where the part that hangs at `node` starts in `pattern`.
        var rest: Int
        var node: Int
        /// The hash of the literal last segment it is filed under; nil when filed as `general`.
        var tail: Int?
        var subscribers: Set<Subscriber>
    }

    private struct Node {
        /// The edge from the parent (a literal segment) and its hash.
        var segment: [UInt8] = []
        var hash = 0
        var parent = -1
        /// Children by segment hash (a list: hashes may collide; compared by bytes).
        var children: [Int: [Int]] = [:]
        /// Glob ids hanging here, by the hash of their literal last segment.
        var byTail: [Int: Set<Int>] = [:]
        /// Glob ids hanging here whose last segment has a wildcard.
        var general = Set<Int>()
        var live = true

        var isEmpty: Bool { self.children.isEmpty && self.byTail.isEmpty && self.general.isEmpty }
    }

    private var globs: [Glob?] = []
    private var freeGlobs: [Int] = []
    @usableFromInline var globIDs: [ByteString: Int] = [:]
    private var nodes: [Node] = [Node()]
    private var freeNodes: [Int] = []

    public init() {}

    public var topicCount: Int { self.exact.count + self.globIDs.count }
    /// Distinct glob patterns held.
    public var patternCount: Int { self.globIDs.count }
    /// Trie nodes in use, the root included (for tests: unsubscribing gives nodes back).
    public var nodeCount: Int { self.nodes.count - self.freeNodes.count }

    @inline(__always)
    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var h = Hasher()
        h.combine(bytes: UnsafeRawBufferPointer(bytes))
        return h.finalize()
    }

    private static func hash(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBufferPointer { Self.hash($0) }
    }

    /// Adds a subscription; returns false if it already existed.
    @discardableResult
    public mutating func subscribe(_ subscriber: Subscriber, to subscription: String) -> Bool {
        let key = ByteString(subscription)
        guard Topic.isPattern(subscription) else {
            return self.exact[key, default: []].insert(subscriber).inserted
        }
        if let id = self.globIDs[key] {
            return self.globs[id]!.subscribers.insert(subscriber).inserted
        }
        self.addGlob(key, subscriber)
        return true
    }

    private mutating func addGlob(_ key: ByteString, _ subscriber: Subscriber) {
        let bytes = Array(key.utf8)
        let colon = UInt8(ascii: ":"), star = UInt8(ascii: "*"), question = UInt8(ascii: "?")
        // Walk (and make) the edges of the literal segments followed by ':'.
        var node = 0, start = 0
        while let end = bytes[start...].firstIndex(of: colon),
              !bytes[start..<end].contains(where: { $0 == star || $0 == question }) {
            let segment = Array(bytes[start..<end])
            let h = Self.hash(segment)
            if let child = self.nodes[node].children[h]?.first(where: { self.nodes[$0].segment == segment }) {
                node = child
            } else {
                var n = Node()
                n.segment = segment; n.hash = h; n.parent = node
                let child: Int
                if let free = self.freeNodes.popLast() { child = free; self.nodes[free] = n } else { child = self.nodes.count; self.nodes.append(n) }
                self.nodes[node].children[h, default: []].append(child)
                node = child
            }
            start = end + 1
        }
        // File it under its last segment when that one is literal and not its whole rest.
        var tail: Int? = nil
        if let lastColon = bytes[start...].lastIndex(of: colon),
           !bytes[(lastColon + 1)...].contains(where: { $0 == star || $0 == question }) {
            tail = Self.hash(Array(bytes[(lastColon + 1)...]))
        }
        let glob = Glob(pattern: bytes, rest: start, node: node, tail: tail, subscribers: [subscriber])
        let id: Int
        if let free = self.freeGlobs.popLast() { id = free; self.globs[free] = glob } else { id = self.globs.count; self.globs.append(glob) }
        self.globIDs[key] = id
        if let tail { self.nodes[node].byTail[tail, default: []].insert(id) } else { self.nodes[node].general.insert(id) }
    }

    private mutating func removeGlob(_ key: ByteString, _ id: Int) {
        let glob = self.globs[id]!
        self.globs[id] = nil
        self.freeGlobs.append(id)
        self.globIDs[key] = nil
        var node = glob.node
        if let tail = glob.tail {
            self.nodes[node].byTail[tail]?.remove(id)
            if self.nodes[node].byTail[tail]?.isEmpty == true { self.nodes[node].byTail[tail] = nil }
        } else {
            self.nodes[node].general.remove(id)
        }
        // Give back the nodes left empty, up to the root.
        while node != 0 && self.nodes[node].isEmpty {
            let n = self.nodes[node]
            let parent = n.parent
            self.nodes[parent].children[n.hash]?.removeAll { $0 == node }
            if self.nodes[parent].children[n.hash]?.isEmpty == true { self.nodes[parent].children[n.hash] = nil }
            self.nodes[node] = Node(live: false)
            self.freeNodes.append(node)
            node = parent
        }
    }

    /// Removes a subscription; returns false if there was none.
    @discardableResult
    public mutating func unsubscribe(_ subscriber: Subscriber, from subscription: String) -> Bool {
        let key = ByteString(subscription)
        if Topic.isPattern(subscription) {
            guard let id = self.globIDs[key], self.globs[id]!.subscribers.remove(subscriber) != nil else { return false }
            if self.globs[id]!.subscribers.isEmpty { self.removeGlob(key, id) }
            return true
        }
        guard var set = self.exact[key], set.remove(subscriber) != nil else { return false }
        self.exact[key] = set.isEmpty ? nil : set
        return true
    }

    /// Whether any subscriber holds exactly this subscription (a topic or a glob pattern).
    public func hasSubscribers(_ subscription: String) -> Bool {
        let key = ByteString(subscription)
        if Topic.isPattern(subscription) { return self.globIDs[key] != nil }
        return self.exact[key] != nil
    }

    /// Calls `body` once for every subscriber of `topic` (a subscriber matched by several
    /// subscriptions is visited once).
    ///
    /// Inlinable: it runs once per delivery, and specialized for the engine's subscriber type the
    /// set is walked directly, not through generic witnesses (~8% of fan-out CPU before).
    @inlinable
    public func forEachSubscriber(of topic: String, _ body: (Subscriber) -> Void) {
        let direct = self.exact[ByteString(topic)]
        if self.globIDs.isEmpty {
            // A loop, not `forEach(body)`: inlined into the caller, the closure is called directly
            // (not through `Set.forEach`'s function pointer).
            if let direct { for subscriber in direct { body(subscriber) } }
            return
        }
        self.forEachSubscriber(of: topic, direct: direct, matchingGlobs: body)
    }

    /// `forEachSubscriber` when globs exist: the direct subscribers, then those of every matching
    /// glob not already called.
    @usableFromInline
    func forEachSubscriber(of topic: String, direct: Set<Subscriber>?, matchingGlobs body: (Subscriber) -> Void) {
        var seen: Set<Subscriber>? = nil
        direct?.forEach(body)
        self.forEachMatchingGlob(topic) { glob in
            if seen == nil { seen = direct ?? [] }
            for s in glob.subscribers where seen!.insert(s).inserted {
                body(s)
            }
        }
    }

    /// Calls `body` for every glob that matches `topic`, examining only those on the topic's path.
    private func forEachMatchingGlob(_ topic: String, _ body: (Glob) -> Void) {
        var text = topic
        text.withUTF8 { t in
            let colon = UInt8(ascii: ":")
            // The hash of the topic's last segment, for the patterns filed under theirs: computed
            // when a node on the path has such patterns (nil inside: the topic has no ':').
            var tailHash: Int?? = nil
            var node = 0, start = 0
            while true {
                let here = self.nodes[node]
                let rest = UnsafeBufferPointer(rebasing: t[start...])
                if !here.byTail.isEmpty {
                    if tailHash == nil {
                        var lastStart = t.count
                        while lastStart > 0 && t[lastStart - 1] != colon { lastStart -= 1 }
                        tailHash = .some(lastStart > 0 ? Self.hash(UnsafeBufferPointer(rebasing: t[lastStart...])) : nil)
                    }
                    if let h = tailHash!, let ids = here.byTail[h] {
                        for id in ids { self.check(id, rest, body) }
                    }
                }
                for id in here.general { self.check(id, rest, body) }
                // Follow the edge spelled by the next segment, if it is followed by ':'.
                guard !here.children.isEmpty else { return }
                var end = start
                while end < t.count && t[end] != colon { end += 1 }
                guard end < t.count else { return }
                let segment = UnsafeBufferPointer(rebasing: t[start..<end])
                guard let candidates = here.children[Self.hash(segment)],
                      let child = candidates.first(where: { c in self.nodes[c].segment.withUnsafeBufferPointer { $0.elementsEqual(segment) } })
                else { return }
                node = child
                start = end + 1
            }
        }
    }

    @inline(__always)
    private func check(_ id: Int, _ rest: UnsafeBufferPointer<UInt8>, _ body: (Glob) -> Void) {
        let glob = self.globs[id]!
        let matched = glob.pattern.withUnsafeBufferPointer { p in
            GlobMatcher.matches(UnsafeBufferPointer(rebasing: p[glob.rest...]), rest)
        }
        if matched { body(glob) }
    }

    /// Number of subscribers of `topic` (exact and glob).
    public func subscriberCount(of topic: String) -> Int {
        var n = 0
        self.forEachSubscriber(of: topic) { _ in n += 1 }
        return n
    }
}
