// The engine's reports, beside the client messages of `ServerMessage` (Envelope.swift) and the
// application events (EngineEvents.swift): the HTTP endpoints' bodies (/health, POST /publish,
// errors) and the counters of `stats()`. Built the same way, never concatenated at the call site.

extension ServerMessage {
    /// GET /health: `{"status","connections","inbound_queue"[,"redis"]}` (`redis` only with a Redis link).
    public static func health(status: String, connections: Int, inboundQueue: Int, redis: String?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"status":"#.utf8)
        JSONWriter.appendString(status, to: &out)
        out.append(contentsOf: #","connections":"#.utf8)
        out.append(contentsOf: String(connections).utf8)
        out.append(contentsOf: #","inbound_queue":"#.utf8)
        out.append(contentsOf: String(inboundQueue).utf8)
        if let redis {
            out.append(contentsOf: #","redis":"#.utf8)
            JSONWriter.appendString(redis, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// POST /publish's answer: `{"offset":n}`.
    public static func published(offset: UInt64) -> [UInt8] {
        Array(#"{"offset":\#(offset)}"#.utf8)
    }

    /// An HTTP endpoint's error body: `{"error":".."}`.
    public static func httpError(_ message: String) -> [UInt8] {
        var out: [UInt8] = Array(#"{"error":"#.utf8)
        JSONWriter.appendString(message, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }
}

extension ServerMessage {
    /// Counters as one JSON object, in the order given (`Server.stats()`).
    public static func counters(_ fields: [(name: String, value: Int)]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (i, field) in fields.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(field.name, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: String(field.value).utf8)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
