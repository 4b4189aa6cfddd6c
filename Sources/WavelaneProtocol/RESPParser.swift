// RESP (REdis Serialization Protocol) versions 2 and 3: a streaming parser and an encoder over
// ByteBuffer. Pure: no I/O, no Foundation.
//
// Parser (NIO style): `RESPParser.parse(&buffer)` returns one complete value and moves the reader
// index past it, or returns nil and leaves the buffer untouched when the value is not complete yet
// (a partial value is never consumed). Feed it the same cumulation buffer again after more bytes
// arrive. Every RESP2 and RESP3 type is parsed:
//
//   +simple  -error  :integer  $bulk  *array            (RESP2; `$-1` / `*-1` are the RESP2 nulls)
//   _null  ,double  #boolean  !bulk-error  =verbatim  (big-number
//   %map  ~set  >push  |attribute                       (RESP3)
//
// Streamed RESP3 strings/aggregates (`$?`, `*?`, ...) are rejected (Redis never sends them).
// Strictness: every line ends in CRLF (a bare CR or LF is an error); a bulk payload must be
// followed by exactly CRLF; lengths are decimal digits, the only negative length is -1 (and only
// for `$` and `*`); integers must fit Int64. Limits (all configurable): bulk length, element count
// of one aggregate, nesting depth of aggregates, length of a line (simple string, error, number);
// a violation throws as soon as it is visible, without waiting for the rest of the value.

import NIOCore

// MARK: - Parser

public struct RESPParser: Sendable {
    /// Longest accepted bulk string / bulk error / verbatim string payload, in bytes.
    public var maxBulkLength: Int
    /// Most elements in one array / set / push, or pairs in one map / attribute.
    public var maxAggregateCount: Int
    /// Deepest nesting of aggregates (a top-level array has depth 1).
    public var maxDepth: Int
    /// Longest line (simple string, error, number) without its CRLF.
    public var maxLineLength: Int

    /// While waiting for more bytes: how many readable bytes the pending value needs at least, so a
    /// large value arriving in many reads is not re-parsed from its start after every read.
    private var needed = 0

    public static let defaultMaxBulkLength = 512 * 1024 * 1024  // Redis's own proto-max-bulk-len
    public static let defaultMaxAggregateCount = 1 << 20
    public static let defaultMaxDepth = 32
    public static let defaultMaxLineLength = 64 * 1024

    public init(
        maxBulkLength: Int = RESPParser.defaultMaxBulkLength,
        maxAggregateCount: Int = RESPParser.defaultMaxAggregateCount,
        maxDepth: Int = RESPParser.defaultMaxDepth,
        maxLineLength: Int = RESPParser.defaultMaxLineLength
    ) {
        self.maxBulkLength = maxBulkLength
        self.maxAggregateCount = maxAggregateCount
        self.maxDepth = maxDepth
        self.maxLineLength = maxLineLength
    }

    /// Parses one complete value from the readable bytes of `buffer` and consumes it; returns nil
    /// (consuming nothing) when more bytes are needed. Throws on malformed input or a violated limit;
    /// after an error the stream cannot be resynchronized (close the connection).
    public mutating func parse(_ buffer: inout ByteBuffer) throws(RESPError) -> RESPValue? {
        let available = buffer.readableBytes
        if available == 0 || available < self.needed { return nil }
        var walker = Walker(buffer: buffer, limits: self)
        var index = buffer.readerIndex
        if let value = try walker.value(at: &index, depth: 0) {
            buffer.moveReaderIndex(to: index)
            self.needed = 0
            return value
        }
        self.needed = walker.need - buffer.readerIndex
        return nil
    }

    /// Parses every complete value in `buffer` (consuming them), e.g. a pipelined batch of replies.
    public mutating func parseAll(_ buffer: inout ByteBuffer) throws(RESPError) -> [RESPValue] {
        var out: [RESPValue] = []
        while let value = try self.parse(&buffer) { out.append(value) }
        return out
    }
}

private let CR = UInt8(ascii: "\r")
private let LF = UInt8(ascii: "\n")

/// One parse attempt over the readable bytes of a buffer. Methods return nil when the input ends
/// before the value does; `need` then holds the absolute index up to which bytes are required.
private struct Walker {
    let buffer: ByteBuffer
    let start: Int
    let end: Int
    let limits: RESPParser
    var need = 0

    init(buffer: ByteBuffer, limits: RESPParser) {
        self.buffer = buffer
        self.start = buffer.readerIndex
        self.end = buffer.writerIndex
        self.limits = limits
    }

    func error(_ kind: RESPError.Kind, _ what: String, at index: Int) -> RESPError {
        let offset = index - self.start
        return RESPError(kind, "\(what) at offset \(offset)", offset: offset)
    }

    /// The bytes of the line starting at `index` (without CRLF); advances past the CRLF.
    mutating func line(at index: inout Int) throws(RESPError) -> Range<Int>? {
        let from = index
        let limit = self.limits.maxLineLength
        let scanEnd = min(self.end, from + limit + 1)  // the CR may sit right after a max-length line
        var found = -1
        var bareLF = -1
        self.buffer.withUnsafeReadableBytes { raw in
            let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self) - self.start
            var i = from
            while i < scanEnd {
                let byte = base[i]
                if byte == CR { found = i; return }
                if byte == LF { bareLF = i; return }
                i += 1
            }
        }
        if bareLF >= 0 { throw self.error(.missingCRLF, "LF without CR", at: bareLF) }
        if found < 0 {
            if scanEnd - from > limit { throw self.error(.lineTooLong, "line longer than \(limit) bytes", at: from) }
            self.need = self.end + 1
            return nil
        }
        if found + 1 >= self.end {
            self.need = found + 2
            return nil
        }
        if self.buffer.getInteger(at: found + 1, as: UInt8.self) != LF {
            throw self.error(.missingCRLF, "CR not followed by LF", at: found + 1)
        }
        index = found + 2
        return from..<found
    }

    func text(_ range: Range<Int>) -> String {
        self.buffer.getString(at: range.lowerBound, length: range.count) ?? ""
    }

    func byte(_ i: Int) -> UInt8 { self.buffer.getInteger(at: i, as: UInt8.self)! }

    /// A signed decimal Int64 (optional leading `+` or `-`).
    func integer(_ range: Range<Int>) throws(RESPError) -> Int64 {
        var i = range.lowerBound
        var negative = false
        if i < range.upperBound && (self.byte(i) == UInt8(ascii: "-") || self.byte(i) == UInt8(ascii: "+")) {
            negative = self.byte(i) == UInt8(ascii: "-")
            i += 1
        }
        guard i < range.upperBound else { throw self.error(.invalidNumber, "empty integer", at: range.lowerBound) }
        var value: Int64 = 0
        while i < range.upperBound {
            let b = self.byte(i)
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else {
                throw self.error(.invalidNumber, "invalid digit in integer", at: i)
            }
            let digit = Int64(b - UInt8(ascii: "0"))
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = negative ? m.subtractingReportingOverflow(digit) : m.addingReportingOverflow(digit)
            if o1 || o2 { throw self.error(.invalidNumber, "integer does not fit 64 bits", at: range.lowerBound) }
            value = s
            i += 1
        }
        return value
    }

    /// A length: decimal digits, or exactly "-1" when `allowNull` (returned as -1).
    func length(_ range: Range<Int>, allowNull: Bool, kind: String) throws(RESPError) -> Int {
        if allowNull && range.count == 2 && self.byte(range.lowerBound) == UInt8(ascii: "-") && self.byte(range.lowerBound + 1) == UInt8(ascii: "1") {
            return -1
        }
        if range.count == 1 && self.byte(range.lowerBound) == UInt8(ascii: "?") {
            throw self.error(.unsupported, "streamed RESP3 \(kind) is not supported", at: range.lowerBound)
        }
        guard !range.isEmpty, range.count <= 18 else {
            throw self.error(.invalidLength, "invalid \(kind) length \"\(self.text(range))\"", at: range.lowerBound)
        }
        var value = 0
        for i in range {
            let b = self.byte(i)
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else {
                throw self.error(.invalidLength, "invalid \(kind) length \"\(self.text(range))\"", at: range.lowerBound)
            }
            value = value * 10 + Int(b - UInt8(ascii: "0"))
        }
        return value
    }

    /// The payload of a bulk-like value (`$`, `!`, `=`) of `count` bytes at `index`, then CRLF.
    mutating func payload(at index: inout Int, count: Int) throws(RESPError) -> ByteBuffer? {
        let stop = index + count
        guard stop + 2 <= self.end else {
            self.need = stop + 2
            return nil
        }
        guard self.byte(stop) == CR && self.byte(stop + 1) == LF else {
            throw self.error(.missingCRLF, "bulk payload of \(count) bytes not followed by CRLF", at: stop)
        }
        let slice = self.buffer.getSlice(at: index, length: count)!
        index = stop + 2
        return slice
    }

    mutating func value(at index: inout Int, depth: Int) throws(RESPError) -> RESPValue? {
        guard index < self.end else {
            self.need = index + 1
            return nil
        }
        let typeAt = index
        let type = self.byte(index)
        var i = index + 1
        switch type {
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let line = try self.line(at: &i) else { return nil }
            index = i
            return type == UInt8(ascii: "+") ? .simpleString(self.text(line)) : .error(self.text(line))
        case UInt8(ascii: ":"):
            guard let line = try self.line(at: &i) else { return nil }
            let n = try self.integer(line)
            index = i
            return .integer(n)
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let name = type == UInt8(ascii: "$") ? "bulk string" : type == UInt8(ascii: "!") ? "bulk error" : "verbatim string"
            guard let line = try self.line(at: &i) else { return nil }
            let count = try self.length(line, allowNull: type == UInt8(ascii: "$"), kind: name)
            if count < 0 {
                index = i
                return .bulkString(nil)
            }
            if count > self.limits.maxBulkLength {
                throw self.error(.bulkTooLong, "\(name) of \(count) bytes exceeds the limit of \(self.limits.maxBulkLength)", at: typeAt)
            }
            if type == UInt8(ascii: "=") && count < 4 {
                throw self.error(.invalidVerbatim, "verbatim string shorter than its format prefix", at: typeAt)
            }
            guard var body = try self.payload(at: &i, count: count) else { return nil }
            index = i
            switch type {
            case UInt8(ascii: "$"): return .bulkString(body)
            case UInt8(ascii: "!"): return .bulkError(body)
            default:
                // The format is three printable ASCII characters ("txt", "mkd"), then ':'.
                guard body.getInteger(at: body.readerIndex + 3, as: UInt8.self) == UInt8(ascii: ":"),
                      body.readableBytesView.prefix(3).allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                    throw self.error(.invalidVerbatim, "verbatim string without \"xxx:\" format prefix", at: typeAt)
                }
                let format = body.readString(length: 3)!
                body.moveReaderIndex(forwardBy: 1)
                return .verbatimString(format: format, text: body)
            }
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            let name: String
            switch type {
            case UInt8(ascii: "*"): name = "array"
            case UInt8(ascii: "~"): name = "set"
            case UInt8(ascii: ">"): name = "push"
            case UInt8(ascii: "%"): name = "map"
            default: name = "attribute"
            }
            guard let line = try self.line(at: &i) else { return nil }
            let count = try self.length(line, allowNull: type == UInt8(ascii: "*"), kind: name)
            if count < 0 {
                index = i
                return .array(nil)
            }
            if count > self.limits.maxAggregateCount {
                throw self.error(.aggregateTooLarge, "\(name) of \(count) elements exceeds the limit of \(self.limits.maxAggregateCount)", at: typeAt)
            }
            if depth + 1 > self.limits.maxDepth {
                throw self.error(.nestingTooDeep, "aggregates nested deeper than \(self.limits.maxDepth)", at: typeAt)
            }
            if type == UInt8(ascii: "%") || type == UInt8(ascii: "|") {
                var pairs: [RESPValue.Pair] = []
                pairs.reserveCapacity(min(count, 1024))
                for _ in 0..<count {
                    guard let k = try self.value(at: &i, depth: depth + 1) else { return nil }
                    guard let v = try self.value(at: &i, depth: depth + 1) else { return nil }
                    pairs.append(RESPValue.Pair(k, v))
                }
                if type == UInt8(ascii: "%") {
                    index = i
                    return .map(pairs)
                }
                // An attribute annotates the value that follows it (at the same level).
                guard let annotated = try self.value(at: &i, depth: depth) else { return nil }
                index = i
                return .attribute(pairs, annotated)
            }
            var elements: [RESPValue] = []
            elements.reserveCapacity(min(count, 1024))
            for _ in 0..<count {
                guard let element = try self.value(at: &i, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            index = i
            switch type {
            case UInt8(ascii: "*"): return .array(elements)
            case UInt8(ascii: "~"): return .set(elements)
            default: return .push(elements)
            }
        case UInt8(ascii: "_"):
            guard let line = try self.line(at: &i) else { return nil }
            guard line.isEmpty else { throw self.error(.invalidNumber, "null with a body", at: line.lowerBound) }
            index = i
            return .null
        case UInt8(ascii: "#"):
            guard let line = try self.line(at: &i) else { return nil }
            guard line.count == 1, self.byte(line.lowerBound) == UInt8(ascii: "t") || self.byte(line.lowerBound) == UInt8(ascii: "f") else {
                throw self.error(.invalidNumber, "boolean is not t or f", at: line.lowerBound)
            }
            index = i
            return .boolean(self.byte(line.lowerBound) == UInt8(ascii: "t"))
        case UInt8(ascii: ","):
            guard let line = try self.line(at: &i) else { return nil }
            let text = self.text(line)
            let value: Double?
            switch text {
            case "inf", "+inf": value = .infinity
            case "-inf": value = -.infinity
            case "nan", "-nan": value = .nan
            default:
                let allowed = text.utf8.allSatisfy { b in
                    (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: ".") || b == UInt8(ascii: "-")
                        || b == UInt8(ascii: "+") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E")
                }
                value = allowed ? Double(text) : nil
            }
            guard let value else { throw self.error(.invalidNumber, "invalid double \"\(text)\"", at: line.lowerBound) }
            index = i
            return .double(value)
        case UInt8(ascii: "("):
            guard let line = try self.line(at: &i) else { return nil }
            let text = self.text(line)
            let digits = text.hasPrefix("-") || text.hasPrefix("+") ? text.utf8.dropFirst() : text.utf8[...]
            guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                throw self.error(.invalidNumber, "invalid big number \"\(text)\"", at: line.lowerBound)
            }
            index = i
            return .bigNumber(text)
        default:
            let printable = type >= 0x20 && type < 0x7F ? " ('\(Character(Unicode.Scalar(type)))')" : ""
            throw self.error(.invalidTypeByte, "invalid RESP type byte 0x\(String(type, radix: 16, uppercase: true))\(printable)", at: typeAt)
        }
    }
}
