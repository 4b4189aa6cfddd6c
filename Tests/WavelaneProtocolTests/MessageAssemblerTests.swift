import NIOCore
import NIOWebSocket
import Testing
import WavelaneProtocol

private let maskKey: WebSocketMaskingKey = [0x37, 0xFA, 0x21, 0x3D]

/// A client frame: `payload` is masked with `maskKey` (unless `masked` is false), as on the wire.
private func clientFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true, masked: Bool = true,
                         rsv1: Bool = false, rsv2: Bool = false, rsv3: Bool = false) -> WebSocketFrame {
    var data = ByteBuffer(bytes: payload)
    if masked { data.webSocketMask(maskKey) }
    return WebSocketFrame(fin: fin, rsv1: rsv1, rsv2: rsv2, rsv3: rsv3, opcode: opcode,
                          maskKey: masked ? maskKey : nil, data: data)
}

private func clientFrame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true) -> WebSocketFrame {
    clientFrame(opcode, Array(text.utf8), fin: fin)
}

private func closePayload(_ code: UInt16, _ reason: [UInt8] = []) -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + reason
}

private func message(_ kind: MessageAssembler.MessageKind, _ bytes: [UInt8]) -> MessageAssembler.Action {
    .message(kind, ByteBuffer(bytes: bytes))
}

private func failCode(_ action: MessageAssembler.Action) -> UInt16? {
    if case .fail(let code, _) = action { return code }
    return nil
}

/// A reference wrapper so `receive` can be called inside `#expect`.
private final class Assembler {
    var inner: MessageAssembler
    init(maxMessageSize: Int, compression: Bool = false) {
        self.inner = MessageAssembler(maxMessageSize: maxMessageSize, compression: compression)
    }
    func receive(_ frame: WebSocketFrame) -> MessageAssembler.Action { self.inner.receive(frame) }
    var isAssembling: Bool { self.inner.isAssembling }
}

@Suite("MessageAssembler: messages")
struct MessageAssemblerMessageTests {
    @Test func maskedPayloadIsUnmasked() {
        // Sanity: the masked bytes differ from the plain ones, so unmasking is exercised.
        let plain = Array("hello, world".utf8)
        let f = clientFrame(.text, plain)
        #expect(Array(f.data.readableBytesView) != plain)
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(f) == message(.text, plain))
    }

    @Test func bufferedBytesAndDiscardingData() {
        var a = MessageAssembler(maxMessageSize: 1000)
        #expect(a.receive(clientFrame(.binary, [1, 2, 3], fin: false)) == .none)
        #expect(a.bufferedBytes == 3)
        #expect(a.receive(clientFrame(.continuation, [4, 5], fin: false)) == .none)
        #expect(a.bufferedBytes == 5)
        #expect(a.receive(clientFrame(.continuation, [6], fin: true)) == message(.binary, [1, 2, 3, 4, 5, 6]))
        #expect(a.bufferedBytes == 0)
        #expect(a.receive(clientFrame(.text, "abc", fin: false)) == .none)
        a.discardData()
        #expect(a.bufferedBytes == 0)
        // Closing: data frames are ignored, control frames still answered.
        #expect(a.receive(clientFrame(.continuation, "def", fin: true)) == .none)
        #expect(a.receive(clientFrame(.text, "new")) == .none)
        #expect(a.bufferedBytes == 0)
        #expect(a.receive(clientFrame(.connectionClose, closePayload(1000))) == .close(code: 1000, reason: ""))
    }

    @Test func singleTextMessage() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, "héllo €😀")) == message(.text, Array("héllo €😀".utf8)))
        #expect(!a.isAssembling)
    }

    @Test func singleBinaryMessageIsNotUTF8Checked() {
        let a = Assembler(maxMessageSize: 1024)
        let bytes: [UInt8] = [0xFF, 0x00, 0xC0, 0x80, 0xED, 0xA0, 0x80]
        #expect(a.receive(clientFrame(.binary, bytes)) == message(.binary, bytes))
    }

    @Test func asciiFramesSkipOnlyTheUTF8CheckTheyCannotFail() {
        // `ascii` frames as FrameReader makes them: a text message of them is accepted unchecked.
        var a = MessageAssembler(maxMessageSize: 1 << 16)
        let text = ClientFrame(firstByte: 0x81, masked: true, payload: ByteBuffer(string: "plain"), ascii: true)
        #expect(a.receive(text) == message(.text, Array("plain".utf8)))
        // "é" cut after its first byte: an ASCII continuation cannot complete it, and is refused.
        var b = MessageAssembler(maxMessageSize: 1 << 16)
        #expect(b.receive(ClientFrame(firstByte: 0x01, masked: true, payload: ByteBuffer(bytes: [0x61, 0xC3]))) == .none)
        let asciiRest = ClientFrame(firstByte: 0x80, masked: true, payload: ByteBuffer(string: "b"), ascii: true)
        #expect(failCode(b.receive(asciiRest)) == CloseCode.invalidPayload)
        // after a complete character, an ASCII continuation keeps the message valid
        var c = MessageAssembler(maxMessageSize: 1 << 16)
        #expect(c.receive(ClientFrame(firstByte: 0x01, masked: true, payload: ByteBuffer(bytes: [0xC3, 0xA9]))) == .none)
        #expect(c.receive(ClientFrame(firstByte: 0x80, masked: true, payload: ByteBuffer(string: "!"), ascii: true)) == message(.text, [0xC3, 0xA9, 0x21]))
    }

    @Test func emptyMessages() {
        let a = Assembler(maxMessageSize: 16)
        #expect(a.receive(clientFrame(.text, [])) == message(.text, []))
        #expect(a.receive(clientFrame(.binary, [])) == message(.binary, []))
    }

    @Test func consecutiveMessages() {
        let a = Assembler(maxMessageSize: 1024)
        for i in 0..<5 {
            #expect(a.receive(clientFrame(.text, "m\(i)")) == message(.text, Array("m\(i)".utf8)))
            #expect(a.receive(clientFrame(.binary, [UInt8(i)])) == message(.binary, [UInt8(i)]))
        }
    }

    @Test func threeFragmentTextReassembled() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, "Hello, ", fin: false)) == MessageAssembler.Action.none)
        #expect(a.isAssembling)
        #expect(a.receive(clientFrame(.continuation, "fragmented ", fin: false)) == MessageAssembler.Action.none)
        #expect(a.isAssembling)
        #expect(a.receive(clientFrame(.continuation, "world", fin: true)) == message(.text, Array("Hello, fragmented world".utf8)))
        #expect(!a.isAssembling)
        // The assembler is ready for the next message.
        #expect(a.receive(clientFrame(.text, "next")) == message(.text, Array("next".utf8)))
    }

    @Test func threeFragmentBinaryReassembled() {
        let a = Assembler(maxMessageSize: 1024)
        let parts: [[UInt8]] = [Array(0..<7), Array(7..<100), Array(100..<103)]
        #expect(a.receive(clientFrame(.binary, parts[0], fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, parts[1], fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, parts[2], fin: true)) == message(.binary, Array(0..<103)))
    }

    @Test func emptyFragments() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, [], fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, "ab", fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, [], fin: true)) == message(.text, Array("ab".utf8)))
    }

    @Test func controlFramesInsideFragmentedMessage() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, "one ", fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.ping, [1, 2, 3])) == .ping(ByteBuffer(bytes: [1, 2, 3])))
        #expect(a.isAssembling)
        #expect(a.receive(clientFrame(.continuation, "two ", fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.pong, [9])) == .pong)
        #expect(a.receive(clientFrame(.continuation, "three", fin: true)) == message(.text, Array("one two three".utf8)))
    }

    @Test func pingPayloadEchoedExactly() {
        let a = Assembler(maxMessageSize: 16)
        #expect(a.receive(clientFrame(.ping, [])) == .ping(ByteBuffer()))
        let payload = (0..<125).map { UInt8(truncatingIfNeeded: $0 * 3) }
        #expect(a.receive(clientFrame(.ping, payload)) == .ping(ByteBuffer(bytes: payload)))
        // A ping's payload is not limited by max_message_size nor checked for UTF-8.
        #expect(a.receive(clientFrame(.ping, [0xFF, 0xFE])) == .ping(ByteBuffer(bytes: [0xFF, 0xFE])))
    }

    @Test func pong() {
        let a = Assembler(maxMessageSize: 16)
        #expect(a.receive(clientFrame(.pong, [])) == .pong)
        #expect(a.receive(clientFrame(.pong, Array("anything".utf8))) == .pong)
    }
}

@Suite("MessageAssembler: protocol errors")
struct MessageAssemblerProtocolErrorTests {
    @Test func unmaskedFrameFails1002() {
        for opcode in [WebSocketOpcode.text, .binary, .ping, .pong, .connectionClose, .continuation] {
            let a = Assembler(maxMessageSize: 1024)
            #expect(failCode(a.receive(clientFrame(opcode, [0x61], masked: false))) == 1002)
        }
    }

    @Test(arguments: [(true, false, false), (false, true, false), (false, false, true), (true, true, true)])
    func rsvBitsFail1002(rsv1: Bool, rsv2: Bool, rsv3: Bool) {
        let a = Assembler(maxMessageSize: 1024)
        #expect(failCode(a.receive(clientFrame(.text, Array("x".utf8), rsv1: rsv1, rsv2: rsv2, rsv3: rsv3))) == 1002)
        let b = Assembler(maxMessageSize: 1024)
        #expect(failCode(b.receive(clientFrame(.ping, [], rsv1: rsv1, rsv2: rsv2, rsv3: rsv3))) == 1002)
    }

    @Test(arguments: [UInt8(3), 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    func reservedOpcodesFail1002(raw: UInt8) throws {
        let opcode = try #require(WebSocketOpcode(encodedWebSocketOpcode: raw))
        let a = Assembler(maxMessageSize: 1024)
        #expect(failCode(a.receive(clientFrame(opcode, [0x61]))) == 1002)
    }

    @Test func continuationWithoutStartFails1002() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(failCode(a.receive(clientFrame(.continuation, "x", fin: true))) == 1002)
        let b = Assembler(maxMessageSize: 1024)
        #expect(failCode(b.receive(clientFrame(.continuation, "x", fin: false))) == 1002)
    }

    @Test func continuationAfterCompletedMessageFails1002() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, "a", fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, "b", fin: true)) == message(.text, Array("ab".utf8)))
        #expect(failCode(a.receive(clientFrame(.continuation, "c", fin: true))) == 1002)
    }

    @Test func newTextWhileFragmentingFails1002() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, "a", fin: false)) == MessageAssembler.Action.none)
        #expect(failCode(a.receive(clientFrame(.text, "b", fin: true))) == 1002)
        let b = Assembler(maxMessageSize: 1024)
        #expect(b.receive(clientFrame(.binary, [1], fin: false)) == MessageAssembler.Action.none)
        #expect(failCode(b.receive(clientFrame(.binary, [2], fin: false))) == 1002)
        let c = Assembler(maxMessageSize: 1024)
        #expect(c.receive(clientFrame(.binary, [1], fin: false)) == MessageAssembler.Action.none)
        #expect(failCode(c.receive(clientFrame(.text, "t", fin: true))) == 1002)
    }

    @Test func fragmentedControlFramesFail1002() {
        for opcode in [WebSocketOpcode.ping, .pong, .connectionClose] {
            let a = Assembler(maxMessageSize: 1024)
            #expect(failCode(a.receive(clientFrame(opcode, [], fin: false))) == 1002)
        }
    }

    @Test func oversizedControlFramesFail1002() {
        let big = [UInt8](repeating: 0x61, count: 126)
        for opcode in [WebSocketOpcode.ping, .pong] {
            let a = Assembler(maxMessageSize: 1024)
            #expect(failCode(a.receive(clientFrame(opcode, big))) == 1002)
        }
        let c = Assembler(maxMessageSize: 1024)
        #expect(failCode(c.receive(clientFrame(.connectionClose, closePayload(1000, [UInt8](repeating: 0x61, count: 124))))) == 1002)
        // 125 bytes is the limit and still accepted.
        let d = Assembler(maxMessageSize: 1024)
        let reason = [UInt8](repeating: 0x61, count: 123)
        #expect(d.receive(clientFrame(.connectionClose, closePayload(1000, reason))) == .close(code: 1000, reason: String(repeating: "a", count: 123)))
    }

    @Test func afterFailureEverythingIsNone() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(failCode(a.receive(clientFrame(.continuation, "x"))) == 1002)
        #expect(a.receive(clientFrame(.text, "hello")) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.binary, [1])) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.ping, [1])) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.pong, [])) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.connectionClose, closePayload(1000))) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.text, Array("x".utf8), masked: false)) == MessageAssembler.Action.none)
        #expect(!a.isAssembling)
    }

    @Test func failureDuringFragmentsDropsAssembly() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, "abc", fin: false)) == MessageAssembler.Action.none)
        #expect(a.isAssembling)
        #expect(failCode(a.receive(clientFrame(.continuation, [0x61], masked: false))) == 1002)
        #expect(!a.isAssembling)
        #expect(a.receive(clientFrame(.continuation, "d", fin: true)) == MessageAssembler.Action.none)
    }
}

@Suite("MessageAssembler: UTF-8")
struct MessageAssemblerUTF8Tests {
    @Test(arguments: [
        [UInt8]([0xFF]), [0x61, 0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
        [0x61, 0xE2, 0x82], [0xC3],
    ])
    func invalidUTF8InOneFrameFails1007(bytes: [UInt8]) {
        let a = Assembler(maxMessageSize: 1024)
        #expect(failCode(a.receive(clientFrame(.text, bytes))) == 1007)
    }

    @Test func invalidUTF8AcrossFragmentsFailsFast() {
        let a = Assembler(maxMessageSize: 1024)
        // "ab" + first byte of a 3-byte sequence: still a valid prefix.
        #expect(a.receive(clientFrame(.text, [0x61, 0x62, 0xE2], fin: false)) == MessageAssembler.Action.none)
        // 0x28 cannot continue E2: fail now, although this fragment is not final.
        #expect(failCode(a.receive(clientFrame(.continuation, [0x28, 0x61], fin: false))) == 1007)
        #expect(a.receive(clientFrame(.continuation, "end", fin: true)) == MessageAssembler.Action.none)
    }

    @Test func invalidUTF8InFirstNonFinalFragmentFailsFast() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(failCode(a.receive(clientFrame(.text, [0x61, 0xC0, 0xAF], fin: false))) == 1007)
    }

    @Test func invalidUTF8InMiddleFragmentFailsFast() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, "ok", fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, "still ok", fin: false)) == MessageAssembler.Action.none)
        #expect(failCode(a.receive(clientFrame(.continuation, [0xED, 0xBF, 0xBF], fin: false))) == 1007)
    }

    @Test func validMultiByteCharacterSplitAcrossFragments() {
        let euro: [UInt8] = [0xE2, 0x82, 0xAC]
        let grin: [UInt8] = [0xF0, 0x9F, 0x98, 0x80]
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, [0x61, euro[0]], fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, [euro[1]], fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, [euro[2], grin[0], grin[1]], fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, [grin[2], grin[3]], fin: true)) == message(.text, [0x61] + euro + grin))
    }

    @Test func messageEndingMidCharacterFails1007() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.text, [0x61, 0xF0, 0x9F], fin: false)) == MessageAssembler.Action.none)
        #expect(failCode(a.receive(clientFrame(.continuation, [0x98], fin: true))) == 1007)
    }

    @Test func validatorResetsBetweenMessages() {
        // A binary fragmented message never leaves UTF-8 state behind for the next text message.
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.binary, [0xE2], fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, [0xFF], fin: true)) == message(.binary, [0xE2, 0xFF]))
        #expect(a.receive(clientFrame(.text, "plain")) == message(.text, Array("plain".utf8)))
        #expect(a.receive(clientFrame(.text, [0xC3, 0xA9])) == message(.text, [0xC3, 0xA9]))
    }

    @Test func binaryFragmentsAreNotUTF8Checked() {
        let a = Assembler(maxMessageSize: 1024)
        #expect(a.receive(clientFrame(.binary, [0xFF], fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, [0xC0, 0x80], fin: true)) == message(.binary, [0xFF, 0xC0, 0x80]))
    }
}

@Suite("MessageAssembler: size limit")
struct MessageAssemblerSizeTests {
    @Test func singleFrameAtAndOverTheLimit() {
        let a = Assembler(maxMessageSize: 10)
        #expect(a.receive(clientFrame(.binary, [UInt8](repeating: 1, count: 10))) == message(.binary, [UInt8](repeating: 1, count: 10)))
        #expect(failCode(a.receive(clientFrame(.binary, [UInt8](repeating: 1, count: 11)))) == 1009)
        let b = Assembler(maxMessageSize: 10)
        #expect(failCode(b.receive(clientFrame(.text, String(repeating: "x", count: 11)))) == 1009)
        let c = Assembler(maxMessageSize: 10)
        #expect(failCode(c.receive(clientFrame(.text, String(repeating: "x", count: 11), fin: false))) == 1009)
    }

    @Test func acrossFragmentsAtTheLimit() {
        let a = Assembler(maxMessageSize: 10)
        #expect(a.receive(clientFrame(.text, "12345", fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, "678", fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, "90", fin: true)) == message(.text, Array("1234567890".utf8)))
    }

    @Test func acrossFragmentsOverTheLimit() {
        let a = Assembler(maxMessageSize: 10)
        #expect(a.receive(clientFrame(.binary, [UInt8](repeating: 2, count: 6), fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.continuation, [UInt8](repeating: 2, count: 4), fin: false)) == MessageAssembler.Action.none)
        // 11th byte, in a non-final fragment: rejected before the message completes.
        #expect(failCode(a.receive(clientFrame(.continuation, [2], fin: false))) == 1009)
        #expect(a.receive(clientFrame(.continuation, [], fin: true)) == MessageAssembler.Action.none)
    }
}

@Suite("MessageAssembler: close frames")
struct MessageAssemblerCloseTests {
    @Test func emptyCloseHasNoCode() {
        let a = Assembler(maxMessageSize: 16)
        #expect(a.receive(clientFrame(.connectionClose, [])) == .close(code: nil, reason: ""))
    }

    @Test func oneBytePayloadFails1002() {
        let a = Assembler(maxMessageSize: 16)
        #expect(failCode(a.receive(clientFrame(.connectionClose, [0x03]))) == 1002)
    }

    @Test(arguments: [UInt16(1000), 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999])
    func validCodesAccepted(code: UInt16) {
        let a = Assembler(maxMessageSize: 16)
        #expect(a.receive(clientFrame(.connectionClose, closePayload(code))) == .close(code: code, reason: ""))
    }

    @Test(arguments: [UInt16(0), 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
    func invalidCodesFail1002(code: UInt16) {
        let a = Assembler(maxMessageSize: 16)
        #expect(failCode(a.receive(clientFrame(.connectionClose, closePayload(code)))) == 1002)
    }

    @Test func reasonIsReturned() {
        let a = Assembler(maxMessageSize: 16)
        let reason = "au revoir – 😀"
        // Close frames are control frames: max_message_size does not apply to them.
        #expect(a.receive(clientFrame(.connectionClose, closePayload(4001, Array(reason.utf8)))) == .close(code: 4001, reason: reason))
    }

    @Test(arguments: [[UInt8]([0xFF]), [0x61, 0xC3], [0xED, 0xA0, 0x80], [0xC0, 0x80]])
    func nonUTF8ReasonFails1007(reason: [UInt8]) {
        let a = Assembler(maxMessageSize: 16)
        #expect(failCode(a.receive(clientFrame(.connectionClose, closePayload(1000, reason)))) == 1007)
    }

    @Test func closeInsideFragmentedMessage() {
        let a = Assembler(maxMessageSize: 64)
        #expect(a.receive(clientFrame(.text, "part", fin: false)) == MessageAssembler.Action.none)
        #expect(a.receive(clientFrame(.connectionClose, closePayload(1000, Array("done".utf8)))) == .close(code: 1000, reason: "done"))
    }
}

@Suite("MessageAssembler: permessage-deflate RSV1")
struct MessageAssemblerCompressionTests {
    private func compressedFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true) -> WebSocketFrame {
        clientFrame(opcode, payload, fin: fin, rsv1: true)
    }

    @Test func rsv1WithoutNegotiationFails1002() {
        let a = Assembler(maxMessageSize: 64, compression: false)
        let r = a.receive(compressedFrame(.text, [1, 2, 3]))
        #expect(failCode(r) == 1002)
    }

    @Test func compressedSingleFrameIsNotUTF8Checked() {
        let a = Assembler(maxMessageSize: 64, compression: true)
        let r = a.receive(compressedFrame(.text, [0xFF, 0x00, 0xC0]))
        #expect(r == .compressedMessage(.text, ByteBuffer(bytes: [0xFF, 0x00, 0xC0])))
        let b = a.receive(compressedFrame(.binary, [7]))
        #expect(b == .compressedMessage(.binary, ByteBuffer(bytes: [7])))
        // An uncompressed message on the same connection is still validated.
        let c = a.receive(clientFrame(.text, [0xFF]))
        #expect(failCode(c) == 1007)
    }

    @Test func compressedFragmentsReassembled() {
        let a = Assembler(maxMessageSize: 64, compression: true)
        let r1 = a.receive(compressedFrame(.text, [0xE2], fin: false))
        #expect(r1 == MessageAssembler.Action.none)
        let ping = a.receive(clientFrame(.ping, [5]))
        #expect(ping == .ping(ByteBuffer(bytes: [5])))
        let r2 = a.receive(clientFrame(.continuation, [0xFF], fin: false))
        #expect(r2 == MessageAssembler.Action.none)
        let r3 = a.receive(clientFrame(.continuation, [0x00], fin: true))
        #expect(r3 == .compressedMessage(.text, ByteBuffer(bytes: [0xE2, 0xFF, 0x00])))
        // The next, uncompressed, fragmented text message is validated again.
        let r4 = a.receive(clientFrame(.text, [0x61], fin: false))
        #expect(r4 == MessageAssembler.Action.none)
        let r5 = a.receive(clientFrame(.continuation, [0xFF], fin: true))
        #expect(failCode(r5) == 1007)
    }

    @Test func rsv1OnContinuationOrControlFails1002() {
        let a = Assembler(maxMessageSize: 64, compression: true)
        _ = a.receive(compressedFrame(.binary, [1], fin: false))
        #expect(failCode(a.receive(compressedFrame(.continuation, [2], fin: true))) == 1002)
        for opcode in [WebSocketOpcode.ping, .pong, .connectionClose] {
            let b = Assembler(maxMessageSize: 64, compression: true)
            #expect(failCode(b.receive(compressedFrame(opcode, []))) == 1002)
        }
    }

    @Test func compressedMessageSizeLimit() {
        let a = Assembler(maxMessageSize: 4, compression: true)
        #expect(failCode(a.receive(compressedFrame(.binary, [1, 2, 3, 4, 5]))) == 1009)
        let b = Assembler(maxMessageSize: 4, compression: true)
        _ = b.receive(compressedFrame(.binary, [1, 2, 3], fin: false))
        #expect(failCode(b.receive(clientFrame(.continuation, [4, 5], fin: true))) == 1009)
    }
}
