import Testing
import WavelaneProtocol

@Suite("ByteString")
struct ByteStringTests {
    let nfc = "room:caf\u{E9}"      // é as one scalar
    let nfd = "room:cafe\u{301}"    // e + combining acute accent

    @Test func swiftStringsAreCanonicallyEqualButByteStringsAreNot() {
        #expect(self.nfc == self.nfd)  // the trap: String == is canonical equivalence
        #expect(ByteString(self.nfc) != ByteString(self.nfd))
        #expect(!self.nfc.bytesEqual(self.nfd))
        #expect(ByteString(self.nfc) == ByteString("room:caf\u{E9}"))
    }

    @Test func dictionaryKeysStayApart() {
        var users: [ByteString: Int] = [:]
        users[ByteString("Jos\u{E9}")] = 1
        users[ByteString("Jose\u{301}")] = 2
        #expect(users.count == 2)
        #expect(users[ByteString("Jos\u{E9}")] == 1)
        #expect(users[ByteString("Jose\u{301}")] == 2)
        let set: Set<ByteString> = [ByteString(self.nfc), ByteString(self.nfd), ByteString(self.nfc)]
        #expect(set.count == 2)
    }

    @Test func orderIsByteOrder() {
        #expect(ByteString("a") < ByteString("b"))
        #expect(ByteString("Z") < ByteString("a"))
        #expect(ByteString("ab") < ByteString("abc"))
        #expect(ByteString(self.nfd) < ByteString(self.nfc))  // 'e' (0x65) < 0xC3
    }

    @Test func prefix() {
        #expect(ByteString("user:bob:inbox").hasBytePrefix("user:bob:"))
        #expect(!ByteString("user:bob\u{301}:x").hasBytePrefix("user:bob:"))
    }
}
