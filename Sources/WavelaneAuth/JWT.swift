// JWT (RFC 7519) verification of JWS compact serialization (RFC 7515) for the WebSocket handshake.
//
// Order of checks (each failure returns immediately):
//   1. length <= 8 KiB, exactly three '.'-separated parts, each strict unpadded base64url   -> malformed
//   2. header is a JSON object; "alg" present and a string; "none" (any case) / unknown    -> unsupportedAlgorithm
//      "crit" present (no extensions are understood)                                        -> malformed
//   3. alg in the allowed set and a key of the matching type configured                     -> algorithmNotAllowed
//   4. signature (HMAC: every secret, constant-time; RSA/EC: every key of the right type)    -> badSignature
//      ES256/ES384 with rejectHighS: s > n/2 (the second, malleable form of a valid signature)  -> badSignature
//   5. payload is a JSON object; exp/nbf/iat numbers, sub/iss strings, aud string|[string]   -> malformed
//   6. exp (now > exp + leeway)                                                              -> expired
//      nbf (now + leeway < nbf)                                                              -> notYetValid
//      iss / aud when configured                                                             -> wrongIssuer / wrongAudience
// The payload is only parsed after the signature has been verified.

import CWavelaneOpenSSL
import WavelaneProtocol

public enum JWTAlgorithm: String, CaseIterable, Sendable {
    case hs256 = "HS256", hs384 = "HS384", hs512 = "HS512"
    case rs256 = "RS256", rs384 = "RS384", rs512 = "RS512"
    case es256 = "ES256", es384 = "ES384"

    var isHMAC: Bool {
        switch self {
        case .hs256, .hs384, .hs512: return true
        default: return false
        }
    }

    /// The key kind required for the asymmetric algorithms (nil for HMAC).
    var requiredKeyKind: OpenSSLPublicKey.Kind? {
        switch self {
        case .hs256, .hs384, .hs512: return nil
        case .rs256, .rs384, .rs512: return .rsa
        case .es256: return .ecP256
        case .es384: return .ecP384
        }
    }

    var digest: OpaquePointer {
        switch self {
        case .hs256, .rs256, .es256: return EVP_sha256()
        case .hs384, .rs384, .es384: return EVP_sha384()
        case .hs512, .rs512: return EVP_sha512()
        }
    }
}

public struct JWTConfiguration: Sendable {
    /// HMAC secrets: current first, then previous ones (key rotation).
    public var secrets: [[UInt8]]
    /// PEM public keys ("-----BEGIN PUBLIC KEY-----", RSA >= 2048 bits or EC P-256/P-384).
    public var publicKeysPEM: [String]
    /// nil: every algorithm for which a key of the right type is configured.
    public var algorithms: Set<JWTAlgorithm>?
    /// When set, "iss" must equal it.
    public var issuer: String?
    /// When set, "aud" (string or array of strings) must contain it.
    public var audience: String?
    /// Seconds of clock skew allowed for exp/nbf (default 5; must be >= 0).
    public var leeway: Int64
    /// When true, a token without "exp" is rejected (malformed).
    public var requireExpiry: Bool
    /// When true (the default), an ECDSA signature whose `s` is above half the curve order is
    /// rejected: (r, n - s) is a second valid signature of the same token, so without this every
    /// ES token has two spellings. Issuers must then emit low-S signatures (PyJWT and OpenSSL do
    /// not: about half of their ES signatures are high-S; normalize with s = n - s).
    public var rejectHighS: Bool

    public init(
        secrets: [[UInt8]] = [],
        publicKeysPEM: [String] = [],
        algorithms: Set<JWTAlgorithm>? = nil,
        issuer: String? = nil,
        audience: String? = nil,
        leeway: Int64 = 5,
        requireExpiry: Bool = false,
        rejectHighS: Bool = true
    ) {
        self.secrets = secrets
        self.publicKeysPEM = publicKeysPEM
        self.algorithms = algorithms
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.requireExpiry = requireExpiry
        self.rejectHighS = rejectHighS
    }
}

public enum JWTError: Error, Equatable, Sendable {
    /// Not three base64url parts, bad base64url, header/payload not a JSON object, bad claim types, ...
    case malformed(String)
    /// "none", unknown alg, missing alg.
    case unsupportedAlgorithm(String)
    /// Known alg but not allowed, or no key of that type configured (algorithm-confusion defence).
    case algorithmNotAllowed(String)
    case badSignature
    case expired
    case notYetValid
    case wrongIssuer
    case wrongAudience

    /// Short human text for the HTTP 401 body.
    public var reason: String {
        switch self {
        case .malformed(let detail): return "malformed token: \(detail)"
        case .unsupportedAlgorithm(let alg): return "unsupported algorithm \(alg)"
        case .algorithmNotAllowed(let alg): return "algorithm \(alg) not allowed"
        case .badSignature: return "invalid signature"
        case .expired: return "token expired"
        case .notYetValid: return "token not yet valid"
        case .wrongIssuer: return "wrong issuer"
        case .wrongAudience: return "wrong audience"
        }
    }
}

public struct JWTConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// e.g. "jwt_public_key: not a PEM public key"
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

public struct VerifiedToken: Sendable {
    public let algorithm: JWTAlgorithm
    /// "sub" (string), nil when absent.
    public let subject: String?
    public let claims: [String: JSONValue]
    /// The payload exactly as decoded (UTF-8 JSON text).
    public let claimsJSON: String
}

public final class JWTVerifier: Sendable {
    /// Tokens longer than this (in bytes) are rejected as malformed.
    public static let maxTokenLength = 8192

    private let secrets: [[UInt8]]
    private let keys: [OpenSSLPublicKey]
    /// Algorithms that are both allowed and have a key of the right type.
    private let usable: Set<JWTAlgorithm>
    private let issuer: String?
    private let audience: String?
    private let leeway: Int64
    private let requireExpiry: Bool
    private let rejectHighS: Bool

    /// Parses the PEM keys once. Throws when a key is unusable, when no key/secret at all is configured,
    /// or when none of the allowed algorithms has a matching key.
    public init(_ configuration: JWTConfiguration) throws(JWTConfigurationError) {
        if configuration.secrets.isEmpty && configuration.publicKeysPEM.isEmpty {
            throw JWTConfigurationError(message: "jwt: no secret or public key configured")
        }
        for (i, secret) in configuration.secrets.enumerated() where secret.isEmpty {
            let which = configuration.secrets.count > 1 ? " (entry \(i + 1))" : ""
            throw JWTConfigurationError(message: "jwt_secret: empty secret\(which)")
        }
        guard configuration.leeway >= 0 else {
            throw JWTConfigurationError(message: "jwt_leeway: must not be negative")
        }
        var keys: [OpenSSLPublicKey] = []
        for (i, pem) in configuration.publicKeysPEM.enumerated() {
            do {
                keys.append(try OpenSSLPublicKey(pem: pem))
            } catch {
                let which = configuration.publicKeysPEM.count > 1 ? " (entry \(i + 1))" : ""
                throw JWTConfigurationError(message: "jwt_public_key: \(error.message)\(which)")
            }
        }
        let kinds = Set(keys.map(\.kind))
        var usable = Set<JWTAlgorithm>()
        for alg in JWTAlgorithm.allCases {
            if let allowed = configuration.algorithms, !allowed.contains(alg) { continue }
            if let kind = alg.requiredKeyKind {
                if kinds.contains(kind) { usable.insert(alg) }
            } else if !configuration.secrets.isEmpty {
                usable.insert(alg)
            }
        }
        if usable.isEmpty {
            throw JWTConfigurationError(message: "jwt_algorithms: no allowed algorithm has a matching key or secret configured")
        }
        self.secrets = configuration.secrets
        self.keys = keys
        self.usable = usable
        self.issuer = configuration.issuer
        self.audience = configuration.audience
        self.leeway = configuration.leeway
        self.requireExpiry = configuration.requireExpiry
        self.rejectHighS = configuration.rejectHighS
    }

    /// The leeway (seconds) allowed after `exp`.
    public var expiryLeeway: Int64 { leeway }

    /// The algorithms this verifier accepts (allowed and with a matching key/secret).
    public var acceptedAlgorithms: Set<JWTAlgorithm> { usable }

    /// Verifies `token` (JWS compact serialization) at time `now` (Unix seconds). Thread-safe.
    public func verify<S: StringProtocol>(_ token: S, now: Int64) -> Result<VerifiedToken, JWTError> {
        if let result = token.utf8.withContiguousStorageIfAvailable({ verify(bytes: UnsafeRawBufferPointer($0), now: now) }) {
            return result
        }
        let copy = Array(token.utf8)
        return copy.withUnsafeBytes { verify(bytes: $0, now: now) }
    }

    private func verify(bytes token: UnsafeRawBufferPointer, now: Int64) -> Result<VerifiedToken, JWTError> {
        guard token.count <= Self.maxTokenLength else {
            return .failure(.malformed("token longer than \(Self.maxTokenLength) bytes"))
        }
        // Split into exactly three parts.
        var firstDot = -1, secondDot = -1
        for i in 0..<token.count where token[i] == UInt8(ascii: ".") {
            if firstDot < 0 {
                firstDot = i
            } else if secondDot < 0 {
                secondDot = i
            } else {
                return .failure(.malformed("expected 3 parts separated by '.'"))
            }
        }
        guard secondDot >= 0 else { return .failure(.malformed("expected 3 parts separated by '.'")) }
        let headerPart = UnsafeRawBufferPointer(rebasing: token[0..<firstDot])
        let payloadPart = UnsafeRawBufferPointer(rebasing: token[(firstDot + 1)..<secondDot])
        let signaturePart = UnsafeRawBufferPointer(rebasing: token[(secondDot + 1)...])
        let signingInput = UnsafeRawBufferPointer(rebasing: token[0..<secondDot])
        guard !headerPart.isEmpty, let headerBytes = Base64URL.decode(headerPart) else {
            return .failure(.malformed("header is not base64url"))
        }
        guard !payloadPart.isEmpty, let payloadBytes = Base64URL.decode(payloadPart) else {
            return .failure(.malformed("payload is not base64url"))
        }
        guard let signature = Base64URL.decode(signaturePart) else {
            return .failure(.malformed("signature is not base64url"))
        }

        // Header.
        let header: [String: JSONValue]
        do {
            guard let object = try JSONParser.parse(bytes: headerBytes, maxDepth: 16).objectValue else {
                return .failure(.malformed("header is not a JSON object"))
            }
            header = object
        } catch {
            return .failure(.malformed("header is not valid JSON"))
        }
        guard let algValue = header["alg"] else { return .failure(.unsupportedAlgorithm("(missing)")) }
        guard let algName = algValue.stringValue else { return .failure(.malformed("header alg is not a string")) }
        guard let algorithm = JWTAlgorithm(rawValue: algName) else {
            if algName.lowercased() == "none" { return .failure(.unsupportedAlgorithm("none")) }
            return .failure(.unsupportedAlgorithm(Self.sanitize(algName)))
        }
        if header["crit"] != nil {
            return .failure(.malformed("unsupported crit header"))
        }
        guard usable.contains(algorithm) else {
            return .failure(.algorithmNotAllowed(algorithm.rawValue))
        }

        // Signature.
        let valid = signature.withUnsafeBytes { sig in
            verifySignature(algorithm: algorithm, signingInput: signingInput, signature: sig)
        }
        guard valid else { return .failure(.badSignature) }

        // Payload and claims.
        let claims: [String: JSONValue]
        do {
            guard let object = try JSONParser.parse(bytes: payloadBytes).objectValue else {
                return .failure(.malformed("payload is not a JSON object"))
            }
            claims = object
        } catch {
            return .failure(.malformed("payload is not valid JSON"))
        }
        if let failure = checkClaims(claims, now: now) { return .failure(failure) }
        return .success(VerifiedToken(
            algorithm: algorithm,
            subject: claims["sub"]?.stringValue,
            claims: claims,
            claimsJSON: String(decoding: payloadBytes, as: UTF8.self)
        ))
    }

    private func verifySignature(algorithm: JWTAlgorithm, signingInput: UnsafeRawBufferPointer, signature: UnsafeRawBufferPointer) -> Bool {
        let md = algorithm.digest
        switch algorithm {
        case .hs256, .hs384, .hs512:
            // Try every secret (no early exit on the first mismatch is needed for timing: each comparison is
            // constant-time and the number of secrets is public configuration).
            var mac = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))  // 64 bytes = EVP_MAX_MD_SIZE
            return withUnsafeMutableBytes(of: &mac) { macRaw in
                let out = macRaw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                for secret in secrets {
                    let length = OpenSSLCrypto.hmac(md: md, key: secret, message: signingInput, out: out)
                    guard length > 0 else { continue }
                    if OpenSSLCrypto.constantTimeEquals(UnsafeRawBufferPointer(rebasing: macRaw[0..<length]), signature) {
                        return true
                    }
                }
                return false
            }
        case .rs256, .rs384, .rs512:
            for key in keys where key.kind == .rsa {
                if key.verify(signature: signature, message: signingInput, md: md) { return true }
            }
            return false
        case .es256, .es384:
            let kind: OpenSSLPublicKey.Kind = algorithm == .es256 ? .ecP256 : .ecP384
            let half = algorithm == .es256 ? 32 : 48
            guard signature.count == 2 * half else { return false }
            if rejectHighS && Self.isHighS(UnsafeRawBufferPointer(rebasing: signature[half...]), algorithm: algorithm) {
                return false
            }
            guard let der = OpenSSLCrypto.ecdsaRawToDER(signature, half: half) else { return false }
            return der.withUnsafeBytes { derRaw in
                for key in keys where key.kind == kind {
                    if key.verify(signature: derRaw, message: signingInput, md: md) { return true }
                }
                return false
            }
        }
    }

    /// floor(n / 2) of P-256 and P-384, big-endian.
    private static let halfOrderP256: [UInt8] = [
        0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
    ]
    private static let halfOrderP384: [UInt8] = [
        0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe3, 0xb1, 0xa6, 0xc0, 0xfa, 0x1b, 0x96, 0xef,
        0xac, 0x0d, 0x06, 0xd9, 0x24, 0x58, 0x53, 0xbd, 0x76, 0x76, 0x0c, 0xb5, 0x66, 0x62, 0x94, 0xb9,
    ]

    /// Whether the big-endian `s` (exactly the curve's size) is above half the group order.
    static func isHighS(_ s: UnsafeRawBufferPointer, algorithm: JWTAlgorithm) -> Bool {
        let half = algorithm == .es256 ? halfOrderP256 : halfOrderP384
        guard s.count == half.count else { return false }
        for i in 0..<s.count where s[i] != half[i] { return s[i] > half[i] }
        return false  // equal: s == floor(n/2) is low
    }

    private func checkClaims(_ claims: [String: JSONValue], now: Int64) -> JWTError? {
        // Types first, so a malformed token is reported as such regardless of the time.
        let exp = claims["exp"], nbf = claims["nbf"]
        if let exp, exp.doubleValue == nil { return .malformed("exp is not a number") }
        if let nbf, nbf.doubleValue == nil { return .malformed("nbf is not a number") }
        if let iat = claims["iat"], iat.doubleValue == nil { return .malformed("iat is not a number") }
        if let sub = claims["sub"], sub.stringValue == nil { return .malformed("sub is not a string") }
        if let iss = claims["iss"], iss.stringValue == nil { return .malformed("iss is not a string") }
        var audiences: [String] = []
        if let aud = claims["aud"] {
            if let single = aud.stringValue {
                audiences = [single]
            } else if let array = aud.arrayValue {
                for element in array {
                    guard let s = element.stringValue else { return .malformed("aud is not a string or array of strings") }
                    audiences.append(s)
                }
            } else {
                return .malformed("aud is not a string or array of strings")
            }
        }

        if let exp {
            if Self.isAfter(now, exp, leeway) { return .expired }
        } else if requireExpiry {
            return .malformed("missing exp claim")
        }
        if let nbf, Self.isBefore(now, nbf, leeway) { return .notYetValid }
        if let issuer, claims["iss"]?.stringValue != issuer { return .wrongIssuer }
        if let audience, !audiences.contains(audience) { return .wrongAudience }
        return nil
    }

    /// now > exp + leeway (saturating, exact for integers; fractional exp compared as Double).
    private static func isAfter(_ now: Int64, _ exp: JSONValue, _ leeway: Int64) -> Bool {
        switch exp {
        case .int(let e):
            let (limit, overflow) = e.addingReportingOverflow(leeway)
            return overflow ? false : now > limit
        default:
            return Double(now) > exp.doubleValue! + Double(leeway)
        }
    }

    /// now + leeway < nbf
    private static func isBefore(_ now: Int64, _ nbf: JSONValue, _ leeway: Int64) -> Bool {
        switch nbf {
        case .int(let n):
            let (shifted, overflow) = now.addingReportingOverflow(leeway)
            return overflow ? false : shifted < n
        default:
            return Double(now) + Double(leeway) < nbf.doubleValue!
        }
    }

    /// Keeps attacker-controlled text in error reasons short and printable.
    private static func sanitize(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars.prefix(32) {
            out.unicodeScalars.append(scalar.value >= 0x20 && scalar.value < 0x7F ? scalar : "?")
        }
        if s.unicodeScalars.count > 32 { out += "..." }
        return out
    }
}
