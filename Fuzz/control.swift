// ClientControl.parse (every text frame a client sends passes through it): never crashes; a
// recognised message is well-formed (topics non-empty, RPC method within its length limit).
import WavelaneProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let control = ClientControl.parse(bytes) else { return 0 }
    check(size <= ClientControl.maxSize, "a message over maxSize was parsed")
    switch control {
    case .rpc(let method, _, _):
        check(method.utf8.count <= ClientControl.maxMethodLength, "RPC method over its limit")
    default:
        break
    }
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
