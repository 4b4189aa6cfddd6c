// Outbox + SendQueue + FrameBlock: the way a connection's frames reach its socket — written now,
// coalesced, queued by priority, queued as runs of shared publication blocks, handed over as
// copies or as slices of those blocks. The input is a sequence of operations, 2 bytes each:
//   [op] [argument]
//   op % 5 == 0: send one frame (argument: size, with origin in the shared blocks if op & 0x10,
//                priority high if op & 0x20)
//   op % 5 == 1: a stretch of 1 + argument % 64 publications, written as the engine does
//                (`writeRun` while nothing is queued and the socket takes data, else one by one)
//   op % 5 == 2: writeQueued (the socket took what it had)
//   op % 5 == 3: the socket's writability flips
//   op % 5 == 4: spill (the end of a loop tick)
// Invariants: no crash; the queued byte count is the model's; at the end, after everything is
// drained, the bytes handed over are exactly the frames sent, each once, in the order a model
// gives (written at once when nothing waits, else queued: higher priority first, FIFO within
// one) — including slices of blocks taken long before later frames were appended to them.
import NIOCore
import WavelaneProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var outbox = Outbox(maxQueuedBytes: 1 << 30)  // no drops: every frame must come out
    var writer = FrameBlockWriter()
    var out: [UInt8] = []
    var expected: [UInt8] = []
    var queued: [[[UInt8]]] = [[], []]  // the model's queue: high, normal
    var writable = true
    var serial: UInt32 = 0

    func newFrame(_ size: Int) -> ByteBuffer {
        serial &+= 1
        // Distinct bytes per frame: a frame out of place, twice or missing changes the output.
        let seed = serial &* 31
        return ByteBuffer(bytes: (0..<UInt32(max(size, 4))).map { UInt8(truncatingIfNeeded: seed &+ $0) })
    }
    func hand(_ writes: Outbox.Writes) {
        switch writes {
        case .none: break
        case .one(let a): out += a.readableBytesView
        case .two(let a, let b): out += a.readableBytesView; out += b.readableBytesView
        }
    }
    func send(_ frame: ByteBuffer, high: Bool, origin: FrameOrigin?) {
        let level = high ? 0 : 1
        switch outbox.send(frame, priority: high ? .high : .normal, key: nil, origin: origin, writable: writable, draining: false) {
        case .writeNow:
            check(queued[0].isEmpty && queued[1].isEmpty && writable, "written now with frames waiting")
            expected += frame.readableBytesView
            hand(outbox.write(frame))
        case .queued(let dropped):
            check(dropped.isEmpty, "dropped below the bound")
            queued[level].append(Array(frame.readableBytesView))
        case .coalesced, .overflow:
            check(false, "no keys and no bound here")
        }
    }
    func takeQueued() {
        let (writes, frames, moved) = outbox.writeQueued()
        var movedModel = 0
        for _ in 0..<frames {
            let level = queued[0].isEmpty ? 1 : 0
            check(!queued[level].isEmpty, "more frames taken than queued")
            let frame = queued[level].removeFirst()
            expected += frame
            movedModel += frame.count
        }
        check(moved == movedModel, "bytes taken are not the frames'")
        hand(writes)
    }

    var i = 0
    while i + 2 <= size {
        let op = bytes[i], arg = Int(bytes[i + 1])
        i += 2
        switch op % 5 {
        case 0:
            let frame = newFrame(arg * 5)  // up to 1,275 bytes: some too large for blocks
            let origin = op & 0x10 != 0 ? writer.append(frame) : nil
            send(frame, high: op & 0x20 != 0, origin: origin)
        case 1:
            let frames = (0...(arg % 64)).map { _ in newFrame(20 + arg) }
            let origins = frames.map { writer.append($0)! }
            var k = 0
            while k < frames.count {
                var j = k + 1
                while j < frames.count && origins[j].block === origins[k].block { j += 1 }
                if queued[0].isEmpty && queued[1].isEmpty && writable {
                    var index = origins[k].index
                    let end = origins[k].index + (j - k)
                    while index < end {
                        let (writes, n, moved) = outbox.writeRun(origins[k].block, index, end)
                        check(n >= 1 && moved == origins[k].block.size(of: index..<(index + n)), "a run write took nothing or miscounted")
                        for f in frames[(k + index - origins[k].index)..<(k + index - origins[k].index + n)] { expected += f.readableBytesView }
                        index += n
                        hand(writes)
                    }
                } else {
                    for m in k..<j { send(frames[m], high: false, origin: origins[m]) }
                }
                k = j
            }
        case 2:
            takeQueued()
        case 3:
            writable.toggle()
        default:
            if let buffer = outbox.spill() { out += buffer.readableBytesView }
        }
        check(outbox.queuedBytes == queued[0].reduce(0) { $0 + $1.count } + queued[1].reduce(0) { $0 + $1.count },
              "queued bytes are not the model's")
    }
    while !outbox.isQueueEmpty { takeQueued() }
    if let buffer = outbox.spill() { out += buffer.readableBytesView }
    check(queued[0].isEmpty && queued[1].isEmpty, "the model holds frames the outbox no longer does")
    check(out == expected, "the bytes handed over are not the frames sent, in order")
    return 0
}

@inline(never)
func check(_ condition: Bool, _ message: String) {
    if !condition { fatalError("outbox invariant: \(message)") }
}
