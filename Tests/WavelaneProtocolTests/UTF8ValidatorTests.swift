import Testing
import WavelaneProtocol

/// Swift's own decoder as the oracle.
private func oracleValid(_ bytes: [UInt8]) -> Bool {
    String(validating: bytes, as: UTF8.self) != nil
}

/// Whether `prefix` can still be completed into valid UTF-8 by appending up to 3 continuation
/// bytes (the set covers every lead byte's allowed second-byte range).
private func isViablePrefix(_ prefix: [UInt8]) -> Bool {
    if oracleValid(prefix) { return true }
    let candidates: [UInt8] = [0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF]
    for a in candidates {
        if oracleValid(prefix + [a]) { return true }
        for b in candidates {
            if oracleValid(prefix + [a, b]) { return true }
            for c in candidates where oracleValid(prefix + [a, b, c]) { return true }
        }
    }
    return false
}

private func validWhole(_ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { UTF8Validator.isValid($0) }
}

/// Feeds one byte at a time; returns (overall result, index of the first byte that made feed return false).
private func feedByteByByte(_ bytes: [UInt8]) -> (valid: Bool, failedAt: Int?) {
    var v = UTF8Validator()
    for (i, b) in bytes.enumerated() {
        let ok = [b].withUnsafeBytes { v.feed($0) }
        if !ok { return (false, i) }
    }
    return (v.isComplete, nil)
}

/// Feeds in random-size chunks.
private func feedChunked<G: RandomNumberGenerator>(_ bytes: [UInt8], using rng: inout G) -> Bool {
    var v = UTF8Validator()
    var i = 0
    while i < bytes.count {
        let n = Int.random(in: 1...17, using: &rng)
        let end = min(bytes.count, i + n)
        let ok = v.feed(bytes: bytes[i..<end])
        if !ok { return false }
        i = end
    }
    return v.isComplete
}

/// A deterministic generator so failures reproduce.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random strings biased towards the interesting cases: valid scalars of every length, ASCII runs,
/// stray continuation bytes, boundary lead bytes, and a few fully random bytes.
private func randomBytes(using rng: inout SplitMix64) -> [UInt8] {
    var out: [UInt8] = []
    let pieces = Int.random(in: 0...12, using: &rng)
    for _ in 0..<pieces {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0, 1:
            out += (0..<Int.random(in: 1...12, using: &rng)).map { _ in UInt8.random(in: 0x20...0x7E, using: &rng) }
        case 2:
            out += Array(String(Character(Unicode.Scalar(UInt32.random(in: 0x80...0x7FF, using: &rng))!)).utf8)
        case 3:
            var s: UInt32 = UInt32.random(in: 0x800...0xFFFF, using: &rng)
            if (0xD800...0xDFFF).contains(s) { s = 0xE000 }
            out += Array(String(Character(Unicode.Scalar(s)!)).utf8)
        case 4:
            out += Array(String(Character(Unicode.Scalar(UInt32.random(in: 0x10000...0x10FFFF, using: &rng))!)).utf8)
        case 5:
            out.append(UInt8.random(in: 0x80...0xBF, using: &rng))
        case 6:
            out.append([0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF].randomElement(using: &rng)!)
        case 7:
            // A valid sequence cut short.
            let full = Array(String(Character(Unicode.Scalar(UInt32.random(in: 0x10000...0x10FFFF, using: &rng))!)).utf8)
            out += full.prefix(Int.random(in: 1...3, using: &rng))
        default:
            out += (0..<Int.random(in: 1...4, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
    }
    return out
}

@Suite("UTF8Validator")
struct UTF8ValidatorTests {
    @Test func validSequences() {
        let samples: [[UInt8]] = [
            [],
            Array("plain ascii".utf8),
            [0x00, 0x7F],
            [0xC2, 0x80], [0xDF, 0xBF],  // U+0080, U+07FF
            [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF],  // U+0800, U+D7FF, U+E000, U+FFFF
            [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],  // U+10000, U+10FFFF
            Array("héllo €uro 😀 中文 ß".utf8),
        ]
        for s in samples {
            #expect(validWhole(s), "\(s)")
            #expect(UTF8Validator.isValid(bytes: s), "\(s)")
            #expect(feedByteByByte(s).valid, "\(s)")
        }
    }

    @Test(arguments: [
        [UInt8]([0xC0, 0x80]), [0xC1, 0xBF],  // overlong 2-byte
        [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF],  // overlong 3-byte
        [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],  // overlong 4-byte
        [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],  // surrogates
        [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xF7, 0xBF, 0xBF, 0xBF],  // > U+10FFFF
        [0x80], [0xBF], [0x61, 0x80, 0x62],  // stray continuation
        [0xFE], [0xFF], [0xF8, 0x88, 0x80, 0x80, 0x80],  // never valid
        [0xC2, 0x41], [0xE2, 0x82, 0x41], [0xF0, 0x9F, 0x98, 0x41],  // interrupted sequences
    ])
    func invalidSequencesRejectedEarly(bytes: [UInt8]) {
        #expect(!validWhole(bytes))
        #expect(!oracleValid(bytes))
        var v = UTF8Validator()
        let fed = bytes.withUnsafeBytes { v.feed($0) }
        #expect(!fed, "feed must return false, not just leave an incomplete state")
        // Once rejected, always rejected.
        let again = v.feed(bytes: Array("ok".utf8))
        #expect(!again)
        #expect(!v.isComplete)
    }

    @Test(arguments: [
        [UInt8]([0xC2]), [0xE2], [0xE2, 0x82], [0xF0], [0xF0, 0x9F], [0xF0, 0x9F, 0x98], [0x61, 0x62, 0xE0, 0xA0],
    ])
    func truncatedSequencesAreIncomplete(bytes: [UInt8]) {
        var v = UTF8Validator()
        let fed = bytes.withUnsafeBytes { v.feed($0) }
        #expect(fed, "a truncated sequence is still a valid prefix")
        #expect(!v.isComplete)
        #expect(!validWhole(bytes))
    }

    @Test func completingATruncatedSequence() {
        var v = UTF8Validator()
        let r1 = v.feed(bytes: [0xF0, 0x9F])
        #expect(r1)
        #expect(!v.isComplete)
        let r2 = v.feed(bytes: [0x98])
        #expect(r2)
        #expect(!v.isComplete)
        let r3 = v.feed(bytes: [0x80])
        #expect(r3)
        #expect(v.isComplete)
    }

    @Test func fastPathDoesNotSkipAPendingSequence() {
        // A lead byte followed by a long ASCII run: the 8-byte fast path must not run in a
        // non-accepting state.
        var v = UTF8Validator()
        let lead = v.feed(bytes: [0xC3])
        #expect(lead)
        let run = v.feed(bytes: Array("abcdefghijklmnop".utf8))
        #expect(!run)
        #expect(!validWhole([0xE2, 0x82] + Array("abcdefghijklmnop".utf8)))
        #expect(!validWhole(Array("abcdefgh".utf8) + [0xF0, 0x9F] + Array("abcdefghijklmnop".utf8)))
    }

    @Test func badByteAtEveryOffsetOfALongASCIIRun() {
        for length in [20, 24, 33, 64] {
            for offset in 0..<20 {
                for bad: UInt8 in [0x80, 0xBF, 0xC0, 0xFF, 0xF5] {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    bytes[offset] = bad
                    #expect(!validWhole(bytes), "length \(length) offset \(offset) byte \(bad)")
                    #expect(feedByteByByte(bytes).failedAt == offset, "length \(length) offset \(offset) byte \(bad)")
                }
                // A valid multi-byte character at every offset is accepted.
                var good = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                good.replaceSubrange(offset..<offset + 1, with: [0xE2, 0x82, 0xAC])
                #expect(validWhole(good), "length \(length) offset \(offset)")
                // A lone lead byte at the end of a long ASCII run is incomplete.
                var v = UTF8Validator()
                let truncated = [UInt8](repeating: 0x61, count: offset + 8) + [0xE2]
                let fed = truncated.withUnsafeBytes { v.feed($0) }
                #expect(fed)
                #expect(!v.isComplete)
            }
        }
    }

    @Test func unalignedBuffers() {
        // The fast path loads unaligned 8-byte words: run it from every alignment.
        let base = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
        for start in 0..<8 {
            let slice = Array(base[start...])
            slice.withUnsafeBytes { raw in
                #expect(UTF8Validator.isValid(UnsafeRawBufferPointer(rebasing: raw[0...])))
            }
            var withBad = base
            withBad[start + 9] = 0x80
            withBad.withUnsafeBytes { raw in
                #expect(!UTF8Validator.isValid(UnsafeRawBufferPointer(rebasing: raw[start...])), "start \(start)")
            }
        }
    }

    @Test func randomBytesMatchOracleWholeByteByByteAndChunked() {
        var rng = SplitMix64(state: 0x5EED_1234)
        var sawValid = 0, sawInvalid = 0
        for _ in 0..<600 {
            let bytes = randomBytes(using: &rng)
            let expected = oracleValid(bytes)
            if expected { sawValid += 1 } else { sawInvalid += 1 }
            #expect(validWhole(bytes) == expected, "\(bytes)")
            #expect(UTF8Validator.isValid(bytes: bytes) == expected, "\(bytes)")
            let byByte = feedByteByByte(bytes)
            #expect(byByte.valid == expected, "\(bytes)")
            let chunked = feedChunked(bytes, using: &rng)
            #expect(chunked == expected, "\(bytes)")
            // Fail fast: feed fails exactly at the first byte after which no completion is possible.
            if let i = byByte.failedAt {
                #expect(isViablePrefix(Array(bytes[..<i])), "\(bytes) failed too early at \(i)")
                #expect(!isViablePrefix(Array(bytes[...i])), "\(bytes) failed at \(i)")
            } else if !expected {
                // Never rejected: only the ending may be incomplete.
                #expect(isViablePrefix(bytes), "\(bytes) should have been rejected")
            }
        }
        // The generator exercised both outcomes.
        #expect(sawValid > 50)
        #expect(sawInvalid > 50)
    }

    @Test func everyTwoByteCombination() {
        // Exhaustive over two bytes: whole-buffer and byte-by-byte agree with Swift.
        for a in 0...255 {
            for b in 0...255 {
                let bytes = [UInt8(a), UInt8(b)]
                let expected = oracleValid(bytes)
                if validWhole(bytes) != expected || feedByteByByte(bytes).valid != expected {
                    Issue.record("mismatch for \(bytes)")
                }
            }
        }
    }

    @Test func everyThreeByteSequenceWithLeadE0toEF() {
        // All lead bytes of 3-byte sequences against all continuation pairs.
        for a in 0xE0...0xEF {
            for b in 0x70...0xC0 {
                for c in [0x41, 0x80, 0x9F, 0xA0, 0xBF, 0xC0] {
                    let bytes = [UInt8(a), UInt8(b), UInt8(c)]
                    if validWhole(bytes) != oracleValid(bytes) { Issue.record("mismatch for \(bytes)") }
                }
            }
        }
    }
}
