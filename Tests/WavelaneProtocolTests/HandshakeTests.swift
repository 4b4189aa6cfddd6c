import Testing
import WavelaneProtocol

@Suite("Handshake")
struct HandshakeTests {
    @Test func acceptValueRFC6455Example() {
        #expect(Handshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func acceptValueOtherKeys() {
        // Computed independently: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
        #expect(Handshake.acceptValue(forKey: "x3JJHMbDL1EzLkh9GBhXDw==") == "HSmrc0sMlYUkAGmm5OPpG2HaGWk=")
        #expect(Handshake.acceptValue(forKey: "AQIDBAUGBwgJCgsMDQ4PEC==") == "OfS0wDaT5NoxF2gqm7Zj2YtetzM=")
        let a = Handshake.acceptValue(forKey: "AAAAAAAAAAAAAAAAAAAAAA==")
        #expect(a.utf8.count == 28)
        #expect(a.hasSuffix("="))
    }

    @Test func validKeys() {
        #expect(Handshake.isValidKey("dGhlIHNhbXBsZSBub25jZQ=="))
        #expect(Handshake.isValidKey("AAAAAAAAAAAAAAAAAAAAAA=="))
        #expect(Handshake.isValidKey("++++////0000zzzzZZZZ9w=="))
    }

    @Test func invalidKeys() {
        #expect(!Handshake.isValidKey(""))
        #expect(!Handshake.isValidKey("dGhlIHNhbXBsZSBub25jZQ="), "23 characters")
        #expect(!Handshake.isValidKey("dGhlIHNhbXBsZSBub25jZQ==="), "25 characters")
        #expect(!Handshake.isValidKey("dGhlIHNhbXBsZSBub25jZQAA"), "no padding")
        #expect(!Handshake.isValidKey("dGhlIHNhbXBsZSBub25jZ==="), "three padding characters")
        #expect(!Handshake.isValidKey("dGhlIHNhbXBsZSBub25j!Q=="), "bad character")
        #expect(!Handshake.isValidKey("dGhlIHNhbXBsZSBub25j Q=="), "space inside")
        #expect(!Handshake.isValidKey("dGhlIHNhbXBsZSBub25jZQ-_"), "base64url alphabet")
        #expect(!Handshake.isValidKey("dGhlIHNhbXBsZSBub25jZé="), "non-ASCII")
    }

    @Test func bearerToken() {
        #expect(Handshake.bearerToken(fromAuthorization: "Bearer abc.def.ghi") == "abc.def.ghi")
        #expect(Handshake.bearerToken(fromAuthorization: "bearer abc") == "abc")
        #expect(Handshake.bearerToken(fromAuthorization: "BEARER abc") == "abc")
        #expect(Handshake.bearerToken(fromAuthorization: "BeArEr abc") == "abc")
        #expect(Handshake.bearerToken(fromAuthorization: "Bearer    abc") == "abc", "extra spaces after the scheme")
        #expect(Handshake.bearerToken(fromAuthorization: "   Bearer abc   ") == "abc", "leading and trailing spaces")
        #expect(Handshake.bearerToken(fromAuthorization: "Bearer x") == "x")
    }

    @Test func bearerTokenRejections() {
        #expect(Handshake.bearerToken(fromAuthorization: "Basic dXNlcjpwYXNz") == nil)
        #expect(Handshake.bearerToken(fromAuthorization: "Token abc") == nil)
        #expect(Handshake.bearerToken(fromAuthorization: "Bearer") == nil)
        #expect(Handshake.bearerToken(fromAuthorization: "Bearer ") == nil)
        #expect(Handshake.bearerToken(fromAuthorization: "Bearer      ") == nil)
        #expect(Handshake.bearerToken(fromAuthorization: "Bearerabc") == nil)
        #expect(Handshake.bearerToken(fromAuthorization: "") == nil)
        #expect(Handshake.bearerToken(fromAuthorization: "abc") == nil)
    }

    @Test func cookies() {
        let header = "theme=dark; token=abc.def; lang=en"
        #expect(Handshake.cookie(named: "token", in: header) == "abc.def")
        #expect(Handshake.cookie(named: "theme", in: header) == "dark")
        #expect(Handshake.cookie(named: "lang", in: header) == "en")
        #expect(Handshake.cookie(named: "missing", in: header) == nil)
        #expect(Handshake.cookie(named: "token", in: "") == nil)
    }

    @Test func cookieQuotedValues() {
        #expect(Handshake.cookie(named: "token", in: #"token="quoted"; a=b"#) == "quoted")
        #expect(Handshake.cookie(named: "token", in: #"a=b; token="""#) == "")
        #expect(Handshake.cookie(named: "token", in: #"token="half"#) == #""half"#, "unbalanced quote kept")
    }

    @Test func cookieNameMatchingIsExact() {
        #expect(Handshake.cookie(named: "token", in: "xtoken=1; tokenx=2") == nil)
        #expect(Handshake.cookie(named: "token", in: "xtoken=1; token=3") == "3")
        #expect(Handshake.cookie(named: "token", in: "Token=1") == nil, "names are case-sensitive")
    }

    @Test func cookieEdgeCases() {
        #expect(Handshake.cookie(named: "token", in: "a=1;token=2") == "2", "no space after ';'")
        #expect(Handshake.cookie(named: "token", in: "token=a=b=c") == "a=b=c", "'=' inside the value")
        #expect(Handshake.cookie(named: "token", in: "token=") == "")
        #expect(Handshake.cookie(named: "token", in: "token=v   ; x=y") == "v", "trailing spaces trimmed")
        #expect(Handshake.cookie(named: "token", in: "junk; token=t") == "t", "pairs without '=' skipped")
        #expect(Handshake.cookie(named: "token", in: "token=first; token=second") == "first")
    }

    @Test func splitTarget() {
        let a = Handshake.splitTarget("/ws?token=abc&x=1")
        #expect(a.path == "/ws")
        #expect(a.query == "token=abc&x=1")
        let b = Handshake.splitTarget("/ws")
        #expect(b.path == "/ws")
        #expect(b.query == nil)
        let c = Handshake.splitTarget("/ws?")
        #expect(c.path == "/ws")
        #expect(c.query == "")
        let d = Handshake.splitTarget("/a?b?c")
        #expect(d.path == "/a")
        #expect(d.query == "b?c")
        let e = Handshake.splitTarget("?q")
        #expect(e.path == "")
        #expect(e.query == "q")
    }

    @Test func queryParameter() {
        #expect(Handshake.queryParameter(named: "token", in: "token=abc") == "abc")
        #expect(Handshake.queryParameter(named: "token", in: "a=1&token=xyz&b=2") == "xyz")
        #expect(Handshake.queryParameter(named: "token", in: "a=1&b=2") == nil)
        #expect(Handshake.queryParameter(named: "token", in: "") == nil)
        #expect(Handshake.queryParameter(named: "token", in: "token=first&token=second") == "first")
        #expect(Handshake.queryParameter(named: "token", in: "token") == nil, "no '='")
        #expect(Handshake.queryParameter(named: "token", in: "token=") == "")
        #expect(Handshake.queryParameter(named: "token", in: "token=a=b") == "a=b")
        #expect(Handshake.queryParameter(named: "token", in: "tokens=1&xtoken=2") == nil)
    }

    @Test func queryParameterPercentDecoding() {
        #expect(Handshake.queryParameter(named: "q", in: "q=a%20b") == "a b")
        #expect(Handshake.queryParameter(named: "q", in: "q=a+b+c") == "a b c", "'+' is a space")
        #expect(Handshake.queryParameter(named: "q", in: "q=a%2Bb") == "a+b", "%2B is a plus")
        #expect(Handshake.queryParameter(named: "q", in: "q=%e2%82%ac") == "€", "lowercase hex")
        #expect(Handshake.queryParameter(named: "q", in: "q=%E2%82%AC%F0%9F%98%80") == "€😀")
        #expect(Handshake.queryParameter(named: "q", in: "q=%26%3D%25") == "&=%")
        #expect(Handshake.queryParameter(named: "token", in: "to%6Ben=v") == "v", "the name is decoded too")
        #expect(Handshake.queryParameter(named: "a b", in: "a+b=1") == "1")
    }

    @Test func applicationQueryDropsTheTokenParameterAndKeepsTheRestAsSent() {
        #expect(Handshake.applicationQuery("a=1&token=xyz&b=%20c&a=2", removing: "token", maxBytes: 4096) == "a=1&b=%20c&a=2")
        #expect(Handshake.applicationQuery("tok%65n=xyz&x", removing: "token", maxBytes: 4096) == "x", "encoded name")
        #expect(Handshake.applicationQuery("token=xyz&x=1", removing: nil, maxBytes: 4096) == "token=xyz&x=1")
        #expect(Handshake.applicationQuery(nil, removing: "token", maxBytes: 4096) == "")
        #expect(Handshake.applicationQuery("token=only", removing: "token", maxBytes: 4096) == "")
        #expect(Handshake.applicationQuery("&&a=1&", removing: "token", maxBytes: 4096) == "a=1")
    }

    @Test func applicationQueryLeavesOutParametersBeyondTheCapWhole() {
        #expect(Handshake.applicationQuery("aaaa=1&bb=2&c=3", removing: "token", maxBytes: 11) == "aaaa=1&bb=2")
        #expect(Handshake.applicationQuery("aaaa=1&bb=2&c=3", removing: "token", maxBytes: 10) == "aaaa=1")
        #expect(Handshake.applicationQuery(Substring(String(repeating: "x", count: 5000)), removing: nil, maxBytes: 4096) == "")
    }

    @Test func queryParameterMalformedPercent() {
        #expect(Handshake.queryParameter(named: "q", in: "q=%zz") == nil)
        #expect(Handshake.queryParameter(named: "q", in: "q=%2") == nil)
        #expect(Handshake.queryParameter(named: "q", in: "q=%") == nil)
        #expect(Handshake.queryParameter(named: "q", in: "q=%E2%82") == nil, "truncated UTF-8")
        #expect(Handshake.queryParameter(named: "q", in: "q=%FF") == nil, "invalid UTF-8")
        #expect(Handshake.queryParameter(named: "q", in: "q=%C0%80") == nil, "overlong")
    }
}
