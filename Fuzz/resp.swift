// RESPParser (replies from Redis, RESP2 and RESP3): no crash on any bytes; parsing the input whole
// and parsing it in two pieces (the second arriving later, as from a socket) give the same values
// and the same error; every parsed value re-encodes (RESPEncoder) to bytes that parse back to it.
import NIOCore
import WavelaneProtocol

func parseAll(_ chunks: [ArraySlice<UInt8>], limits: RESPParser) -> (values: [RESPValue], error: RESPError?) {
    var parser = limits
    var buffer = ByteBuffer()
    var values: [RESPValue] = []
    for chunk in chunks {
        buffer.writeBytes(chunk)
        do { while let value = try parser.parse(&buffer) { values.append(value) } } catch { return (values, error) }
    }
    return (values, nil)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let all = Array(UnsafeBufferPointer(start: data, count: size))
    let control = all[0]
    let input = all[1...]
    // small limits half of the time, so the limit checks are reached
    let limits = control & 0x80 != 0
        ? RESPParser(maxBulkLength: 64, maxAggregateCount: 8, maxDepth: 4, maxLineLength: 32)
        : RESPParser()
    let whole = parseAll([input], limits: limits)
    let cut = input.startIndex + Int(control & 0x7F) % (input.count + 1)
    let split = parseAll([input[..<cut], input[cut...]], limits: limits)
    // compared as their encodings: a RESP3 double may be nan, which is not == to itself
    check(encoding(whole.values) == encoding(split.values), "split parsing gives other values: \(whole.values) vs \(split.values) (cut \(cut - input.startIndex))")
    check((whole.error == nil) == (split.error == nil), "split parsing gives another outcome: \(String(describing: whole.error)) vs \(String(describing: split.error))")
    for value in whole.values {
        var encoded = ByteBuffer()
        RESPEncoder.encode(value, into: &encoded)
        var parser = RESPParser()
        let again = try? parser.parse(&encoded)
        check(again.map { encoding([$0]) } == encoding([value]), "encode -> parse changed \(value) into \(String(describing: again))")
        check(encoded.readableBytes == 0, "re-encoded value left bytes behind")
    }
    return 0
}

func encoding(_ values: [RESPValue]) -> [UInt8] {
    var buffer = ByteBuffer()
    for value in values { RESPEncoder.encode(value, into: &buffer) }
    return Array(buffer.readableBytesView)
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
