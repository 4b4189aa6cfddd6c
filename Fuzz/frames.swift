// FrameReader (bytes from the socket to frames), differentially: the input is cut into reads and fed
// through FrameReader (with a small PayloadBuffers ring, so buffers are recycled while payloads are
// still held), and compared with a byte-by-byte reference parser over the whole input.
// Byte 0 picks the frame size limit; byte 1 seeds the read sizes; the rest is the stream.
// Invariants: no crash; the same frames (first byte, masked, unmasked payload) in the same order and
// the same error as the reference; payloads held across reads stay intact; nothing is held after a
// failure; held bytes never exceed what was fed; a frame marked `ascii` holds only ASCII.
import NIOCore
import WavelaneProtocol

private struct Frame: Equatable {
    var firstByte: UInt8
    var masked: Bool
    var payload: [UInt8]
}

/// RFC 6455 §5.2 the slow, obvious way: frames until the first incomplete one or the first error.
private func reference(_ bytes: ArraySlice<UInt8>, maxFrameSize: Int) -> ([Frame], FrameReader.Error?) {
    var frames: [Frame] = []
    var i = bytes.startIndex
    while bytes.endIndex - i >= 2 {
        let first = bytes[i], second = bytes[i + 1]
        var at = i + 2
        var length = UInt64(second & 0x7F)
        if length == 126 {
            guard bytes.endIndex - at >= 2 else { break }
            length = UInt64(bytes[at]) << 8 | UInt64(bytes[at + 1])
            at += 2
        } else if length == 127 {
            guard bytes.endIndex - at >= 8 else { break }
            length = 0
            for k in 0..<8 { length = length << 8 | UInt64(bytes[at + k]) }
            at += 8
        }
        if length > UInt64(maxFrameSize) { return (frames, .frameTooLong) }
        if first & 0x08 != 0 && first & 0x80 == 0 { return (frames, .fragmentedControlFrame) }
        if first & 0x08 != 0 && length > 125 { return (frames, .controlFrameTooLong) }
        var key: [UInt8]?
        if second & 0x80 != 0 {
            guard bytes.endIndex - at >= 4 else { break }
            key = Array(bytes[at..<at + 4])
            at += 4
        }
        guard bytes.endIndex - at >= Int(length) else { break }
        var payload = Array(bytes[at..<at + Int(length)])
        if let key { for k in payload.indices { payload[k] ^= key[k % 4] } }
        frames.append(Frame(firstByte: first, masked: key != nil, payload: payload))
        i = at + Int(length)
    }
    return (frames, nil)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let maxFrameSize = [0, 1, 10, 125, 126, 200, 1000, 65_535, 65_536, 1 << 20][Int(input[0]) % 10]
    var seed = UInt32(input[1]) | 1
    let stream = input[2...]
    let (expected, expectedError) = reference(stream, maxFrameSize: maxFrameSize)

    var reader = FrameReader(maxFrameSize: maxFrameSize)
    var buffers = PayloadBuffers(count: 2, maxCapacity: 256)
    let allocator = ByteBufferAllocator()
    var got: [Frame] = []
    var held: [ClientFrame] = []  // kept for a few reads, as queued events would be
    var error: FrameReader.Error?
    var fed = 0
    var i = stream.startIndex
    reading: while i < stream.endIndex {
        seed = seed &* 1_103_515_245 &+ 12_345
        let n = min(stream.endIndex - i, [1, 2, 3, 7, 64, 300, 4096][Int(seed >> 16) % 7])
        reader.receive(ByteBuffer(bytes: stream[i..<i + n]), buffers: &buffers, allocator: allocator)
        fed += n
        i += n
        while true {
            do {
                guard let frame = try reader.next() else { break }
                got.append(Frame(firstByte: frame.firstByte, masked: frame.masked, payload: Array(frame.payload.readableBytesView)))
                check(frame.length <= maxFrameSize, "a frame over the limit")
                check(!frame.ascii || frame.payload.readableBytesView.allSatisfy { $0 < 0x80 }, "ascii set on a payload with a byte of 0x80 or more")
                check(!frame.ascii || frame.masked, "ascii set on an unmasked frame (never scanned)")
                held.append(frame)
            } catch let e as FrameReader.Error {
                error = e
                check(reader.bufferedBytes == 0, "bytes held after a failure")
                break reading
            } catch {
                fatalError("an error that is not FrameReader.Error")
            }
        }
        reader.endRead(buffers: &buffers, allocator: allocator)
        check(reader.bufferedBytes <= fed, "held more than was fed")
        // What is still held reads as it was delivered.
        for (k, frame) in held.enumerated() {
            let index = got.count - held.count + k
            check(Array(frame.payload.readableBytesView) == got[index].payload, "a held payload changed")
        }
        if held.count > 6 { held.removeFirst(held.count - 6) }
    }
    check(got == expected, "frames differ from the reference")
    check(error == expectedError, "error differs from the reference: \(String(describing: error)) vs \(String(describing: expectedError))")
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
