// RESP: commands as arrays of bulk strings, and any value in its wire form. Pure: no I/O.

import NIOCore

// MARK: - Encoder

/// One argument of a command: text (sent as its UTF-8 bytes) or raw bytes. Commands are sent as
/// arrays of bulk strings, so arguments are binary-safe.
public enum RESPArgument: Hashable, Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case bytes(ByteBuffer)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .string(String(value)) }
    public init(_ bytes: [UInt8]) { self = .bytes(ByteBuffer(bytes: bytes)) }
    public init(_ bytes: ByteBuffer) { self = .bytes(bytes) }
    public init(_ string: String) { self = .string(string) }
    public init<I: BinaryInteger>(_ value: I) { self = .string(String(value)) }
}

public enum RESPEncoder {
    /// Appends `args` as a RESP array of bulk strings (the request format of Redis).
    public static func command(_ args: [RESPArgument], into buffer: inout ByteBuffer) {
        self.header(UInt8(ascii: "*"), args.count, into: &buffer)
        for arg in args {
            switch arg {
            case .string(let s): self.bulk(s, into: &buffer)
            case .bytes(let b): self.bulk(b, into: &buffer)
            }
        }
    }

    public static func command(_ args: [String], into buffer: inout ByteBuffer) {
        self.header(UInt8(ascii: "*"), args.count, into: &buffer)
        for arg in args { self.bulk(arg, into: &buffer) }
    }

    public static func command(_ args: [ByteBuffer], into buffer: inout ByteBuffer) {
        self.header(UInt8(ascii: "*"), args.count, into: &buffer)
        for arg in args { self.bulk(arg, into: &buffer) }
    }

    public static func command(_ args: [[UInt8]], into buffer: inout ByteBuffer) {
        self.header(UInt8(ascii: "*"), args.count, into: &buffer)
        for arg in args {
            self.header(UInt8(ascii: "$"), arg.count, into: &buffer)
            buffer.writeBytes(arg)
            buffer.writeStaticString("\r\n")
        }
    }

    /// Appends the wire form of any value (used for tests and fakes; the client only sends commands).
    /// Simple strings and errors must not contain CR or LF.
    public static func encode(_ value: RESPValue, into buffer: inout ByteBuffer) {
        switch value {
        case .simpleString(let s):
            self.line(UInt8(ascii: "+"), s, into: &buffer)
        case .error(let s):
            self.line(UInt8(ascii: "-"), s, into: &buffer)
        case .integer(let i):
            self.line(UInt8(ascii: ":"), String(i), into: &buffer)
        case .bulkString(let b?):
            self.bulk(b, into: &buffer)
        case .bulkString(nil):
            buffer.writeStaticString("$-1\r\n")
        case .array(let a?):
            self.header(UInt8(ascii: "*"), a.count, into: &buffer)
            for v in a { self.encode(v, into: &buffer) }
        case .array(nil):
            buffer.writeStaticString("*-1\r\n")
        case .null:
            buffer.writeStaticString("_\r\n")
        case .double(let d):
            let text: String
            if d.isNaN { text = "nan" } else if d == .infinity { text = "inf" } else if d == -.infinity { text = "-inf" } else { text = String(d) }
            self.line(UInt8(ascii: ","), text, into: &buffer)
        case .boolean(let b):
            buffer.writeStaticString(b ? "#t\r\n" : "#f\r\n")
        case .bulkError(let b):
            self.header(UInt8(ascii: "!"), b.readableBytes, into: &buffer)
            buffer.writeImmutableBuffer(b)
            buffer.writeStaticString("\r\n")
        case .verbatimString(let format, let text):
            self.header(UInt8(ascii: "="), text.readableBytes + 4, into: &buffer)
            buffer.writeString(format)
            buffer.writeInteger(UInt8(ascii: ":"))
            buffer.writeImmutableBuffer(text)
            buffer.writeStaticString("\r\n")
        case .bigNumber(let s):
            self.line(UInt8(ascii: "("), s, into: &buffer)
        case .map(let pairs):
            self.header(UInt8(ascii: "%"), pairs.count, into: &buffer)
            for p in pairs {
                self.encode(p.key, into: &buffer)
                self.encode(p.value, into: &buffer)
            }
        case .set(let a):
            self.header(UInt8(ascii: "~"), a.count, into: &buffer)
            for v in a { self.encode(v, into: &buffer) }
        case .push(let a):
            self.header(UInt8(ascii: ">"), a.count, into: &buffer)
            for v in a { self.encode(v, into: &buffer) }
        case .attribute(let pairs, let v):
            self.header(UInt8(ascii: "|"), pairs.count, into: &buffer)
            for p in pairs {
                self.encode(p.key, into: &buffer)
                self.encode(p.value, into: &buffer)
            }
            self.encode(v, into: &buffer)
        }
    }

    @inline(__always)
    private static func header(_ type: UInt8, _ count: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(type)
        buffer.writeString(String(count))
        buffer.writeStaticString("\r\n")
    }

    private static func line(_ type: UInt8, _ text: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(type)
        buffer.writeString(text)
        buffer.writeStaticString("\r\n")
    }

    private static func bulk(_ s: String, into buffer: inout ByteBuffer) {
        self.header(UInt8(ascii: "$"), s.utf8.count, into: &buffer)
        buffer.writeString(s)
        buffer.writeStaticString("\r\n")
    }

    private static func bulk(_ b: ByteBuffer, into buffer: inout ByteBuffer) {
        self.header(UInt8(ascii: "$"), b.readableBytes, into: &buffer)
        buffer.writeImmutableBuffer(b)
        buffer.writeStaticString("\r\n")
    }
}
