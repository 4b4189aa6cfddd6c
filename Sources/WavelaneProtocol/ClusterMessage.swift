import NIOCore

/// What one Wavelane instance publishes to the others through Redis (docs/delivery.md).
///
/// A Redis message is `<offset>:<epoch>:<body>`. The instance that publishes sends only the body;
/// the Lua script that assigns the topic's next offset in Redis prefixes offset and epoch, so every
/// instance (and the topic's history) sees the same numbering. User messages carry no sequence:
/// `0::<body>`. The body is binary:
///
/// ```
/// [u8 version = 1][u8 payload kind][u8 priority][u16 key length][key][payload]
/// ```
///
/// A message for one connection of another instance (`send` with `node`, on that instance's
/// channel) is unsequenced too and names the connection in a field of its own, after version 3:
///
/// ```
/// 0::[u8 version = 3][u64 connection id][u8 payload kind][u8 priority][u16 key length][key][payload]
/// ```
public struct ClusterMessage: Equatable, Sendable {
    public static let version: UInt8 = 1
    /// The version byte of a message for one connection (`conn`).
    public static let directVersion: UInt8 = 3

    public var offset: UInt64
    public var epoch: String
    /// For a message to one connection of another instance: that connection's id; else nil.
    public var conn: UInt64?
    public var kind: PayloadKind
    public var priority: Priority
    /// Latest-state-wins coalescing key, or nil.
    public var key: String?
    public var payload: ByteBuffer

    public init(offset: UInt64, epoch: String, conn: UInt64? = nil, kind: PayloadKind, priority: Priority, key: String?,
                payload: ByteBuffer) {
        self.offset = offset
        self.epoch = epoch
        self.conn = conn
        self.kind = kind
        self.priority = priority
        self.key = key
        self.payload = payload
    }

    /// Most bytes of a coalescing key.
    public static let maxKeyLength = 1024

    /// The body an instance hands to Redis (offset and epoch are added by Redis).
    public static func body(kind: PayloadKind, priority: Priority, key: String?, payload: UnsafeRawBufferPointer,
                            allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 5 + (key?.utf8.count ?? 0) + payload.count)
        Self.writeBody(conn: nil, kind: kind, priority: priority, key: key, payload: payload, into: &buffer)
        return buffer
    }

    private static func writeBody(conn: UInt64?, kind: PayloadKind, priority: Priority, key: String?,
                                  payload: UnsafeRawBufferPointer, into buffer: inout ByteBuffer) {
        let keyBytes = key.map { Array($0.utf8.prefix(Self.maxKeyLength)) } ?? []
        if let conn {
            buffer.writeMultipleIntegers(Self.directVersion, conn)
        } else {
            buffer.writeInteger(Self.version)
        }
        buffer.writeMultipleIntegers(UInt8(truncatingIfNeeded: kind.rawValue), priority.rawValue, UInt16(keyBytes.count))
        buffer.writeBytes(keyBytes)
        buffer.writeBytes(payload)
    }

    /// A whole unsequenced message (`0::<body>`), as user messages are published.
    public static func unsequenced(kind: PayloadKind, priority: Priority, key: String?, payload: UnsafeRawBufferPointer,
                                   allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: 8 + (key?.utf8.count ?? 0) + payload.count)
        out.writeString("0::")
        Self.writeBody(conn: nil, kind: kind, priority: priority, key: key, payload: payload, into: &out)
        return out
    }

    /// A whole message for connection `conn` of another instance (`0::` + a version 3 body).
    public static func direct(conn: UInt64, kind: PayloadKind, priority: Priority, key: String?, payload: UnsafeRawBufferPointer,
                              allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: 16 + (key?.utf8.count ?? 0) + payload.count)
        out.writeString("0::")
        Self.writeBody(conn: conn, kind: kind, priority: priority, key: key, payload: payload, into: &out)
        return out
    }

    /// Commands on a user's channel, next to the user messages (`disconnect_user`). Their body starts
    /// with version byte 2, which instances that do not know commands refuse (and ignore):
    ///
    /// ```
    /// 0::[u8 2][u8 command = 1: disconnect][u16 close code][u8 node length][node][reason (UTF-8)]
    /// ```
    public enum Command: Equatable, Sendable {
        /// Close the user's connections (except on `node`, the instance that sent it).
        case disconnect(node: String, code: UInt16, reason: String)
    }

    public static let commandVersion: UInt8 = 2

    public static func disconnectCommand(node: String, code: UInt16, reason: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        // Cut on a character boundary: parseCommand refuses a reason or node that is not UTF-8.
        let nodeBytes = FrameEncoder.truncatedUTF8(node, maxBytes: 255)
        let reasonBytes = FrameEncoder.truncatedUTF8(reason, maxBytes: 123)
        var out = allocator.buffer(capacity: 8 + nodeBytes.count + reasonBytes.count)
        out.writeString("0::")
        out.writeMultipleIntegers(Self.commandVersion, UInt8(1), code, UInt8(nodeBytes.count))
        out.writeBytes(nodeBytes)
        out.writeBytes(reasonBytes)
        return out
    }

    /// The command in a message from a user's channel, or nil when it is not one (a user message).
    public static func parseCommand(_ message: ByteBuffer) -> Command? {
        var buffer = message
        guard buffer.readBytes(length: 3) == Array("0::".utf8),
              let (version, command, code, nodeLength) = buffer.readMultipleIntegers(as: (UInt8, UInt8, UInt16, UInt8).self),
              version == Self.commandVersion, command == 1,
              let nodeBytes = buffer.readBytes(length: Int(nodeLength)),
              let node = String(validating: nodeBytes, as: UTF8.self),
              let reason = String(validating: buffer.readableBytesView, as: UTF8.self) else { return nil }
        return .disconnect(node: node, code: code, reason: reason)
    }

    public enum ParseError: Error, Equatable, Sendable {
        case badOffset
        case badEpoch
        case truncated
        case unknownVersion(UInt8)
        case badKind(UInt8)
        case badPriority(UInt8)
        case badKey
    }

    /// Parses `<offset>:<epoch>:<body>`. The payload is a slice of `message` (no copy).
    public static func parse(_ message: ByteBuffer) throws(ParseError) -> ClusterMessage {
        var buffer = message
        // Offset: 1...20 decimal digits, then ':'.
        var offset: UInt64 = 0
        var digits = 0
        while true {
            guard let b = buffer.readInteger(as: UInt8.self) else { throw .badOffset }
            if b == UInt8(ascii: ":") { break }
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9"), digits < 20 else { throw .badOffset }
            let (m, o1) = offset.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(b - UInt8(ascii: "0")))
            guard !o1, !o2 else { throw .badOffset }
            offset = a
            digits += 1
        }
        guard digits > 0 else { throw .badOffset }
        // Epoch: up to 64 bytes of [0-9a-zA-Z], then ':'.
        guard let colon = buffer.readableBytesView.prefix(65).firstIndex(of: UInt8(ascii: ":")) else { throw .badEpoch }
        let epochLength = colon - buffer.readerIndex
        let epochBytes = buffer.readBytes(length: epochLength)!
        guard epochBytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) }) else {
            throw .badEpoch
        }
        buffer.moveReaderIndex(forwardBy: 1)
        guard buffer.readableBytes >= 5, let version = buffer.readInteger(as: UInt8.self) else { throw .truncated }
        var conn: UInt64? = nil
        switch version {
        case Self.version:
            break
        case Self.directVersion:
            guard let id = buffer.readInteger(as: UInt64.self) else { throw .truncated }
            conn = id
        default:
            throw .unknownVersion(version)
        }
        guard let (kindByte, priorityByte, keyLength) = buffer.readMultipleIntegers(as: (UInt8, UInt8, UInt16).self) else {
            throw .truncated
        }
        guard let kind = PayloadKind(rawValue: Int32(kindByte)) else { throw .badKind(kindByte) }
        guard let priority = Priority(rawValue: priorityByte) else { throw .badPriority(priorityByte) }
        var key: String? = nil
        if keyLength > 0 {
            guard let bytes = buffer.readBytes(length: Int(keyLength)) else { throw .truncated }
            guard let s = String(validating: bytes, as: UTF8.self) else { throw .badKey }
            key = s
        }
        return ClusterMessage(offset: offset, epoch: String(decoding: epochBytes, as: UTF8.self), conn: conn, kind: kind,
                              priority: priority, key: key, payload: buffer)
    }
}

/// Redis names for one application: every key and channel starts with `<prefix>:`.
public struct ClusterNames: Sendable, Equatable {
    public let prefix: String

    public init(prefix: String) { self.prefix = prefix }

    /// A prefix is 1...64 bytes of `[A-Za-z0-9_.:-]` (no glob characters, so patterns stay exact).
    public static func validatePrefix(_ prefix: String) -> String? {
        if prefix.isEmpty || prefix.utf8.count > 64 { return "must be 1 to 64 characters" }
        for b in prefix.utf8 {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || b == UInt8(ascii: ":") || b == UInt8(ascii: "-")
            if !ok { return "may contain only letters, digits and _ . : -" }
        }
        return nil
    }

    /// Channel carrying a topic's publications.
    public func topicChannel(_ topic: String) -> String { "\(self.prefix):t:\(topic)" }
    /// Channel carrying messages for a user's connections.
    public func userChannel(_ user: String) -> String { "\(self.prefix):u:\(user)" }
    /// Channel carrying messages for one instance's connections (`send` to a connection elsewhere).
    public func nodeChannel(_ node: String) -> String { "\(self.prefix):n:\(node)" }
    /// Channel carrying a topic's presence (join/leave) events.
    public func presenceChannel(_ topic: String) -> String { "\(self.prefix):p:\(topic)" }
    /// Hash with a topic's epoch (`e`) and last offset (`o`).
    public func metaKey(_ topic: String) -> String { "\(self.prefix):m:\(topic)" }
    /// List with a topic's recent publications (`<offset>:<epoch>:<body>` each).
    public func historyKey(_ topic: String) -> String { "\(self.prefix):h:\(topic)" }
    /// Hash of a topic's present members.
    public func presenceKey(_ topic: String) -> String { "\(self.prefix):pr:\(topic)" }

    /// The Redis PSUBSCRIBE pattern for a glob subscription. Redis' `[`, `]` and `\` are escaped;
    /// our `?` (one Unicode scalar) becomes Redis' `*`, because Redis' `?` is one byte: the pattern
    /// may match more than the glob, never less, and the engine filters with the exact glob.
    public func topicPattern(_ glob: String) -> String {
        var out = "\(self.prefix):t:"
        for ch in glob.unicodeScalars {
            switch ch {
            case "[", "]", "\\": out.append("\\"); out.unicodeScalars.append(ch)
            case "?": out.append("*")
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    public enum Route: Equatable, Sendable {
        case topic(String)
        case user(String)
        case presence(String)
        case node(String)
    }

    /// What a channel a message arrived on is for, or nil for a foreign channel.
    public func route(_ channel: String) -> Route? {
        let utf8 = channel.utf8
        let p = self.prefix.utf8
        guard utf8.count > p.count + 3, utf8.starts(with: p) else { return nil }
        var i = utf8.index(utf8.startIndex, offsetBy: p.count)
        guard utf8[i] == UInt8(ascii: ":") else { return nil }
        i = utf8.index(after: i)
        let tag = utf8[i]
        let sep = utf8.index(after: i)
        guard utf8[sep] == UInt8(ascii: ":") else { return nil }
        let rest = String(channel[utf8.index(after: sep)...])
        guard !rest.isEmpty else { return nil }
        switch tag {
        case UInt8(ascii: "t"): return .topic(rest)
        case UInt8(ascii: "u"): return .user(rest)
        case UInt8(ascii: "p"): return .presence(rest)
        case UInt8(ascii: "n"): return .node(rest)
        default: return nil
        }
    }
}
