// Tests of Sources/WavelaneEngine/Origins.swift and the subprotocol choice (moved from PoliciesTests.swift).

import NIOCore
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

@Suite("Origins and subprotocols")
struct OriginTests {
    private func allowed(_ patterns: [String], _ origin: String?) throws -> Bool {
        var p = PolicyConfiguration()
        p.allowedOrigins = try patterns.map { try #require(OriginPattern($0)) }
        return p.checkOrigin(origin.map { [$0] } ?? []) == nil
    }

    @Test func exact() throws {
        let list = ["https://app.example.com"]
        #expect(try allowed(list, "https://app.example.com"))
        #expect(try allowed(list, "https://APP.Example.COM"))
        #expect(try allowed(list, "HTTPS://app.example.com"))
        #expect(try allowed(list, "https://app.example.com:443"))   // the default port
        #expect(try !allowed(list, "http://app.example.com"))       // scheme
        #expect(try !allowed(list, "https://app.example.com:8443")) // port
        #expect(try !allowed(list, "https://evil.app.example.com"))
        #expect(try !allowed(list, "https://app.example.com.evil.org"))
        #expect(try !allowed(list, "https://example.com"))
        #expect(try allowed(list, nil))                              // non-browser client
    }

    @Test func ports() throws {
        let list = ["http://localhost:3000", "https://a.example:8443"]
        #expect(try allowed(list, "http://localhost:3000"))
        #expect(try !allowed(list, "http://localhost"))
        #expect(try !allowed(list, "http://localhost:3001"))
        #expect(try allowed(list, "https://a.example:8443"))
        #expect(try !allowed(list, "https://a.example"))
        #expect(try allowed(["http://example.com:80"], "http://example.com"))
    }

    @Test func wildcard() throws {
        let list = ["https://*.example.com"]
        #expect(try allowed(list, "https://app.example.com"))
        #expect(try allowed(list, "https://a.b.Example.com"))
        #expect(try !allowed(list, "https://example.com"))           // not the apex
        #expect(try !allowed(list, "https://badexample.com"))
        #expect(try !allowed(list, "https://app.example.com.evil.org"))
        #expect(try !allowed(list, "http://app.example.com"))
        #expect(try !allowed(list, "https://app.example.com:444"))
        #expect(try allowed(list + ["https://example.com"], "https://example.com"))
    }

    @Test func malformedOriginsAreRefused() throws {
        let list = ["https://app.example.com", "https://*.example.com"]
        for bad in ["null", "", "app.example.com", "https://", "https://app.example.com/", "https://app.example.com/x",
                    "https://user@app.example.com", "https://app.example.com:", "https://app.example.com:99999",
                    "https://app.example.com:0", "https://app..example.com", "https://.example.com",
                    "https://*.example.com", "https://app.example.com?x", "https://app example.com", "1https://a.example.com",
                    "https://[::1", "https://app.example.com#f"] {
            #expect(try !allowed(list, bad), "\(bad)")
        }
        // Two Origin headers are refused.
        var p = PolicyConfiguration()
        p.allowedOrigins = [try #require(OriginPattern("https://app.example.com"))]
        #expect(p.checkOrigin(["https://app.example.com", "https://app.example.com"]) != nil)
        #expect(try allowed(["http://[::1]:8080"], "http://[::1]:8080"))
    }

    @Test func requireOrigin() throws {
        var p = PolicyConfiguration()
        p.requireOrigin = true
        #expect(p.checkOrigin([]) != nil)
        #expect(p.checkOrigin(["https://anything.example"]) == nil)  // no allowlist: any origin
    }

    @Test func patternsInConfiguration() throws {
        let p = try policies(#"{"allowed_origins":["https://app.example.com","https://*.Example.org:8443"],"require_origin":true}"#)
        #expect(p.allowedOrigins.map(\.description) == ["https://app.example.com:443", "https://*.example.org:8443"])
        #expect(p.requireOrigin)
        for bad in ["example.com", "https://*", "https://a.*.example.com", "https://x.example.com/path", "*"] {
            #expect(policyError(#"{"allowed_origins":["\#(bad)"]}"#)?.key == "allowed_origins", "\(bad)")
        }
    }

    @Test func subprotocolSelection() {
        var p = PolicyConfiguration()
        p.subprotocols = ["v2.chat", "v1.chat"]
        #expect(p.selectSubprotocol([]) == .none)
        #expect(p.selectSubprotocol(["v1.chat"]) == .chosen("v1.chat"))
        // The client's order decides.
        #expect(p.selectSubprotocol(["v1.chat, v2.chat"]) == .chosen("v1.chat"))
        #expect(p.selectSubprotocol(["x, v2.chat,v1.chat"]) == .chosen("v2.chat"))
        #expect(p.selectSubprotocol(["x", "  v1.chat "]) == .chosen("v1.chat"))
        #expect(p.selectSubprotocol(["V1.CHAT"]) == .none)  // case-sensitive tokens
        #expect(p.selectSubprotocol(["x, y"]) == .none)
        p.subprotocolRequired = true
        #expect(p.selectSubprotocol(["x, y"]) == .refused)
        #expect(p.selectSubprotocol([]) == .refused)
        #expect(p.selectSubprotocol([",,v2.chat"]) == .chosen("v2.chat"))
        // No subprotocols configured: offers are ignored.
        #expect(PolicyConfiguration().selectSubprotocol(["v1.chat"]) == .none)
    }
}
