import Testing
@testable import WavelaneProtocol

private func length(_ s: String) throws -> Int? {
    var scanner = RequestHeadScanner()
    return try Array(s.utf8).withUnsafeBytes { raw throws(RequestHeadParser.Error) in try scanner.scan(raw) }
}

private func parse(_ s: String) throws -> RequestHead {
    let bytes = Array(s.utf8)
    return try bytes.withUnsafeBytes { raw throws(RequestHeadParser.Error) in try RequestHeadParser.parse(raw) }
}

private func parseError(_ s: String) -> RequestHeadParser.Error? {
    do {
        let bytes = Array(s.utf8)
        var scanner = RequestHeadScanner()
        guard let n = try bytes.withUnsafeBytes({ raw throws(RequestHeadParser.Error) in try scanner.scan(raw) }) else { return nil }
        _ = try Array(bytes[0..<n]).withUnsafeBytes { raw throws(RequestHeadParser.Error) in try RequestHeadParser.parse(raw) }
        return nil
    } catch let error as RequestHeadParser.Error {
        return error
    } catch {
        return nil
    }
}

@Suite("RequestHeadParser: HTTP/1.1 request heads")
struct RequestHeadTests {
    let upgrade = "GET /ws?a=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Empty:\r\nX-Spaces: \t a b \t\r\n\r\n"

    @Test func parsesTheRequestLineAndFields() throws {
        let head = try parse(self.upgrade)
        #expect(head.method == "GET")
        #expect(head.target == "/ws?a=1")
        #expect(head.minorVersion == 1)
        #expect(head.fields.count == 6)
        #expect(head["host"] == ["example.com"])
        #expect(head["HOST"] == ["example.com"])
        #expect(head["x-empty"] == [""])
        #expect(head["x-spaces"] == ["a b"], "surrounding whitespace is not part of a value")
        #expect(head.listContains("connection", token: "upgrade"))
        #expect(head.listContains("upgrade", token: "WebSocket"))
        #expect(!head.listContains("connection", token: "close"))
        #expect(head.fields[0].name == "Host", "names keep their case")
    }

    @Test func theLengthEndsAtTheEmptyLineAndIgnoresWhatFollows() throws {
        #expect(try length(self.upgrade) == self.upgrade.utf8.count)
        #expect(try length(self.upgrade + "\u{81}\u{82}frames") == self.upgrade.utf8.count)
        #expect(try length("GET / HTTP/1.1\r\nHost: x\r\n") == nil)
        #expect(try length("GET / HTTP/1.1\r\nHost: x\r\n\r") == nil)
    }

    @Test func anyCutFindsTheSameEnd() throws {
        let bytes = Array(self.upgrade.utf8)
        for cut in 0..<bytes.count {
            var scanner = RequestHeadScanner()
            let first = try bytes[0..<cut].withUnsafeBytes { raw throws(RequestHeadParser.Error) in try scanner.scan(raw) }
            #expect(first == nil)
            let resumed = try bytes.withUnsafeBytes { raw throws(RequestHeadParser.Error) in try scanner.scan(raw) }
            #expect(resumed == bytes.count, "resumed from \(cut)")
        }
        // one byte at a time
        var scanner = RequestHeadScanner()
        for n in 1..<bytes.count {
            #expect(try bytes[0..<n].withUnsafeBytes { raw throws(RequestHeadParser.Error) in try scanner.scan(raw) } == nil)
        }
        #expect(try bytes.withUnsafeBytes { raw throws(RequestHeadParser.Error) in try scanner.scan(raw) } == bytes.count)
    }

    @Test func emptyLinesBeforeTheRequestLineAreSkipped() throws {
        let s = "\r\n\r\nGET / HTTP/1.0\r\n\r\n"
        #expect(try length(s) == s.utf8.count)
        let head = try parse(s)
        #expect(head.method == "GET" && head.minorVersion == 0 && head.fields.isEmpty)
    }

    @Test func nonASCIIValueBytesAreKeptAndControlsRefused() throws {
        #expect(try parse("GET / HTTP/1.1\r\nX: caf\u{E9}\r\n\r\n")["x"] == ["caf\u{E9}"])
        #expect(parseError("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n") == .badField)
        #expect(parseError("GET / HTTP/1.1\r\nX: a\u{7F}b\r\n\r\n") == .badField)
        #expect(parseError("GET / HTTP/1.1\r\nX: a\u{1B}b\r\n\r\n") == .badField)
    }

    @Test func refusesWhatCouldBeReadTwoWays() {
        #expect(parseError("GET / HTTP/1.1\nHost: x\n\n") == .badLineEnding, "seen before the head is complete")
        #expect(parseError("\nGET / HTTP/1.1\r\n\r\n") == .badLineEnding)
        #expect(parseError("GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n") == .badLineEnding)
        #expect(parseError("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n") == .badLineEnding)
        #expect(parseError("GET / HTTP/1.1\r\nHost : x\r\n\r\n") == .badField)
        #expect(parseError("GET / HTTP/1.1\r\nHost: x\r\n continued\r\n\r\n") == .badField)
        #expect(parseError("GET / HTTP/1.1\r\n: x\r\n\r\n") == .badField)
        #expect(parseError("GET / HTTP/1.1\r\nno colon\r\n\r\n") == .badField)
        #expect(parseError("GET / HTTP/1.1\r\nX(y): z\r\n\r\n") == .badField)
        #expect(parseError("GET  / HTTP/1.1\r\n\r\n") == .badRequestLine)
        #expect(parseError("GET / HTTP/1.1 \r\n\r\n") == .badRequestLine)
        #expect(parseError("GET /\u{E9} HTTP/1.1\r\n\r\n") == .badRequestLine)
        #expect(parseError("G(T / HTTP/1.1\r\n\r\n") == .badRequestLine)
        #expect(parseError("GET / http/1.1\r\n\r\n") == .badRequestLine)
        #expect(parseError("GET / HTTP/1.12\r\n\r\n") == .badRequestLine)
        #expect(parseError("GET /\r\n\r\n") == .badRequestLine)
        #expect(parseError("GET / HTTP/2.0\r\n\r\n") == .unsupportedVersion)
        #expect(parseError("GET / HTTP/1.2\r\n\r\n") == .unsupportedVersion)
    }

    @Test func garbageIsRefusedAtItsFirstBytes() {
        var scanner = RequestHeadScanner()
        let hello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]  // a TLS ClientHello's start
        #expect(throws: RequestHeadParser.Error.badRequestLine) {
            _ = try hello.withUnsafeBytes { raw throws(RequestHeadParser.Error) in try scanner.scan(raw) }
        }
        #expect(parseError("GET /\u{1}x") == .badRequestLine, "no line end needed")
        #expect(parseError("GET / HTTP/1.1\r\nX: \u{1}") == .badField)
        #expect(parseError("GET / HTTP/1.1\r\nX: y\rZ") == .badLineEnding)
        #expect(parseError("GET\r\n\r\n") == .badRequestLine)
    }

    @Test func limits() {
        let big = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: RequestHeadParser.maxHeadBytes) + "\r\n\r\n"
        #expect(parseError(big) == .headTooLarge)
        let unfinished = Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: RequestHeadParser.maxHeadBytes)).utf8)
        #expect(throws: RequestHeadParser.Error.headTooLarge) {
            var scanner = RequestHeadScanner()
            _ = try unfinished.withUnsafeBytes { raw throws(RequestHeadParser.Error) in try scanner.scan(raw) }
        }
        let many = "GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: RequestHeadParser.maxFields + 1) + "\r\n"
        #expect(parseError(many) == .tooManyFields)
        let enough = "GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: RequestHeadParser.maxFields) + "\r\n"
        #expect(parseError(enough) == nil)
    }
}
