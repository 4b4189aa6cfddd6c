import Testing
import WavelaneAuth
@testable import WavelaneEngine
import WavelaneProtocol

private func config(_ json: String) throws -> EngineConfiguration {
    try EngineConfiguration(json: JSONParser.parse(json))
}

/// The ConfigurationError for `json`, or nil when it is accepted.
private func configError(_ json: String) -> ConfigurationError? {
    let value: JSONValue
    do { value = try JSONParser.parse(json) } catch {
        Issue.record("test JSON does not parse: \(json)")
        return nil
    }
    do {
        _ = try EngineConfiguration(json: value)
        return nil
    } catch {
        return error
    }
}

@Suite("EngineConfiguration")
struct ConfigurationTests {
    @Test func workerAndRequestKeys() throws {
        let d = EngineConfiguration()
        #expect(d.reusePort == false && d.listen == true && d.connectHeaders.isEmpty)
        let c = try config(#"{"reuse_port":true,"connect_headers":["x-request-id","user-agent","x-request-id"],"listen":false,"redis_url":"redis://127.0.0.1:6379"}"#)
        #expect(c.reusePort && !c.listen)
        #expect(c.connectHeaders == ["user-agent", "x-request-id"])
        #expect(configError(#"{"listen":false}"#)?.key == "listen")
        #expect(configError(#"{"reuse_port":1}"#)?.key == "reuse_port")
        #expect(configError(#"{"connect_headers":["User-Agent"]}"#)?.key == "connect_headers")
        #expect(configError(#"{"connect_headers":["a b"]}"#)?.key == "connect_headers")
        #expect(configError(#"{"connect_headers":[""]}"#)?.key == "connect_headers")
        #expect(configError(#"{"connect_headers":"user-agent"}"#)?.key == "connect_headers")
    }

    @Test func defaults() throws {
        for c in [EngineConfiguration(), try config("{}")] {
            #expect(c.host == "127.0.0.1")
            #expect(c.port == 8765)
            #expect(c.threads == 0)
            #expect(c.wsPath == nil)
            #expect(c.jwt == nil)
            #expect(c.jwtCookie == "token")
            #expect(c.jwtQueryParam == "token")
            #expect(c.jwtHeader == true)
            #expect(c.pingInterval == 20)
            #expect(c.idleTimeout == 60)
            #expect(c.handshakeTimeout == 10)
            #expect(c.closeTimeout == 5)
            #expect(c.maxMessageSize == 1 << 20)
            #expect(c.maxFrameSize == 1 << 20)
            #expect(c.maxConnections == 100_000)
            #expect(c.maxSubscriptions == 1024)
            #expect(c.maxTopicLength == 256)
            #expect(c.inboundQueueSize == 65536)
            #expect(c.maxSendQueue == 8 << 20)
            #expect(c.slowConsumerTimeout == 10)
            #expect(c.clientSubscriptions == true)
            #expect(c.subscribeApproval == false)
            #expect(c.readyMessage == true)
            #expect(c.controlMessages == true)
        }
    }

    @Test func everyKeySet() throws {
        let c = try config("""
            {"host":"0.0.0.0","port":9000,"threads":3,"ws_path":"/ws",
             "jwt_secret":"s1","jwt_previous_secret":"s0","jwt_algorithms":["hs256","HS512"],
             "jwt_issuer":"iss","jwt_audience":"aud","jwt_leeway":2.5,"jwt_require_exp":true,
             "jwt_cookie":"auth","jwt_query_param":"t","jwt_header":false,
             "ping_interval":1.5,"idle_timeout":3,"handshake_timeout":4,"close_timeout":0.5,
             "max_message_size":1000,"max_frame_size":500,"max_connections":7,"max_subscriptions":8,
             "max_topic_length":9,"inbound_queue_size":100,"max_send_queue":2048,"slow_consumer_timeout":6,
             "client_subscriptions":false,"subscribe_approval":true,"ready_message":false,"control_messages":false}
            """)
        #expect(c.host == "0.0.0.0")
        #expect(c.port == 9000)
        #expect(c.threads == 3)
        #expect(c.wsPath == "/ws")
        let jwt = try #require(c.jwt)
        #expect(jwt.secrets == [Array("s1".utf8), Array("s0".utf8)])
        #expect(jwt.algorithms == [.hs256, .hs512])
        #expect(jwt.issuer == "iss")
        #expect(jwt.audience == "aud")
        #expect(jwt.leeway == 3, "leeway rounds up to whole seconds")
        #expect(jwt.requireExpiry == true)
        #expect(c.jwtCookie == "auth")
        #expect(c.jwtQueryParam == "t")
        #expect(c.jwtHeader == false)
        #expect(c.pingInterval == 1.5)
        #expect(c.idleTimeout == 3)
        #expect(c.handshakeTimeout == 4)
        #expect(c.closeTimeout == 0.5)
        #expect(c.maxMessageSize == 1000)
        #expect(c.maxFrameSize == 500)
        #expect(c.maxConnections == 7)
        #expect(c.maxSubscriptions == 8)
        #expect(c.maxTopicLength == 9)
        #expect(c.inboundQueueSize == 100)
        #expect(c.maxSendQueue == 2048)
        #expect(c.slowConsumerTimeout == 6)
        #expect(c.clientSubscriptions == false)
        #expect(c.subscribeApproval == true)
        #expect(c.readyMessage == false)
        #expect(c.controlMessages == false)
    }

    @Test func boundsAndAdminKeys() throws {
        let d = try config("{}")
        #expect(d.maxPartialBytes == 64 << 20 && d.maxPresenceMembers == 10_000)
        #expect(d.metrics && d.health && d.adminPort == nil && d.adminHost == "127.0.0.1")
        // Unset, the partial budget always holds one maximal message.
        #expect(try config(#"{"max_message_size":134217728}"#).maxPartialBytes == 134_217_728)
        let c = try config("""
            {"max_message_size":1024,"max_partial_bytes":2048,"max_presence_members":5,
             "metrics":false,"health":false,"admin_host":"0.0.0.0","admin_port":9100}
            """)
        #expect(c.maxPartialBytes == 2048 && c.maxPresenceMembers == 5)
        #expect(!c.metrics && !c.health && c.adminHost == "0.0.0.0" && c.adminPort == 9100)
        #expect(configError(#"{"max_message_size":1024,"max_partial_bytes":1000}"#)?.key == "max_partial_bytes")
        #expect(configError(#"{"max_presence_members":0}"#)?.key == "max_presence_members")
        #expect(configError(#"{"admin_host":"0.0.0.0"}"#)?.key == "admin_host")
        #expect(configError(#"{"port":9100,"admin_port":9100}"#)?.key == "admin_port")
        #expect(configError(#"{"admin_port":0}"#)?.key == "admin_port")
        #expect(configError(#"{"metrics":1}"#)?.key == "metrics")
    }

    @Test func keysListMatchesWhatIsAccepted() throws {
        let documented: Set<String> = [
            "host", "port", "threads", "ws_path",
            "jwt_secret", "jwt_previous_secret", "jwt_public_key", "jwt_algorithms", "jwt_issuer", "jwt_audience",
            "jwt_leeway", "jwt_cookie", "jwt_query_param", "jwt_header", "jwt_require_exp",
            "ping_interval", "idle_timeout", "handshake_timeout", "close_timeout",
            "max_message_size", "max_frame_size", "max_connections", "max_subscriptions", "max_topic_length",
            "inbound_queue_size", "max_send_queue", "slow_consumer_timeout",
            "client_subscriptions", "subscribe_approval", "ready_message", "control_messages",
        ]
        #expect(EngineConfiguration.keys.isSuperset(of: documented))
        // null is accepted for every key.
        for key in EngineConfiguration.keys {
            #expect(configError(#"{"\#(key)":null}"#) == nil, "\(key)")
        }
    }

    @Test func rejectHighSKey() throws {
        #expect(try config(#"{"jwt_secret":"x"}"#).jwt?.rejectHighS == true)
        #expect(try config(#"{"jwt_secret":"x","jwt_reject_high_s":false}"#).jwt?.rejectHighS == false)
        #expect(configError(#"{"jwt_reject_high_s":1}"#)?.key == "jwt_reject_high_s")
    }

    @Test func topicAccessKeys() throws {
        let d = try config("{}")
        #expect(d.topicAccess.clientTopics.isEmpty, "deny by default")
        #expect(d.maxGlobsPerConnection == 16)
        #expect(d.maxGlobs == 10_000)
        let c = try config(#"{"client_topics":["room:*","prices:?"],"max_globs_per_connection":2,"max_globs":5}"#)
        #expect(c.topicAccess.clientTopics == ["room:*", "prices:?"])
        #expect(c.maxGlobsPerConnection == 2 && c.maxGlobs == 5)
        #expect(configError(#"{"client_topics":[""]}"#)?.key == "client_topics")
        #expect(configError(#"{"client_topics":"room:*"}"#)?.key == "client_topics")
        #expect(configError(#"{"max_topic_length":4,"client_topics":["room:*"]}"#)?.key == "client_topics")
        #expect(configError(#"{"max_globs":-1}"#)?.key == "max_globs")
        #expect(configError(#"{"max_globs_per_connection":true}"#)?.key == "max_globs_per_connection")
    }

    @Test func nullMeansDefault() throws {
        let c = try config(#"{"port":null,"host":null,"ping_interval":null,"max_message_size":null,"ready_message":null,"ws_path":null,"jwt_secret":null,"jwt_header":null}"#)
        #expect(c.port == 8765)
        #expect(c.host == "127.0.0.1")
        #expect(c.pingInterval == 20)
        #expect(c.maxMessageSize == 1 << 20)
        #expect(c.readyMessage == true)
        #expect(c.wsPath == nil)
        #expect(c.jwt == nil)
        #expect(c.jwtHeader == true)
    }

    @Test func nullSwitchesTokenSourcesOff() throws {
        let c = try config(#"{"jwt_cookie":null,"jwt_query_param":null}"#)
        #expect(c.jwtCookie == nil)
        #expect(c.jwtQueryParam == nil)
    }

    @Test func unknownKeyRejected() {
        let e = configError(#"{"port":1,"prot":2}"#)
        #expect(e?.key == "prot")
        #expect(e?.problem == "unknown setting")
        #expect(e?.message == "prot: unknown setting")
        #expect(configError(#"{"Port":1}"#)?.key == "Port", "keys are case-sensitive")
    }

    @Test func notAnObject() {
        for json in ["[]", "1", "\"x\"", "null"] {
            #expect(configError(json)?.key == "config", "\(json)")
        }
    }

    @Test(arguments: ["host", "ws_path", "jwt_secret", "jwt_previous_secret", "jwt_public_key", "jwt_issuer",
                      "jwt_audience", "jwt_cookie", "jwt_query_param"])
    func stringKeysTypeErrors(key: String) {
        for bad in ["1", "true", "[]", "{}", "[\"a\"]"] {
            // jwt_previous_secret / issuer / audience are checked with a secret present.
            let json = key == "jwt_secret" ? #"{"\#(key)":\#(bad)}"# : #"{"jwt_secret":"k","\#(key)":\#(bad)}"#
            let e = configError(json)
            #expect(e?.key == key, "\(key) = \(bad)")
            #expect(e?.problem == "must be a string", "\(key) = \(bad)")
        }
    }

    @Test(arguments: [
        ("port", 0, 65535), ("threads", 0, 1024), ("max_message_size", 16, 1 << 30), ("max_frame_size", 16, 1 << 30),
        ("max_connections", 1, 10_000_000), ("max_subscriptions", 1, 10_000_000), ("max_topic_length", 1, 65535),
        ("inbound_queue_size", 16, 100_000_000), ("max_send_queue", 1024, 1 << 34),
    ])
    func integerKeys(key: String, low: Int, high: Int) {
        #expect(configError(#"{"\#(key)":\#(low)}"#) == nil, "\(key) = \(low)")
        #expect(configError(#"{"\#(key)":\#(high)}"#) == nil, "\(key) = \(high)")
        for bad in [low - 1, high + 1, -1_000_000_000_000] {
            let e = configError(#"{"\#(key)":\#(bad)}"#)
            #expect(e?.key == key, "\(key) = \(bad)")
            #expect(e?.problem.hasPrefix("must be in \(low)...\(high)") == true, "\(key) = \(bad): \(String(describing: e))")
        }
        for bad in ["1.5", "\"10\"", "true", "[1]", "{}", "1e3"] {
            let e = configError(#"{"\#(key)":\#(bad)}"#)
            #expect(e?.key == key, "\(key) = \(bad)")
            #expect(e?.problem == "must be an integer", "\(key) = \(bad)")
        }
    }

    @Test(arguments: ["ping_interval", "idle_timeout", "handshake_timeout", "close_timeout", "slow_consumer_timeout"])
    func secondsKeys(key: String) {
        // idle_timeout must stay >= ping_interval: give both room.
        let base = key == "ping_interval" ? #""idle_timeout":31536000,"# : (key == "idle_timeout" ? #""ping_interval":0.001,"# : "")
        #expect(configError(#"{\#(base)"\#(key)":0.01}"#) == nil, "\(key)")
        #expect(configError(#"{\#(base)"\#(key)":31536000}"#) == nil, "\(key) one year")
        for bad in ["0", "-1", "-0.5", "31536001"] {
            let e = configError(#"{\#(base)"\#(key)":\#(bad)}"#)
            #expect(e?.key == key, "\(key) = \(bad)")
            #expect(e?.problem == "must be > 0", "\(key) = \(bad)")
        }
        for bad in ["true", "false", "\"5\"", "[5]", "{}"] {
            let e = configError(#"{\#(base)"\#(key)":\#(bad)}"#)
            #expect(e?.key == key, "\(key) = \(bad)")
            #expect(e?.problem == "must be a number of seconds", "\(key) = \(bad)")
        }
    }

    @Test func jwtLeewayAllowsZero() throws {
        #expect(try config(#"{"jwt_secret":"k","jwt_leeway":0}"#).jwt?.leeway == 0)
        #expect(try config(#"{"jwt_secret":"k","jwt_leeway":10}"#).jwt?.leeway == 10)
        let e = configError(#"{"jwt_secret":"k","jwt_leeway":-1}"#)
        #expect(e?.key == "jwt_leeway")
        #expect(e?.problem == "must be >= 0")
        #expect(configError(#"{"jwt_secret":"k","jwt_leeway":"5"}"#)?.key == "jwt_leeway")
        #expect(configError(#"{"jwt_secret":"k","jwt_leeway":true}"#)?.key == "jwt_leeway")
    }

    @Test(arguments: ["client_subscriptions", "subscribe_approval", "ready_message", "control_messages", "jwt_header", "jwt_require_exp"])
    func boolKeys(key: String) throws {
        #expect(configError(#"{"jwt_secret":"k","\#(key)":true}"#) == nil)
        #expect(configError(#"{"jwt_secret":"k","\#(key)":false}"#) == nil)
        for bad in ["1", "0", "\"true\"", "[]", "{}"] {
            let e = configError(#"{"jwt_secret":"k","\#(key)":\#(bad)}"#)
            #expect(e?.key == key, "\(key) = \(bad)")
            #expect(e?.problem == "must be true or false", "\(key) = \(bad)")
        }
    }

    @Test func wsPathMustStartWithSlash() throws {
        let e = configError(#"{"ws_path":"ws"}"#)
        #expect(e?.key == "ws_path")
        #expect(e?.problem == "must start with '/'")
        #expect(configError(#"{"ws_path":""}"#)?.key == "ws_path")
        #expect(try config(#"{"ws_path":"/"}"#).wsPath == "/")
    }

    @Test func jwtSecretMustNotBeEmpty() {
        #expect(configError(#"{"jwt_secret":""}"#)?.key == "jwt_secret")
        #expect(configError(#"{"jwt_secret":"k","jwt_previous_secret":""}"#)?.key == "jwt_previous_secret")
    }

    @Test func jwtPreviousSecretNeedsSecret() {
        let e = configError(#"{"jwt_previous_secret":"old"}"#)
        #expect(e?.key == "jwt_previous_secret")
        #expect(e?.problem == "needs jwt_secret")
        // A public key alone does not satisfy it either.
        #expect(configError(#"{"jwt_public_key":"PEM","jwt_previous_secret":"old"}"#)?.key == "jwt_previous_secret")
    }

    @Test func jwtOptionsNeedAKey() {
        for (key, value) in [("jwt_algorithms", #"["HS256"]"#), ("jwt_issuer", #""i""#), ("jwt_audience", #""a""#)] {
            let e = configError(#"{"\#(key)":\#(value)}"#)
            #expect(e?.key == key)
            #expect(e?.problem == "needs jwt_secret or jwt_public_key")
        }
    }

    @Test func jwtAlgorithms() throws {
        let e = configError(#"{"jwt_secret":"k","jwt_algorithms":["HS256","none"]}"#)
        #expect(e?.key == "jwt_algorithms")
        #expect(e?.problem.contains("unsupported algorithm \"none\"") == true)
        #expect(e?.problem.contains("HS256") == true, "the message lists what is supported")
        #expect(configError(#"{"jwt_secret":"k","jwt_algorithms":["XS256"]}"#)?.key == "jwt_algorithms")
        #expect(configError(#"{"jwt_secret":"k","jwt_algorithms":"HS256"}"#)?.key == "jwt_algorithms")
        #expect(configError(#"{"jwt_secret":"k","jwt_algorithms":[1]}"#)?.problem == "must be a list of strings")
        let all = try config(#"{"jwt_secret":"k","jwt_algorithms":["hs256","HS384","Hs512","RS256","rs384","RS512","ES256","es384"]}"#)
        #expect(all.jwt?.algorithms == Set(JWTAlgorithm.allCases))
    }

    @Test func idleTimeoutBelowPingIntervalRejected() throws {
        let e = configError(#"{"ping_interval":30,"idle_timeout":29}"#)
        #expect(e?.key == "idle_timeout")
        #expect(e?.problem.hasPrefix("must be at least ping_interval") == true)
        // The default idle timeout (60 s) is checked against a changed ping interval too.
        #expect(configError(#"{"ping_interval":61}"#)?.key == "idle_timeout")
        #expect(configError(#"{"idle_timeout":19}"#)?.key == "idle_timeout")
        #expect(try config(#"{"ping_interval":30,"idle_timeout":30}"#).idleTimeout == 30)
    }

    @Test func badPublicKeyRejectedByServerCore() throws {
        let c = try config(#"{"jwt_public_key":"not a pem"}"#)
        #expect(c.jwt?.publicKeysPEM == ["not a pem"])
        #expect(throws: ConfigurationError.self) { _ = try ServerCore(configuration: c) }
        do {
            _ = try ServerCore(configuration: c)
        } catch {
            #expect(error.key == "jwt_public_key")
        }
    }

    @Test func apiKey() throws {
        #expect(EngineConfiguration().apiKey == nil)
        let key = String(repeating: "k", count: 32)
        #expect(try config(#"{"api_key":"\#(key)"}"#).apiKey == Array(key.utf8))
        #expect(try config(#"{"api_key":null}"#).apiKey == nil)
        let short = configError(#"{"api_key":"\#(String(repeating: "k", count: 31))"}"#)
        #expect(short?.key == "api_key")
        #expect(short?.message.contains("at least 32 bytes") == true)
        #expect(configError(#"{"api_key":""}"#)?.key == "api_key")
        #expect(configError(#"{"api_key":12345}"#)?.key == "api_key")
    }

    @Test func apiKeyComparison() {
        let key = Array("0123456789abcdef0123456789abcdef".utf8)
        #expect(HTTPHandler.constantTimeEquals(key, key))
        #expect(!HTTPHandler.constantTimeEquals(key, Array(key.dropLast())))
        #expect(!HTTPHandler.constantTimeEquals(key, key + key))  // the key twice: wraps, same bytes, other length
        #expect(!HTTPHandler.constantTimeEquals(key, []))
        #expect(!HTTPHandler.constantTimeEquals([], []))
        var other = key
        other[31] ^= 1
        #expect(!HTTPHandler.constantTimeEquals(key, other))
        // A length difference that is a multiple of 256 does not hide in the low byte.
        #expect(!HTTPHandler.constantTimeEquals(Array(repeating: 7, count: 32), Array(repeating: 7, count: 288)))
    }

    @Test func errorDescription() {
        let e = ConfigurationError("port", "must be in 0...65535, got 70000")
        #expect(e.message == "port: must be in 0...65535, got 70000")
        #expect(e.description == e.message)
        #expect(configError(#"{"port":70000}"#) == e)
    }
}
