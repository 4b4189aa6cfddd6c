// The request head (RequestHead.swift: RequestHeadScanner, RequestHeadParser), the bytes a client
// sends before anything else. Byte 0 seeds how the rest is cut into reads; the rest is the stream.
// Invariants: no crash; the scanner gives the same answer (length or error) whether it sees the
// stream whole or read by read; a found head ends with CRLF CRLF within the size limit; a parsed
// head has a token method, a visible-ASCII target, token field names, values without controls or
// surrounding whitespace, at most maxFields fields; and writing a parsed head out again and parsing
// that gives the same head (one reading per head: what request smuggling needs two of).
import WavelaneProtocol

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

private func scanWhole(_ bytes: [UInt8]) -> Result<Int?, RequestHeadParser.Error> {
    var scanner = RequestHeadScanner()
    return bytes.withUnsafeBytes { raw in
        do throws(RequestHeadParser.Error) { return .success(try scanner.scan(raw)) } catch { return .failure(error) }
    }
}

private func scanInReads(_ bytes: [UInt8], seed: UInt8) -> Result<Int?, RequestHeadParser.Error> {
    var scanner = RequestHeadScanner()
    var end = 0
    var step = Int(seed % 13) + 1
    while true {
        end = min(bytes.count, end + step)
        step = (step * 7 + Int(seed)) % 29 + 1
        let r: Result<Int?, RequestHeadParser.Error> = bytes[0..<end].withUnsafeBytes { raw in
            do throws(RequestHeadParser.Error) { return .success(try scanner.scan(raw)) } catch { return .failure(error) }
        }
        if case .success(nil) = r, end < bytes.count { continue }
        return r
    }
}

private func parse(_ bytes: ArraySlice<UInt8>) -> Result<RequestHead, RequestHeadParser.Error> {
    bytes.withUnsafeBytes { raw in
        do throws(RequestHeadParser.Error) { return .success(try RequestHeadParser.parse(raw)) } catch { return .failure(error) }
    }
}

private func isToken(_ s: String) -> Bool {
    !s.isEmpty && s.utf8.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(c)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let seed = data[0]
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let whole = scanWhole(bytes)
    let reads = scanInReads(bytes, seed: seed)
    switch (whole, reads) {
    case (.success(let a), .success(let b)): check(a == b, "whole \(String(describing: a)) vs reads \(String(describing: b))")
    case (.failure(let a), .failure(let b)): check(a == b, "whole \(a) vs reads \(b)")
    default: check(false, "whole \(whole) vs reads \(reads)")
    }
    guard case .success(let found?) = whole else {
        if case .success(nil) = whole { check(bytes.count < RequestHeadParser.maxHeadBytes, "incomplete past the limit") }
        return 0
    }
    check(found >= 4 && found <= RequestHeadParser.maxHeadBytes, "length \(found)")
    check(Array(bytes[found - 4..<found]) == [13, 10, 13, 10], "a head ends with CRLF CRLF")
    guard case .success(let head) = parse(bytes[0..<found]) else { return 0 }
    check(isToken(head.method), "method \(head.method)")
    check(!head.target.isEmpty && head.target.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "target \(head.target)")
    check(head.minorVersion == 0 || head.minorVersion == 1, "version")
    check(head.fields.count <= RequestHeadParser.maxFields, "fields")
    for field in head.fields {
        check(isToken(field.name), "field name \(field.name)")
        let v = Array(field.value.utf8)
        check(!v.contains { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }, "control in value")
        check(v.first != 0x20 && v.first != 0x09 && v.last != 0x20 && v.last != 0x09, "value not trimmed")
    }
    // Written out again, read again: the same head.
    var out = Array("\(head.method) \(head.target) HTTP/1.\(head.minorVersion)\r\n".utf8)
    for field in head.fields { out += Array("\(field.name): \(field.value)\r\n".utf8) }
    out += [13, 10]
    if out.count <= RequestHeadParser.maxHeadBytes {
        check(scanWhole(out) == .success(out.count), "rewritten head not found whole: \(scanWhole(out))")
        check(parse(out[...]) == .success(head), "rewritten head read differently")
    }
    return 0
}
