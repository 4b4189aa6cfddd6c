// The upgrade request's hand-written parsing (Handshake.swift): Sec-WebSocket-Key checks and the
// accept value, Authorization bearer tokens, Cookie headers, the request target's path and query with
// percent-decoding, and the permessage-deflate offer negotiation. The input is split at 0x00 into
// header values. Checks: no crash; a found token is trimmed and non-empty, a found cookie value
// has no ';' in it; a negotiated offer has window bits in range.
@testable import WavelaneProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let fields = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    let a = fields[0], b = fields.count > 1 ? fields[1] : "token"
    if Handshake.isValidKey(a) {
        let accept = Handshake.acceptValue(forKey: a)
        check(accept.utf8.count == 28, "accept value is not 28 base64 characters")
    }
    if let token = Handshake.bearerToken(fromAuthorization: a) {
        check(!token.isEmpty && token.first != " " && token.last != " ", "bearer token not trimmed: \(token)")
    }
    if let cookie = Handshake.cookie(named: b, in: a) {
        check(!cookie.contains(";"), "cookie value contains ';'")
    }
    let (path, query) = Handshake.splitTarget(a)
    check(!path.contains("?"), "path contains '?'")
    if let query { _ = Handshake.queryParameter(named: b, in: query) }
    _ = Handshake.percentDecode(Substring(a))
    _ = Base64.encode(bytes)
    var policy = PerMessageDeflate.ServerPolicy()
    policy.maxWindowBits = 9 + size % 7
    if let params = PerMessageDeflate.negotiate(offers: fields, policy: policy) {
        check((8...15).contains(params.serverWindowBits), "server window bits out of range")
        if let c = params.clientMaxWindowBits { check((8...15).contains(c), "client window bits out of range") }
        _ = params.responseHeader
    }
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
