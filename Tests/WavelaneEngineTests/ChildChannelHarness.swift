import NIOCore
import NIOEmbedded
@testable import WavelaneEngine

/// At the head of a pipeline: records the bytes of every flush that would reach the socket.
final class FlushRecorder: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var pending: [UInt8] = []
    private(set) var flushes: [[UInt8]] = []
    /// Closes from the socket's side (as a reset would), past every handler behind this one.
    var closeFromHead: (() -> Void)?

    func handlerAdded(context: ChannelHandlerContext) {
        self.closeFromHead = { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.closeFromHead = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.pending += Array(self.unwrapOutboundIn(data).readableBytesView)
        context.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        if !self.pending.isEmpty { self.flushes.append(self.pending) }
        self.pending = []
        context.flush()
    }

    /// The flushes since the last call.
    func take() -> [[UInt8]] {
        defer { self.flushes = [] }
        return self.flushes
    }
}

/// A WebSocket child channel as `ServerCore.initializeChild` builds it, in an `EmbeddedChannel`,
/// behind a `FlushRecorder`: request bytes in, the bytes of each flush out.
final class ChildHarness {
    let channel = EmbeddedChannel()
    let core: ServerCore
    let recorder = FlushRecorder()

    init(_ configure: (inout EngineConfiguration) -> Void = { _ in }) throws {
        var config = EngineConfiguration()
        configure(&config)
        self.core = try ServerCore(configuration: config)
        self.core.queue.setOpen(true)
        let shard = Shard(index: 0, eventLoop: self.channel.embeddedEventLoop, server: self.core)
        self.core.shardsBox.withLockedValue { $0 = [shard] }
        self.core.acceptingFlag.store(true, ordering: .relaxed)
        try self.channel.pipeline.syncOperations.addHandler(self.recorder)
        try self.core.initializeChild(self.channel).wait()
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    /// Client bytes in; then the loop runs (the shard's end-of-tick flush). Returns the flushes.
    func send(_ bytes: [UInt8]) throws -> [[UInt8]] {
        try self.channel.writeInbound(ByteBuffer(bytes: bytes))
        self.channel.embeddedEventLoop.run()
        return self.recorder.take()
    }

    /// After the upgrade: the connection alone (no HTTP handler left behind).
    var pipelineHoldsOnlyTheConnection: Bool {
        let sync = self.channel.pipeline.syncOperations
        return (try? sync.handler(type: Connection.self)) != nil && (try? sync.handler(type: HTTPHandler.self)) == nil
    }
}

func upgradeRequest(path: String = "/ws", extra: String = "") -> [UInt8] {
    Array(("GET \(path) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(extra)\r\n").utf8)
}

