import NIOCore
import Testing
import WavelaneProtocol

private func bulk(_ s: String) -> RESPValue { .bulkString(ByteBuffer(string: s)) }
private func bulk(_ b: [UInt8]) -> RESPValue { .bulkString(ByteBuffer(bytes: b)) }

/// Wire form → value, for every type. Each encodes back to exactly the same bytes.
private let samples: [(wire: String, value: RESPValue)] = [
    ("+OK\r\n", .simpleString("OK")),
    ("+\r\n", .simpleString("")),
    ("-ERR unknown command 'x'\r\n", .error("ERR unknown command 'x'")),
    (":0\r\n", .integer(0)),
    (":-42\r\n", .integer(-42)),
    (":9223372036854775807\r\n", .integer(.max)),
    (":-9223372036854775808\r\n", .integer(.min)),
    ("$5\r\nhello\r\n", bulk("hello")),
    ("$0\r\n\r\n", bulk("")),
    ("$6\r\na\r\n\0b\r\r\n", bulk("a\r\n\0b\r")),
    ("$-1\r\n", .bulkString(nil)),
    ("*0\r\n", .array([])),
    ("*-1\r\n", .array(nil)),
    ("*3\r\n:1\r\n$1\r\nx\r\n*1\r\n$-1\r\n", .array([.integer(1), bulk("x"), .array([.bulkString(nil)])])),
    ("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\n\r\n\r\n\r\n", .array([bulk("message"), bulk("ch"), bulk("\r\n\r\n")])),
    ("_\r\n", .null),
    (",1.5\r\n", .double(1.5)),
    (",-0.25\r\n", .double(-0.25)),
    (",inf\r\n", .double(.infinity)),
    (",-inf\r\n", .double(-.infinity)),
    ("#t\r\n", .boolean(true)),
    ("#f\r\n", .boolean(false)),
    ("!21\r\nSYNTAX invalid syntax\r\n", .bulkError(ByteBuffer(string: "SYNTAX invalid syntax"))),
    ("=15\r\ntxt:Some string\r\n", .verbatimString(format: "txt", text: ByteBuffer(string: "Some string"))),
    ("(3492890328409238509324850943850943825024385\r\n", .bigNumber("3492890328409238509324850943850943825024385")),
    ("(-1\r\n", .bigNumber("-1")),
    ("%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#f\r\n", .map([.init(.simpleString("first"), .integer(1)), .init(bulk("second"), .boolean(false))])),
    ("%0\r\n", .map([])),
    ("~2\r\n+a\r\n:2\r\n", .set([.simpleString("a"), .integer(2)])),
    (">3\r\n$7\r\nmessage\r\n$3\r\nfoo\r\n$3\r\nbar\r\n", .push([bulk("message"), bulk("foo"), bulk("bar")])),
    ("|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n", .attribute([.init(.simpleString("ttl"), .integer(3600))], bulk("v"))),
    ("*2\r\n|1\r\n+a\r\n_\r\n:1\r\n:2\r\n", .array([.attribute([.init(.simpleString("a"), .null)], .integer(1)), .integer(2)])),
]

private func parseAll(_ wire: [UInt8], parser: RESPParser = RESPParser()) throws(RESPError) -> [RESPValue] {
    var p = parser
    var buffer = ByteBuffer(bytes: wire)
    let values = try p.parseAll(&buffer)
    return values
}

private func expectError(_ wire: String, _ kind: RESPError.Kind, parser: RESPParser = RESPParser(), sourceLocation: SourceLocation = #_sourceLocation) {
    var p = parser
    var buffer = ByteBuffer(string: wire)
    do {
        let v = try p.parse(&buffer)
        Issue.record("expected \(kind) for \(wire.debugDescription), got \(String(describing: v))", sourceLocation: sourceLocation)
    } catch {
        #expect(error.kind == kind, "\(wire.debugDescription): \(error.message)", sourceLocation: sourceLocation)
    }
}

@Suite struct RESPParserTests {
    @Test func parsesEveryTypeAndEncodesItBackByteExact() throws {
        for (wire, value) in samples {
            var parser = RESPParser()
            var buffer = ByteBuffer(string: wire)
            let parsed = try parser.parse(&buffer)
            #expect(parsed == value, "\(wire.debugDescription)")
            #expect(buffer.readableBytes == 0, "\(wire.debugDescription) not fully consumed")
            var out = ByteBuffer()
            RESPEncoder.encode(value, into: &out)
            #expect(String(buffer: out) == wire)
        }
    }

    @Test func nanAndAccessors() throws {
        var p = RESPParser()
        var b = ByteBuffer(string: ",nan\r\n")
        guard case .double(let d)? = try p.parse(&b) else { Issue.record("not a double"); return }
        #expect(d.isNaN)
        #expect(bulk("x").string == "x")
        #expect(RESPValue.integer(3).integer == 3)
        #expect(RESPValue.error("ERR x").errorMessage == "ERR x")
        #expect(RESPValue.push([.integer(1)]).elements == [.integer(1)])
        #expect(RESPValue.null.isNull && RESPValue.bulkString(nil).isNull && RESPValue.array(nil).isNull)
        #expect(RESPValue.attribute([], .integer(7)).integer == 7)
    }

    /// Every message split at every position: the first part never yields a value nor consumes bytes;
    /// the rest completes it exactly.
    @Test func everySplitPoint() throws {
        for (wire, value) in samples {
            let bytes = Array(wire.utf8)
            for split in 0..<bytes.count {
                var parser = RESPParser()
                var buffer = ByteBuffer(bytes: bytes[..<split])
                #expect(try parser.parse(&buffer) == nil, "\(wire.debugDescription) split at \(split)")
                #expect(buffer.readableBytes == split, "partial value consumed")
                buffer.writeBytes(bytes[split...])
                #expect(try parser.parse(&buffer) == value, "\(wire.debugDescription) split at \(split)")
                #expect(buffer.readableBytes == 0)
            }
        }
    }

    /// All samples pipelined in one stream, fed one byte at a time.
    @Test func oneByteAtATime() throws {
        var parser = RESPParser()
        var buffer = ByteBuffer()
        var got: [RESPValue] = []
        for byte in samples.flatMap({ Array($0.wire.utf8) }) {
            buffer.writeInteger(byte)
            while let v = try parser.parse(&buffer) { got.append(v) }
        }
        #expect(got == samples.map(\.value))
        #expect(buffer.readableBytes == 0)
    }

    @Test func pipelinedRepliesInOneBuffer() throws {
        let wire = samples.flatMap { Array($0.wire.utf8) } + Array("$3\r\nab".utf8)
        var parser = RESPParser()
        var buffer = ByteBuffer(bytes: wire)
        let values = try parser.parseAll(&buffer)
        #expect(values == samples.map(\.value))
        #expect(String(buffer: buffer) == "$3\r\nab", "the partial tail stays in the buffer")
        buffer.writeString("c\r\n")
        #expect(try parser.parse(&buffer) == bulk("abc"))
    }

    @Test func largeBulkArrivingInChunks() throws {
        let payload = [UInt8]((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        var wire = ByteBuffer()
        RESPEncoder.encode(.array([bulk(payload), .integer(1)]), into: &wire)
        var parser = RESPParser()
        var buffer = ByteBuffer()
        var result: RESPValue?
        while wire.readableBytes > 0 {
            var chunk = wire.readSlice(length: min(4096, wire.readableBytes))!
            buffer.writeBuffer(&chunk)
            if let v = try parser.parse(&buffer) {
                #expect(result == nil)
                result = v
            }
        }
        #expect(result == .array([bulk(payload), .integer(1)]))
    }

    @Test func rejectsMalformedInput() {
        expectError("?\r\n", .invalidTypeByte)
        expectError("hello\r\n", .invalidTypeByte)
        expectError("\0", .invalidTypeByte)
        expectError("*2\r\n:1\r\nX\r\n", .invalidTypeByte)
        // lengths
        expectError("$abc\r\n", .invalidLength)
        expectError("$\r\n", .invalidLength)
        expectError("$-2\r\n", .invalidLength)
        expectError("$-0\r\n", .invalidLength)
        expectError("$+5\r\nhello\r\n", .invalidLength)
        expectError("*-5\r\n", .invalidLength)
        expectError("%-1\r\n", .invalidLength)
        expectError("~-1\r\n", .invalidLength)
        expectError(">-1\r\n", .invalidLength)
        expectError("!-1\r\n", .invalidLength)
        expectError("$99999999999999999999\r\n", .invalidLength)
        expectError("$1 \r\nx\r\n", .invalidLength)
        // CRLF
        expectError("+OK\n", .missingCRLF)
        expectError("+OK\rX\n", .missingCRLF)
        expectError(":1\n", .missingCRLF)
        expectError("$3\r\nabcXY", .missingCRLF)
        expectError("$3\r\nabc\n\r", .missingCRLF)
        expectError("$3\n", .missingCRLF)
        // numbers
        expectError(":\r\n", .invalidNumber)
        expectError(":12a\r\n", .invalidNumber)
        expectError(":9223372036854775808\r\n", .invalidNumber)
        expectError(":-9223372036854775809\r\n", .invalidNumber)
        expectError("#x\r\n", .invalidNumber)
        expectError("#tt\r\n", .invalidNumber)
        expectError(",1.2.3\r\n", .invalidNumber)
        expectError(",0x10\r\n", .invalidNumber)
        expectError(",\r\n", .invalidNumber)
        expectError("(12a\r\n", .invalidNumber)
        expectError("(\r\n", .invalidNumber)
        expectError("_x\r\n", .invalidNumber)
        // verbatim
        expectError("=3\r\ntxt\r\n", .invalidVerbatim)
        expectError("=5\r\ntxtxy\r\n", .invalidVerbatim)
        // found by fuzzing (Fuzz/resp.swift): a format that is not three printable ASCII characters was
        // decoded lossily (U+FFFD) and re-encoded to other bytes; it is refused now
        expectError("=7\r\ntä:abc\r\n", .invalidVerbatim)
        expectError("=7\r\nt\tx:abc\r\n", .invalidVerbatim)
        expectError("=7\r\n t :abc\r\n", .invalidVerbatim)
        // streamed RESP3
        expectError("$?\r\n", .unsupported)
        expectError("*?\r\n", .unsupported)
    }

    @Test func enforcesLimitsEarly() {
        let small = RESPParser(maxBulkLength: 10, maxAggregateCount: 3, maxDepth: 2, maxLineLength: 8)
        // Thrown on the header, before the (absent) payload arrives.
        expectError("$11\r\n", .bulkTooLong, parser: small)
        expectError("!11\r\n", .bulkTooLong, parser: small)
        expectError("=11\r\n", .bulkTooLong, parser: small)
        expectError("*4\r\n", .aggregateTooLarge, parser: small)
        expectError("%4\r\n", .aggregateTooLarge, parser: small)
        expectError("~4\r\n", .aggregateTooLarge, parser: small)
        expectError(">4\r\n", .aggregateTooLarge, parser: small)
        expectError("|4\r\n", .aggregateTooLarge, parser: small)
        expectError("*1\r\n*1\r\n*1\r\n", .nestingTooDeep, parser: small)
        expectError("*1\r\n%1\r\n~0\r\n", .nestingTooDeep, parser: small)
        // A line longer than the limit fails without waiting for its CR.
        expectError("+123456789", .lineTooLong, parser: small)
        expectError("-123456789\r\n", .lineTooLong, parser: small)
        // At the limits: fine.
        var p = small
        var ok = ByteBuffer(string: "$10\r\n0123456789\r\n*3\r\n*1\r\n:1\r\n:2\r\n:3\r\n+12345678\r\n")
        #expect(try! p.parseAll(&ok) == [bulk("0123456789"), .array([.array([.integer(1)]), .integer(2), .integer(3)]), .simpleString("12345678")])
        // A line shorter than the limit waits for more bytes.
        var partial = ByteBuffer(string: "+1234567")
        #expect(try! p.parse(&partial) == nil)
    }

    @Test func errorsCarryOffsetAndMessage() {
        var p = RESPParser()
        var b = ByteBuffer(string: "*2\r\n:1\r\n?\r\n")
        do {
            _ = try p.parse(&b)
            Issue.record("no error")
        } catch {
            #expect(error.offset == 8)
            #expect(error.message == "invalid RESP type byte 0x3F ('?') at offset 8")
            #expect(error.description.hasPrefix("RESP protocol error: "))
        }
    }

    @Test func deeplyNestedWithinLimitAndHugeCountsDoNotPreallocate() throws {
        let depth = 32
        let wire = String(repeating: "*1\r\n", count: depth) + ":1\r\n"
        var value = RESPValue.integer(1)
        for _ in 0..<depth { value = .array([value]) }
        #expect(try parseAll(Array(wire.utf8)) == [value])
        expectError(String(repeating: "*1\r\n", count: depth + 1), .nestingTooDeep)
        // A count at the limit with no elements yet: just waits (no huge allocation).
        var p = RESPParser()
        var b = ByteBuffer(string: "*1048576\r\n:1\r\n")
        #expect(try p.parse(&b) == nil)
    }
}
