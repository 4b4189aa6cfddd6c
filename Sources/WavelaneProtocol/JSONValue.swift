// JSON values (`JSONValue`) and the parser's error. Parsing: JSONParser.swift; writing: JSONWriter.swift.

// MARK: - Value

public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// Numbers without fraction/exponent that fit Int64.
    case int(Int64)
    /// Every other number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The member named `key`; nil unless this is an `.object` with that key.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// `.int`, or `.double` holding an exactly integral value representable as Int64.
    public var int64Value: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }

    /// `.int` (converted) or `.double`.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// Compact serialization (object keys sorted for determinism); strings escaped per RFC 8259.
    /// Non-finite doubles (which the parser never produces) are written as `null`.
    public func serialized() -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        write(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the compact serialization to `bytes`.
    public func write(into bytes: inout [UInt8]) {
        switch self {
        case .null:
            JSONWriter.appendASCII("null", to: &bytes)
        case .bool(let b):
            JSONWriter.appendASCII(b ? "true" : "false", to: &bytes)
        case .int(let i):
            JSONWriter.appendInt(i, to: &bytes)
        case .double(let d):
            JSONWriter.appendDouble(d, to: &bytes)
        case .string(let s):
            JSONWriter.appendString(s, to: &bytes)
        case .array(let a):
            bytes.append(UInt8(ascii: "["))
            var first = true
            for element in a {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                element.write(into: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let o):
            bytes.append(UInt8(ascii: "{"))
            var first = true
            for key in o.keys.sorted() {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.appendString(key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                o[key].unsafelyUnwrapped.write(into: &bytes)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }
}

// MARK: - Error

public struct JSONError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Human-readable message including the offset, e.g. "unexpected character 'x' at offset 12".
    public var message: String
    /// Byte offset into the input where the problem was detected.
    public var offset: Int

    public init(message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { message }

    @usableFromInline
    static func at(_ offset: Int, _ what: String) -> JSONError {
        JSONError(message: "\(what) at offset \(offset)", offset: offset)
    }
}
