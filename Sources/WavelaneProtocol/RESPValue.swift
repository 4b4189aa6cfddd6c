// RESP (REdis Serialization Protocol) versions 2 and 3: the values a parser returns, and its errors.
// The parser is in RESPParser.swift, the encoder in RESPEncoder.swift. Pure: no I/O, no Foundation.

import NIOCore

// MARK: - Value

public enum RESPValue: Equatable, Sendable {
    /// One key/value pair of a RESP3 map or attribute, in wire order.
    public struct Pair: Equatable, Sendable {
        public var key: RESPValue
        public var value: RESPValue
        public init(_ key: RESPValue, _ value: RESPValue) {
            self.key = key
            self.value = value
        }
    }

    /// `+OK`
    case simpleString(String)
    /// `-ERR message`
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$5 hello`; nil is the RESP2 null bulk string `$-1`.
    case bulkString(ByteBuffer?)
    /// `*n ...`; nil is the RESP2 null array `*-1`.
    case array([RESPValue]?)
    /// RESP3 `_`
    case null
    /// RESP3 `,1.5` (also `inf`, `-inf`, `nan`).
    case double(Double)
    /// RESP3 `#t` / `#f`
    case boolean(Bool)
    /// RESP3 `!n` (binary-safe error).
    case bulkError(ByteBuffer)
    /// RESP3 `=n txt:...`: a three-character format and the text.
    case verbatimString(format: String, text: ByteBuffer)
    /// RESP3 `(12345678901234567890`: the decimal digits, with an optional leading `-`.
    case bigNumber(String)
    /// RESP3 `%n`, pairs in wire order.
    case map([Pair])
    /// RESP3 `~n`
    case set([RESPValue])
    /// RESP3 `>n` (out-of-band: pub/sub messages, invalidations).
    case push([RESPValue])
    /// RESP3 `|n`: attributes that precede (and annotate) the value that follows them.
    indirect case attribute([Pair], RESPValue)

    /// The bytes of a bulk string, simple string or verbatim string.
    public var bytes: ByteBuffer? {
        switch self {
        case .bulkString(let b): return b
        case .simpleString(let s): return ByteBuffer(string: s)
        case .verbatimString(_, let text): return text
        case .attribute(_, let v): return v.bytes
        default: return nil
        }
    }

    /// A bulk/simple/verbatim string decoded as UTF-8 (invalid sequences replaced).
    public var string: String? {
        switch self {
        case .simpleString(let s): return s
        case .bulkString(let b?): return String(buffer: b)
        case .verbatimString(_, let text): return String(buffer: text)
        case .attribute(_, let v): return v.string
        default: return nil
        }
    }

    public var integer: Int64? {
        switch self {
        case .integer(let i): return i
        case .attribute(_, let v): return v.integer
        default: return nil
        }
    }

    /// The elements of an array, set or push (nil for a null array and for other types).
    public var elements: [RESPValue]? {
        switch self {
        case .array(let a): return a
        case .set(let a), .push(let a): return a
        case .attribute(_, let v): return v.elements
        default: return nil
        }
    }

    /// The message of an `.error` or `.bulkError`.
    public var errorMessage: String? {
        switch self {
        case .error(let s): return s
        case .bulkError(let b): return String(buffer: b)
        case .attribute(_, let v): return v.errorMessage
        default: return nil
        }
    }

    /// True for `$-1`, `*-1` and `_`.
    public var isNull: Bool {
        switch self {
        case .null, .bulkString(nil), .array(nil): return true
        default: return false
        }
    }
}

// MARK: - Error

public struct RESPError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The first byte of a value is not a RESP type byte.
        case invalidTypeByte
        /// A length is not a decimal number, or negative other than -1 where -1 is allowed.
        case invalidLength
        /// An integer is malformed or does not fit Int64 (or a double/boolean/big number is malformed).
        case invalidNumber
        /// A line does not end in CRLF, or a bulk payload is not followed by CRLF.
        case missingCRLF
        /// A verbatim string without its `xxx:` format prefix.
        case invalidVerbatim
        /// A limit was exceeded.
        case bulkTooLong, aggregateTooLarge, nestingTooDeep, lineTooLong
        /// Valid RESP3 this parser does not implement (streamed types).
        case unsupported
    }

    public var kind: Kind
    /// Human-readable, with the offset of the problem counted from the start of the top-level value.
    public var message: String
    public var offset: Int

    public init(_ kind: Kind, _ message: String, offset: Int) {
        self.kind = kind
        self.message = message
        self.offset = offset
    }

    public var description: String { "RESP protocol error: \(message)" }
}
