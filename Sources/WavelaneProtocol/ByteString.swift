/// A string whose identity is its UTF-8 bytes.
///
/// Swift's `String` compares and hashes by Unicode canonical equivalence: `"café"` (NFC, one
/// scalar é) equals `"cafe\u{301}"` (NFD, e + combining acute). Topics, users, coalescing keys and
/// presence members are names that clients choose, so two of them that merely *look* alike must
/// stay two different names: a subscriber to the NFD topic must not receive publications to the
/// NFC one, and `send_user("José")` must not reach the user `"Jose\u{301}"`. Every table keyed by
/// such a name uses `ByteString` (docs/security.md, "Identity is bytes").
public struct ByteString: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The name as a Swift string (for JSON output and logs; never for comparisons).
    public let string: String

    public init(_ string: String) {
        var s = string
        s.makeContiguousUTF8()
        self.string = s
    }

    public init(stringLiteral value: String) { self.init(value) }

    public var utf8: String.UTF8View { self.string.utf8 }

    public var description: String { self.string }

    public static func == (a: ByteString, b: ByteString) -> Bool {
        a.string.utf8.elementsEqual(b.string.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        var s = self.string
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        hasher.combine(self.string.utf8.count)
    }

    /// Byte order (the order of the UTF-8 bytes, as `memcmp`), not Unicode collation.
    public static func < (a: ByteString, b: ByteString) -> Bool {
        a.string.utf8.lexicographicallyPrecedes(b.string.utf8)
    }

    /// Whether the bytes of `self` start with the bytes of `prefix`.
    public func hasBytePrefix(_ prefix: String) -> Bool {
        self.string.utf8.starts(with: prefix.utf8)
    }
}

extension String {
    /// Byte equality: true only when both strings have the same UTF-8 bytes (unlike `==`, which
    /// is Unicode canonical equivalence).
    public func bytesEqual(_ other: String) -> Bool {
        self.utf8.elementsEqual(other.utf8)
    }
}
