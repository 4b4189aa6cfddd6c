import Testing
import WavelaneProtocol

private func parse(_ s: String, maxDepth: Int = JSONParser.defaultMaxDepth) throws -> JSONValue {
    try JSONParser.parse(s, maxDepth: maxDepth)
}

@Suite("JSON writing")
struct JSONWritingTests {
    @Test func scalars() {
        #expect(JSONValue.null.serialized() == "null")
        #expect(JSONValue.bool(true).serialized() == "true")
        #expect(JSONValue.bool(false).serialized() == "false")
        #expect(JSONValue.int(0).serialized() == "0")
        #expect(JSONValue.int(-42).serialized() == "-42")
        #expect(JSONValue.int(Int64.max).serialized() == "9223372036854775807")
        #expect(JSONValue.int(Int64.min).serialized() == "-9223372036854775808")
        #expect(JSONValue.double(1.5).serialized() == "1.5")
        #expect(JSONValue.double(3).serialized() == "3.0")
        #expect(JSONValue.double(-0.0).serialized() == "-0.0")
        #expect(JSONValue.double(1e-7).serialized() == "1e-07")
        #expect(JSONValue.double(1e20).serialized() == "1e+20")
        #expect(JSONValue.double(.infinity).serialized() == "null")
        #expect(JSONValue.double(.nan).serialized() == "null")
        #expect(JSONValue.string("").serialized() == "\"\"")
    }

    @Test func escapes() {
        #expect(JSONValue.string("a\"b\\c/d").serialized() == #""a\"b\\c/d""#)
        #expect(JSONValue.string("\n\r\t\u{08}\u{0C}").serialized() == #""\n\r\t\b\f""#)
        #expect(JSONValue.string("\u{0}\u{1}\u{1F}\u{7F}").serialized() == "\"\\u0000\\u0001\\u001f\u{7F}\"")
        #expect(JSONValue.string("Zoë 😀 €").serialized() == "\"Zoë 😀 €\"")
        var out: [UInt8] = Array("x=".utf8)
        JSONWriter.appendString("q\"", to: &out)
        #expect(String(decoding: out, as: UTF8.self) == #"x="q\"""#)
        var out2: [UInt8] = []
        JSONWriter.appendString(utf8: Array("tab\there".utf8), to: &out2)
        #expect(String(decoding: out2, as: UTF8.self) == #""tab\there""#)
        var out3: [UInt8] = []
        JSONWriter.appendString(utf8: Array("lazy\"é".utf8).lazy.map { $0 }, to: &out3)
        #expect(String(decoding: out3, as: UTF8.self) == #""lazy\"é""#)
    }

    @Test func containersSortedAndCompact() {
        let v = JSONValue.object([
            "b": .array([.int(1), .null, .bool(false)]),
            "a": .object(["z": .string("y"), "": .int(0)]),
            "c": .array([]),
            "d": .object([:]),
        ])
        #expect(v.serialized() == #"{"a":{"":0,"z":"y"},"b":[1,null,false],"c":[],"d":{}}"#)
        var bytes: [UInt8] = [UInt8(ascii: ">")]
        v.write(into: &bytes)
        #expect(bytes.first == UInt8(ascii: ">"))
        #expect(String(decoding: bytes.dropFirst(), as: UTF8.self) == v.serialized())
    }

    @Test func roundTrips() throws {
        let documents = [
            #"{"a":[1,2.5,-3e-05,"x\n\"y\"",null,true,false,{}],"b":{"c":"\u0001é😀"},"d":9223372036854775807}"#,
            #"[-9223372036854775808,9223372036854775808,1e+300,0.1,-0.0]"#,
            #"" \\ / \b \f \n \r \t \u001f \ud83d\ude00 ""#,
            #"{"nested":[[[[{"deep":[]}]]]]}"#,
            "\"\u{10FFFF}\u{FFFF}\u{800}\u{80}\"",
        ]
        for text in documents {
            let value = try parse(text)
            let once = value.serialized()
            #expect(try parse(once) == value, "\(text)")
            #expect(try parse(once).serialized() == once)
        }
        // Every double survives a round trip exactly.
        for d in [0.1, 1.0 / 3.0, Double.leastNonzeroMagnitude, 1.7976931348623157e308, -2.5e-10, 123456.789, 1e22, 4.35] {
            #expect(try parse(JSONValue.double(d).serialized()) == .double(d))
        }
        // Strings with every control character and quotes round-trip.
        var all = ""
        for c in 0..<0x80 { all.unicodeScalars.append(Unicode.Scalar(UInt8(c))) }
        all += "é€😀"
        #expect(try parse(JSONValue.string(all).serialized()) == .string(all))
    }
}

@Suite("JSON writing: arrays of serialized values")
struct JSONWriterArrayTests {
    @Test func arrayOfSerialized() throws {
        #expect(JSONWriter.array(ofSerialized: []) == Array("[]".utf8))
        let members = [Array(#"{"a":1}"#.utf8), Array("2".utf8), Array(#""x""#.utf8)]
        let out = JSONWriter.array(ofSerialized: members)
        #expect(String(decoding: out, as: UTF8.self) == #"[{"a":1},2,"x"]"#)
        #expect(try parse(String(decoding: out, as: UTF8.self)).arrayValue?.count == 3)
    }
}
