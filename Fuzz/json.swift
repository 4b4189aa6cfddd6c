// JSONParser: no crash on any bytes; accepted documents round-trip (parse -> serialize -> parse gives
// the same value); and a differential check against Foundation's JSONSerialization: whatever we accept
// Foundation accepts too, and whatever Foundation accepts we accept too except the documented
// strictness differences (docs/reliability.md, "JSON differences").
import Foundation
import WavelaneProtocol

func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.int(let x), .int(let y)): return x == y
    case (.double(let x), .double(let y)): return x == y
    case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
    case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
    case (.object(let x), .object(let y)):
        return x.count == y.count && x.allSatisfy { k, v in y[k].map { same(v, $0) } ?? false }
    default: return a == b
    }
}

/// Our documented extra strictness: Foundation accepts these, we refuse them on purpose.
let documentedDifferences = [
    "duplicate object key", "nesting deeper than", "number out of range", "lone surrogate",
]

/// JSONSerialization accepts a trailing comma before `]` or `}` (RFC 8259 does not; we refuse it).
func hasTrailingComma(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var lastSignificant: UInt8 = 0
    for b in bytes {
        if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { continue }
        if (b == 0x5D || b == 0x7D) && lastSignificant == 0x2C { return true }
        lastSignificant = b
    }
    return false
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let ours: Result<JSONValue, JSONError> = Result { () throws(JSONError) -> JSONValue in try JSONParser.parse(bytes) }
    if case .success(let value) = ours {
        let text = value.serialized()
        guard let again = try? JSONParser.parse(text) else { fatalError("serialized form does not parse: \(text)") }
        check(same(value, again), "round trip changed the value: \(text)")
    }
    // Differential: only for inputs Foundation reads as UTF-8 (it sniffs UTF-16/32 from NUL bytes and
    // skips a UTF-8 BOM), so NUL bytes and a leading EF BB BF are left out.
    if size > 0 && !bytes.contains(0) && !(size >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF) {
        let foundation = (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
        switch ours {
        case .success:
            check(foundation, "we accept what JSONSerialization rejects: \(Array(bytes))")
        case .failure(let error):
            if foundation && !hasTrailingComma(bytes) && !documentedDifferences.contains(where: { error.message.hasPrefix($0) }) {
                fatalError("JSONSerialization accepts what we reject (\(error.message)): \(Array(bytes))")
            }
        }
    }
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
