// MessageAssembler (+ the inflater and UTF-8 validation it drives): the input is a sequence of
// frames as NIOWebSocket's decoder hands them over. Byte 0 picks the limits; then per frame:
//   [flags: fin 0x80, rsv1 0x40, rsv2 0x20, rsv3 0x10, opcode 0x0F] [mask? 0x80 | length 0...127] [payload]
// Invariants: no crash; nothing after a failure; held bytes and messages never pass the limit;
// text messages are valid UTF-8; compressed messages inflate within the limit or fail cleanly; a
// twin assembler given the same frames marked `ascii` where they are (as FrameReader marks them)
// acts exactly the same (the UTF-8 check it skips could not have failed).
import NIOCore
import NIOWebSocket
import WavelaneProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard size > 0 else { return 0 }
    let maxSize = [0, 1, 2, 5, 16, 125, 200, 1000, 4096, 65536][Int(bytes[0] & 0x0F) % 10]
    let compression = bytes[0] & 0x10 != 0
    var assembler = MessageAssembler(maxMessageSize: maxSize, compression: compression)
    var twin = MessageAssembler(maxMessageSize: maxSize, compression: compression)
    let inflater = Inflater(contextTakeover: bytes[0] & 0x20 != 0)
    let allocator = ByteBufferAllocator()
    var i = 1
    var failed = false
    while i + 2 <= size {
        let flags = bytes[i], lengthByte = bytes[i + 1]
        i += 2
        let length = min(Int(lengthByte & 0x7F), size - i)
        var payload = allocator.buffer(capacity: length)
        payload.writeBytes(UnsafeBufferPointer(rebasing: bytes[i..<i + length]))
        i += length
        let mask: WebSocketMaskingKey? = lengthByte & 0x80 != 0 ? WebSocketMaskingKey([0x12, 0x34, 0x56, 0x78]) : nil
        if let mask { payload.webSocketMask(mask) }
        let frame = WebSocketFrame(fin: flags & 0x80 != 0, rsv1: flags & 0x40 != 0, rsv2: flags & 0x20 != 0,
                                   rsv3: flags & 0x10 != 0, opcode: WebSocketOpcode(encodedWebSocketOpcode: flags & 0x0F)!,
                                   maskKey: mask, data: payload)
        let action = assembler.receive(frame)
        let plain = ClientFrame(frame)
        let ascii = plain.masked && plain.payload.readableBytesView.allSatisfy { $0 < 0x80 }
        let twinAction = twin.receive(ClientFrame(firstByte: plain.firstByte, masked: plain.masked, payload: plain.payload, ascii: ascii))
        check(twinAction == action, "a frame marked ascii changed what the assembler did")
        if failed { check(action == .none, "an action after a failure") }
        check(assembler.bufferedBytes <= maxSize, "held more than the message limit")
        switch action {
        case .message(let kind, let buffer):
            check(buffer.readableBytes <= maxSize, "message over the limit")
            if kind == .text {
                check(buffer.withUnsafeReadableBytes { UTF8Validator.isValid($0) }, "invalid UTF-8 text delivered")
            }
        case .compressedMessage(_, let buffer):
            check(compression, "compressed message without permessage-deflate")
            check(buffer.readableBytes <= maxSize, "compressed message over the limit")
            if let out = try? inflater.decompress(buffer, limit: maxSize, allocator: allocator) {
                check(out.readableBytes <= maxSize, "inflated past the limit")
            }
        case .fail(let code, _):
            check([1002, 1007, 1009].contains(code), "unexpected close code \(code)")
            failed = true
        case .close(let code, _):
            if let code { check(CloseCode.isValidOnWire(code), "invalid close code accepted") }
        case .ping(let p):
            check(p.readableBytes <= 125, "ping payload over 125")
        case .none, .pong:
            break
        }
        if flags == 0xFF {
            assembler.discardData()
            twin.discardData()
        }
    }
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
