// The JSON data of the events the engine hands to the application (wavelane.h, WL_EV_*; Python's
// `*Data` TypedDicts), and of the engine's log records. Beside `ServerMessage` (what goes to
// clients) this is the one place such JSON is written; every builder appends through `JSONWriter`.

public enum EventJSON {
    /// WL_EV_CONNECT: `{"user","addr","path","subprotocol","query","headers":{..},"claims":{..}}`.
    /// `claims` is already-serialized JSON (the verified token's payload, `{}` without one).
    public static func connect(user: String?, addr: String, path: String, subprotocol: String?, query: String,
                               headers: [(name: String, value: String)], claims: [UInt8]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"user":"#.utf8)
        appendOptional(user, to: &out)
        out.append(contentsOf: #","addr":"#.utf8)
        JSONWriter.appendString(addr, to: &out)
        out.append(contentsOf: #","path":"#.utf8)
        JSONWriter.appendString(path, to: &out)
        out.append(contentsOf: #","subprotocol":"#.utf8)
        appendOptional(subprotocol, to: &out)
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

    /// WL_EV_SUBSCRIBE_REQUEST: `{"topics":[exact..],"patterns":[globs..],"id":..}`.
    public static func subscribeRequest(topics: [String], id: JSONValue?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"topics":"#.utf8)
        appendStrings(topics.filter { !Topic.isPattern($0) }, to: &out)
        out.append(contentsOf: #","patterns":"#.utf8)
        appendStrings(topics.filter(Topic.isPattern), to: &out)
        out.append(contentsOf: #","id":"#.utf8)
        (id ?? .null).write(into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// WL_EV_RPC: `{"method":..,"params":..,"id":..}`.
    public static func rpc(method: String, params: JSONValue?, id: JSONValue) -> [UInt8] {
        var out: [UInt8] = Array(#"{"method":"#.utf8)
        JSONWriter.appendString(method, to: &out)
        out.append(contentsOf: #","params":"#.utf8)
        (params ?? .null).write(into: &out)
        out.append(contentsOf: #","id":"#.utf8)
        id.write(into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// WL_EV_CLUSTER: `{"redis":"connected"|"disconnected","reason":..,"undelivered":n}`.
    public static func cluster(connected: Bool, reason: String?, undelivered: Int) -> [UInt8] {
        var out: [UInt8] = Array(#"{"redis":"#.utf8)
        JSONWriter.appendString(connected ? "connected" : "disconnected", to: &out)
        out.append(contentsOf: #","reason":"#.utf8)
        appendOptional(reason, to: &out)
        out.append(contentsOf: #","undelivered":"#.utf8)
        JSONWriter.appendInt(Int64(undelivered), to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// WL_EV_DROPPED: `{"count":n,"bytes":n,"priority":{"low":n,..}}` (priorities with drops only).
    public static func dropped(count: Int, bytes: Int, byPriority: [(name: String, count: Int)]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"count":"#.utf8)
        JSONWriter.appendInt(Int64(count), to: &out)
        out.append(contentsOf: #","bytes":"#.utf8)
        JSONWriter.appendInt(Int64(bytes), to: &out)
        out.append(contentsOf: #","priority":{"#.utf8)
        var first = true
        for p in byPriority where p.count > 0 {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONWriter.appendString(p.name, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.appendInt(Int64(p.count), to: &out)
        }
        out.append(contentsOf: "}}".utf8)
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

    private static func appendOptional(_ s: String?, to out: inout [UInt8]) {
        if let s { JSONWriter.appendString(s, to: &out) } else { out.append(contentsOf: "null".utf8) }
    }

    private static func appendStrings(_ list: [String], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (i, s) in list.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(s, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }
}
