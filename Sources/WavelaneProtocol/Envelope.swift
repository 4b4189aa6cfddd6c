import NIOCore
import NIOWebSocket

/// A control message a client sent to the engine (docs/protocol.md, "Client to server").
/// Every other frame belongs to the application.
public enum ClientControl: Equatable, Sendable {
    case subscribe(topics: [String], id: JSONValue?, options: SubscribeOptions = SubscribeOptions())
    case unsubscribe(topics: [String], id: JSONValue?)
    case ping(id: JSONValue?)
    /// Who is subscribed to `topic` (needs presence on the server).
    case presence(topic: String, id: JSONValue?)
    /// A new token for this connection (same `sub`), to move its expiry.
    case refresh(token: String, id: JSONValue?)
    /// A remote procedure call for the application: `{"type":"rpc","method":..,"params":..,"id":..}`.
    /// The application answers with a `reply` carrying the same `id`.
    case rpc(method: String, params: JSONValue?, id: JSONValue)
    /// A control message of a known type that is malformed: answer with an error.
    case invalid(message: String, id: JSONValue?)

    /// Control messages are small; larger text frames are never inspected.
    public static let maxSize = 65536
    /// Longest RPC method name, in UTF-8 bytes.
    public static let maxMethodLength = 256

    /// Recognises a control message in a text frame, or returns nil when the frame is the app's.
    /// Cheap for app traffic: only text that starts with `{` and passes `mayBeControl` (a `"type"`
    /// and a control name in its bytes) is parsed.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> ClientControl? {
        guard bytes.count >= 10, bytes.count <= maxSize else { return nil }
        var i = 0
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { return nil }
        guard mayBeControl(bytes) else { return nil }
        guard let value = try? JSONParser.parse(bytes), case .object(let object) = value,
              let type = object["type"]?.stringValue else { return nil }
        let id = object["id"]
        switch type {
        case "ping":
            return .ping(id: id)
        case "refresh":
            guard let token = object["token"]?.stringValue, !token.isEmpty else {
                return .invalid(message: "refresh needs \"token\": a string", id: id)
            }
            return .refresh(token: token, id: id)
        case "rpc":
            guard let id, id != .null else {
                return .invalid(message: "rpc needs an \"id\" (any JSON value but null) to match its reply", id: nil)
            }
            guard let method = object["method"]?.stringValue, !method.isEmpty,
                  method.utf8.count <= maxMethodLength else {
                return .invalid(message: "rpc needs \"method\": a string of 1 to \(maxMethodLength) bytes", id: id)
            }
            let params = object["params"]
            return .rpc(method: method, params: params == .null ? nil : params, id: id)
        case "presence":
            guard let topic = object["topic"]?.stringValue else {
                return .invalid(message: "presence needs \"topic\": a string", id: id)
            }
            return .presence(topic: topic, id: id)
        case "subscribe", "unsubscribe":
            let topics: [String]
            if let list = object["topics"]?.arrayValue {
                var names: [String] = []
                names.reserveCapacity(list.count)
                for item in list {
                    guard let name = item.stringValue else { return .invalid(message: "topics must be strings", id: id) }
                    names.append(name)
                }
                topics = names
            } else if let one = object["topic"]?.stringValue {
                topics = [one]
            } else {
                return .invalid(message: "\(type) needs \"topics\": a list of strings", id: id)
            }
            if topics.isEmpty { return .invalid(message: "topics is empty", id: id) }
            guard type == "subscribe" else { return .unsubscribe(topics: topics, id: id) }
            var options = SubscribeOptions()
            if let presence = object["presence"], presence != .null {
                guard let flag = presence.boolValue else { return .invalid(message: "presence must be true or false", id: id) }
                options.presence = flag
            }
            if let history = object["history"], history != .null {
                guard case .int(let n) = history, n >= 0, n <= SubscribeOptions.maxHistory else {
                    return .invalid(message: "history must be an integer from 0 to \(SubscribeOptions.maxHistory)", id: id)
                }
                options.history = Int(n)
            }
            if let recover = object["recover"], recover != .null {
                guard case .object(let entries) = recover else {
                    return .invalid(message: "recover must be an object: {topic: {\"epoch\": .., \"offset\": ..}}", id: id)
                }
                for (topic, position) in entries {
                    guard topics.contains(topic) else {
                        return .invalid(message: "recover names a topic that is not in topics: \(topic)", id: id)
                    }
                    guard case .object(let fields) = position, let epoch = fields["epoch"]?.stringValue,
                          case .int(let offset)? = fields["offset"], offset >= 0 else {
                        return .invalid(message: "recover.\(topic) must be {\"epoch\": string, \"offset\": integer >= 0}", id: id)
                    }
                    options.recover[topic] = StreamPosition(epoch: epoch, offset: UInt64(offset))
                }
            }
            return .subscribe(topics: topics, id: id, options: options)
        default:
            return nil
        }
    }

    /// False only when `parse` cannot find a control message in these bytes, decided in one scan
    /// without parsing: a control message has a key `"type"` (the bytes `"type"`, as `parse` has
    /// always required) whose string value is a control name. A JSON string equals a name made of
    /// ASCII letters only if its raw bytes are that name in quotes or it uses a `\u` escape (the
    /// other escapes decode to non-letters), so the bytes must also hold a quoted control name or
    /// a `\u`. Where the names and `"type"` sit (nested, as values, duplicated) is left to the
    /// parser: this only has to be true whenever `parse` could succeed, and cheap for app messages
    /// like `{"type":"chat",..}`, which it is when they hold no `\u` and no quoted control name.
    public static func mayBeControl(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let n = bytes.count
        var sawType = false
        var sawName = false
        var i = 0
        while i < n {
            let b = bytes[i]
            if b == 0x5C {  // backslash
                if i + 1 < n, bytes[i + 1] == 0x75 { sawName = true }  // \u
            } else if b == 0x22, i + 1 < n {  // a quote: what follows?
                switch bytes[i + 1] {
                case 0x74: if !sawType && matches(bytes, i + 1, "type\"") { sawType = true }
                case 0x70: if !sawName && (matches(bytes, i + 1, "ping\"") || matches(bytes, i + 1, "presence\"")) { sawName = true }
                case 0x72: if !sawName && (matches(bytes, i + 1, "rpc\"") || matches(bytes, i + 1, "refresh\"")) { sawName = true }
                case 0x73: if !sawName && matches(bytes, i + 1, "subscribe\"") { sawName = true }
                case 0x75: if !sawName && matches(bytes, i + 1, "unsubscribe\"") { sawName = true }
                default: break
                }
            }
            if sawType && sawName { return true }
            i += 1
        }
        return false
    }

    @inline(__always)
    private static func matches(_ bytes: UnsafeRawBufferPointer, _ at: Int, _ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard at + count <= bytes.count else { return false }
        let p = literal.utf8Start
        for k in 0..<count where bytes[at + k] != p[k] { return false }
        return true
    }
}

/// A place in a topic's stream: the stream's epoch and the offset of a publication in it.
public struct StreamPosition: Equatable, Hashable, Sendable {
    public var epoch: String
    public var offset: UInt64
    public init(epoch: String, offset: UInt64) {
        self.epoch = epoch
        self.offset = offset
    }
}

/// Extras of a client's subscribe request.
public struct SubscribeOptions: Equatable, Sendable {
    /// Topics to recover: the position of the last publication the client saw.
    public var recover: [String: StreamPosition] = [:]
    /// Receive join/leave events for the subscribed (exact) topics.
    public var presence = false
    /// Backlog: the last (at most) this many retained publications of each exact topic that is not
    /// recovered, sent after `subscribed` and before the live ones (needs history on the server).
    public var history = 0
    /// Largest `history` a client may ask for.
    public static let maxHistory = 100_000
    public init() {}
}

/// How a subscribe request's stream positions came out, for the `subscribed` reply.
public struct SubscribeOutcome: Sendable {
    public var positions: [(topic: String, position: StreamPosition)] = []
    public var recovered: [(topic: String, ok: Bool)] = []
    public var errors: [(topic: String, reason: String)] = []
    public init() {}
}

/// Server-to-client JSON messages (docs/protocol.md, "Server to client").
public enum ServerMessage {
    /// The `code` and `message` of a refused subscription request when the application gives none
    /// (`wl_deny`, Python's `deny()`).
    public static let defaultDenyCode = "forbidden"
    public static let defaultDenyMessage = "subscription denied"

    /// `exp`: the token's expiry (Unix seconds), when it has one.
    public static func ready(conn: UInt64, user: String?, server: String, heartbeat: Double, epoch: String,
                             maxMessageSize: Int, exp: Double? = nil) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160)
        out.append(contentsOf: #"{"type":"ready","conn":""#.utf8)
        out.append(contentsOf: String(conn).utf8)
        out.append(contentsOf: #"","user":"#.utf8)
        if let user { JSONWriter.appendString(user, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","server":"#.utf8)
        JSONWriter.appendString(server, to: &out)
        out.append(contentsOf: #","heartbeat":"#.utf8)
        out.append(contentsOf: formatNumber(heartbeat).utf8)
        out.append(contentsOf: #","epoch":"#.utf8)
        JSONWriter.appendString(epoch, to: &out)
        out.append(contentsOf: #","max_message_size":"#.utf8)
        out.append(contentsOf: String(maxMessageSize).utf8)
        if let exp, exp.isFinite {
            out.append(contentsOf: #","exp":"#.utf8)
            out.append(contentsOf: formatNumber(exp).utf8)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `{"type":"refreshed","exp":<Unix seconds or null>,"id":..}`; `id` is omitted when nil.
    public static func refreshed(exp: Double?, id: JSONValue?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"type":"refreshed","exp":"#.utf8)
        if let exp, exp.isFinite { out.append(contentsOf: formatNumber(exp).utf8) } else { out.append(contentsOf: "null".utf8) }
        appendID(id, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `{"type":"subscribed"|"unsubscribed","topics":[..],"id":..}`; `id` is omitted when nil.
    public static func ack(_ type: String, topics: [String], id: JSONValue?) -> [UInt8] {
        var out: [UInt8] = []
        out.append(contentsOf: #"{"type":"#.utf8)
        JSONWriter.appendString(type, to: &out)
        out.append(contentsOf: #","topics":["#.utf8)
        for (i, t) in topics.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(t, to: &out)
        }
        out.append(UInt8(ascii: "]"))
        appendID(id, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `subscribed` with stream positions and recovery results:
    /// `{"type":"subscribed","topics":[..],"id":..,"positions":{t:{"epoch":..,"offset":..}},
    /// "recovered":{t:bool},"recovery_errors":{t:reason}}` (empty maps are left out).
    public static func subscribed(topics: [String], id: JSONValue?, outcome: SubscribeOutcome) -> [UInt8] {
        var out = Self.ack("subscribed", topics: topics, id: id)
        out.removeLast()  // "}"
        appendTopicMap("positions", outcome.positions.map { ($0.topic, $0.position) }, to: &out) { position, out in
            out.append(contentsOf: #"{"epoch":"#.utf8)
            JSONWriter.appendString(position.epoch, to: &out)
            out.append(contentsOf: #","offset":"#.utf8)
            out.append(contentsOf: String(position.offset).utf8)
            out.append(UInt8(ascii: "}"))
        }
        appendTopicMap("recovered", outcome.recovered.map { ($0.topic, $0.ok) }, to: &out) { ok, out in
            out.append(contentsOf: (ok ? "true" : "false").utf8)
        }
        appendTopicMap("recovery_errors", outcome.errors.map { ($0.topic, $0.reason) }, to: &out) { reason, out in
            JSONWriter.appendString(reason, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `,"name":{topic:value,...}` for per-topic entries; nothing when there are none.
    private static func appendTopicMap<Value>(_ name: String, _ entries: [(String, Value)], to out: inout [UInt8],
                                              value: (Value, inout [UInt8]) -> Void) {
        guard !entries.isEmpty else { return }
        out.append(UInt8(ascii: ","))
        JSONWriter.appendString(name, to: &out)
        out.append(contentsOf: ":{".utf8)
        for (i, (topic, v)) in entries.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(topic, to: &out)
            out.append(UInt8(ascii: ":"))
            value(v, &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// `{"type":"presence","topic":..,"members":[..],"id":..}`; members are JSON objects.
    public static func presence(topic: String, members: [[UInt8]], id: JSONValue?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"type":"presence","topic":"#.utf8)
        JSONWriter.appendString(topic, to: &out)
        out.append(contentsOf: #","members":["#.utf8)
        for (i, m) in members.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: m)
        }
        out.append(UInt8(ascii: "]"))
        appendID(id, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A presence member: `{"user":..,"conn":"17","node":..,"info":..}` (`info` is raw JSON or null).
    public static func member(user: String?, conn: UInt64, node: String, info: [UInt8]?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"user":"#.utf8)
        if let user { JSONWriter.appendString(user, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","conn":""#.utf8)
        out.append(contentsOf: String(conn).utf8)
        out.append(contentsOf: #"","node":"#.utf8)
        JSONWriter.appendString(node, to: &out)
        out.append(contentsOf: #","info":"#.utf8)
        if let info { out.append(contentsOf: info) } else { out.append(contentsOf: "null".utf8) }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `{"type":"join"|"leave","topic":..,"member":{..}}`.
    public static func presenceEvent(_ type: String, topic: String, member: [UInt8]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"type":"#.utf8)
        JSONWriter.appendString(type, to: &out)
        out.append(contentsOf: #","topic":"#.utf8)
        JSONWriter.appendString(topic, to: &out)
        out.append(contentsOf: #","member":"#.utf8)
        out.append(contentsOf: member)
        out.append(UInt8(ascii: "}"))
        return out
    }

    public static func pong(id: JSONValue?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"type":"pong""#.utf8)
        appendID(id, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    public static func error(code: String, message: String, id: JSONValue?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"type":"error","code":"#.utf8)
        JSONWriter.appendString(code, to: &out)
        out.append(contentsOf: #","message":"#.utf8)
        JSONWriter.appendString(message, to: &out)
        appendID(id, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    private static func appendID(_ id: JSONValue?, to out: inout [UInt8]) {
        guard let id else { return }
        out.append(contentsOf: #","id":"#.utf8)
        id.write(into: &out)
    }

    static func formatNumber(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

/// How a publication's payload is carried.
public enum PayloadKind: Int32, Sendable {
    /// UTF-8 text: a JSON string in the envelope.
    case text = 0
    /// An already-serialized JSON value: inlined in the envelope.
    case json = 1
    /// Bytes: the binary hot lane.
    case binary = 2
}

/// Topic publications as complete WebSocket frames, encoded once per publication.
public enum TopicEnvelope {
    /// Binary hot-lane layout version (byte 0) and kind (byte 1).
    public static let binaryVersion: UInt8 = 1
    public static let binaryKindTopicMessage: UInt8 = 1

    /// The complete frame for one publication: a text frame
    /// `{"type":"message","topic":..,"offset":..,"data":..}` for text and JSON payloads, or a
    /// binary frame `[0x01][0x01][u16 topic length][topic][u64 offset][payload]` for bytes.
    public static func frame(topic: String, offset: UInt64, kind: PayloadKind, payload: UnsafeRawBufferPointer,
                             allocator: ByteBufferAllocator) -> ByteBuffer {
        switch kind {
        case .binary:
            let topicBytes = topic.utf8
            let length = 2 + 2 + topicBytes.count + 8 + payload.count
            var buffer = allocator.buffer(capacity: FrameEncoder.headerSize(payloadLength: length) + length)
            FrameEncoder.writeHeader(opcode: .binary, payloadLength: length, into: &buffer)
            buffer.writeMultipleIntegers(binaryVersion, binaryKindTopicMessage, UInt16(topicBytes.count))
            buffer.writeString(topic)
            buffer.writeInteger(offset)
            buffer.writeBytes(payload)
            return buffer
        case .text, .json:
            var head: [UInt8] = []
            head.reserveCapacity(48 + topic.utf8.count)
            head.append(contentsOf: #"{"type":"message","topic":"#.utf8)
            JSONWriter.appendString(topic, to: &head)
            head.append(contentsOf: #","offset":"#.utf8)
            head.append(contentsOf: String(offset).utf8)
            head.append(contentsOf: #","data":"#.utf8)
            if kind == .text {
                JSONWriter.appendString(utf8: payload, to: &head)
                head.append(UInt8(ascii: "}"))
                var buffer = allocator.buffer(capacity: FrameEncoder.headerSize(payloadLength: head.count) + head.count)
                FrameEncoder.writeHeader(opcode: .text, payloadLength: head.count, into: &buffer)
                buffer.writeBytes(head)
                return buffer
            }
            let length = head.count + payload.count + 1
            var buffer = allocator.buffer(capacity: FrameEncoder.headerSize(payloadLength: length) + length)
            FrameEncoder.writeHeader(opcode: .text, payloadLength: length, into: &buffer)
            buffer.writeBytes(head)
            buffer.writeBytes(payload)
            buffer.writeInteger(UInt8(ascii: "}"))
            return buffer
        }
    }
}
