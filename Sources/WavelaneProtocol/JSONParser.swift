// A small, fast, strict JSON (RFC 8259) parser and writer. Pure Swift, no Foundation.
//
// Strictness (on top of the RFC grammar):
//  - trailing non-whitespace after the top-level value is rejected;
//  - numbers with leading zeros ("01", "-00") are rejected; numbers that overflow Double (1e400) are rejected;
//  - invalid UTF-8 anywhere in the input is rejected (overlongs, encoded surrogates, > U+10FFFF, truncations);
//  - raw control characters (U+0000..U+001F) inside strings are rejected;
//  - `\u` escapes must not produce lone surrogates (a valid high+low pair decodes to one scalar);
//  - duplicate object keys are rejected (avoids claim smuggling in JWTs and similar);
//  - nesting of arrays/objects deeper than `maxDepth` is rejected (a top-level `[]` has depth 1).
//
// The parser works on raw bytes (an UnsafeRawBufferPointer), never on Characters.

// MARK: - Parser

public enum JSONParser {
    public static let defaultMaxDepth = 64

    /// Parses exactly one JSON value (surrounded by optional whitespace) from `bytes`.
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue {
        var parser = _Parser(bytes, maxDepth: maxDepth)
        return try parser.parseDocument()
    }

    public static func parse<Bytes: Collection>(bytes: Bytes, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue
    where Bytes.Element == UInt8 {
        let result: Result<JSONValue, JSONError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(JSONError) -> JSONValue in
                try parse(UnsafeRawBufferPointer(buffer), maxDepth: maxDepth)
            }
        }
        if let result { return try result.get() }
        let copy = Array(bytes)
        return try copy.withUnsafeBytes { raw in
            Result { () throws(JSONError) -> JSONValue in try parse(raw, maxDepth: maxDepth) }
        }.get()
    }

    public static func parse(_ string: String, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue {
        try parse(bytes: string.utf8, maxDepth: maxDepth)
    }
}

/// Byte values the JSON parser and writer use.
enum ASCII {
    static let space: UInt8 = 0x20, tab: UInt8 = 0x09, lf: UInt8 = 0x0A, cr: UInt8 = 0x0D
    static let quote: UInt8 = 0x22, backslash: UInt8 = 0x5C, slash: UInt8 = 0x2F
    static let comma: UInt8 = 0x2C, colon: UInt8 = 0x3A
    static let lbracket: UInt8 = 0x5B, rbracket: UInt8 = 0x5D, lbrace: UInt8 = 0x7B, rbrace: UInt8 = 0x7D
    static let minus: UInt8 = 0x2D, plus: UInt8 = 0x2B, dot: UInt8 = 0x2E
    static let zero: UInt8 = 0x30, nine: UInt8 = 0x39
    static let e: UInt8 = 0x65, E: UInt8 = 0x45
}

private struct _Parser {
    let buf: UnsafeRawBufferPointer
    let end: Int
    let maxDepth: Int
    var pos: Int = 0
    var depth: Int = 0
    /// Reused scratch space for strings that contain escapes.
    var scratch: [UInt8] = []

    init(_ buf: UnsafeRawBufferPointer, maxDepth: Int) {
        self.buf = buf
        self.end = buf.count
        self.maxDepth = maxDepth
    }

    @inline(__always) func byte(_ i: Int) -> UInt8 { buf[i] }

    mutating func parseDocument() throws(JSONError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        if pos != end { throw unexpected(pos) }
        return value
    }

    @inline(__always) mutating func skipWhitespace() {
        while pos < end {
            let c = buf[pos]
            if c == ASCII.space || c == ASCII.lf || c == ASCII.cr || c == ASCII.tab {
                pos += 1
            } else {
                return
            }
        }
    }

    func unexpected(_ at: Int) -> JSONError {
        if at >= end { return .at(at, "unexpected end of input") }
        let c = buf[at]
        if c >= 0x21 && c < 0x7F {
            return .at(at, "unexpected character '\(Character(Unicode.Scalar(c)))'")
        }
        return .at(at, "unexpected byte 0x\(hex2(c))")
    }

    mutating func parseValue() throws(JSONError) -> JSONValue {
        guard pos < end else { throw unexpected(pos) }
        switch buf[pos] {
        case ASCII.quote:
            return .string(try parseString())
        case ASCII.lbrace:
            return try parseObject()
        case ASCII.lbracket:
            return try parseArray()
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case ASCII.minus, ASCII.zero...ASCII.nine:
            return try parseNumber()
        default:
            throw unexpected(pos)
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let n = literal.utf8CodeUnitCount
        let p = literal.utf8Start
        for k in 0..<n {
            if pos + k >= end || buf[pos + k] != p[k] { throw unexpected(pos + k) }
        }
        pos += n
    }

    mutating func enter(_ at: Int) throws(JSONError) {
        depth += 1
        if depth > maxDepth { throw .at(at, "nesting deeper than \(maxDepth)") }
    }

    mutating func parseArray() throws(JSONError) -> JSONValue {
        try enter(pos)
        pos += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if pos < end && buf[pos] == ASCII.rbracket {
            pos += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard pos < end else { throw unexpected(pos) }
            let c = buf[pos]
            pos += 1
            if c == ASCII.comma { continue }
            if c == ASCII.rbracket { break }
            throw unexpected(pos - 1)
        }
        depth -= 1
        return .array(elements)
    }

    mutating func parseObject() throws(JSONError) -> JSONValue {
        try enter(pos)
        pos += 1  // {
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if pos < end && buf[pos] == ASCII.rbrace {
            pos += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            let keyOffset = pos
            guard pos < end, buf[pos] == ASCII.quote else { throw unexpected(pos) }
            let key = try parseString()
            skipWhitespace()
            guard pos < end, buf[pos] == ASCII.colon else { throw unexpected(pos) }
            pos += 1
            skipWhitespace()
            let value = try parseValue()
            if members.updateValue(value, forKey: key) != nil {
                throw .at(keyOffset, "duplicate object key \"\(key)\"")
            }
            skipWhitespace()
            guard pos < end else { throw unexpected(pos) }
            let c = buf[pos]
            pos += 1
            if c == ASCII.comma { continue }
            if c == ASCII.rbrace { break }
            throw unexpected(pos - 1)
        }
        depth -= 1
        return .object(members)
    }

    // MARK: Strings

    /// Parses a string starting at the opening quote (buf[pos] == '"').
    mutating func parseString() throws(JSONError) -> String {
        pos += 1
        let start = pos
        // Fast path: no escapes. Validates UTF-8 and rejects control characters as it goes.
        while pos < end {
            let c = buf[pos]
            if c == ASCII.quote {
                let s = makeString(start, pos)
                pos += 1
                return s
            }
            if c == ASCII.backslash { break }
            if c < 0x20 { throw .at(pos, "control character 0x\(hex2(c)) in string") }
            if c < 0x80 {
                pos += 1
            } else {
                pos += try utf8SequenceLength(at: pos)
            }
        }
        guard pos < end else { throw .at(pos, "unterminated string") }
        // Slow path: escapes present; copy what we have so far into scratch.
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[start..<pos]))
        while pos < end {
            let c = buf[pos]
            if c == ASCII.quote {
                pos += 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if c == ASCII.backslash {
                try parseEscape()
            } else if c < 0x20 {
                throw .at(pos, "control character 0x\(hex2(c)) in string")
            } else if c < 0x80 {
                scratch.append(c)
                pos += 1
            } else {
                let n = try utf8SequenceLength(at: pos)
                for k in 0..<n { scratch.append(buf[pos + k]) }
                pos += n
            }
        }
        throw .at(pos, "unterminated string")
    }

    @inline(__always) func makeString(_ from: Int, _ to: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: buf[from..<to]), as: UTF8.self)
    }

    /// buf[pos] == '\\'. Appends the decoded bytes to scratch.
    mutating func parseEscape() throws(JSONError) {
        let escapeStart = pos
        guard pos + 1 < end else { throw .at(pos + 1, "unterminated string") }
        let c = buf[pos + 1]
        pos += 2
        switch c {
        case ASCII.quote: scratch.append(ASCII.quote)
        case ASCII.backslash: scratch.append(ASCII.backslash)
        case ASCII.slash: scratch.append(ASCII.slash)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = UInt32(try parseHex4())
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                // High surrogate: must be followed by \u + low surrogate.
                guard pos + 1 < end, buf[pos] == ASCII.backslash, buf[pos + 1] == UInt8(ascii: "u") else {
                    throw .at(escapeStart, "lone surrogate in \\u escape")
                }
                pos += 2
                let low = UInt32(try parseHex4())
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw .at(escapeStart, "lone surrogate in \\u escape")
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw .at(escapeStart, "lone surrogate in \\u escape")
            }
            appendUTF8(scalar)
        default:
            throw .at(escapeStart, "invalid escape sequence")
        }
    }

    mutating func parseHex4() throws(JSONError) -> UInt16 {
        var v: UInt16 = 0
        for k in 0..<4 {
            guard pos + k < end else { throw .at(pos + k, "unterminated string") }
            let c = buf[pos + k]
            let d: UInt8
            switch c {
            case ASCII.zero...ASCII.nine: d = c &- ASCII.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c &- UInt8(ascii: "A") &+ 10
            default: throw .at(pos + k, "invalid hex digit in \\u escape")
            }
            v = v << 4 | UInt16(d)
        }
        pos += 4
        return v
    }

    mutating func appendUTF8(_ s: UInt32) {
        if s < 0x80 {
            scratch.append(UInt8(s))
        } else if s < 0x800 {
            scratch.append(UInt8(0xC0 | (s >> 6)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        } else if s < 0x10000 {
            scratch.append(UInt8(0xE0 | (s >> 12)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        } else {
            scratch.append(UInt8(0xF0 | (s >> 18)))
            scratch.append(UInt8(0x80 | ((s >> 12) & 0x3F)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        }
    }

    /// Validates the multi-byte UTF-8 sequence starting at `i` (buf[i] >= 0x80) per Unicode Table 3-7
    /// and returns its length.
    @inline(__always)
    func utf8SequenceLength(at i: Int) throws(JSONError) -> Int {
        let b0 = buf[i]
        let n: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: n = 2
        case 0xE0: n = 3; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: n = 3
        case 0xED: n = 3; hi = 0x9F
        case 0xF0: n = 4; lo = 0x90
        case 0xF1...0xF3: n = 4
        case 0xF4: n = 4; hi = 0x8F
        default: throw .at(i, "invalid UTF-8")
        }
        guard i + n <= end else { throw .at(i, "invalid UTF-8") }
        let b1 = buf[i + 1]
        guard b1 >= lo && b1 <= hi else { throw .at(i, "invalid UTF-8") }
        if n > 2 {
            guard buf[i + 2] & 0xC0 == 0x80 else { throw .at(i, "invalid UTF-8") }
            if n > 3 {
                guard buf[i + 3] & 0xC0 == 0x80 else { throw .at(i, "invalid UTF-8") }
            }
        }
        return n
    }

    // MARK: Numbers

    mutating func parseNumber() throws(JSONError) -> JSONValue {
        let start = pos
        var negative = false
        if buf[pos] == ASCII.minus {
            negative = true
            pos += 1
        }
        guard pos < end, buf[pos] >= ASCII.zero && buf[pos] <= ASCII.nine else {
            throw .at(pos, pos < end ? "invalid number" : "unexpected end of input")
        }
        // Integer part, accumulated negatively so Int64.min fits.
        var acc: Int64 = 0
        var overflow = false
        if buf[pos] == ASCII.zero {
            pos += 1
            if pos < end && buf[pos] >= ASCII.zero && buf[pos] <= ASCII.nine {
                throw .at(start, "leading zeros are not allowed in numbers")
            }
        } else {
            while pos < end {
                let c = buf[pos]
                guard c >= ASCII.zero && c <= ASCII.nine else { break }
                if !overflow {
                    let (m, o1) = acc.multipliedReportingOverflow(by: 10)
                    let (s, o2) = m.subtractingReportingOverflow(Int64(c &- ASCII.zero))
                    if o1 || o2 { overflow = true } else { acc = s }
                }
                pos += 1
            }
        }
        var isInteger = true
        if pos < end && buf[pos] == ASCII.dot {
            isInteger = false
            pos += 1
            let digitsStart = pos
            while pos < end && buf[pos] >= ASCII.zero && buf[pos] <= ASCII.nine { pos += 1 }
            if pos == digitsStart { throw .at(pos, pos < end ? "expected digit after decimal point" : "unexpected end of input") }
        }
        if pos < end && (buf[pos] == ASCII.e || buf[pos] == ASCII.E) {
            isInteger = false
            pos += 1
            if pos < end && (buf[pos] == ASCII.plus || buf[pos] == ASCII.minus) { pos += 1 }
            let digitsStart = pos
            while pos < end && buf[pos] >= ASCII.zero && buf[pos] <= ASCII.nine { pos += 1 }
            if pos == digitsStart { throw .at(pos, pos < end ? "expected digit in exponent" : "unexpected end of input") }
        }
        if isInteger && !overflow {
            if negative { return .int(acc) }
            if acc != .min { return .int(-acc) }
            // 9223372036854775808 does not fit; fall through to Double.
        }
        // The grammar above guarantees the text is a valid decimal floating-point literal.
        let text = makeString(start, pos)
        guard let d = Double(text), d.isFinite else {
            throw .at(start, "number out of range")
        }
        return .double(d)
    }
}

@inline(__always)
private func hex2(_ c: UInt8) -> String {
    let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F"]
    return String([digits[Int(c >> 4)], digits[Int(c & 0xF)]])
}
