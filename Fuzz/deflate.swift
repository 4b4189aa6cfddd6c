// permessage-deflate: arbitrary bytes inflate within the limit or fail with .tooBig/.corrupt (never
// crash, never allocate past the limit); and compress -> decompress returns the input, for every
// window size and with and without context takeover, over two messages in a row.
import NIOCore
import WavelaneProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard size > 0 else { return 0 }
    let allocator = ByteBufferAllocator()
    let control = bytes[0]
    let body = UnsafeRawBufferPointer(rebasing: bytes[1...])
    let takeover = control & 0x01 != 0
    let limit = [1, 64, 1024, 16 * 1024, 16 * 1024 + 1, 100_000][Int(control >> 1) % 6]
    // 1. raw input as a compressed payload
    let inflater = Inflater(contextTakeover: takeover)
    var payload = allocator.buffer(capacity: body.count)
    payload.writeBytes(body)
    for _ in 0..<2 {
        do {
            let out = try inflater.decompress(payload, limit: limit, allocator: allocator)
            check(out.readableBytes <= limit, "inflated past the limit")
        } catch {
            check(error == .tooBig || error == .corrupt, "unexpected error")
        }
    }
    // 2. round trip (the input is expanded by repetition so large outputs are reached too)
    let repeatCount = Int(control >> 4) + 1
    var message = [UInt8]()
    for _ in 0..<repeatCount { message.append(contentsOf: body) }
    let windowBits = 8 + Int(control >> 5) % 8
    let deflater = Deflater(level: Int(control % 10), windowBits: windowBits, memLevel: 8, contextTakeover: takeover)
    let inflater2 = Inflater(contextTakeover: takeover)
    for round in 0..<2 {
        let compressed = message.withUnsafeBytes { deflater.compress($0) }
        var buffer = allocator.buffer(capacity: compressed.count)
        buffer.writeBytes(compressed)
        guard let out = try? inflater2.decompress(buffer, limit: message.count, allocator: allocator) else {
            fatalError("round \(round): our own compressed message of \(message.count) bytes does not inflate within its size")
        }
        check(Array(out.readableBytesView) == message,
                     "round \(round): inflate(deflate(m)) != m (\(out.readableBytes) of \(message.count) bytes, window \(windowBits), takeover \(takeover))")
    }
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
