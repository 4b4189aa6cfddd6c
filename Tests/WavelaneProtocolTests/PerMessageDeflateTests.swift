import NIOCore
import NIOWebSocket
import Testing
@testable import WavelaneProtocol

@Suite struct PerMessageDeflateNegotiationTests {
    let policy = PerMessageDeflate.ServerPolicy()

    @Test func plainOfferGetsMemorySafeAnswer() throws {
        let p = try #require(PerMessageDeflate.negotiate(offers: ["permessage-deflate"], policy: policy))
        #expect(p.responseHeader == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        #expect(p.serverWindowBits == 15)
    }

    @Test func browserOfferWithClientMaxWindowBits() throws {
        let p = try #require(PerMessageDeflate.negotiate(
            offers: ["permessage-deflate; client_max_window_bits"], policy: policy))
        // client_max_window_bits without a value is not echoed (we inflate with 15 bits anyway).
        #expect(p.clientMaxWindowBits == nil)
        #expect(!p.responseHeader.contains("client_max_window_bits"))
    }

    @Test func serverWindowBitsHonoured() throws {
        let p = try #require(PerMessageDeflate.negotiate(
            offers: ["permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"], policy: policy))
        #expect(p.serverWindowBits == 10)
        #expect(p.clientMaxWindowBits == 12)
        #expect(p.responseHeader.contains("server_max_window_bits=10"))
        #expect(p.responseHeader.contains("client_max_window_bits=12"))
    }

    @Test(arguments: [
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=99",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "x-webkit-deflate-frame",
        // found by fuzzing (Fuzz/handshake.swift): a parameter without a name ("=") trapped on an
        // empty array index, taking the whole server down from one upgrade request
        "permessage-deflate;=",
        "permessage-deflate; =15",
        "permessage-deflate; = ; server_no_context_takeover",
    ])
    func declined(_ offer: String) {
        #expect(PerMessageDeflate.negotiate(offers: [offer], policy: policy) == nil)
    }

    @Test func firstAcceptableOfferWins() throws {
        let p = try #require(PerMessageDeflate.negotiate(
            offers: ["permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=11"],
            policy: policy))
        #expect(p.serverWindowBits == 11)
    }

    @Test func quotedValues() throws {
        let p = try #require(PerMessageDeflate.negotiate(
            offers: ["permessage-deflate; server_max_window_bits=\"12\""], policy: policy))
        #expect(p.serverWindowBits == 12)
    }

    @Test func disabledPolicyDeclines() {
        var off = policy
        off.enabled = false
        #expect(PerMessageDeflate.negotiate(offers: ["permessage-deflate"], policy: off) == nil)
    }

    @Test func contextTakeoverPolicy() throws {
        var keep = policy
        keep.serverContextTakeover = true
        keep.clientContextTakeover = true
        let p = try #require(PerMessageDeflate.negotiate(offers: ["permessage-deflate"], policy: keep))
        #expect(p.responseHeader == "permessage-deflate")
        // ... unless the client asks for no context takeover.
        let q = try #require(PerMessageDeflate.negotiate(
            offers: ["permessage-deflate; server_no_context_takeover"], policy: keep))
        #expect(q.serverNoContextTakeover)
    }
}

@Suite struct DeflaterInflaterTests {
    let allocator = ByteBufferAllocator()

    private func roundTrip(_ input: [UInt8], windowBits: Int = 15, context: Bool = false) throws -> [UInt8] {
        let d = Deflater(level: 6, windowBits: windowBits, memLevel: 8, contextTakeover: context)
        let compressed = input.withUnsafeBytes { d.compress($0) }
        #expect(!(compressed.count >= 4 && Array(compressed.suffix(4)) == [0, 0, 0xFF, 0xFF]))
        let i = Inflater(contextTakeover: context)
        let out = try i.decompress(ByteBuffer(bytes: compressed), limit: 1 << 24, allocator: allocator)
        return Array(out.readableBytesView)
    }

    @Test func roundTripsText() throws {
        let text = Array(String(repeating: "Hello, permessage-deflate! ", count: 200).utf8)
        #expect(try roundTrip(text) == text)
    }

    @Test func roundTripsRandomBytes() throws {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<10_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        #expect(try roundTrip(bytes) == bytes)
    }

    @Test(arguments: [8, 9, 10, 12, 15])
    func everyWindowSize(_ bits: Int) throws {
        let text = Array(String(repeating: "abcdefghij", count: 3000).utf8)
        #expect(try roundTrip(text, windowBits: bits) == text)
    }

    @Test func compressesRepetitiveData() {
        let d = Deflater(level: 6, windowBits: 15, memLevel: 8, contextTakeover: false)
        let input = [UInt8](repeating: 0x41, count: 100_000)
        let out = input.withUnsafeBytes { d.compress($0) }
        #expect(out.count < 1_000)
    }

    @Test func noContextTakeoverMessagesAreIndependent() throws {
        let d = Deflater(level: 6, windowBits: 15, memLevel: 8, contextTakeover: false)
        let msg = Array("the same message, twice".utf8)
        let a = msg.withUnsafeBytes { d.compress($0) }
        let b = msg.withUnsafeBytes { d.compress($0) }
        #expect(a == b)  // reset between messages: identical output
        // A fresh inflater can read the second one alone.
        let out = try Inflater(contextTakeover: false).decompress(ByteBuffer(bytes: b), limit: 1000, allocator: allocator)
        #expect(Array(out.readableBytesView) == msg)
    }

    @Test func contextTakeoverSharesWindowAcrossMessages() throws {
        let d = Deflater(level: 6, windowBits: 15, memLevel: 8, contextTakeover: true)
        let i = Inflater(contextTakeover: true)
        let msg = Array(String(repeating: "context takeover ", count: 20).utf8)
        let first = msg.withUnsafeBytes { d.compress($0) }
        let second = msg.withUnsafeBytes { d.compress($0) }
        #expect(second.count < first.count)  // the second refers back into the first
        for c in [first, second] {
            let out = try i.decompress(ByteBuffer(bytes: c), limit: 10_000, allocator: allocator)
            #expect(Array(out.readableBytesView) == msg)
        }
    }

    @Test func bombIsStoppedAtTheLimit() {
        let d = Deflater(level: 9, windowBits: 15, memLevel: 8, contextTakeover: false)
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let bomb = zeros.withUnsafeBytes { d.compress($0) }
        #expect(bomb.count < 20_000)
        #expect(throws: DeflateError.tooBig) {
            try Inflater(contextTakeover: false).decompress(ByteBuffer(bytes: bomb), limit: 1 << 16, allocator: allocator)
        }
    }

    @Test func corruptDataIsRejected() {
        #expect(throws: DeflateError.corrupt) {
            try Inflater(contextTakeover: false).decompress(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0x12, 0x34]), limit: 1000,
                                                            allocator: allocator)
        }
    }
}

@Suite struct CompressedAssemblyTests {
    private func frame(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, rsv1: Bool = false) -> WebSocketFrame {
        let key: WebSocketMaskingKey = [1, 2, 3, 4]
        var data = ByteBuffer(bytes: bytes)
        data.webSocketMask(key)
        return WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: key, data: data)
    }

    @Test func rsv1MarksCompressedMessage() {
        var a = MessageAssembler(maxMessageSize: 1000, compression: true)
        #expect(a.receive(frame(.text, [1, 2, 3], rsv1: true)) == .compressedMessage(.text, ByteBuffer(bytes: [1, 2, 3])))
    }

    @Test func fragmentedCompressedMessage() {
        var a = MessageAssembler(maxMessageSize: 1000, compression: true)
        #expect(a.receive(frame(.binary, [1, 2], fin: false, rsv1: true)) == .none)
        // Continuations never carry RSV1; invalid UTF-8 is not checked before inflation.
        #expect(a.receive(frame(.continuation, [0xFF], fin: false)) == .none)
        #expect(a.receive(frame(.continuation, [3])) == .compressedMessage(.binary, ByteBuffer(bytes: [1, 2, 0xFF, 3])))
    }

    @Test func rsv1OnContinuationFails() {
        var a = MessageAssembler(maxMessageSize: 1000, compression: true)
        _ = a.receive(frame(.text, [1], fin: false, rsv1: true))
        guard case .fail(let code, _) = a.receive(frame(.continuation, [2], rsv1: true)) else {
            Issue.record("expected failure")
            return
        }
        #expect(code == 1002)
    }

    @Test func rsv1OnControlFrameFails() {
        var a = MessageAssembler(maxMessageSize: 1000, compression: true)
        guard case .fail(let code, _) = a.receive(frame(.ping, [], rsv1: true)) else {
            Issue.record("expected failure")
            return
        }
        #expect(code == 1002)
    }

    @Test func rsv1WithoutNegotiationFails() {
        var a = MessageAssembler(maxMessageSize: 1000, compression: false)
        guard case .fail(let code, _) = a.receive(frame(.text, [1], rsv1: true)) else {
            Issue.record("expected failure")
            return
        }
        #expect(code == 1002)
    }
}
