// Compact JSON output: `JSONWriter` (strings escaped per RFC 8259) and `JSONValue.serialized()`.

// MARK: - Writer

public enum JSONWriter {
    /// A JSON array of values that are each already serialized JSON.
    public static func array(ofSerialized elements: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        out.reserveCapacity(elements.reduce(2) { $0 + $1.count + 1 })
        for (i, element) in elements.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: element)
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    /// Appends `s` as a quoted, escaped JSON string ("\"", "\\", control chars as \u00XX, \n \r \t \b \f short forms;
    /// non-ASCII passed through as UTF-8).
    public static func appendString(_ s: String, to bytes: inout [UInt8]) {
        appendString(utf8: s.utf8, to: &bytes)
    }

    /// Same as `appendString(_:to:)` for raw UTF-8 input (the input must be valid UTF-8).
    public static func appendString<Bytes: Collection>(utf8 s: Bytes, to bytes: inout [UInt8]) where Bytes.Element == UInt8 {
        let done: Void? = s.withContiguousStorageIfAvailable { buffer in
            appendEscaped(UnsafeRawBufferPointer(buffer), to: &bytes)
        }
        if done == nil {
            bytes.append(ASCII.quote)
            for c in s { appendEscapedByte(c, to: &bytes) }
            bytes.append(ASCII.quote)
        }
    }

    private static func appendEscaped(_ s: UnsafeRawBufferPointer, to bytes: inout [UInt8]) {
        bytes.reserveCapacity(bytes.count + s.count + 2)
        bytes.append(ASCII.quote)
        var runStart = 0
        var i = 0
        let n = s.count
        while i < n {
            let c = s[i]
            if c < 0x20 || c == ASCII.quote || c == ASCII.backslash {
                if runStart < i { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: s[runStart..<i])) }
                appendEscapedByte(c, to: &bytes)
                runStart = i + 1
            }
            i += 1
        }
        if runStart < n { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: s[runStart..<n])) }
        bytes.append(ASCII.quote)
    }

    @inline(__always)
    private static func appendEscapedByte(_ c: UInt8, to bytes: inout [UInt8]) {
        switch c {
        case ASCII.quote: bytes.append(ASCII.backslash); bytes.append(ASCII.quote)
        case ASCII.backslash: bytes.append(ASCII.backslash); bytes.append(ASCII.backslash)
        case 0x0A: bytes.append(ASCII.backslash); bytes.append(UInt8(ascii: "n"))
        case 0x0D: bytes.append(ASCII.backslash); bytes.append(UInt8(ascii: "r"))
        case 0x09: bytes.append(ASCII.backslash); bytes.append(UInt8(ascii: "t"))
        case 0x08: bytes.append(ASCII.backslash); bytes.append(UInt8(ascii: "b"))
        case 0x0C: bytes.append(ASCII.backslash); bytes.append(UInt8(ascii: "f"))
        case 0..<0x20:
            let hexDigits: StaticString = "0123456789abcdef"
            bytes.append(ASCII.backslash)
            bytes.append(UInt8(ascii: "u"))
            bytes.append(ASCII.zero)
            bytes.append(ASCII.zero)
            bytes.append(hexDigits.utf8Start[Int(c >> 4)])
            bytes.append(hexDigits.utf8Start[Int(c & 0xF)])
        default:
            bytes.append(c)
        }
    }

    static func appendASCII(_ s: StaticString, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    static func appendInt(_ i: Int64, to bytes: inout [UInt8]) {
        var magnitude = i.magnitude
        if i < 0 { bytes.append(ASCII.minus) }
        if magnitude == 0 {
            bytes.append(ASCII.zero)
            return
        }
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: enough for 20 digits
        var count = 0
        withUnsafeMutableBytes(of: &tmp) { digits in
            while magnitude > 0 {
                let (q, r) = magnitude.quotientAndRemainder(dividingBy: 10)
                digits[count] = UInt8(truncatingIfNeeded: r) &+ ASCII.zero
                count += 1
                magnitude = q
            }
            while count > 0 {
                count -= 1
                bytes.append(digits[count])
            }
        }
    }

    static func appendDouble(_ d: Double, to bytes: inout [UInt8]) {
        guard d.isFinite else {
            appendASCII("null", to: &bytes)
            return
        }
        // Swift's description is the shortest round-tripping form ("0.1", "1e-07", "1e+20", "3.0"),
        // which is always valid JSON for finite values.
        bytes.append(contentsOf: d.description.utf8)
    }
}
