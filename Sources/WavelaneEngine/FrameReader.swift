// Inbound bytes to WebSocket frames, for every upgraded connection.

import NIOCore
import NIOWebSocket

/// Cuts a connection's inbound bytes into `WebSocketFrame`s with NIO's `WebSocketFrameDecoder`, in
/// place of `ByteToMessageHandler(WebSocketFrameDecoder)`, which allocates a ~170-byte handler and
/// two ring buffers (~230 bytes) per connection for the whole of its life; this keeps an optional
/// buffer, and only while a frame is incomplete. What it does is what `ByteToMessageHandler` does
/// for this decoder: decode while complete frames are in the bytes; keep the rest for the next
/// read; after a decoding error (`NIOWebSocketError`: too long, bad control frame) fire it and then
/// `ByteToMessageDecoderError.dataReceivedInErrorState` for any further bytes; stop at
/// `channelInactive`.
///
/// Touched only on the channel's event loop.
final class FrameReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = WebSocketFrame

    private let decoder: WebSocketFrameDecoder
    /// The bytes of an incomplete frame (nil between frames).
    private var partial: ByteBuffer?
    private var failure: Error?
    private var active = true

    init(maxFrameSize: Int) {
        self.decoder = WebSocketFrameDecoder(maxFrameSize: maxFrameSize)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        if let failure = self.failure {
            context.fireErrorCaught(ByteToMessageDecoderError.dataReceivedInErrorState(failure, buffer))
            return
        }
        var owned = false
        if var partial = self.partial {
            self.partial = nil
            partial.writeBuffer(&buffer)
            buffer = partial
            owned = true
        }
        do {
            // Frames go to the connection from inside `decode`; a frame that closes the channel
            // ends the loop.
            while self.active, buffer.readableBytes > 0,
                  try self.decoder.decode(context: context, buffer: &buffer) == .continue {}
        } catch {
            self.failure = error
            context.fireErrorCaught(error)
            return
        }
        guard self.active, buffer.readableBytes > 0 else { return }
        if owned && buffer.readerIndex <= buffer.readableBytes {
            // Mostly the incomplete frame still: it keeps growing in place.
            self.partial = buffer
        } else {
            // A tight copy, so NIO can reuse its receive buffer for the next read.
            var rest = context.channel.allocator.buffer(capacity: buffer.readableBytes)
            rest.writeBuffer(&buffer)
            self.partial = rest
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.active = false
        self.partial = nil
        context.fireChannelInactive()
    }
}
