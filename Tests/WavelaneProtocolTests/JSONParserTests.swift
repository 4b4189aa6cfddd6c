import Testing
import WavelaneProtocol

private func parse(_ s: String, maxDepth: Int = JSONParser.defaultMaxDepth) throws -> JSONValue {
    try JSONParser.parse(s, maxDepth: maxDepth)
}

private func parseBytes(_ b: [UInt8], maxDepth: Int = JSONParser.defaultMaxDepth) throws -> JSONValue {
    try JSONParser.parse(bytes: b, maxDepth: maxDepth)
}

/// The error for `input`, or nil when it parses.
private func failure(_ input: [UInt8], maxDepth: Int = JSONParser.defaultMaxDepth) -> JSONError? {
    do {
        _ = try JSONParser.parse(bytes: input, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

private func failure(_ input: String, maxDepth: Int = JSONParser.defaultMaxDepth) -> JSONError? {
    failure(Array(input.utf8), maxDepth: maxDepth)
}

@Suite("JSON parsing")
struct JSONParsingTests {
    @Test func literals() throws {
        #expect(try parse("null") == .null)
        #expect(try parse("true") == .bool(true))
        #expect(try parse("false") == .bool(false))
        #expect(try parse(" \t\r\n true \n") == .bool(true))
    }

    @Test func strings() throws {
        #expect(try parse(#""""#) == .string(""))
        #expect(try parse(#""hello""#) == .string("hello"))
        #expect(try parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{08}\u{0C}\n\r\t"))
        #expect(try parse(#""\u0041\u00e9\u00E9\u20AC""#) == .string("Aéé€"))
        #expect(try parse(#""\u0000""#) == .string("\u{0}"))
        #expect(try parse(#""a\u001fb""#) == .string("a\u{1F}b"))
        #expect(try parse(#""x\ty""#).stringValue == "x\ty")
        // Raw UTF-8 passes through, also mixed with escapes.
        #expect(try parse("\"Zoë 😀 日本\"") == .string("Zoë 😀 日本"))
        #expect(try parse("\"é\\n😀\"") == .string("é\n😀"))
        #expect(try parse("\"\u{7F}\"") == .string("\u{7F}"))
    }

    @Test func surrogatePairs() throws {
        #expect(try parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try parse(#""\uD83D\uDE00x""#) == .string("😀x"))
        #expect(try parse(#""\uDBFF\uDFFF""#) == .string("\u{10FFFF}"))
        #expect(try parse(#""\uD800\uDC00""#) == .string("\u{10000}"))
    }

    @Test func arraysAndObjects() throws {
        #expect(try parse("[]") == .array([]))
        #expect(try parse("[ ]") == .array([]))
        #expect(try parse("{}") == .object([:]))
        #expect(try parse(" { } ") == .object([:]))
        #expect(try parse("[1, \"a\", null, true, [false], {}]") == .array([
            .int(1), .string("a"), .null, .bool(true), .array([.bool(false)]), .object([:]),
        ]))
        let v = try parse(#"{"a": 1, "b": [1.5, {"c": null}], "": "empty", "é": "x"}"#)
        #expect(v["a"] == .int(1))
        #expect(v["b"]?.arrayValue?.count == 2)
        #expect(v["b"]?.arrayValue?[1]["c"] == .null)
        #expect(v[""] == .string("empty"))
        #expect(v["é"] == .string("x"))
        #expect(v["missing"] == nil)
        #expect(JSONValue.array([])["a"] == nil)
        // Keys with escapes; "a" and "\u0061" are the same key.
        #expect(try parse(#"{"\u0061\n": 2}"#)["a\n"] == .int(2))
    }

    @Test func numbers() throws {
        #expect(try parse("0") == .int(0))
        #expect(try parse("-0") == .int(0))
        #expect(try parse("7") == .int(7))
        #expect(try parse("-12") == .int(-12))
        #expect(try parse("9223372036854775807") == .int(Int64.max))
        #expect(try parse("-9223372036854775808") == .int(Int64.min))
        // Overflow goes to double.
        #expect(try parse("9223372036854775808") == .double(9223372036854775808.0))
        #expect(try parse("-9223372036854775809") == .double(-9223372036854775809.0))
        #expect(try parse("123456789012345678901234567890") == .double(1.2345678901234568e29))
        // Fraction and exponent forms are doubles.
        #expect(try parse("1.0") == .double(1.0))
        #expect(try parse("-0.0") == .double(-0.0))
        #expect(try parse("0.5") == .double(0.5))
        #expect(try parse("1e3") == .double(1000))
        #expect(try parse("1E3") == .double(1000))
        #expect(try parse("1e+3") == .double(1000))
        #expect(try parse("25e-2") == .double(0.25))
        #expect(try parse("-1.5E-3") == .double(-0.0015))
        #expect(try parse("0e0") == .double(0))
        #expect(try parse("1e-400") == .double(0))
        #expect(try parse("2.2250738585072014e-308") == .double(2.2250738585072014e-308))
        #expect(try parse("0.1") == .double(0.1))
        #expect(try parse("[1,-2,3.5]") == .array([.int(1), .int(-2), .double(3.5)]))
        #expect(try parse("{\"n\":10}")["n"] == .int(10))
    }

    @Test func accessors() throws {
        #expect(JSONValue.int(5).int64Value == 5)
        #expect(JSONValue.double(5.0).int64Value == 5)
        #expect(JSONValue.double(5.5).int64Value == nil)
        #expect(JSONValue.double(1e30).int64Value == nil)
        #expect(JSONValue.string("5").int64Value == nil)
        #expect(JSONValue.int(5).doubleValue == 5.0)
        #expect(JSONValue.double(2.5).doubleValue == 2.5)
        #expect(JSONValue.bool(true).doubleValue == nil)
        #expect(JSONValue.bool(false).boolValue == false)
        #expect(JSONValue.null.boolValue == nil)
        #expect(JSONValue.string("x").stringValue == "x")
        #expect(JSONValue.int(1).stringValue == nil)
        #expect(JSONValue.array([.null]).arrayValue == [.null])
        #expect(JSONValue.object(["a": .null]).objectValue == ["a": .null])
        #expect(JSONValue.null.arrayValue == nil)
        #expect(JSONValue.null.objectValue == nil)
    }

    @Test func inputForms() throws {
        let text = #"{"k":[1,2,"три"]}"#
        let expected = try parse(text)
        #expect(try parseBytes(Array(text.utf8)) == expected)
        #expect(try JSONParser.parse(bytes: text.utf8) == expected)
        #expect(try JSONParser.parse(bytes: ArraySlice(Array(("xx" + text).utf8)).dropFirst(2)) == expected)
        // A non-contiguous collection.
        #expect(try JSONParser.parse(bytes: Array(text.utf8).lazy.map { $0 }) == expected)
        let viaRaw = try Array(text.utf8).withUnsafeBytes { raw in try JSONParser.parse(raw) }
        #expect(viaRaw == expected)
        // Substring-backed String.
        let padded = "  \(text)  "
        #expect(try parse(String(padded.dropFirst(1))) == expected)
    }
}

@Suite("JSON rejections")
struct JSONRejectionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let input: [UInt8]
        let offset: Int
        let message: String
        init(_ input: String, _ offset: Int, _ message: String) {
            self.input = Array(input.utf8); self.offset = offset; self.message = message
        }
        init(bytes: [UInt8], _ offset: Int, _ message: String) {
            self.input = bytes; self.offset = offset; self.message = message
        }
        var testDescription: String { String(decoding: input, as: UTF8.self).debugDescription }
    }

    static let cases: [Case] = [
        // Empty / structure.
        Case("", 0, "unexpected end of input at offset 0"),
        Case("   ", 3, "unexpected end of input at offset 3"),
        Case("x", 0, "unexpected character 'x' at offset 0"),
        Case("[1,2", 4, "unexpected end of input at offset 4"),
        Case("[1,]", 3, "unexpected character ']' at offset 3"),
        Case("[,1]", 1, "unexpected character ',' at offset 1"),
        Case("[1 2]", 3, "unexpected character '2' at offset 3"),
        Case("{\"a\" 1}", 5, "unexpected character '1' at offset 5"),
        Case("{\"a\":1,}", 7, "unexpected character '}' at offset 7"),
        Case("{a:1}", 1, "unexpected character 'a' at offset 1"),
        Case("{\"a\":}", 5, "unexpected character '}' at offset 5"),
        Case("{1:2}", 1, "unexpected character '1' at offset 1"),
        Case("[1}", 2, "unexpected character '}' at offset 2"),
        Case("{\"a\":1]", 6, "unexpected character ']' at offset 6"),
        Case("tru", 3, "unexpected end of input at offset 3"),
        Case("trUe", 2, "unexpected character 'U' at offset 2"),
        Case("nul", 3, "unexpected end of input at offset 3"),
        Case("NaN", 0, "unexpected character 'N' at offset 0"),
        Case("Infinity", 0, "unexpected character 'I' at offset 0"),
        Case("'a'", 0, "unexpected character ''' at offset 0"),
        // Trailing garbage.
        Case("1 2", 2, "unexpected character '2' at offset 2"),
        Case("{} x", 3, "unexpected character 'x' at offset 3"),
        Case("[]]", 2, "unexpected character ']' at offset 2"),
        Case("null\u{0}", 4, "unexpected byte 0x00 at offset 4"),
        Case("true false", 5, "unexpected character 'f' at offset 5"),
        Case("\u{FEFF}1", 0, "unexpected byte 0xEF at offset 0"),  // no BOM
        Case("1\u{0B}", 1, "unexpected byte 0x0B at offset 1"),  // vertical tab is not JSON whitespace
        // Numbers.
        Case("01", 0, "leading zeros are not allowed in numbers at offset 0"),
        Case("-01", 0, "leading zeros are not allowed in numbers at offset 0"),
        Case("[00]", 1, "leading zeros are not allowed in numbers at offset 1"),
        Case("-", 1, "unexpected end of input at offset 1"),
        Case("-a", 1, "invalid number at offset 1"),
        Case("+1", 0, "unexpected character '+' at offset 0"),
        Case(".5", 0, "unexpected character '.' at offset 0"),
        Case("1.", 2, "unexpected end of input at offset 2"),
        Case("1.e5", 2, "expected digit after decimal point at offset 2"),
        Case("1e", 2, "unexpected end of input at offset 2"),
        Case("1e+", 3, "unexpected end of input at offset 3"),
        Case("1ex", 2, "expected digit in exponent at offset 2"),
        Case("0x10", 1, "unexpected character 'x' at offset 1"),
        Case("1e400", 0, "number out of range at offset 0"),
        Case("[-1e999]", 1, "number out of range at offset 1"),
        // Strings.
        Case("\"abc", 4, "unterminated string at offset 4"),
        Case("\"a\\", 3, "unterminated string at offset 3"),
        Case("\"a\\u12", 6, "unterminated string at offset 6"),
        Case("\"\\x\"", 1, "invalid escape sequence at offset 1"),
        Case("\"\\U0041\"", 1, "invalid escape sequence at offset 1"),
        Case("\"\\u12G4\"", 5, "invalid hex digit in \\u escape at offset 5"),
        Case("\"a\nb\"", 2, "control character 0x0A in string at offset 2"),
        Case("\"\t\"", 1, "control character 0x09 in string at offset 1"),
        Case("\"\u{0}\"", 1, "control character 0x00 in string at offset 1"),
        Case("\"x\\n\u{1F}\"", 4, "control character 0x1F in string at offset 4"),
        // Lone surrogates.
        Case("\"\\uD83D\"", 1, "lone surrogate in \\u escape at offset 1"),
        Case("\"ab\\uD83Dx\"", 3, "lone surrogate in \\u escape at offset 3"),
        Case("\"\\uDE00\"", 1, "lone surrogate in \\u escape at offset 1"),
        Case("\"\\uD83D\\u0041\"", 1, "lone surrogate in \\u escape at offset 1"),
        Case("\"\\uD83D\\uD83D\"", 1, "lone surrogate in \\u escape at offset 1"),
        Case("\"\\uD83D\\n\"", 1, "lone surrogate in \\u escape at offset 1"),
        // Duplicate keys (offset of the second key).
        Case("{\"a\":1,\"a\":2}", 7, "duplicate object key \"a\" at offset 7"),
        Case("{\"a\":1,\"\\u0061\":1}", 7, "duplicate object key \"a\" at offset 7"),
        Case("[{\"x\":{\"k\":1, \"k\":1}}]", 14, "duplicate object key \"k\" at offset 14"),
        // Invalid UTF-8.
        Case(bytes: [0x22, 0xFF, 0x22], 1, "invalid UTF-8 at offset 1"),
        Case(bytes: [0x22, 0x61, 0x80, 0x22], 2, "invalid UTF-8 at offset 2"),          // lone continuation
        Case(bytes: [0x22, 0xC0, 0xAF, 0x22], 1, "invalid UTF-8 at offset 1"),          // overlong '/'
        Case(bytes: [0x22, 0xC1, 0xBF, 0x22], 1, "invalid UTF-8 at offset 1"),          // overlong
        Case(bytes: [0x22, 0xE0, 0x80, 0xAF, 0x22], 1, "invalid UTF-8 at offset 1"),    // overlong 3-byte
        Case(bytes: [0x22, 0xED, 0xA0, 0x80, 0x22], 1, "invalid UTF-8 at offset 1"),    // encoded surrogate U+D800
        Case(bytes: [0x22, 0xF0, 0x8F, 0xBF, 0xBF, 0x22], 1, "invalid UTF-8 at offset 1"),  // overlong 4-byte
        Case(bytes: [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], 1, "invalid UTF-8 at offset 1"),  // > U+10FFFF
        Case(bytes: [0x22, 0xF5, 0x80, 0x80, 0x80, 0x22], 1, "invalid UTF-8 at offset 1"),
        Case(bytes: [0x22, 0xE2, 0x82, 0x22], 1, "invalid UTF-8 at offset 1"),          // truncated €
        Case(bytes: [0x22, 0xE2, 0x82], 1, "invalid UTF-8 at offset 1"),                // truncated at end
        Case(bytes: [0x22, 0x5C, 0x6E, 0xC3, 0x28, 0x22], 3, "invalid UTF-8 at offset 3"),  // after an escape
        Case(bytes: [0x5B, 0xC3, 0xA9, 0x5D], 1, "unexpected byte 0xC3 at offset 1"),   // non-ASCII outside strings
    ]

    @Test("rejected with offset", arguments: cases)
    func rejected(_ c: Case) {
        let error = failure(c.input)
        #expect(error?.offset == c.offset)
        #expect(error?.message == c.message)
        #expect(error?.description == c.message)
    }

    @Test func validUTF8Boundaries() throws {
        // Smallest/largest valid sequences of each length.
        let samples: [[UInt8]] = [
            [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
            [0xEF, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
        ]
        for s in samples {
            let v = try parseBytes([0x22] + s + [0x22])
            #expect(Array(v.stringValue!.utf8) == s)
        }
    }

    @Test func depthLimit() throws {
        func nested(_ n: Int) -> String { String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        #expect(failure(nested(64)) == nil)
        let e = failure(nested(65))
        #expect(e?.offset == 64)
        #expect(e?.message == "nesting deeper than 64 at offset 64")
        #expect(failure(nested(3), maxDepth: 3) == nil)
        #expect(failure(nested(4), maxDepth: 3)?.offset == 3)
        #expect(failure("{\"a\":{\"b\":{}}}", maxDepth: 2)?.offset == 10)
        #expect(failure("{\"a\":[{}]}", maxDepth: 3) == nil)
        #expect(failure("1", maxDepth: 0) == nil)
        #expect(failure("[]", maxDepth: 0)?.offset == 0)
        // Depth is nesting, not count: many siblings are fine.
        #expect(failure("[" + Array(repeating: "[[]]", count: 500).joined(separator: ",") + "]", maxDepth: 3) == nil)
        // A very deep document is rejected quickly without exhausting the stack.
        #expect(failure(String(repeating: "[", count: 100_000))?.offset == 64)
        #expect(failure(String(repeating: "{\"a\":", count: 100_000))?.message.hasPrefix("nesting deeper") == true)
    }
}
