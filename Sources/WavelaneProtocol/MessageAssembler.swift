import NIOCore
import NIOWebSocket

/// The inbound half of a server-side WebSocket connection as a pure state machine: it takes the
/// frames `FrameReader` cut and returns what the connection must do.
/// It enforces RFC 6455 for client frames: masking, reserved bits and opcodes, control-frame rules,
/// fragmentation order, UTF-8 validity of text (incrementally, failing fast across fragments), the
/// close-frame payload, and the maximum message size.
public struct MessageAssembler {
    public enum MessageKind: Sendable, Equatable {
        case text
        case binary
    }

    public enum Action: Equatable {
        /// Nothing to do yet (a non-final fragment was absorbed).
        case none
        /// A complete, validated message.
        case message(MessageKind, ByteBuffer)
        /// A complete permessage-deflate message (RSV1 was set): still compressed. The caller inflates
        /// it (bounded by `maxMessageSize`) and validates text afterwards.
        case compressedMessage(MessageKind, ByteBuffer)
        /// Answer with a pong carrying this payload.
        case ping(ByteBuffer)
        /// A pong arrived (the connection is alive).
        case pong
        /// The peer started the close handshake. `code` is nil when the close frame had no payload.
        case close(code: UInt16?, reason: String)
        /// The peer broke the protocol: close with `code` (1002, 1007, 1009) and this reason.
        case fail(code: UInt16, reason: String)
    }

    public let maxMessageSize: Int
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    public let compression: Bool
    private var fragmentKind: MessageKind?
    private var fragmentCompressed = false
    private var fragments: ByteBuffer?
    private var validator = UTF8Validator()
    private var failed = false
    private var discarding = false

    public init(maxMessageSize: Int, compression: Bool = false) {
        self.maxMessageSize = maxMessageSize
        self.compression = compression
    }

    /// True while a fragmented message is being assembled.
    public var isAssembling: Bool { self.fragmentKind != nil }

    /// Bytes held for the message being assembled (its fragments so far).
    public var bufferedBytes: Int { self.fragments?.readableBytes ?? 0 }

    /// Frees the message being assembled and ignores every later data frame (the connection is
    /// closing); control frames (close, ping, pong) are still handled.
    public mutating func discardData() {
        self.discarding = true
        self.fragments = nil
        self.fragmentKind = nil
        self.fragmentCompressed = false
    }

    /// `receive` for a frame as NIOWebSocket spells it (tests and fuzzers build frames so).
    public mutating func receive(_ frame: WebSocketFrame) -> Action {
        self.receive(ClientFrame(frame))
    }

    public mutating func receive(_ frame: consuming ClientFrame) -> Action {
        if self.failed { return .none }
        if self.discarding && (frame.opcode == .text || frame.opcode == .binary || frame.opcode == .continuation) { return .none }
        guard frame.masked else { return self.fail(CloseCode.protocolError, "client frames must be masked") }
        if frame.rsv2 || frame.rsv3 {
            return self.fail(CloseCode.protocolError, "reserved bits set without a negotiated extension")
        }
        if frame.rsv1 {
            // RSV1 is permessage-deflate's "compressed" bit: only on the first frame of a data message.
            guard self.compression, frame.opcode == .text || frame.opcode == .binary else {
                return self.fail(CloseCode.protocolError, "RSV1 set without permessage-deflate, or on a non-initial frame")
            }
        }
        switch frame.opcode {
        case .text:
            return self.startMessage(.text, frame)
        case .binary:
            return self.startMessage(.binary, frame)
        case .continuation:
            return self.continueMessage(frame)
        case .ping:
            guard frame.fin, frame.length <= 125 else { return self.fail(CloseCode.protocolError, "bad control frame") }
            return .ping(frame.payload)
        case .pong:
            guard frame.fin, frame.length <= 125 else { return self.fail(CloseCode.protocolError, "bad control frame") }
            return .pong
        case .connectionClose:
            guard frame.fin, frame.length <= 125 else { return self.fail(CloseCode.protocolError, "bad control frame") }
            return self.closeFrame(frame.payload)
        default:
            return self.fail(CloseCode.protocolError, "reserved opcode")
        }
    }

    private mutating func startMessage(_ kind: MessageKind, _ frame: consuming ClientFrame) -> Action {
        guard self.fragmentKind == nil else {
            return self.fail(CloseCode.protocolError, "new message started inside a fragmented message")
        }
        if frame.length > self.maxMessageSize { return self.fail(CloseCode.messageTooBig, "message too big") }
        let data = frame.payload
        if frame.rsv1 {
            if frame.fin { return .compressedMessage(kind, data) }
            self.fragmentKind = kind
            self.fragmentCompressed = true
            self.fragments = Self.ownCopy(data)
            return .none
        }
        self.fragmentCompressed = false
        if kind == .text {
            self.validator = UTF8Validator()
            // An all-ASCII payload (seen by the reader while unmasking) is valid UTF-8 and leaves
            // the validator where it was: complete.
            if !frame.ascii {
                let ok = data.withUnsafeReadableBytes { self.validator.feed($0) }
                guard ok else { return self.fail(CloseCode.invalidPayload, "invalid UTF-8 in text message") }
            }
        }
        if frame.fin {
            if kind == .text && !self.validator.isComplete {
                return self.fail(CloseCode.invalidPayload, "invalid UTF-8 in text message")
            }
            return .message(kind, data)
        }
        self.fragmentKind = kind
        self.fragments = Self.ownCopy(data)
        return .none
    }

    /// A fragment's bytes in a buffer of their own: a frame's payload may be a slice of a buffer that
    /// holds a whole read (`FrameReader`), which the fragments would otherwise keep alive, unaccounted,
    /// until the message completes.
    private static func ownCopy(_ data: ByteBuffer) -> ByteBuffer {
        ByteBufferAllocator().buffer(buffer: data)
    }

    private mutating func continueMessage(_ frame: ClientFrame) -> Action {
        guard let kind = self.fragmentKind, var buffer = self.fragments else {
            return self.fail(CloseCode.protocolError, "continuation frame without a message to continue")
        }
        if buffer.readableBytes + frame.length > self.maxMessageSize {
            return self.fail(CloseCode.messageTooBig, "message too big")
        }
        let data = frame.payload
        // ASCII after a complete character keeps it complete; after part of one it must be fed
        // (and is refused there).
        if kind == .text && !self.fragmentCompressed && !(frame.ascii && self.validator.isComplete) {
            let ok = data.withUnsafeReadableBytes { self.validator.feed($0) }
            guard ok else { return self.fail(CloseCode.invalidPayload, "invalid UTF-8 in text message") }
        }
        self.fragments = nil  // keep the buffer uniquely referenced while appending
        var data2 = data
        buffer.writeBuffer(&data2)
        if frame.fin {
            self.fragmentKind = nil
            if self.fragmentCompressed {
                self.fragmentCompressed = false
                return .compressedMessage(kind, buffer)
            }
            if kind == .text && !self.validator.isComplete {
                return self.fail(CloseCode.invalidPayload, "invalid UTF-8 in text message")
            }
            return .message(kind, buffer)
        }
        self.fragments = buffer
        return .none
    }

    private mutating func closeFrame(_ payload: ByteBuffer) -> Action {
        var payload = payload
        if payload.readableBytes == 0 { return .close(code: nil, reason: "") }
        guard payload.readableBytes >= 2, let code = payload.readInteger(as: UInt16.self) else {
            return self.fail(CloseCode.protocolError, "close frame payload of one byte")
        }
        guard CloseCode.isValidOnWire(code) else { return self.fail(CloseCode.protocolError, "invalid close code") }
        let valid = payload.withUnsafeReadableBytes { UTF8Validator.isValid($0) }
        guard valid else { return self.fail(CloseCode.invalidPayload, "close reason is not UTF-8") }
        return .close(code: code, reason: payload.readString(length: payload.readableBytes) ?? "")
    }

    private mutating func fail(_ code: UInt16, _ reason: String) -> Action {
        self.failed = true
        self.fragments = nil
        self.fragmentKind = nil
        return .fail(code: code, reason: reason)
    }
}
