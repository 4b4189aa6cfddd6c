// Wavelane hot-path microbenchmarks: a plain release-mode executable printing ns/op.
//
//   swift run -c release wavelane-micro            (all benchmarks, ~0.3 s each)
//   swift run -c release wavelane-micro glob json  (only names containing one of the words)
//
// Package.swift target (see benchmarks/README.md):
//   .executableTarget(name: "wavelane-micro", dependencies: ["WavelaneProtocol",
//       .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOWebSocket", package: "swift-nio")],
//       path: "benchmarks/micro"),

import NIOCore
import NIOWebSocket
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// This thread's CPU time: a machine busy with other work (shared CI runners, parallel builds)
/// preempts the benchmark, and wall-clock batches would count the time it spent waiting.
func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// `value` with one decimal, right-aligned in `width` characters (no Foundation needed).
func formatted(_ value: Double, width: Int) -> String {
    let tenths = Int((value * 10).rounded())
    let text = "\(tenths / 10).\(tenths % 10)"
    return String(repeating: " ", count: max(0, width - text.count)) + text
}

let filters = Array(CommandLine.arguments.dropFirst()).map { $0.lowercased() }
var results: [(String, Double, Int)] = []

/// Runs `body(n)` (which must do n operations) with growing n until one batch takes >= 50 ms,
/// then measures batches for ~300 ms and reports the best batch's ns/op (thread CPU time).
func bench(_ name: String, _ body: (Int) -> Void) {
    if !filters.isEmpty && !filters.contains(where: { name.lowercased().contains($0) }) { return }
    var n = 1
    while true {
        let t0 = nowNanos()
        body(n)
        let dt = nowNanos() - t0
        if dt >= 50_000_000 || n >= 1 << 30 { break }
        n = dt < 1_000_000 ? n * 10 : Int(Double(n) * 60_000_000 / Double(dt)) + 1
    }
    var best = Double.infinity
    var total = 0
    let start = nowNanos()
    repeat {
        let t0 = nowNanos()
        body(n)
        let perOp = Double(nowNanos() - t0) / Double(n)
        best = min(best, perOp)
        total += n
    } while nowNanos() - start < 300_000_000
    results.append((name, best, total))
    let padded = name + String(repeating: " ", count: max(0, 58 - name.count))
    print(padded + formatted(best, width: 10) + " ns/op")
}

let allocator = ByteBufferAllocator()
let payload100 = [UInt8](repeating: UInt8(ascii: "p"), count: 100)

// 1. Frame encode: header + 100 B payload into a fresh ByteBuffer.
bench("FrameEncoder.frame text 100 B") { n in
    payload100.withUnsafeBytes { raw in
        for _ in 0..<n {
            blackHole(FrameEncoder.frame(opcode: .text, payload: raw, allocator: allocator))
        }
    }
}

// 2. The once-per-publication envelope for a 100 B str publication.
bench("TopicEnvelope.frame text 100 B (topic \"chat:42\")") { n in
    payload100.withUnsafeBytes { raw in
        for i in 0..<n {
            blackHole(TopicEnvelope.frame(topic: "chat:42", offset: UInt64(i + 1), kind: .text,
                                          payload: raw, allocator: allocator))
        }
    }
}
bench("TopicEnvelope.frame json 100 B") { n in
    let json = Array(("{\"v\":\"" + String(repeating: "x", count: 92) + "\"}").utf8)
    json.withUnsafeBytes { raw in
        for i in 0..<n {
            blackHole(TopicEnvelope.frame(topic: "chat:42", offset: UInt64(i + 1), kind: .json,
                                          payload: raw, allocator: allocator))
        }
    }
}
bench("TopicEnvelope.frame binary 100 B") { n in
    payload100.withUnsafeBytes { raw in
        for i in 0..<n {
            blackHole(TopicEnvelope.frame(topic: "chat:42", offset: UInt64(i + 1), kind: .binary,
                                          payload: raw, allocator: allocator))
        }
    }
}

// 3. Glob matching.
let glob = GlobPattern("user:*:events")
bench("GlobPattern.matches hit (user:*:events)") { n in
    var hits = 0
    for _ in 0..<n where glob.matches("user:12345:events") { hits += 1 }
    blackHole(hits)
}
bench("GlobPattern.matches miss by prefix") { n in
    var hits = 0
    for _ in 0..<n where glob.matches("chat:12345:events") { hits += 1 }
    blackHole(hits)
}
bench("GlobPattern.matches miss after star") { n in
    var hits = 0
    for _ in 0..<n where glob.matches("user:12345:eventz") { hits += 1 }
    blackHole(hits)
}

// 4. TopicIndex fan-out walk over 1,000 subscribers (reported per publication and per subscriber).
var index = TopicIndex<Int>()
for s in 0..<1000 { index.subscribe(s, to: "chat:42") }
for s in 0..<50 { index.subscribe(s, to: "other:\(s)") }
bench("TopicIndex.forEachSubscriber 1,000 subs (per publication)") { n in
    var sum = 0
    for _ in 0..<n { index.forEachSubscriber(of: "chat:42") { sum &+= $0 } }
    blackHole(sum)
}
var indexWithGlob = index
indexWithGlob.subscribe(5000, to: "chat:*")
bench("TopicIndex.forEachSubscriber 1,000 subs + 1 glob (per pub)") { n in
    var sum = 0
    for _ in 0..<n { indexWithGlob.forEachSubscriber(of: "chat:42") { sum &+= $0 } }
    blackHole(sum)
}

// 4b. Glob DoS (issue 10, item 2): a publication's lookup with 0 vs 10,000 glob subscriptions
// that do not match it (5,000 `room:<i>:*` and 5,000 `feed:*:<i>`), for a short topic and a
// 245-byte one and one that shares the `feed:` prefix, each with 10 exact subscribers. The bar: at most 2x the cost with none.
let longTopic = "chat:" + String(repeating: "x", count: 240)  // 245 bytes
for (label, topic) in [("short", "chat:42"), ("245 B", longTopic), ("feed:abc:99999 (shares a prefix)", "feed:abc:99999")] {
    var none = TopicIndex<Int>()
    for s in 0..<10 { none.subscribe(s, to: topic) }
    var crowded = none
    for i in 0..<5000 {
        crowded.subscribe(100 + i, to: "room:\(i):*")
        crowded.subscribe(10_000 + i, to: "feed:*:\(i)")
    }
    bench("TopicIndex lookup \(label) topic, 0 globs") { n in
        var sum = 0
        for _ in 0..<n { none.forEachSubscriber(of: topic) { sum &+= $0 } }
        blackHole(sum)
    }
    bench("TopicIndex lookup \(label) topic, 10,000 non-matching globs") { n in
        var sum = 0
        for _ in 0..<n { crowded.forEachSubscriber(of: topic) { sum &+= $0 } }
        blackHole(sum)
    }
}

// 5. MessageAssembler on one 100 B masked text frame (unmask + UTF-8 validation).
let maskKey: WebSocketMaskingKey = [0x12, 0x34, 0x56, 0x78]
var maskedData = allocator.buffer(bytes: payload100)
maskedData.webSocketMask(maskKey)
let maskedFrame = WebSocketFrame(fin: true, opcode: .text, maskKey: maskKey, data: maskedData)
bench("MessageAssembler.receive 100 B masked text frame") { n in
    var assembler = MessageAssembler(maxMessageSize: 1 << 20)
    var count = 0
    for _ in 0..<n {
        if case .message(_, let buffer) = assembler.receive(maskedFrame) { count &+= buffer.readableBytes }
    }
    blackHole(count)
}

// A read of 16 masked 100 B text frames (the inbound benchmark's writes), cut into frames by
// FrameReader and assembled into messages: per frame.
let readOf16: ByteBuffer = {
    var frames = ByteBuffer()
    for _ in 0..<16 {
        var data = allocator.buffer(bytes: payload100)
        data.webSocketMask(maskKey)
        frames.writeBytes([0x81, 0x80 | UInt8(payload100.count)])
        frames.writeBytes([0x12, 0x34, 0x56, 0x78])
        frames.writeBuffer(&data)
    }
    return frames
}()
bench("FrameReader + MessageAssembler, a read of 16 masked 100 B text frames (per frame)") { n in
    var reader = FrameReader(maxFrameSize: 1 << 20)
    var assembler = MessageAssembler(maxMessageSize: 1 << 20)
    var buffers = PayloadBuffers(count: 4)
    var count = 0
    for _ in 0..<((n + 15) / 16) {
        reader.receive(readOf16, buffers: &buffers, allocator: allocator)
        while let frame = try? reader.next() {
            if case .message(_, let buffer) = assembler.receive(frame) { count &+= buffer.readableBytes }
        }
        reader.endRead(buffers: &buffers, allocator: allocator)
    }
    blackHole(count)
}

// 6. JSON: a client control message, parsed generically and recognised by ClientControl.
let control = Array(#"{"type":"subscribe","topics":["chat:42","user:*:events"],"id":1}"#.utf8)
bench("JSONParser.parse subscribe control message (64 B)") { n in
    control.withUnsafeBytes { raw in
        for _ in 0..<n { blackHole(try? JSONParser.parse(raw)) }
    }
}
bench("ClientControl.parse subscribe control message") { n in
    control.withUnsafeBytes { raw in
        for _ in 0..<n { blackHole(ClientControl.parse(raw)) }
    }
}
let appText = Array(("i" + String(repeating: "x", count: 99)).utf8)
bench("ClientControl.parse 100 B app text (not control)") { n in
    appText.withUnsafeBytes { raw in
        for _ in 0..<n { blackHole(ClientControl.parse(raw)) }
    }
}
