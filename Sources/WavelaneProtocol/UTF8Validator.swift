/// An incremental UTF-8 validator (the Hoehrmann DFA) that keeps its state across fragments, so a
/// text message split over many frames is rejected at the first byte that can no longer start or
/// continue a valid sequence (fail fast), and accepted only if it ends on a character boundary.
public struct UTF8Validator: Sendable {
    private var state: UInt8 = UTF8Validator.accept

    static let accept: UInt8 = 0
    static let reject: UInt8 = 12

    public init() {}

    /// True when everything fed so far ends on a complete character.
    @inlinable public var isComplete: Bool { self.stateValue == 0 }

    @usableFromInline var stateValue: UInt8 { self.state }

    /// Feeds `bytes`; returns false as soon as they cannot be part of valid UTF-8.
    @discardableResult
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var s = self.state
        if s == Self.reject { return false }
        var i = 0
        let n = bytes.count
        // ASCII fast path: 8 bytes at a time while in the accepting state.
        while i < n {
            if s == Self.accept {
                while i + 8 <= n {
                    let word = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    if word & 0x8080_8080_8080_8080 != 0 { break }
                    i += 8
                }
                if i >= n { break }
            }
            let byte = bytes[i]
            let type = Self.classes[Int(byte)]
            s = Self.transitions[Int(s) + Int(type)]
            if s == Self.reject {
                self.state = s
                return false
            }
            i += 1
        }
        self.state = s
        return true
    }

    @discardableResult
    public mutating func feed<Bytes: Collection>(bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        if let result = bytes.withContiguousStorageIfAvailable({ self.feed(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        let array = Array(bytes)
        return array.withUnsafeBytes { self.feed($0) }
    }

    /// Validates a complete buffer.
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var v = UTF8Validator()
        return v.feed(bytes) && v.isComplete
    }

    public static func isValid<Bytes: Collection>(bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        var v = UTF8Validator()
        return v.feed(bytes: bytes) && v.isComplete
    }

    // Character classes of each byte (Bjoern Hoehrmann's "Flexible and Economical UTF-8 Decoder").
    static let classes: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 256)
        for b in 0x80...0x8F { t[b] = 1 }
        for b in 0x90...0x9F { t[b] = 9 }
        for b in 0xA0...0xBF { t[b] = 7 }
        t[0xC0] = 8; t[0xC1] = 8
        for b in 0xC2...0xDF { t[b] = 2 }
        t[0xE0] = 10
        for b in 0xE1...0xEC { t[b] = 3 }
        t[0xED] = 4
        t[0xEE] = 3; t[0xEF] = 3
        t[0xF0] = 11
        for b in 0xF1...0xF3 { t[b] = 6 }
        t[0xF4] = 5
        for b in 0xF5...0xFF { t[b] = 8 }
        return t
    }()

    // State transitions: states are multiples of 12 (0 = accept, 12 = reject).
    static let transitions: [UInt8] = [
        0, 12, 24, 36, 60, 96, 84, 12, 12, 12, 48, 72,
        12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
        12, 0, 12, 12, 12, 12, 12, 0, 12, 0, 12, 12,
        12, 24, 12, 12, 12, 12, 12, 24, 12, 24, 12, 12,
        12, 12, 12, 12, 12, 12, 12, 24, 12, 12, 12, 12,
        12, 24, 12, 12, 12, 12, 12, 12, 12, 24, 12, 12,
        12, 12, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12,
        12, 36, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12,
        12, 36, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    ]
}
