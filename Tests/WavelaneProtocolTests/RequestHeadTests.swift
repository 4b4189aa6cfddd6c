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

    @Test func namesCompareIgnoringASCIILetterCaseOnly() {
        let pairs: [(String, String, Bool)] = [
            ("Sec-WebSocket-Key", "sec-websocket-key", true), ("X-Real-IP", "x-real-ip", true), ("", "", true),
            ("Origin", "Origins", false), ("Origin", "Orig1n", false),
            // '@' and '`', '[' and '{' differ in the 0x20 bit but are not letters
            ("a@", "a`", false), ("x[", "x{", false), ("caf\u{E9}", "CAF\u{C9}", false),
        ]
        for (a, b, same) in pairs {
            #expect(RequestHead.sameName(a, b) == same, "\(a) / \(b)")
            #expect(RequestHead.sameName(Array(a.utf8), Array(b.utf8)) == same, "bytes: \(a) / \(b)")
        }
        let head = RequestHead(method: "GET", target: "/", minorVersion: 1,
                               fields: [.init(name: "UPGRADE", value: "websocket"), .init(name: "upgradE", value: "x")])
        #expect(head["Upgrade"] == ["websocket", "x"])
        #expect(head.listContains("upgrade", token: "WebSocket"))
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

// MARK: against SwiftNIO's HTTP/1 decoder (llhttp)

import NIOCore
import NIOEmbedded
import NIOHTTP1

/// A head as NIO's decoder reads it, or nil when it refuses the bytes or wants more.
private func nioHead(_ bytes: [UInt8]) -> HTTPRequestHead? {
    let channel = EmbeddedChannel()
    defer { _ = try? channel.finish() }
    guard (try? channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))) != nil,
          (try? channel.writeInbound(ByteBuffer(bytes: bytes))) != nil,
          case .head(let head)? = try? channel.readInbound(as: HTTPServerRequestPart.self) else { return nil }
    return head
}

extension SplitMix: RandomNumberGenerator {}  // TopicAccessTests' generator: the test is repeatable

@Suite("RequestHeadParser against NIO's HTTP/1 decoder")
struct RequestHeadDifferentialTests {
    static let seeds = [
        "GET /ws?token=abc HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://a.example\r\n\r\n",
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Length: 2\r\n\r\n{}",
        "HEAD /health HTTP/1.0\r\nX-A:  spaced value \t\r\nCookie: a=b; c=\"d\"\r\n\r\n",
    ]
    static let interesting: [UInt8] = Array(" \t\r\n:;,/\"=?%".utf8) + [0, 0x01, 0x0B, 0x7F, 0x80, 0xC3, 0xFF, UInt8(ascii: "a"), UInt8(ascii: "H")]

    /// NIO's fields, with the trailing whitespace RFC 9110 §5.5 excludes from a value (NIO keeps it).
    static func fields(_ head: HTTPRequestHead) -> [RequestHead.Field] {
        head.headers.map { RequestHead.Field(name: $0.name, value: $0.value.trimmingTrailingWhitespace) }
    }

    /// Whatever both accept, both read the same way: method, target, version, every field name and
    /// value in order (one reading per head: what request smuggling needs two of). Each side also
    /// refuses some heads the other takes: we refuse bare LF, obs-fold and controls in values, which
    /// llhttp tolerates; llhttp refuses some RFC 9110 token characters (e.g. `%`) in field names.
    @Test func whatBothAcceptBothReadTheSameWay() throws {
        var rng = SplitMix(seed: 12)
        var accepted = 0, refused = 0, both = 0
        for i in 0..<3000 {
            var bytes = Array(Self.seeds[i % Self.seeds.count].utf8)
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                let b = Self.interesting.randomElement(using: &rng)!
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[at] = b
                case 1: bytes.insert(b, at: at)
                default: if bytes.count > 1 { bytes.remove(at: at) }
                }
            }
            var scanner = RequestHeadScanner()
            let ours: RequestHead? = bytes.withUnsafeBytes { raw in
                guard let n = try? scanner.scan(raw) else { return nil }
                return try? RequestHeadParser.parse(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
            }
            guard let ours else { refused += 1; continue }
            accepted += 1
            let input = String(decoding: bytes, as: UTF8.self).debugDescription
            guard let theirs = nioHead(bytes) else { continue }
            both += 1
            #expect(theirs.method.rawValue == ours.method, "\(input)")
            #expect(theirs.uri == ours.target, "\(input)")
            #expect(Int(theirs.version.minor) == ours.minorVersion && theirs.version.major == 1, "\(input)")
            #expect(Self.fields(theirs) == ours.fields, "\(input)")
        }
        #expect(both > 300 && refused > 300, "both sides of the line exercised: \(accepted) accepted (\(both) by NIO too), \(refused) refused")
    }

    @Test func theSeedsAreReadTheSameWay() throws {
        for seed in Self.seeds {
            let bytes = Array(seed.utf8)
            var scanner = RequestHeadScanner()
            let n = try #require(try bytes.withUnsafeBytes { raw throws(RequestHeadParser.Error) in try scanner.scan(raw) })
            let ours = try Array(bytes[0..<n]).withUnsafeBytes { raw throws(RequestHeadParser.Error) in try RequestHeadParser.parse(raw) }
            let theirs = try #require(nioHead(bytes))
            #expect(Self.fields(theirs) == ours.fields)
        }
    }
}

extension String {
    fileprivate var trimmingTrailingWhitespace: String {
        var s = Substring(self)
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
