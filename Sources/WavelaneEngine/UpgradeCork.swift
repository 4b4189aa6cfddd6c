// One write for a handshake's answer: the 101 and the upgraded connection's first frame (`ready`)
// leave in a single flush, not in two writes to the socket.

import NIOCore

/// An outbound handler at the front of a WebSocket child channel's pipeline (after TLS, before
/// HTTP). It passes everything on until `hold()`, which the upgrader calls once a request has
/// passed its checks and the 101 is next; from then on it keeps writes and flushes back until
/// `release()` — called once the `Connection` is in the pipeline and has written its first frames —
/// lets them out with one flush and takes the cork out of the pipeline.
///
/// NIO's `HTTPServerUpgradeHandler` flushes the 101 itself and installs the WebSocket handlers only
/// when that write's promise completes. So a flush during the hold counts as done for the writes
/// before it: they move on to the channel (ahead of anything written later) and their promises
/// succeed, though the socket sees them only at `release()`. Refusals (401, 403, 429, ...) and plain
/// HTTP never hold, so they go out at once; a close lets whatever is held out first.
///
/// Touched only on the channel's event loop.
final class UpgradeCork: ChannelOutboundHandler, RemovableChannelHandler {
    /// Not unwrapped: what comes in (the HTTP encoder's `IOData`, the connection's `ByteBuffer`)
    /// goes on as it is.
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum State {
        case passing
        case holding
        case released
    }

    private var state = State.passing
    private var context: ChannelHandlerContext?
    /// Writes since the last flush of the hold, with their promises.
    private var held: [(data: NIOAny, promise: EventLoopPromise<Void>?)] = []
    /// A flush came during the hold; `release()` does it.
    private var flushHeld = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // Removed with writes still held: the channel is being torn down.
        let held = self.held
        self.held = []
        for write in held { write.promise?.fail(ChannelError.ioOnClosedChannel) }
    }

    /// The upgrade was accepted: the 101 comes next. Writes and flushes wait for `release()`.
    func hold() {
        guard self.state == .passing else { return }
        self.state = .holding
    }

    /// Lets out what the hold kept, with one flush, and leaves the pipeline. Idempotent.
    func release() {
        guard self.state != .released, let context = self.context else { return }
        self.letOut(context: context)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func letOut(context: ChannelHandlerContext) {
        let wasHolding = self.state == .holding
        self.state = .released
        guard wasHolding else { return }
        let held = self.held
        self.held = []
        for write in held { context.write(write.data, promise: write.promise) }
        if self.flushHeld || !held.isEmpty {
            self.flushHeld = false
            context.flush()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard self.state == .holding else {
            context.write(data, promise: promise)
            return
        }
        self.held.append((data, promise))
    }

    func flush(context: ChannelHandlerContext) {
        guard self.state == .holding else {
            context.flush()
            return
        }
        self.flushHeld = true
        let held = self.held
        self.held = []
        for write in held { context.write(write.data, promise: nil) }
        // Completing the promises may run the rest of the upgrade at once (NIO chains on the 101's
        // write), which can write, flush and `release()` re-entrantly: the state is settled first.
        for write in held { write.promise?.succeed() }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode != .input { self.letOut(context: context) }
        context.close(mode: mode, promise: promise)
    }
}
