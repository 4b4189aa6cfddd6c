/// The lifecycle of one WebSocket connection on the server side, and its close handshake
/// (RFC 6455 §5.5.1, §7), as a pure value: no channel, no timers. Every mutating function answers
/// with what the caller has to do; the channel handler (`Connection`) only performs those actions.
///
///     open ──close()──────────▶ closing ──receivedClose()/abort()/fail()──▶ closed
///       │                                                                  ▲
///       └──receivedClose()/abort()/fail()──────────────────────────────────┘
///
/// The code and reason that end the connection are kept here: the first close (ours or the
/// peer's) decides them, and `closed()` reports them to the application.
public struct ConnectionStateMachine: Sendable {
    public enum State: Equatable, Sendable {
        case open
        /// We sent a close frame and wait for the peer's (bounded by close_timeout).
        case closing
        case closed
    }

    /// What the caller does to the channel.
    public enum CloseAction: Equatable, Sendable {
        /// Nothing: the connection is already past this point.
        case none
        /// Write a close frame with this code and reason, flush, and wait for the peer's close
        /// frame; close the channel after `close_timeout` if it does not come.
        case sendClose(code: UInt16, reason: String)
        /// Write (and flush) the close frame, then close the channel once it is written.
        case sendCloseThenClose(code: UInt16?, reason: String)
        /// Answer the peer's close frame (echo `code`; nil: an empty close frame), then close the
        /// channel once it is written. The answer may go out with the loop's other writes rather
        /// than at once: a peer that hung up right after its close (the usual client) is gone by
        /// then, and is not written to.
        case replyCloseThenClose(code: UInt16?)
        /// Write and flush the close frame and close the channel at once, without waiting for it.
        case sendCloseAndAbort(code: UInt16, reason: String)
        /// Close the channel now (our close frame went out before).
        case closeChannel
    }

    public private(set) var state = State.open
    /// The close code and reason that ended (or are ending) the connection.
    public private(set) var closeCode: UInt16?
    public private(set) var closeReason = ""
    /// A graceful stop that waits for the send queue to drain before closing.
    public private(set) var closeWhenDrained: (code: UInt16, reason: String)?

    public init() {}

    public var isOpen: Bool { self.state == .open }
    /// True while a graceful stop waits for the send queue: new messages queue behind it.
    public var isDraining: Bool { self.closeWhenDrained != nil }

    /// The server starts the close handshake.
    public mutating func close(code: UInt16, reason: String) -> CloseAction {
        guard self.state == .open else { return .none }
        self.closeCode = code
        self.closeReason = reason
        self.state = .closing
        return .sendClose(code: code, reason: reason)
    }

    /// Graceful stop: close once everything queued has been handed to the socket. `queueEmpty`:
    /// whether the send queue is empty now. Returns `.none` while the close waits for the queue
    /// (the caller then drains it and calls `queueDrained()`).
    public mutating func closeAfterDrain(code: UInt16, reason: String, queueEmpty: Bool) -> CloseAction {
        guard self.state == .open else { return .none }
        if queueEmpty { return self.close(code: code, reason: reason) }
        self.closeWhenDrained = (code, reason)
        return .none
    }

    /// The send queue became empty: starts the close a graceful stop was waiting for.
    public mutating func queueDrained() -> CloseAction {
        guard let pending = self.closeWhenDrained else { return .none }
        self.closeWhenDrained = nil
        return self.close(code: pending.code, reason: pending.reason)
    }

    /// The peer's close frame arrived (`code` nil: it carried none).
    public mutating func receivedClose(code: UInt16?, reason: String) -> CloseAction {
        switch self.state {
        case .open:
            // The peer started the handshake: echo its code (without reason), then close.
            self.closeCode = code ?? CloseCode.noStatus
            self.closeReason = reason
            self.state = .closed
            return .replyCloseThenClose(code: code)
        case .closing:
            // The peer answered ours: the handshake is complete.
            self.state = .closed
            return .closeChannel
        case .closed:
            return .none
        }
    }

    /// A protocol error (bad frame, invalid UTF-8, too big...): close frame if none went out yet,
    /// then the TCP connection once it is written.
    public mutating func fail(code: UInt16, reason: String) -> CloseAction {
        switch self.state {
        case .open:
            self.closeCode = code
            self.closeReason = reason
            self.state = .closed
            return .sendCloseThenClose(code: code, reason: reason)
        case .closing:
            self.state = .closed
            return .closeChannel
        case .closed:
            return .none
        }
    }

    /// Close the TCP connection at once (idle timeout, slow consumer, forced stop): the close frame
    /// is attempted but not awaited.
    public mutating func abort(code: UInt16, reason: String) -> CloseAction {
        switch self.state {
        case .open:
            self.closeCode = code
            self.closeReason = reason
            self.state = .closed
            return .sendCloseAndAbort(code: code, reason: reason)
        case .closing:
            self.state = .closed
            return .closeChannel
        case .closed:
            return .none
        }
    }

    /// The channel is gone. Returns the code and reason to report to the application: the first
    /// close's, or 1006 (abnormal) when the connection ended without any close frame.
    public mutating func closed() -> (code: UInt16, reason: String) {
        self.state = .closed
        self.closeWhenDrained = nil
        return (self.closeCode ?? CloseCode.abnormal, self.closeReason)
    }
}
