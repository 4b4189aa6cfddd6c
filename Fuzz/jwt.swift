// JWT verification (token from the query, a header or a cookie) and strict base64url: verify never
// crashes on any bytes (two HMAC secrets and EC P-256, P-384 and RSA keys configured, as in the auth tests); a structurally valid
// HS256 token around the fuzzed bytes as claims, signed with the right secret, is accepted only if
// those bytes are a JSON object;
// Base64URL decode(encode(x)) == x and encode(decode(s)) == s (canonical form only).
@testable import WavelaneAuth
import WavelaneProtocol
import CWavelaneOpenSSL

// Secrets and keys of Tests/WavelaneAuthTests/Fixtures (so the seed tokens, taken from there, verify).
let secret = Array("wavelane-current-secret-0123456789abcdef0123456789abcdef0123456789abcdef".utf8)
let previousSecret = Array("wavelane-previous-secret-fedcba9876543210fedcba9876543210fedcba9876543210".utf8)
let pems = [
    """
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ1prqM8uMEng/qhAQoFnoHH0HCoE
V37sQVCy30S0/mJPXjY1tHQqMs0aJcH7uC5dZULe3kxpXxFOIECqfZuIEw==
-----END PUBLIC KEY-----
""",
    """
-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEOLWnAQIz29ppjT4gJiUl+EQjhnVdgLU+
7itBWCe6ihPgj8zsS9g9CRu4LKXzgUOhlH6/GYPISnATNZMnrfbcJty8xZdcbNQa
FrCLkXWEqM/di5cjbABBmC2CspnOVBpH
-----END PUBLIC KEY-----
""",
    """
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnxsoskOSG5PGGa4xH581
n6F1vC6ZVba3D1VqAndoMUeDMj0OzHuWJlRxrynbzYYK22f1sJ6+OWWu5LBoL1Gw
thaYs6ifhuCC965yw3wMDJgmZWpZDTNDR4tu1EySqMlsKbNysDz+L7jDKztKa9db
091YieXySUj28jrYm0bd2I9HLcaNSj1oYprgNliqICfrkdEvv5MI5MBA3jcf7Ggg
PYP8aINHv+P9VYY9AaE3G/2JNeukMoS1X7ZTiejcbtCnNWH3iDvX07B1gPO5NFTj
E93qLGXW0YPUjl0X2O+X2rq4g0ylFUYlN2x0bLN3p4kVlJGxnY2g78JLD6pr7nAy
3QIDAQAB
-----END PUBLIC KEY-----
"""
]
let now: Int64 = 1700000600
let verifier = try! JWTVerifier(JWTConfiguration(secrets: [secret, previousSecret], publicKeysPEM: pems))

func hmacSHA256(_ key: [UInt8], _ message: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 32
    _ = key.withUnsafeBytes { k in message.withUnsafeBytes { m in
        HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self), m.count, &out, &length)
    } }
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // base64url round trips
    let encoded = Base64URL.encode(bytes)
    check(Base64URL.decode(encoded) == bytes, "decode(encode(x)) != x")
    if let decoded = Base64URL.decode(bytes) {
        check(Array(Base64URL.encode(decoded).utf8) == bytes, "encode(decode(s)) != s: not canonical")
    }
    // arbitrary bytes as a token
    let text = String(decoding: bytes, as: UTF8.self)
    _ = verifier.verify(text, now: now)
    // a signed token around the fuzzed bytes as claims
    let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
    let claims = Base64URL.encode(bytes)
    let signingInput = Array("\(header).\(claims)".utf8)
    let token = "\(header).\(claims).\(Base64URL.encode(hmacSHA256(secret, signingInput)))"
    if case .success(let verified) = verifier.verify(token, now: now) {
        // accepted: the claims must be a JSON object that our parser reads
        guard case .object = try? JSONParser.parse(bytes: bytes) else { fatalError("accepted a token whose claims are not a JSON object") }
        check(verified.algorithm == .hs256, "wrong algorithm reported")
    }
    return 0
}

/// A failed invariant: fatalError keeps its message in optimized builds (precondition's is dropped).
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
