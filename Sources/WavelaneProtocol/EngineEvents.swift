/// The JSON bodies of events the engine hands to the application (connect, rpc, subscribe_request,
/// refresh, dropped, cluster; wavelane.h WL_EV_*, Python's `*Data` TypedDicts), the engine's log
/// records, and the server messages built from them: part of the one `ServerMessage` builder.
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

    /// WL_EV_CONNECT: `{"user","addr","path","subprotocol","query","headers":{..},"claims":{..}}`.
    /// `claims` is already-serialized JSON (the verified token's payload, `{}` without one).
    public static func connectEvent(user: String?, addr: String, path: String, subprotocol: String?, query: String,
                               headers: [(name: String, value: String)], claims: [UInt8]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"user":"#.utf8)
        appendOptionalString(user, to: &out)
        out.append(contentsOf: #","addr":"#.utf8)
        JSONWriter.appendString(addr, to: &out)
        out.append(contentsOf: #","path":"#.utf8)
        JSONWriter.appendString(path, to: &out)
        out.append(contentsOf: #","subprotocol":"#.utf8)
        appendOptionalString(subprotocol, to: &out)
        out.append(contentsOf: #","query":"#.utf8)
        JSONWriter.appendString(query, to: &out)
        out.append(contentsOf: #","headers":{"#.utf8)
        for (i, header) in headers.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(header.name, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.appendString(header.value, to: &out)
        }
        out.append(contentsOf: #"},"claims":"#.utf8)
        out.append(contentsOf: claims)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// WL_EV_CLUSTER: `{"redis":"connected"|"disconnected","reason":..,"undelivered":n}`.
    public static func clusterEvent(connected: Bool, reason: String?, undelivered: Int) -> [UInt8] {
        var out: [UInt8] = Array(#"{"redis":"#.utf8)
        JSONWriter.appendString(connected ? "connected" : "disconnected", to: &out)
        out.append(contentsOf: #","reason":"#.utf8)
        appendOptionalString(reason, to: &out)
        out.append(contentsOf: #","undelivered":"#.utf8)
        JSONWriter.appendInt(Int64(undelivered), to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// One engine log record as a JSON line: `{"level","time","message","metadata":{..}}\n`
    /// (metadata keys sorted, values as strings).
    public static func logRecord(level: String, time: Double, message: String, metadata: [(key: String, value: String)]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"level":"#.utf8)
        JSONWriter.appendString(level, to: &out)
        out.append(contentsOf: #","time":"#.utf8)
        out.append(contentsOf: String(time).utf8)
        out.append(contentsOf: #","message":"#.utf8)
        JSONWriter.appendString(message, to: &out)
        out.append(contentsOf: #","metadata":{"#.utf8)
        for (i, field) in metadata.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(field.key, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.appendString(field.value, to: &out)
        }
        out.append(contentsOf: "}}\n".utf8)
        return out
    }

    fileprivate static func appendOptionalString(_ s: String?, to out: inout [UInt8]) {
        if let s { JSONWriter.appendString(s, to: &out) } else { out.append(contentsOf: "null".utf8) }
    }
}
