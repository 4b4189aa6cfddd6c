import NIOCore
import NIOEmbedded
import Testing
import WavelaneAuth
@testable import WavelaneEngine
import WavelaneProtocol

/// The 101 for `upgradeRequest()`'s key (RFC 6455 §1.3's example).
private let switchingProtocols = Array(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").utf8)

/// An unmasked server text frame.
private func textFrame(_ json: String) -> [UInt8] {
    let payload = Array(json.utf8)
    if payload.count < 126 { return [0x81, UInt8(payload.count)] + payload }
    return [0x81, 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] + payload
}

private func readyFrame(_ core: ServerCore, conn: UInt64) -> [UInt8] {
    textFrame(#"{"type":"ready","conn":"\#(conn)","user":null,"server":"wavelane/\#(wavelaneVersion)","heartbeat":20,"epoch":"\#(core.epoch)","max_message_size":1048576}"#)
}

/// A masked client ping of "hi".
private let clientPing: [UInt8] = [0x89, 0x82, 0x11, 0x22, 0x33, 0x44, UInt8(ascii: "h") ^ 0x11, UInt8(ascii: "i") ^ 0x22]
private let pong: [UInt8] = [0x8A, 0x02, UInt8(ascii: "h"), UInt8(ascii: "i")]

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite("HTTPHandler: the request head, the upgrade in one write, plain HTTP")
struct HTTPHandlerTests {
    @Test func the101AndTheReadyFrameLeaveInOneFlush() throws {
        let h = try ChildHarness()
        let flushes = try h.send(upgradeRequest())
        #expect(flushes == [switchingProtocols + readyFrame(h.core, conn: 1)], "\(flushes.map(text))")
        #expect(h.pipelineHoldsOnlyTheConnection)
        #expect(h.core.queue.drain(max: 10, timeoutMs: 0).map(\.kind) == [.connect])
        // The connection works as before: a ping is answered at once.
        #expect(try h.send(clientPing) == [pong])
    }

    @Test func withoutReadyFrameThe101IsFlushedAtOnce() throws {
        let h = try ChildHarness { $0.readyMessage = false }
        #expect(try h.send(upgradeRequest()) == [switchingProtocols])
        #expect(h.pipelineHoldsOnlyTheConnection)
    }

    @Test func framesSentWithTheRequestAreAnsweredAfterTheCombinedWrite() throws {
        let h = try ChildHarness()
        let flushes = try h.send(upgradeRequest() + clientPing)
        #expect(flushes.first == switchingProtocols + readyFrame(h.core, conn: 1), "\(flushes.map(text))")
        #expect(flushes.flatMap { $0 } == switchingProtocols + readyFrame(h.core, conn: 1) + pong)
    }

    @Test func aRefusedUpgradeIsAnsweredAtOnceAndClosed() throws {
        let h = try ChildHarness { $0.jwt = JWTConfiguration(secrets: [Array(repeating: 7, count: 32)]) }
        let flushes = try h.send(upgradeRequest())
        #expect(flushes.count == 1)
        #expect(text(flushes.first ?? []).hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
        #expect(text(flushes.first ?? []).hasSuffix("\r\n\r\nmissing token"))
        #expect(!h.channel.isActive)
        #expect(h.core.queue.drain(max: 10, timeoutMs: 0).isEmpty)
    }

    @Test func aForbiddenOriginIsAnsweredAtOnce() throws {
        let h = try ChildHarness { $0.policies.allowedOrigins = [OriginPattern("https://good.example")!] }
        let flushes = try h.send(upgradeRequest(extra: "Origin: https://evil.example\r\n"))
        #expect(flushes.count == 1)
        #expect(text(flushes.first ?? []).hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
        #expect(!h.channel.isActive)
    }

    @Test func plainHTTPIsAnsweredAtOnce() throws {
        let h = try ChildHarness()
        let flushes = try h.send(Array("GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(flushes.count == 1)
        #expect(text(flushes.first ?? []).hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(!h.channel.isActive)
    }

    @Test func aHeadInManyReadsIsUpgradedOnceComplete() throws {
        let h = try ChildHarness()
        let request = upgradeRequest() + clientPing
        var flushes: [[UInt8]] = []
        for i in stride(from: 0, to: request.count, by: 7) {
            flushes += try h.send(Array(request[i..<min(i + 7, request.count)]))
        }
        #expect(flushes.flatMap { $0 } == switchingProtocols + readyFrame(h.core, conn: 1) + pong, "\(flushes.map(text))")
        #expect(h.pipelineHoldsOnlyTheConnection)
    }

    @Test func malformedHeadsAreRefusedBeforeAnyCheck() throws {
        let cases: [(String, String)] = [
            ("GET /ws HTTP/1.1\nHost: x\n\n", "HTTP/1.1 400 Bad Request\r\n"),
            ("GET /ws HTTP/1.1\r\nHost : x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
            ("GET /ws HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
            ("GET /ws HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported\r\n"),
            ("GET /ws HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
            ("GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        ]
        for (request, status) in cases {
            let h = try ChildHarness()
            let flushes = try h.send(Array(request.utf8))
            #expect(flushes.count == 1)
            #expect(text(flushes.first ?? []).hasPrefix(status), "\(request.debugDescription) -> \(flushes.map(text))")
            #expect(!h.channel.isActive)
            #expect(h.core.queue.drain(max: 10, timeoutMs: 0).isEmpty)
        }
    }

    @Test func aHeadThatNeverEndsIsRefusedAtTheLimit() throws {
        let h = try ChildHarness()
        var flushes = try h.send(Array("GET /ws HTTP/1.1\r\nHost: x\r\n".utf8))
        let filler = Array("X-Filler: \(String(repeating: "a", count: 1000))\r\n".utf8)
        var sent = 0
        while flushes.isEmpty && sent < RequestHeadParser.maxHeadBytes * 2 {
            flushes = try h.send(filler)
            sent += filler.count
        }
        #expect(sent <= RequestHeadParser.maxHeadBytes + filler.count, "refused once over the limit, not later")
        #expect(text(flushes.first ?? []).hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(!h.channel.isActive)
    }

    @Test func anUpgradeOverHTTP10IsRefused() throws {
        let h = try ChildHarness()
        var request = upgradeRequest()
        request.replaceSubrange(8..<16, with: Array("HTTP/1.0".utf8))
        let flushes = try h.send(request)
        #expect(text(flushes.first ?? []).hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(text(flushes.first ?? []).hasSuffix("websocket upgrades need HTTP/1.1"))
    }

    @Test func anUpgradeWithoutConnectionUpgradeIsABadRequest() throws {
        let h = try ChildHarness()
        let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        let flushes = try h.send(Array(request.utf8))
        #expect(text(flushes.first ?? []).hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(!h.channel.isActive)
    }

    @Test func anIPv4AddressIsWrittenAsNIOWritesIt() throws {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        var addresses = ["0.0.0.0", "255.255.255.255", "127.0.0.1", "10.0.200.3", "1.22.100.9"]
        for _ in 0..<200 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let v = seed >> 32
            addresses.append("\(v >> 24 & 0xFF).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)")
        }
        for (i, ip) in addresses.enumerated() {
            let port = [0, 1, 9, 10, 99, 443, 8080, 65535][i % 8]
            let address = try SocketAddress(ipAddress: ip, port: port)
            #expect(WebSocketUpgrader.describe(address) == "\(address.ipAddress!):\(port)")
            #expect(WebSocketUpgrader.describe(address) == "\(ip):\(port)")
        }
        #expect(WebSocketUpgrader.describe(try SocketAddress(ipAddress: "::1", port: 80)) == "[::1]:80")
    }

    @Test func listTokensAreMatchedWithoutCaseOrSpaces() throws {
        let h = try ChildHarness()
        let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive ,  UPGRADE\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        let flushes = try h.send(Array(request.utf8))
        #expect(flushes == [switchingProtocols + readyFrame(h.core, conn: 1)], "\(flushes.map(text))")
    }

    @Test func aHeadRequestGetsHeadersOnly() throws {
        let h = try ChildHarness()
        let flushes = try h.send(Array("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let answer = text(flushes.first ?? [])
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(answer.hasSuffix("\r\n\r\n"), "no body: \(answer)")
        #expect(answer.contains("Content-Length: "))
    }

    @Test func bytesAfterAnAnsweredRequestAreNotRead() throws {
        let h = try ChildHarness()
        let flushes = try h.send(Array("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(flushes.count == 1)
        #expect(text(flushes[0]).hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(!text(flushes[0]).contains("200 OK"))
    }
}
