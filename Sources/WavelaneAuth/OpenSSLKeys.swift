// Thin wrappers over the system OpenSSL 3 libcrypto for JWT signature verification.
// Every OpenSSL object created here is freed on every path; the error queue is cleared after
// failures so nothing stale is left behind on event-loop threads.

import CWavelaneOpenSSL

/// A parsed public key. Owns its EVP_PKEY (freed in deinit). Immutable after init; EVP_PKEY is safe for
/// concurrent verification in OpenSSL 3, hence @unchecked Sendable.
final class OpenSSLPublicKey: @unchecked Sendable {
    enum Kind: Equatable, Sendable {
        case rsa
        case ecP256
        case ecP384
    }

    let kind: Kind
    let bits: Int
    private let pkey: OpaquePointer

    static let minimumRSABits = 2048

    /// Parses one PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----") holding an RSA or EC P-256/P-384 key.
    /// Throws a message without the config-key prefix.
    init(pem: String) throws(JWTConfigurationError) {
        guard pem.contains("-----BEGIN PUBLIC KEY-----") else {
            throw JWTConfigurationError(message: "not a PEM public key (expected \"-----BEGIN PUBLIC KEY-----\")")
        }
        var pemBytes = Array(pem.utf8)
        guard pemBytes.count < Int(Int32.max) else {
            throw JWTConfigurationError(message: "not a PEM public key")
        }
        let parsed: OpaquePointer? = pemBytes.withUnsafeMutableBytes { raw -> OpaquePointer? in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let pkey = parsed else {
            ERR_clear_error()
            throw JWTConfigurationError(message: "not a PEM public key")
        }
        let bits = Int(EVP_PKEY_get_bits(pkey))
        switch EVP_PKEY_get_base_id(pkey) {
        case EVP_PKEY_RSA:
            guard bits >= Self.minimumRSABits else {
                EVP_PKEY_free(pkey)
                throw JWTConfigurationError(message: "RSA key too small (\(bits) bits, minimum \(Self.minimumRSABits))")
            }
            kind = .rsa
        case EVP_PKEY_EC:
            var name = [CChar](repeating: 0, count: 64)
            var length = 0
            let ok = EVP_PKEY_get_group_name(pkey, &name, name.count, &length)
            let group = ok == 1 ? String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
            switch group {
            case "prime256v1", "P-256", "secp256r1": kind = .ecP256
            case "secp384r1", "P-384": kind = .ecP384
            default:
                EVP_PKEY_free(pkey)
                ERR_clear_error()
                throw JWTConfigurationError(message: "unsupported EC curve \(group.isEmpty ? "(unknown)" : group) (need P-256 or P-384)")
            }
        default:
            EVP_PKEY_free(pkey)
            throw JWTConfigurationError(message: "unsupported public key type (need RSA or EC P-256/P-384)")
        }
        self.pkey = pkey
        self.bits = bits
    }

    deinit {
        EVP_PKEY_free(pkey)
    }

    /// Verifies `signature` over `message` with digest `md`. For EC keys `signature` must already be DER.
    func verify(signature: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer, md: OpaquePointer) -> Bool {
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, md, nil, pkey) == 1 else {
            ERR_clear_error()
            return false
        }
        let sigBase = signature.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let msgBase = message.baseAddress?.assumingMemoryBound(to: UInt8.self)
        // OpenSSL dislikes NULL pointers even for empty inputs.
        var empty: UInt8 = 0
        let rc = withUnsafeMutablePointer(to: &empty) { emptyPtr in
            EVP_DigestVerify(ctx, sigBase ?? UnsafePointer(emptyPtr), signature.count,
                             msgBase ?? UnsafePointer(emptyPtr), message.count)
        }
        if rc != 1 {
            ERR_clear_error()
            return false
        }
        return true
    }
}

enum OpenSSLCrypto {
    /// HMAC of `message` under `key` into `out` (which must hold EVP_MAX_MD_SIZE bytes). Returns the MAC length (0 on failure).
    static func hmac(md: OpaquePointer, key: [UInt8], message: UnsafeRawBufferPointer, out: UnsafeMutablePointer<UInt8>) -> Int {
        var length: UInt32 = 0
        var empty: UInt8 = 0
        let result: UnsafeMutablePointer<UInt8>? = key.withUnsafeBytes { keyRaw in
            withUnsafeMutablePointer(to: &empty) { emptyPtr in
                HMAC(md, keyRaw.baseAddress, Int32(keyRaw.count),
                     message.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(emptyPtr), message.count,
                     out, &length)
            }
        }
        if result == nil {
            ERR_clear_error()
            return 0
        }
        return Int(length)
    }

    /// Constant-time equality (CRYPTO_memcmp); false when the lengths differ.
    static func constantTimeEquals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        if a.count == 0 { return true }
        return CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0
    }

    /// Converts a JWS raw ECDSA signature (r || s, each `half` bytes) to DER (ECDSA-Sig-Value). nil on failure.
    static func ecdsaRawToDER(_ raw: UnsafeRawBufferPointer, half: Int) -> [UInt8]? {
        guard raw.count == 2 * half, let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        guard let sig = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(sig) }
        guard let r = BN_bin2bn(base, Int32(half), nil) else {
            ERR_clear_error()
            return nil
        }
        guard let s = BN_bin2bn(base + half, Int32(half), nil) else {
            BN_free(r)
            ERR_clear_error()
            return nil
        }
        guard ECDSA_SIG_set0(sig, r, s) == 1 else {  // on success sig owns r and s
            BN_free(r)
            BN_free(s)
            ERR_clear_error()
            return nil
        }
        let length = i2d_ECDSA_SIG(sig, nil)
        guard length > 0 else {
            ERR_clear_error()
            return nil
        }
        var der = [UInt8](repeating: 0, count: Int(length))
        let written = der.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var p: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            return i2d_ECDSA_SIG(sig, &p)
        }
        guard written == length else {
            ERR_clear_error()
            return nil
        }
        return der
    }
}
