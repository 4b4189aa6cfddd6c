// Base64 (RFC 4648): one implementation, two alphabets.
//
// * `.standard` (§4, `+` `/`, padded with `=`): the handshake's Sec-WebSocket-Accept value and the
//   check of a Sec-WebSocket-Key.
// * `.url` (§5, `-` `_`, unpadded, as RFC 7515 §2 uses it for JWTs): decoding is strict — no padding,
//   no whitespace, and the unused low bits of the final character must be zero (canonical encoding
//   only, so a token has exactly one textual form for given bytes).

public enum Base64 {
    public enum Alphabet: Sendable {
        /// RFC 4648 §4, padded.
        case standard
        /// RFC 4648 §5, unpadded.
        case url

        fileprivate var table: [UInt8] { self == .standard ? Base64.standardTable : Base64.urlTable }
        fileprivate var decodeTable: [UInt8] { self == .standard ? Base64.standardDecode : Base64.urlDecode }
    }

    static let standardTable = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let urlTable = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    /// Byte → 6-bit value; 0xFF marks a byte outside the alphabet.
    static let standardDecode = decodeTable(standardTable)
    static let urlDecode = decodeTable(urlTable)

    private static func decodeTable(_ alphabet: [UInt8]) -> [UInt8] {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }

    /// `bytes` encoded: padded with `=` in the standard alphabet, unpadded in the URL one.
    public static func encode<Bytes: Collection>(_ bytes: Bytes, alphabet: Alphabet = .standard) -> String
    where Bytes.Element == UInt8 {
        let input = Array(bytes)
        let table = alphabet.table
        let pad = alphabet == .standard
        var out: [UInt8] = []
        out.reserveCapacity((input.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= input.count {
            let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
            out.append(table[Int(n >> 18 & 63)]); out.append(table[Int(n >> 12 & 63)])
            out.append(table[Int(n >> 6 & 63)]); out.append(table[Int(n & 63)])
            i += 3
        }
        switch input.count - i {
        case 1:
            let n = UInt32(input[i]) << 16
            out.append(table[Int(n >> 18 & 63)]); out.append(table[Int(n >> 12 & 63)])
            if pad { out.append(UInt8(ascii: "=")); out.append(UInt8(ascii: "=")) }
        case 2:
            let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
            out.append(table[Int(n >> 18 & 63)]); out.append(table[Int(n >> 12 & 63)])
            out.append(table[Int(n >> 6 & 63)])
            if pad { out.append(UInt8(ascii: "=")) }
        default:
            break
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes canonical base64 in `alphabet`: the standard one padded to a multiple of 4, the URL one
    /// unpadded; the unused low bits of the last character must be zero. nil for anything else.
    public static func decode(_ input: UnsafeRawBufferPointer, alphabet: Alphabet) -> [UInt8]? {
        var n = input.count
        if alphabet == .standard {
            guard n % 4 == 0 else { return nil }
            var padding = 0
            while padding < 2 && n > 0 && input[n - 1] == UInt8(ascii: "=") {
                n -= 1
                padding += 1
            }
        }
        if n % 4 == 1 { return nil }
        var out = [UInt8]()
        out.reserveCapacity(n * 3 / 4)
        return alphabet.decodeTable.withUnsafeBufferPointer { table -> [UInt8]? in
            var i = 0
            while i + 4 <= n {
                let a = table[Int(input[i])], b = table[Int(input[i + 1])]
                let c = table[Int(input[i + 2])], d = table[Int(input[i + 3])]
                if (a | b | c | d) & 0xC0 != 0 { return nil }
                let v = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                out.append(UInt8(truncatingIfNeeded: v >> 16))
                out.append(UInt8(truncatingIfNeeded: v >> 8))
                out.append(UInt8(truncatingIfNeeded: v))
                i += 4
            }
            switch n - i {
            case 0:
                break
            case 2:
                let a = table[Int(input[i])], b = table[Int(input[i + 1])]
                if (a | b) & 0xC0 != 0 || b & 0x0F != 0 { return nil }
                out.append(a << 2 | b >> 4)
            case 3:
                let a = table[Int(input[i])], b = table[Int(input[i + 1])], c = table[Int(input[i + 2])]
                if (a | b | c) & 0xC0 != 0 || c & 0x03 != 0 { return nil }
                out.append(a << 2 | b >> 4)
                out.append((b & 0x0F) << 4 | c >> 2)
            default:
                return nil
            }
            return out
        }
    }

    public static func decode(_ input: [UInt8], alphabet: Alphabet) -> [UInt8]? {
        input.withUnsafeBytes { decode($0, alphabet: alphabet) }
    }

    public static func decode(_ input: String, alphabet: Alphabet) -> [UInt8]? {
        decode(Array(input.utf8), alphabet: alphabet)
    }

    /// The 6-bit value of a character of the standard alphabet (nil: not one).
    static func value(of c: UInt8) -> UInt8? {
        let v = standardDecode[Int(c)]
        return v == 0xFF ? nil : v
    }
}

/// Strict, unpadded base64url (RFC 4648 §5, RFC 7515 §2): `Base64` with the URL alphabet.
public enum Base64URL {
    public static func decode(_ input: UnsafeRawBufferPointer) -> [UInt8]? { Base64.decode(input, alphabet: .url) }
    public static func decode(_ input: [UInt8]) -> [UInt8]? { Base64.decode(input, alphabet: .url) }
    public static func decode(_ input: String) -> [UInt8]? { Base64.decode(input, alphabet: .url) }
    public static func encode<Bytes: Collection>(_ input: Bytes) -> String where Bytes.Element == UInt8 {
        Base64.encode(input, alphabet: .url)
    }
}
