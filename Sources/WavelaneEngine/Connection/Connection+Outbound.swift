import NIOCore
import NIOWebSocket
import WavelaneProtocol

/// Outbound: frames through the `Outbox` to the channel, application messages, publications.
extension Connection {
    // MARK: outbound

    /// Queues one complete frame (header included). While the socket takes data it goes straight to
    /// the channel (flushed once per event-loop tick by the shard); otherwise into the bounded
    /// priority send queue, where a full queue drops the lowest priorities first and a message
    /// with a coalescing `key` replaces the queued one with the same key.
    func writeFrame(_ frame: ByteBuffer, priority: Priority = .normal, key: String? = nil, origin: FrameOrigin? = nil) {
        // The context is read (and retained) only on the write-now path: a backed-up connection
        // queues without touching its channel.
        guard self.state == .open, self.context != nil else { return }
        let before = self.outbox.queuedBytes
        switch self.outbox.send(frame, priority: priority, key: key, origin: origin,
                                writable: self.context!.channel.isWritable, draining: self.machine.isDraining) {
        case .writeNow:
            self.write(frame, context: self.context!)
            self.flushAtEndOfTick()
            return
        case let decision:
            self.queued(decision, before: before)
        }
    }

    /// Accounts for a frame or run the outbox did not write now (`before`: its queued bytes before).
    private func queued(_ decision: Outbox.Decision, before: Int) {
        switch decision {
        case .writeNow:
            preconditionFailure("a written frame is not queued")
        case .coalesced:
            self.server.stats.add(.coalesced)
        case .queued(let dropped):
            self.countDropped(dropped)
        case .overflow(let dropped):
            self.countDropped(dropped)
            self.shard.queuedBytesChanged(by: self.outbox.queuedBytes - before)
            self.closeSlowConsumer()
            return
        }
        self.shard.queuedBytesChanged(by: self.outbox.queuedBytes - before)
    }

    @inline(__always)
    func write(_ frame: ByteBuffer, context: ChannelHandlerContext) {
        self.shard.framesOut += 1
        self.shard.bytesOut += frame.readableBytes
        self.perform(self.outbox.write(frame), context: context)
    }

    /// Hands the outbox's buffers to the channel (not flushed).
    @inline(__always)
    func perform(_ writes: Outbox.Writes, context: ChannelHandlerContext) {
        switch writes {
        case .none: break
        case .one(let buffer): context.write(self.wrapOutboundOut(buffer), promise: nil)
        case .two(let first, let second):
            context.write(self.wrapOutboundOut(first), promise: nil)
            context.write(self.wrapOutboundOut(second), promise: nil)
        }
    }

    /// Hands the coalesced small frames to the channel (not flushed).
    func spill(_ context: ChannelHandlerContext) {
        guard let buffer = self.outbox.spill() else { return }
        context.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    /// Has the shard flush this connection once, at the end of this tick.
    @inline(__always)
    func flushAtEndOfTick() {
        guard !self.dirty else { return }
        self.dirty = true
        self.shard.markDirty(self)
    }

    func flush() {
        self.dirty = false
        guard let context = self.context else { return }
        self.spill(context)
        context.flush()
    }

    func sendJSON(_ bytes: [UInt8]) {
        guard let context = self.context else { return }
        self.writeFrame(FrameEncoder.frame(opcode: .text, bytes: bytes, allocator: context.channel.allocator))
    }

    /// Queues one application message (send / send_user), compressed when negotiated and large enough.
    func writeMessage(opcode: WebSocketOpcode, payload: ByteBuffer, priority: Priority, key: String?) {
        guard self.state == .open, let context = self.context else { return }
        if self.deflate != nil, payload.readableBytes >= self.server.config.compression.minSize {
            self.writeFrame(self.compressedFrame(opcode: opcode, body: payload, allocator: context.channel.allocator),
                            priority: priority, key: key)
        } else {
            self.writeFrame(FrameEncoder.frame(opcode: opcode, payload: payload, allocator: context.channel.allocator),
                            priority: priority, key: key)
        }
    }

    /// A live topic publication: written unless the subscription session holds it (its topic waits
    /// for a position) or it was sent already (below the topic's floor).
    @inline(__always)
    func writePublication(_ publication: Publication) {
        guard self.session.admit(publication) else { return }
        self.deliver(publication)
    }

    /// Live publications to one topic, in order: the stretches `stretches` of `batch`
    /// (`Shard.deliverPending`). While the socket takes data, a stretch's frames go out as one
    /// slice of their shared block, or (under `Outbox.sliceMin`) are copied to the coalescing
    /// buffer with one copy (`Outbox.writeRun`); what it does not take joins the send queue as one run.
    /// A held topic, a floor, compression, or keyed and large frames go publication by
    /// publication (`writePublication`).
    func writePublications(_ batch: [Publication], _ stretches: [PublicationStretch]) {
        guard self.session.admitsAll, self.state == .open, let context = self.context, !self.machine.isDraining else {
            for stretch in stretches {
                for k in stretch.range { self.writePublication(batch[k]) }
            }
            return
        }
        let plainBelow = self.deflate == nil ? Int.max : self.server.config.compression.minSize
        for stretch in stretches {
            guard self.state == .open else { return }
            guard let shared = stretch.shared, shared.largestBody < plainBelow else {
                for k in stretch.range { self.deliver(batch[k]) }
                continue
            }
            let block = shared.block
            var index = shared.first
            let end = shared.first + stretch.range.count
            if self.outbox.isQueueEmpty && context.channel.isWritable {
                repeat {
                    let (writes, frames, bytes) = self.outbox.writeRun(block, index, end)
                    self.shard.framesOut += frames
                    self.shard.bytesOut += bytes
                    index += frames
                    self.perform(writes, context: context)
                } while index < end && context.channel.isWritable
                self.flushAtEndOfTick()
            }
            guard index < end else { continue }
            // What the socket does not take now waits in the send queue, as one run.
            let before = self.outbox.queuedBytes
            guard let decision = self.outbox.enqueueRun(block, index, end, priority: shared.priority) else {
                for k in (stretch.range.upperBound - (end - index))..<stretch.range.upperBound { self.deliver(batch[k]) }
                continue
            }
            self.queued(decision, before: before)
        }
    }

    /// Queues a topic publication: the shared plain frame, the shared compressed frame, or (for
    /// unusual deflate parameters) a frame compressed for this connection.
    func deliver(_ publication: Publication) {
        guard self.deflate != nil, publication.body.readableBytes >= self.server.config.compression.minSize else {
            self.writeFrame(publication.frame, priority: publication.priority, key: publication.key,
                            origin: publication.origin)
            return
        }
        if self.sharesCompressedPublications, let compressed = publication.compressedFrame {
            self.writeFrame(compressed, priority: publication.priority, key: publication.key)
        } else if let context = self.context {
            self.writeFrame(self.compressedFrame(opcode: publication.opcode, body: publication.body,
                                                 allocator: context.channel.allocator),
                            priority: publication.priority, key: publication.key)
        }
    }

    private func compressedFrame(opcode: WebSocketOpcode, body: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        let deflater = self.ownDeflater ?? self.shard.deflater(windowBits: self.deflate?.serverWindowBits ?? 15)
        let compressed = body.withUnsafeReadableBytes { deflater.compress($0) }
        var frame = allocator.buffer(capacity: FrameEncoder.headerSize(payloadLength: compressed.count) + compressed.count)
        FrameEncoder.writeHeader(opcode: opcode, payloadLength: compressed.count, rsv1: true, into: &frame)
        frame.writeBytes(compressed)
        return frame
    }

    /// Sends a WebSocket ping (heartbeat).
    func sendPing(now: NIODeadline) {
        guard self.state == .open, let context = self.context else { return }
        self.lastPing = now
        self.writeFrame(FrameEncoder.frame(opcode: .ping, bytes: EmptyCollection<UInt8>(), allocator: context.channel.allocator))
    }

    // MARK: drops and slow consumers

    /// Adds what the send queue dropped to the server's counters (the application hears of it
    /// from `reportDrops`).
    func countDropped(_ dropped: SendQueue.Dropped) {
        guard !dropped.isEmpty else { return }
        let stats = self.server.stats
        stats.add(.droppedBytes, dropped.bytes)
        stats.add(.droppedHigh, dropped.byPriority[Int(Priority.high.rawValue)])
        stats.add(.droppedNormal, dropped.byPriority[Int(Priority.normal.rawValue)])
        stats.add(.droppedLow, dropped.byPriority[Int(Priority.low.rawValue)])
        stats.add(.droppedBackground, dropped.byPriority[Int(Priority.background.rawValue)])
    }

    /// Reports drops since the last report as one `dropped` event (called by the shard's sweep, so a
    /// storm of drops costs at most one event per connection per sweep).
    func reportDrops() {
        guard let context = self.context, let d = self.outbox.takeDropReport() else { return }
        let body = ServerMessage.droppedEvent(d)
        var payload = context.channel.allocator.buffer(capacity: body.count)
        payload.writeBytes(body)
        self.server.queue.push(InboundEvent(kind: .dropped, code: UInt32(clamping: d.count), conn: self.id, payload: payload), from: nil)
    }

    func closeSlowConsumer() {
        self.server.stats.add(.slowConsumerCloses)
        self.server.logger.warning("closing slow consumer", metadata: [
            "conn": "\(self.id)", "queued_bytes": "\(self.outbox.queuedBytes)",
        ])
        self.abort(code: CloseCode.policyViolation, reason: "slow consumer")
    }

    func checkSlowConsumer(now: NIODeadline) {
        if self.outbox.isSlowConsumer(now: now, timeout: .nanoseconds(Int64(self.server.config.slowConsumerTimeout * 1e9))) {
            self.closeSlowConsumer()
        }
    }
}
