/// Which subscriptions a client may make on its own (docs/security.md, "Topic access").
///
/// Deny by default: a client's `subscribe` is granted without asking the application only for
///
/// 1. its own user space: `user:<sub>` and everything under `user:<sub>:` — exact topics, and globs
///    whose literal prefix (the bytes before the first `*` or `?`) starts with `user:<sub>:`, so
///    the glob cannot reach outside the space (`user:<sub>*` is not inside: it matches
///    `user:<sub>x`). Anonymous clients have no own space, and neither does a `sub` that is empty
///    or contains `*`, `?` or `:` (`user:bob:x:…` must not be both bob's and `bob:x`'s);
/// 2. subscriptions covered by a `client_topics` pattern: an exact topic the pattern matches, or a
///    glob every one of whose topics the pattern matches (see `covers`).
///
/// Everything else needs the application's approval (`subscribe_approval`) or is refused.
/// Comparisons are on UTF-8 bytes, never Unicode equivalence.
public struct TopicAccess: Sendable {
    /// The `client_topics` patterns.
    public let clientTopics: [String]

    public init(clientTopics: [String] = []) {
        self.clientTopics = clientTopics
    }

    /// Whether `subscription` (an exact topic or a glob) is granted to the user `sub` (nil: anonymous).
    public func grants(_ subscription: String, sub: String?) -> Bool {
        if Self.isOwnSpace(subscription, sub: sub) { return true }
        for pattern in self.clientTopics where Self.covers(pattern, subscription) { return true }
        return false
    }

    /// Whether `subscription` stays inside the user space of `sub`.
    public static func isOwnSpace(_ subscription: String, sub: String?) -> Bool {
        guard let sub, !sub.utf8.isEmpty else { return false }
        let star = UInt8(ascii: "*"), question = UInt8(ascii: "?"), colon = UInt8(ascii: ":")
        if sub.utf8.contains(where: { $0 == star || $0 == question || $0 == colon }) { return false }
        var space: [UInt8] = Array("user:".utf8)
        space.append(contentsOf: sub.utf8)
        let s = subscription.utf8
        // The literal prefix: everything for an exact topic, the bytes before the first wildcard of a glob.
        let literal = s.prefix { $0 != star && $0 != question }
        if literal.count == s.count && literal.elementsEqual(space) { return true }  // `user:<sub>` itself
        space.append(colon)
        return literal.starts(with: space)
    }

    /// Whether every topic `subscription` matches is matched by `pattern` (sound, not complete):
    /// `pattern` is matched against the text of `subscription`, where a literal character of
    /// `pattern` matches only the same literal character, its `?` one literal character or a `?`,
    /// and its `*` any run (wildcards included). So `room:*` covers `room:1` and `room:1:*`, but
    /// `room:?` does not cover `room:*`, and only `*` covers `*`.
    public static func covers(_ pattern: String, _ subscription: String) -> Bool {
        var p = pattern, s = subscription
        return p.withUTF8 { pb in s.withUTF8 { sb in coversBytes(pb, sb) } }
    }

    static func coversBytes(_ p: UnsafeBufferPointer<UInt8>, _ t: UnsafeBufferPointer<UInt8>) -> Bool {
        let star = UInt8(ascii: "*"), question = UInt8(ascii: "?")
        var ti = 0, pi = 0
        var starP = -1, starT = 0
        while ti < t.count {
            if pi < p.count && p[pi] != star {
                let tb = t[ti]
                if p[pi] == question {
                    if tb != star {  // one literal character (a whole scalar) or the glob's `?`
                        ti += tb == question ? 1 : GlobMatcher.scalarLength(tb)
                        pi += 1
                        continue
                    }
                } else if tb != star && tb != question && p[pi] == tb {
                    ti += 1; pi += 1
                    continue
                }
            } else if pi < p.count {  // `*`
                starP = pi; starT = ti; pi += 1
                continue
            }
            guard starP >= 0 else { return false }
            pi = starP + 1
            starT += GlobMatcher.scalarLength(t[starT])
            ti = starT
        }
        while pi < p.count && p[pi] == star { pi += 1 }
        return pi == p.count
    }
}
