// An HTTP/1.1 request head (RFC 9112 §2–§5), parsed from bytes: the request line and the header
// fields up to the empty line. Pure: the engine's `HTTPHandler` feeds it what the socket gave and
// answers what it returns. Strict where leniency has let requests be read two ways (request
// smuggling): lines end in CRLF only, no obsolete line folding, no whitespace before a field's
// colon, no control characters in a value, tokens for the method and field names.

/// A parsed request head. Field names keep the case they were sent in; lookups ignore it.
public struct RequestHead: Sendable, Equatable {
    public var method: String
    /// The request target as sent (origin form for everything Wavelane serves).
    public var target: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int
    public var fields: [Field]

    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(method: String, target: String, minorVersion: Int, fields: [Field]) {
        self.method = method
        self.target = target
        self.minorVersion = minorVersion
        self.fields = fields
    }

    /// The values of every field named `name` (ASCII case-insensitive), in order.
    public func values(_ name: String) -> [String] {
        var out: [String] = []
        for field in self.fields where Self.sameName(field.name, name) { out.append(field.value) }
        return out
    }

    /// `values(name)`, as NIO's `HTTPHeaders` spells it.
    public subscript(name: String) -> [String] { self.values(name) }

    public func contains(_ name: String) -> Bool {
        self.fields.contains { Self.sameName($0.name, name) }
    }

    /// Whether a comma-separated list field (`Connection`, `Upgrade`) names `token`, ignoring case
    /// and the whitespace around list elements (RFC 9110 §5.6.1).
    public func listContains(_ name: String, token: String) -> Bool {
        for value in self.values(name) {
            for element in value.utf8.split(separator: UInt8(ascii: ",")) {
                var e = element[...]
                while let f = e.first, f == 0x20 || f == 0x09 { e = e.dropFirst() }
                while let l = e.last, l == 0x20 || l == 0x09 { e = e.dropLast() }
                if Self.sameName(String(decoding: e, as: UTF8.self), token) { return true }
            }
        }
        return false
    }

    static func sameName(_ a: String, _ b: String) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        // Native strings compare through their bytes in place (a zip of two UTF-8 views was ~1% of
        // a handshake's CPU: a header lookup compares every field's name).
        if let same = x.withContiguousStorageIfAvailable({ p in
            y.withContiguousStorageIfAvailable { q in Self.sameName(p, q) }
        }), let same {
            return same
        }
        return Self.sameName(Array(x), Array(y))
    }

    static func sameName<C: RandomAccessCollection>(_ x: C, _ y: C) -> Bool where C.Element == UInt8, C.Index == Int {
        guard x.count == y.count else { return false }
        var i = x.startIndex, j = y.startIndex
        while i < x.endIndex {
            let p = x[i], q = y[j]
            if p != q {
                guard p | 0x20 == q | 0x20, (p | 0x20) >= UInt8(ascii: "a"), (p | 0x20) <= UInt8(ascii: "z") else { return false }
            }
            i += 1
            j += 1
        }
        return true
    }
}

/// Finds where a request head ends while its bytes come in, looking at each byte once, and refuses
/// what cannot become a valid head as soon as it is seen: a bare CR or LF, a method that is not a
/// token, control or non-ASCII bytes in the request line, control bytes in a field, more than
/// `RequestHeadParser.maxHeadBytes`. A TLS hello or binary garbage sent to the port gets its 400 at
/// its first bytes, not at the handshake timeout. `RequestHeadParser.parse` then reads the head.
public struct RequestHeadScanner: Sendable {
    /// Bytes looked at so far (all of them start the buffer given to `scan`).
    private var position = 0
    private var lineStart = 0
    private var requestLineDone = false
    private var inMethod = true

    public init() {}

    /// `bytes` holds everything received so far, from the first byte. Returns the head's length
    /// (through its empty line) once it is complete, else nil.
    public mutating func scan(_ bytes: UnsafeRawBufferPointer) throws(RequestHeadParser.Error) -> Int? {
        typealias E = RequestHeadParser.Error
        var p = self.position
        defer { self.position = p }
        while p < bytes.count {
            let c = bytes[p]
            if p > 0, bytes[p - 1] == 0x0D, c != 0x0A { throw E.badLineEnding }
            guard p < RequestHeadParser.maxHeadBytes else { throw E.headTooLarge }
            if c == 0x0A {
                guard p > 0, bytes[p - 1] == 0x0D else { throw E.badLineEnding }
                let empty = p - 1 == self.lineStart
                self.lineStart = p + 1
                if empty {
                    if self.requestLineDone {
                        p += 1
                        return p
                    }
                    // an empty line before the request line (RFC 9112 §2.2)
                } else if !self.requestLineDone {
                    guard !self.inMethod else { throw E.badRequestLine }
                    self.requestLineDone = true
                }
            } else if c == 0x0D {
                // checked with the next byte
            } else if !self.requestLineDone {
                if self.inMethod {
                    if c == 0x20 {
                        guard p > self.lineStart else { throw E.badRequestLine }
                        self.inMethod = false
                    } else if !RequestHeadParser.isTokenByte(c) {
                        throw E.badRequestLine
                    }
                } else if c < 0x20 || c >= 0x7F {
                    throw E.badRequestLine
                }
            } else if (c < 0x20 && c != 0x09) || c == 0x7F {
                throw E.badField
            }
            p += 1
        }
        return nil
    }
}

public enum RequestHeadParser {
    public enum Error: Swift.Error, Equatable, Sendable {
        /// No end of the head within `maxHeadBytes` (431).
        case headTooLarge
        /// More than `maxFields` header fields (431).
        case tooManyFields
        /// The request line is not `method SP target SP HTTP/1.x` (400).
        case badRequestLine
        /// An HTTP version other than 1.0 and 1.1 (505).
        case unsupportedVersion
        /// A header line that is not `name: value` by the rules above (400).
        case badField
        /// A bare CR or LF (400).
        case badLineEnding
    }

    /// Heads longer than this are refused: far above what browsers send (cookies included), small
    /// enough that a connection in its handshake holds little.
    public static let maxHeadBytes = 32 * 1024
    public static let maxFields = 100

    /// Parses a complete head (as `Scanner` measured it, final empty line included).
    public static func parse(_ head: UnsafeRawBufferPointer) throws(Error) -> RequestHead {
        var lines = LineReader(bytes: head)
        var requestLine = try lines.next()
        while requestLine?.isEmpty == true { requestLine = try lines.next() }  // leading empty lines
        guard let requestLine else { throw .badRequestLine }
        let (method, target, minor) = try Self.requestLine(requestLine, in: head)
        var fields: [RequestHead.Field] = []
        while let line = try lines.next() {
            if line.isEmpty { return RequestHead(method: method, target: target, minorVersion: minor, fields: fields) }
            guard fields.count < Self.maxFields else { throw .tooManyFields }
            fields.append(try Self.field(line, in: head))
        }
        throw .badField  // no empty line: not a complete head
    }

    private static func requestLine(_ line: Range<Int>, in b: UnsafeRawBufferPointer) throws(Error) -> (String, String, Int) {
        guard let sp1 = line.first(where: { b[$0] == 0x20 }),
              let sp2 = (sp1 + 1..<line.upperBound).first(where: { b[$0] == 0x20 }) else { throw .badRequestLine }
        let method = line.lowerBound..<sp1
        let target = sp1 + 1..<sp2
        let version = sp2 + 1..<line.upperBound
        guard !method.isEmpty, method.allSatisfy({ isTokenByte(b[$0]) }) else { throw .badRequestLine }
        // Visible ASCII only: no spaces, controls or raw non-ASCII bytes in a target.
        guard !target.isEmpty, target.allSatisfy({ b[$0] > 0x20 && b[$0] < 0x7F }) else { throw .badRequestLine }
        let v = Array(b[version])
        guard v.count == 8, v[0..<5].elementsEqual("HTTP/".utf8), v[6] == UInt8(ascii: "."),
              isDigit(v[5]), isDigit(v[7]) else { throw .badRequestLine }
        guard v[5] == UInt8(ascii: "1"), v[7] == UInt8(ascii: "0") || v[7] == UInt8(ascii: "1") else { throw .unsupportedVersion }
        return (string(b, method), string(b, target), Int(v[7] - UInt8(ascii: "0")))
    }

    private static func field(_ line: Range<Int>, in b: UnsafeRawBufferPointer) throws(Error) -> RequestHead.Field {
        // A line starting with whitespace continues the previous one (obs-fold): refused.
        guard let colon = line.first(where: { b[$0] == UInt8(ascii: ":") }) else { throw .badField }
        let name = line.lowerBound..<colon
        guard !name.isEmpty, name.allSatisfy({ isTokenByte(b[$0]) }) else { throw .badField }
        var lo = colon + 1, hi = line.upperBound
        while lo < hi, b[lo] == 0x20 || b[lo] == 0x09 { lo += 1 }
        while hi > lo, b[hi - 1] == 0x20 || b[hi - 1] == 0x09 { hi -= 1 }
        for i in lo..<hi {
            let c = b[i]
            // field-vchar / obs-text, with SP and HTAB inside; no other control characters.
            guard c >= 0x20 || c == 0x09, c != 0x7F else { throw .badField }
        }
        return RequestHead.Field(name: string(b, name), value: string(b, lo..<hi))
    }

    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    private static func string(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self)
    }

    /// The lines of a head, without their CRLF. A CR not followed by LF, or an LF not preceded by
    /// CR, is an error.
    private struct LineReader {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        mutating func next() throws(Error) -> Range<Int>? {
            let start = self.position
            var i = start
            while i < self.bytes.count {
                let c = self.bytes[i]
                if c == 0x0D {
                    guard i + 1 < self.bytes.count, self.bytes[i + 1] == 0x0A else { throw .badLineEnding }
                    self.position = i + 2
                    return start..<i
                }
                if c == 0x0A { throw .badLineEnding }
                i += 1
            }
            return nil
        }
    }
}
