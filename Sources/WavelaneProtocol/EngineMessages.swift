// The engine's own JSON documents, beside the client messages of `ServerMessage` (Envelope.swift):
// the events handed to the application (connect, cluster) and the HTTP endpoints' bodies
// (/health, POST /publish, errors). Built the same way, never concatenated at the call site.

extension ServerMessage {
    /// The `connect` event for the application: `{"user","addr","path","subprotocol","query",
    /// "headers":{name: value},"claims"}`. `claims` is a JSON object (or null) already serialized.
    public static func connectEvent(user: String?, addr: String, path: String, subprotocol: String?, query: String,
                                    headers: [(name: String, value: String)], claims: String) -> [UInt8] {
        var out: [UInt8] = Array(#"{"user":"#.utf8)
        appendStringOrNull(user, to: &out)
        out.append(contentsOf: #","addr":"#.utf8)
        JSONWriter.appendString(addr, to: &out)
        out.append(contentsOf: #","path":"#.utf8)
        JSONWriter.appendString(path, to: &out)
        out.append(contentsOf: #","subprotocol":"#.utf8)
        appendStringOrNull(subprotocol, to: &out)
        out.append(contentsOf: #","query":"#.utf8)
        JSONWriter.appendString(query, to: &out)
        out.append(contentsOf: #","headers":{"#.utf8)
        for (i, header) in headers.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(header.name, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.appendString(header.value, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        out.append(contentsOf: #","claims":"#.utf8)
        out.append(contentsOf: claims.utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The `cluster` event for the application: `{"redis":"connected"|"disconnected","reason":..,"undelivered":n}`
    /// (`reason` null while connected).
    public static func clusterEvent(connected: Bool, reason: String?, undelivered: Int) -> [UInt8] {
        var out: [UInt8] = Array(#"{"redis":"#.utf8)
        JSONWriter.appendString(connected ? "connected" : "disconnected", to: &out)
        out.append(contentsOf: #","reason":"#.utf8)
        appendStringOrNull(reason, to: &out)
        out.append(contentsOf: #","undelivered":"#.utf8)
        out.append(contentsOf: String(undelivered).utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }

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

    private static func appendStringOrNull(_ value: String?, to out: inout [UInt8]) {
        if let value { JSONWriter.appendString(value, to: &out) } else { out.append(contentsOf: "null".utf8) }
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
