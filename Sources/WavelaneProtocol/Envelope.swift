import NIOCore
import NIOWebSocket

/// A control message a client sent to the engine (docs/protocol.md, "Client to server").
/// Every other frame belongs to the application.
public enum ClientControl: Equatable, Sendable {
    case subscribe(topics: [String], id: JSONValue?)
    case unsubscribe(topics: [String], id: JSONValue?)
    case ping(id: JSONValue?)
    /// A control message of a known type that is malformed: answer with an error.
    case invalid(message: String, id: JSONValue?)

    /// Control messages are small; larger text frames are never inspected.
    public static let maxSize = 65536

    /// Recognises a control message in a text frame, or returns nil when the frame is the app's.
    /// Cheap for app traffic: only text that starts with `{` and mentions `"type"` is parsed.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> ClientControl? {
        guard bytes.count >= 10, bytes.count <= maxSize else { return nil }
        var i = 0
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { return nil }
        guard containsTypeKey(bytes) else { return nil }
        guard let value = try? JSONParser.parse(bytes), case .object(let object) = value,
              let type = object["type"]?.stringValue else { return nil }
        let id = object["id"]
        switch type {
        case "ping":
            return .ping(id: id)
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
            return type == "subscribe" ? .subscribe(topics: topics, id: id) : .unsubscribe(topics: topics, id: id)
        default:
            return nil
        }
    }

    private static func containsTypeKey(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // Looks for the six bytes "type" (with quotes).
        let n = bytes.count
        var i = 0
        while i + 6 <= n {
            if bytes[i] == 0x22, bytes[i + 1] == 0x74, bytes[i + 2] == 0x79, bytes[i + 3] == 0x70,
               bytes[i + 4] == 0x65, bytes[i + 5] == 0x22 {
                return true
            }
            i += 1
        }
        return false
    }
}

/// Server-to-client JSON messages (docs/protocol.md, "Server to client").
public enum ServerMessage {
    public static func ready(conn: UInt64, user: String?, server: String, heartbeat: Double, epoch: String,
                             maxMessageSize: Int) -> [UInt8] {
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
