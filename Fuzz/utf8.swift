// UTF8Validator: incremental feeding at arbitrary split points must agree with one-shot validation
// and with the standard library's decoder.
import WavelaneProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let whole = UTF8Validator.isValid(bytes)
    let reference = String(validating: bytes, as: UTF8.self) != nil
    check(whole == reference, "UTF8Validator disagrees with String(validating:)")
    // split at a point chosen by the first byte, and feed byte-by-byte
    if size > 0 {
        let cut = Int(bytes[0]) % (size + 1)
        var v = UTF8Validator()
        let ok = v.feed(UnsafeRawBufferPointer(rebasing: bytes[0..<cut])) && v.feed(UnsafeRawBufferPointer(rebasing: bytes[cut...]))
        check((ok && v.isComplete) == whole, "split feeding disagrees")
        var w = UTF8Validator()
        var allOk = true
        for i in 0..<size where allOk { allOk = w.feed(UnsafeRawBufferPointer(rebasing: bytes[i..<i + 1])) }
        check((allOk && w.isComplete) == whole, "byte-by-byte feeding disagrees")
    }
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
