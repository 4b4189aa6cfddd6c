import NIOCore
import NIOEmbedded
import Testing
import WavelaneAuth
@testable import WavelaneEngine
import WavelaneProtocol

/// The 101 for `upgradeRequest()`'s key (RFC 6455 §1.3's example), as NIO's encoder writes it.
private let switchingProtocols = Array(("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
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

@Suite("UpgradeCork: the 101 and the ready frame in one write")
struct UpgradeCorkTests {
    @Test func the101AndTheReadyFrameLeaveInOneFlush() throws {
        let h = try ChildHarness()
        let flushes = try h.send(upgradeRequest())
        #expect(flushes == [switchingProtocols + readyFrame(h.core, conn: 1)], "\(flushes.map(text))")
        #expect(!h.hasCork, "the cork leaves the pipeline after the upgrade")
        #expect(h.core.queue.drain(max: 10, timeoutMs: 0).map(\.kind) == [.connect])
        // The connection works as before: a ping is answered at once.
        #expect(try h.send(clientPing) == [pong])
    }

    @Test func withoutReadyFrameThe101IsFlushedAtOnce() throws {
        let h = try ChildHarness { $0.readyMessage = false }
        #expect(try h.send(upgradeRequest()) == [switchingProtocols])
        #expect(!h.hasCork)
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
}

@Suite("UpgradeCork alone")
struct UpgradeCorkUnitTests {
    private func corked() throws -> (EmbeddedChannel, FlushRecorder, UpgradeCork) {
        let channel = EmbeddedChannel()
        let recorder = FlushRecorder()
        let cork = UpgradeCork()
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.pipeline.syncOperations.addHandler(cork)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, recorder, cork)
    }

    @Test func passesEverythingOnUntilHold() throws {
        let (channel, recorder, _) = try corked()
        try channel.writeAndFlush(ByteBuffer(string: "a")).wait()
        #expect(recorder.take() == [Array("a".utf8)])
    }

    @Test func aHeldFlushCompletesItsWritesAndReleaseSendsEverythingInOneFlush() throws {
        let (channel, recorder, cork) = try corked()
        cork.hold()
        let first = channel.writeAndFlush(ByteBuffer(string: "101"))
        var done = false
        first.whenSuccess { done = true }
        #expect(done, "a held flush completes the promise (NIO's upgrade waits for it)")
        channel.write(ByteBuffer(string: "+ready"), promise: nil)
        let last = channel.writeAndFlush(ByteBuffer(string: "+more"))
        #expect(recorder.take() == [])
        cork.release()
        #expect(recorder.take() == [Array("101+ready+more".utf8)])
        try last.wait()
        #expect((try? channel.pipeline.syncOperations.handler(type: UpgradeCork.self)) == nil)
        try channel.writeAndFlush(ByteBuffer(string: "after")).wait()
        #expect(recorder.take() == [Array("after".utf8)])
    }

    @Test func aCloseLetsTheHeldBytesOutFirst() throws {
        let (channel, recorder, cork) = try corked()
        cork.hold()
        channel.writeAndFlush(ByteBuffer(string: "101"), promise: nil)
        channel.write(ByteBuffer(string: "tail"), promise: nil)
        #expect(recorder.take() == [])
        try channel.close().wait()
        #expect(recorder.take() == [Array("101tail".utf8)])
    }

    @Test func writesHeldWhenTheChannelGoesAwayFail() throws {
        let (channel, recorder, cork) = try corked()
        cork.hold()
        let write = channel.write(ByteBuffer(string: "never"))
        recorder.closeFromHead?()
        channel.embeddedEventLoop.run()
        #expect(throws: ChannelError.ioOnClosedChannel) { try write.wait() }
    }
}
