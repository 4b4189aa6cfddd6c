import Testing
import WavelaneAuth
@testable import WavelaneEngine
import WavelaneProtocol

/// What a freshly made `EngineConfiguration` holds for `key`, as JSON (nil: unset), so that the
/// schema's defaults are checked against the engine's real ones. A key missing here fails the test.
private func engineDefault(_ key: String) -> JSONValue?? {
    let c = EngineConfiguration()
    let p = c.policies
    let jwt = JWTConfiguration()
    func list(_ l: [String]) -> JSONValue { .array(l.map(JSONValue.string)) }
    func unset(_ l: [some Any]) -> JSONValue? { l.isEmpty ? nil : .array([]) }
    func seconds(_ d: Double) -> JSONValue { .int(Int64(d)) }
    switch key {
    case "host": return .string(c.host)
    case "port": return .int(Int64(c.port))
    case "threads": return .int(Int64(c.threads))
    case "ws_path": return .some(c.wsPath.map(JSONValue.string))
    case "reuse_port": return .bool(c.reusePort)
    case "listen": return .bool(c.listen)
    case "connect_headers": return list(c.connectHeaders)
    case "max_connections": return .int(Int64(c.maxConnections))
    case "jwt_secret", "jwt_previous_secret", "jwt_public_key", "jwt_algorithms", "jwt_issuer", "jwt_audience":
        return .some(c.jwt == nil ? nil : .null)  // no JWT unless configured
    case "jwt_leeway": return .int(jwt.leeway)
    case "jwt_require_exp": return .bool(jwt.requireExpiry)
    case "jwt_reject_high_s": return .bool(jwt.rejectHighS)
    case "jwt_header": return .bool(c.jwtHeader)
    case "jwt_cookie": return .some(c.jwtCookie.map(JSONValue.string))
    case "jwt_query_param": return .some(c.jwtQueryParam.map(JSONValue.string))
    case "handshake_timeout": return seconds(c.handshakeTimeout)
    case "ping_interval": return seconds(c.pingInterval)
    case "idle_timeout": return seconds(c.idleTimeout)
    case "close_timeout": return seconds(c.closeTimeout)
    case "slow_consumer_timeout": return seconds(c.slowConsumerTimeout)
    case "max_message_size": return .int(Int64(c.maxMessageSize))
    case "max_frame_size": return .int(Int64(c.maxFrameSize))
    case "max_partial_bytes": return .int(Int64(c.maxPartialBytes))
    case "max_subscriptions": return .int(Int64(c.maxSubscriptions))
    case "max_topic_length": return .int(Int64(c.maxTopicLength))
    case "inbound_queue_size": return .int(Int64(c.inboundQueueSize))
    case "drain_spin_us": return .int(Int64(c.drainSpinMicros))
    case "max_send_queue": return .int(Int64(c.maxSendQueue))
    case "client_subscriptions": return .bool(c.clientSubscriptions)
    case "subscribe_approval": return .bool(c.subscribeApproval)
    case "client_topics": return list(c.topicAccess.clientTopics)
    case "max_globs_per_connection": return .int(Int64(c.maxGlobsPerConnection))
    case "max_globs": return .int(Int64(c.maxGlobs))
    case "log_level": return .string(c.logLevel)
    case "metrics": return .bool(c.metrics)
    case "health": return .bool(c.health)
    case "admin_port": return .some(c.adminPort.map { JSONValue.int(Int64($0)) })
    case "admin_host": return .string(c.adminHost)
    case "api_key": return .some(c.apiKey.map { JSONValue.string(String(decoding: $0, as: UTF8.self)) })
    case "ready_message": return .bool(c.readyMessage)
    case "control_messages": return .bool(c.controlMessages)
    case "compression": return .bool(c.compression.enabled)
    case "compression_min_size": return .int(Int64(c.compression.minSize))
    case "compression_level": return .int(Int64(c.compression.level))
    case "compression_window_bits": return .int(Int64(c.compression.maxWindowBits))
    case "compression_mem_level": return .int(Int64(c.compression.memLevel))
    case "compression_server_context_takeover": return .bool(c.compression.serverContextTakeover)
    case "compression_client_context_takeover": return .bool(c.compression.clientContextTakeover)
    case "tls_cert": return .some(c.tlsCertificatePath.map(JSONValue.string))
    case "tls_key": return .some(c.tlsKeyPath.map(JSONValue.string))
    case "tls_client_ca": return .some(c.tlsClientCAPath.map(JSONValue.string))
    case "redis_url": return .some(c.redisURL == nil ? nil : .null)
    case "redis_prefix": return .string(c.redisPrefix)
    case "history_size": return .int(Int64(c.historySize))
    case "history_ttl": return seconds(c.historyTTL)
    case "history_max_bytes": return .int(Int64(c.historyMaxBytes))
    case "presence": return .bool(c.presence)
    case "presence_ttl": return seconds(c.presenceTTL)
    case "max_presence_members": return .int(Int64(c.maxPresenceMembers))
    case "rate_limit_messages": return seconds(p.rateLimitMessages)
    case "rate_limit_burst_messages": return .int(Int64(p.rateLimitBurstMessages))
    case "rate_limit_bytes": return .int(Int64(p.rateLimitBytes))
    case "rate_limit_burst_bytes": return .int(Int64(p.rateLimitBurstBytes))
    case "rate_limit_strikes": return .int(Int64(p.rateLimitStrikes))
    case "max_connections_per_ip_rate": return seconds(p.maxConnectionsPerIPRate)
    case "max_connections_per_ip_rate_burst": return .int(Int64(p.maxConnectionsPerIPRateBurst))
    case "max_connections_per_ip": return .int(Int64(p.maxConnectionsPerIP))
    case "max_connections_per_user": return .int(Int64(p.maxConnectionsPerUser))
    case "max_tracked_ips": return .int(Int64(p.maxTrackedIPs))
    case "max_failed_handshakes_per_ip_rate": return seconds(p.maxFailedHandshakesPerIPRate)
    case "max_failed_handshakes_per_ip_burst": return .int(Int64(p.maxFailedHandshakesPerIPBurst))
    case "trusted_proxies": return .some(unset(p.trustedProxies))
    case "allowed_origins": return .some(unset(p.allowedOrigins))
    case "require_origin": return .bool(p.requireOrigin)
    case "subprotocols": return .some(unset(p.subprotocols))
    case "subprotocol_required": return .bool(p.subprotocolRequired)
    default: return nil
    }
}

/// Settings a value of `key` needs beside it to be accepted (the cross-key rules).
private func companions(_ key: String, _ value: Int64) -> [String: JSONValue] {
    switch key {
    case "max_partial_bytes": return ["max_message_size": .int(16)]
    case "rate_limit_burst_messages": return value > 0 ? ["rate_limit_messages": .int(1)] : [:]
    case "rate_limit_burst_bytes": return value > 0 ? ["rate_limit_bytes": .int(1)] : [:]
    case "max_connections_per_ip_rate_burst": return value > 0 ? ["max_connections_per_ip_rate": .int(1)] : [:]
    case "port": return ["admin_port": .int(value == 1 ? 2 : 1)]
    default: return [:]
    }
}

private func accepts(_ object: [String: JSONValue]) -> ConfigurationError? {
    do {
        _ = try EngineConfiguration(json: .object(object))
        return nil
    } catch {
        return error
    }
}

@Suite("ConfigSchema")
struct ConfigSchemaTests {
    @Test func keysAreUniqueAndAreExactlyTheAcceptedOnes() {
        let keys = ConfigSchema.settings.map(\.key)
        #expect(Set(keys).count == keys.count)
        #expect(EngineConfiguration.keys == Set(keys))
        #expect(accepts(["no_such_setting": .int(1)])?.key == "no_such_setting")
    }

    @Test func defaultsAreTheEngineDefaults() {
        for s in ConfigSchema.settings {
            guard let actual = engineDefault(s.key) else {
                Issue.record("\(s.key): no engineDefault case (add it to this test)")
                continue
            }
            let expected: JSONValue? = s.defaultValue == .null ? nil : s.defaultValue
            #expect(actual == expected, "\(s.key)")
        }
    }

    @Test func everyDefaultIsAcceptedAsAValue() {
        var object: [String: JSONValue] = [:]
        // admin_host given explicitly needs admin_port (whose default is unset).
        for s in ConfigSchema.settings where s.defaultValue != .null && s.key != "admin_host" { object[s.key] = s.defaultValue }
        #expect(accepts(object) == nil)
    }

    @Test func intRangesAreTheReaderRanges() {
        for s in ConfigSchema.settings where s.kind == .int {
            let lo = Int64(s.minimum!), hi = Int64(s.maximum!)
            for ok in [lo, hi] {
                var o = companions(s.key, ok)
                o[s.key] = .int(ok)
                #expect(accepts(o) == nil, "\(s.key)=\(ok)")
            }
            for bad in [lo - 1, hi + 1] {
                var o = companions(s.key, bad)
                o[s.key] = .int(bad)
                let error = accepts(o)
                #expect(error?.key == s.key, "\(s.key)=\(bad)")
                #expect(error?.problem == "must be in \(lo)...\(hi), got \(bad)", "\(s.key)")
            }
            #expect(accepts([s.key: .string("1")])?.key == s.key)
        }
    }

    @Test func durationAndRateBounds() {
        for s in ConfigSchema.settings where s.kind == .seconds || s.kind == .rate {
            let max = s.maximum!
            // idle_timeout must be at least ping_interval.
            let pair: [String: JSONValue] = s.key == "ping_interval" ? ["idle_timeout": .double(max)]
                : s.key == "idle_timeout" ? ["ping_interval": .int(1)] : [:]
            #expect(accepts(pair.merging([s.key: .double(max)]) { $1 }) == nil, "\(s.key)")
            #expect(accepts([s.key: .double(max * 2)])?.key == s.key, "\(s.key)")
            #expect(accepts([s.key: .double(-1)])?.key == s.key, "\(s.key)")
            #expect(accepts([s.key: .bool(true)])?.key == s.key, "\(s.key)")
            let zeroOK = s.kind == .rate || s.zeroAllowed
            #expect((accepts([s.key: .int(0)]) == nil) == zeroOK, "\(s.key)")
            if let min = s.minimum, min > 0 {
                #expect(accepts([s.key: .double(min / 2)])?.key == s.key, "\(s.key)")
            }
        }
    }

    @Test func logLevelIsAChoiceFromTheSchema() throws {
        let s = ConfigSchema.setting("log_level")
        #expect(s.kind == .choice && s.choices.contains("debug"))
        for level in s.choices {
            #expect(try EngineConfiguration(json: .object(["log_level": .string(level)])).logLevel == level)
        }
        #expect(accepts(["log_level": .string("loud")])?.key == "log_level")
    }

    @Test func exportedJSONCarriesEverySetting() throws {
        let parsed = try JSONParser.parse(ConfigSchema.json)
        let entries = try #require(parsed.arrayValue)
        #expect(entries.count == ConfigSchema.settings.count)
        for (entry, s) in zip(entries, ConfigSchema.settings) {
            #expect(entry["key"]?.stringValue == s.key)
            #expect(entry["type"]?.stringValue == s.kind.rawValue)
            #expect(entry["default"] == s.defaultValue)
            #expect(entry["nullable"]?.boolValue == s.nullable)
            #expect(entry["doc"]?.stringValue?.isEmpty == false, "\(s.key)")
            if s.kind == .int {
                #expect(entry["min"]?.int64Value == Int64(s.minimum!) && entry["max"]?.int64Value == Int64(s.maximum!))
            }
        }
    }
}
