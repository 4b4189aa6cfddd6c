// Base64 (Sources/WavelaneProtocol/Base64.swift): the standard alphabet (the handshake's accept
// value; these cases moved from HandshakeTests) and the strict URL alphabet (JWTs; moved from JWTTests).

import Testing
@testable import WavelaneProtocol

@Suite("Base64")
struct Base64Tests {
    @Test(arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
    ])
    func base64RFC4648Vectors(input: String, expected: String) {
        #expect(Base64.encode(Array(input.utf8)) == expected)
        #expect(Base64.encode(input.utf8) == expected)
    }

    @Test func base64BinaryAndAlphabetEdges() {
        #expect(Base64.encode([0xFB, 0xFF, 0xBF]) == "+/+/")
        #expect(Base64.encode([0xFF, 0xFF, 0xFF]) == "////")
        #expect(Base64.encode([0x00, 0x00, 0x00]) == "AAAA")
        #expect(Base64.encode([0x00]) == "AA==")
        #expect(Base64.encode([0xFF]) == "/w==")
        #expect(Base64.encode([0xFF, 0xFE]) == "//4=")
        #expect(Base64.encode(Array(0..<16)) == "AAECAwQFBgcICQoLDA0ODw==")
    }

    @Test func standardDecodeRoundTripsAndIsCanonical() {
        var bytes: [UInt8] = []
        for n in 0..<70 {
            let encoded = Base64.encode(bytes)
            #expect(encoded.utf8.count % 4 == 0)
            #expect(Base64.decode(encoded, alphabet: .standard) == bytes, "length \(n)")
            bytes.append(UInt8(truncatingIfNeeded: n &* 37 &+ 251))
        }
        #expect(Base64.decode("Zm9vYg==", alphabet: .standard) == Array("foob".utf8))
        #expect(Base64.decode("Zm9vYg", alphabet: .standard) == nil)     // padding required
        #expect(Base64.decode("Zm9vYh==", alphabet: .standard) == nil)   // unused bits set
        #expect(Base64.decode("Zm9v-_==", alphabet: .standard) == nil)   // URL alphabet
        #expect(Base64.decode("Z===", alphabet: .standard) == nil)
        #expect(Base64.decode("", alphabet: .standard) == [])
    }

    @Test func theTwoAlphabetsDifferOnlyInTwoCharactersAndPadding() {
        let bytes: [UInt8] = [0xFB, 0xFF, 0xBF, 0xFF]
        #expect(Base64.encode(bytes) == "+/+/"+"/w==")
        #expect(Base64.encode(bytes, alphabet: .url) == "-_-_"+"_w")
        #expect(Base64URL.encode(bytes) == Base64.encode(bytes, alphabet: .url))
    }
}

@Suite("Base64URL")
struct Base64URLTests {
    @Test func roundTrip() {
        var bytes: [UInt8] = []
        for n in 0..<70 {
            let encoded = Base64URL.encode(bytes)
            #expect(!encoded.contains("=") && !encoded.contains("+") && !encoded.contains("/"))
            #expect(Base64URL.decode(encoded) == bytes, "length \(n)")
            bytes.append(UInt8(truncatingIfNeeded: n &* 37 &+ 251))
        }
        #expect(Base64URL.encode(Array("hello".utf8)) == "aGVsbG8")
        #expect(Base64URL.decode("_-8") == [0xFF, 0xEF])
    }

    @Test func rejectsNonCanonical() {
        #expect(Base64URL.decode("aGVsbG8=") == nil)   // padding
        #expect(Base64URL.decode("aGVsbG9") == nil)    // unused bits set
        #expect(Base64URL.decode("QR") == nil)         // unused bits set
        #expect(Base64URL.decode("QQ") == [0x41])
        #expect(Base64URL.decode("a") == nil)          // length % 4 == 1
        #expect(Base64URL.decode("ab+/") == nil)       // standard alphabet
        #expect(Base64URL.decode("ab c") == nil)
        #expect(Base64URL.decode("") == [])
    }
}

