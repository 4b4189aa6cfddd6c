// Cluster messages (what instances read from Redis pub/sub and history lists): ClusterMessage.parse,
// parseCommand and ClusterNames.route never crash on any bytes; and a message built by the encoder
// from fuzzed fields (offset, epoch, kind, priority, key, payload) parses back to exactly those
// fields, as do a message for one connection (its id in a field of its own) and a disconnect command.
import NIOCore
import WavelaneProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var buffer = ByteBuffer()
    buffer.writeBytes(bytes)
    if let message = try? ClusterMessage.parse(buffer) {
        check(message.epoch.utf8.count <= 64, "epoch over 64 bytes")
        check(message.payload.readableBytes <= size, "payload larger than the input")
    }
    _ = ClusterMessage.parseCommand(buffer)
    let channel = String(decoding: bytes, as: UTF8.self)
    _ = ClusterNames(prefix: "wl").route(channel)
    _ = ClusterNames.validatePrefix(channel)

    // round trip from fuzzed fields
    guard size >= 12 else { return 0 }
    let offset = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
    let kind = PayloadKind(rawValue: Int32(bytes[8] % 3))!
    let priority = Priority(rawValue: bytes[9] % 5)!
    let epochLength = Int(bytes[10]) % 65
    let keyLength = Int(bytes[11]) % 40
    let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
    let rest = Array(bytes[12...])
    let epoch = String(decoding: (0..<epochLength).map { alphabet[Int(rest.isEmpty ? 0 : rest[$0 % rest.count]) % alphabet.count] }, as: UTF8.self)
    let keyBytes = Array(rest.prefix(keyLength))
    let key: String? = keyLength == 0 ? nil : String(decoding: keyBytes, as: UTF8.self)
    let payload = Array(rest.dropFirst(keyLength))
    var wire = ByteBuffer()
    wire.writeString("\(offset):\(epoch):")
    var body = payload.withUnsafeBytes {
        ClusterMessage.body(kind: kind, priority: priority, key: key, payload: $0, allocator: ByteBufferAllocator())
    }
    wire.writeBuffer(&body)
    if epochLength > 0 {
        guard let parsed = try? ClusterMessage.parse(wire) else { fatalError("an encoded message does not parse") }
        let expectedKey = (key?.isEmpty ?? true) ? nil : key
        check(parsed.offset == offset && parsed.epoch == epoch && parsed.kind == kind && parsed.priority == priority
                     && parsed.key == expectedKey && Array(parsed.payload.readableBytesView) == payload,
                     "parse(encode(fields)) != fields")
    }
    // a message for one connection of another instance: the connection id in its own field
    let direct = payload.withUnsafeBytes {
        ClusterMessage.direct(conn: offset, kind: kind, priority: priority, key: key, payload: $0, allocator: ByteBufferAllocator())
    }
    guard let parsedDirect = try? ClusterMessage.parse(direct) else { fatalError("an encoded direct message does not parse") }
    check(parsedDirect.conn == offset && parsedDirect.offset == 0 && parsedDirect.epoch.isEmpty && parsedDirect.kind == kind
            && parsedDirect.priority == priority && parsedDirect.key == ((key?.isEmpty ?? true) ? nil : key)
            && Array(parsedDirect.payload.readableBytesView) == payload,
          "parse(direct(fields)) != fields")
    check(ClusterMessage.parseCommand(direct) == nil, "a direct message parses as a command")
    let node = String(decoding: rest.prefix(keyLength), as: UTF8.self)
    let reason = String(decoding: rest.dropFirst(keyLength).prefix(100), as: UTF8.self)
    let code = UInt16(truncatingIfNeeded: offset)
    let command = ClusterMessage.disconnectCommand(node: node, code: code, reason: reason, allocator: ByteBufferAllocator())
    // node and reason are cut (on a character) to 255 and 123 bytes
    let expected = ClusterMessage.Command.disconnect(node: String(decoding: FrameEncoder.truncatedUTF8(node, maxBytes: 255), as: UTF8.self),
                                                     code: code, reason: String(decoding: FrameEncoder.truncatedUTF8(reason, maxBytes: 123), as: UTF8.self))
    check(ClusterMessage.parseCommand(command) == expected,
                 "parseCommand(disconnectCommand(...)) differs")
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
