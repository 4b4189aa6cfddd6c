import NIOCore
import WavelaneProtocol

/// Closing: every close goes through `ConnectionStateMachine`, and `perform` carries out its answer.
extension Connection {
    // MARK: closing

    /// Starts the close handshake (server side): close frame now, TCP close when the peer answers or
    /// after close_timeout.
    func initiateClose(code: UInt16, reason: String) {
        self.perform(self.machine.close(code: code, reason: reason))
    }

    /// Closes the TCP connection at once (the close frame is attempted but not awaited).
    func abort(code: UInt16, reason: String) {
        self.perform(self.machine.abort(code: code, reason: reason))
    }

    /// Graceful stop: close with `code` once everything queued has been handed to the socket.
    func closeAfterDrain(code: UInt16, reason: String) {
        guard let context = self.context else { return }
        self.perform(self.machine.closeAfterDrain(code: code, reason: reason, queueEmpty: self.outbox.isQueueEmpty))
        if self.machine.isDraining && context.channel.isWritable { self.drainSendQueue(context: context) }
    }

    func fail(code: UInt16, reason: String) {
        if self.state != .closed {
            self.server.logger.debug("closing on protocol error", metadata: [
                "conn": "\(self.id)", "code": "\(code)", "reason": "\(reason)",
            ])
        }
        self.perform(self.machine.fail(code: code, reason: reason))
    }

    /// Performs what the state machine decided. Without a channel (before `handlerAdded`, after
    /// teardown) nothing is decided: the machine is not asked.
    func perform(_ action: @autoclosure () -> ConnectionStateMachine.CloseAction) {
        guard let context = self.context else { return }
        let allocator = context.channel.allocator
        switch action() {
        case .none:
            break
        case .sendClose(let code, let reason):
            self.spill(context)
            context.write(self.wrapOutboundOut(FrameEncoder.close(code: code, reason: reason, allocator: allocator)), promise: nil)
            context.flush()
            let channel = context.channel
            self.closeTimer = self.eventLoop.scheduleTask(in: .nanoseconds(Int64(self.server.config.closeTimeout * 1e9))) {
                channel.close(promise: nil)
            }
        case .sendCloseThenClose(let code, let reason):
            let frame = code.map { FrameEncoder.close(code: $0, reason: reason, allocator: allocator) }
                ?? FrameEncoder.emptyClose(allocator: allocator)
            self.spill(context)
            context.writeAndFlush(self.wrapOutboundOut(frame)).whenComplete { _ in context.close(promise: nil) }
        case .replyCloseThenClose(let code):
            let frame = code.map { FrameEncoder.close(code: $0, reason: "", allocator: allocator) }
                ?? FrameEncoder.emptyClose(allocator: allocator)
            self.spill(context)
            // Flushed at the end of this tick with the loop's other writes: a peer that sent its
            // close and hung up (its FIN in the same read burst, as most clients do) is gone by
            // then, NIO has closed the channel, and the reply costs no write to a dead socket.
            context.write(self.wrapOutboundOut(frame)).whenComplete { _ in context.close(promise: nil) }
            self.flushAtEndOfTick()
        case .sendCloseAndAbort(let code, let reason):
            self.spill(context)
            context.write(self.wrapOutboundOut(FrameEncoder.close(code: code, reason: reason, allocator: allocator)), promise: nil)
            context.flush()
            context.close(promise: nil)
        case .closeChannel:
            context.close(promise: nil)
        }
    }
}
