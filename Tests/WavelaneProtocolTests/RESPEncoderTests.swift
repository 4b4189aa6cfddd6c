import NIOCore
import Testing
import WavelaneProtocol

private func bulk(_ s: String) -> RESPValue { .bulkString(ByteBuffer(string: s)) }
private func bulk(_ b: [UInt8]) -> RESPValue { .bulkString(ByteBuffer(bytes: b)) }

/// Commands; every value's wire form is checked against the parser in RESPParserTests' round trips.
@Suite struct RESPEncoderTests {
    @Test func encodesCommandsAsArraysOfBulkStrings() throws {
        var a = ByteBuffer()
        RESPEncoder.command(["SET", "k\r\n1", "v\0é"], into: &a)
        // "é" is two bytes of UTF-8: the length counts bytes.
        #expect(Array(a.readableBytesView) == Array("*3\r\n$3\r\nSET\r\n$4\r\nk\r\n1\r\n$4\r\nv\0\u{e9}\r\n".utf8))
        var b = ByteBuffer()
        RESPEncoder.command([Array("PUBLISH".utf8), Array("ch".utf8), [0, 13, 10]], into: &b)
        #expect(Array(b.readableBytesView) == Array("*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$3\r\n\0\r\n\r\n".utf8))
        var c = ByteBuffer()
        RESPEncoder.command([ByteBuffer(string: "GET"), ByteBuffer(string: "")], into: &c)
        #expect(String(buffer: c) == "*2\r\n$3\r\nGET\r\n$0\r\n\r\n")
        var d = ByteBuffer()
        RESPEncoder.command(["SELECT", 3, .bytes(ByteBuffer(bytes: [0xFF])), RESPArgument(-7)], into: &d)
        #expect(Array(d.readableBytesView) == Array("*4\r\n$6\r\nSELECT\r\n$1\r\n3\r\n$1\r\n".utf8) + [0xFF] + Array("\r\n$2\r\n-7\r\n".utf8))
        var e = ByteBuffer()
        RESPEncoder.command([String](), into: &e)
        #expect(String(buffer: e) == "*0\r\n")
        // What the encoder writes, the parser reads back.
        var parser = RESPParser()
        #expect(try parser.parse(&b) == .array([bulk("PUBLISH"), bulk("ch"), bulk([0, 13, 10])]))
    }
}
