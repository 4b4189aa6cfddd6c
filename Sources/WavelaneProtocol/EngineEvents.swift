/// The JSON bodies of events the engine hands to the application (rpc, subscribe_request, refresh,
/// dropped, connect, cluster) and the server messages built from them: part of the one `ServerMessage` builder.
extension ServerMessage {
    /// An `rpc` event: `{"method":..,"params":..,"id":..}` (params null when absent).
    public static func rpcEvent(method: String, params: JSONValue?, id: JSONValue) -> [UInt8] {
        var out: [UInt8] = Array(#"{"method":"#.utf8)
        JSONWriter.appendString(method, to: &out)
        out.append(contentsOf: #","params":"#.utf8)
        (params ?? .null).write(into: &out)
        out.append(contentsOf: #","id":"#.utf8)
        id.write(into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A `subscribe_request` event: `{"topics":[exact..],"patterns":[globs..],"id":..}`, in the
    /// request's order (id null when absent).
    public static func subscribeRequestEvent(topics: [String], id: JSONValue?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"topics":["#.utf8)
        var first = true
        for t in topics where !Topic.isPattern(t) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONWriter.appendString(t, to: &out)
        }
        out.append(contentsOf: #"],"patterns":["#.utf8)
        first = true
        for t in topics where Topic.isPattern(t) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONWriter.appendString(t, to: &out)
        }
        out.append(contentsOf: #"],"id":"#.utf8)
        (id ?? .null).write(into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A `refresh` event: `{"claims":<the verified token's claims, raw JSON>}`.
    public static func refreshEvent(claimsJSON: String) -> [UInt8] {
        var out: [UInt8] = Array(#"{"claims":"#.utf8)
        out.append(contentsOf: claimsJSON.utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A `dropped` event: `{"count":N,"bytes":N,"priority":{"low":N,..}}` (priorities with drops only).
    public static func droppedEvent(_ dropped: SendQueue.Dropped) -> [UInt8] {
        var out: [UInt8] = Array(#"{"count":\#(dropped.count),"bytes":\#(dropped.bytes),"priority":{"#.utf8)
        var first = true
        for p in Priority.allCases where dropped.byPriority[Int(p.rawValue)] > 0 {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(contentsOf: "\"\(p.name)\":\(dropped.byPriority[Int(p.rawValue)])".utf8)
        }
        out.append(contentsOf: "}}".utf8)
        return out
    }

    /// The error told once when a topic's presence is full: subscribed, but not a member.
    /// `{"type":"error","code":"presence_full","topic":..,"message":..}`.
    public static func presenceFull(topic: String, maxMembers: Int) -> [UInt8] {
        let message = "presence of \(topic) is full (max_presence_members \(maxMembers)): subscribed without presence"
        var out: [UInt8] = Array(#"{"type":"error","code":"presence_full","topic":"#.utf8)
        JSONWriter.appendString(topic, to: &out)
        out.append(contentsOf: #","message":"#.utf8)
        JSONWriter.appendString(message, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

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

    private static func appendStringOrNull(_ value: String?, to out: inout [UInt8]) {
        if let value { JSONWriter.appendString(value, to: &out) } else { out.append(contentsOf: "null".utf8) }
    }
}
