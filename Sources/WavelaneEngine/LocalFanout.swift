// This instance's side of delivery (`DeliveryHost`): encoding a publication once and handing it
// to every loop, numbering it when this instance is alone, and messages, presence events and
// disconnects for this instance's connections. Both deliveries end here.

import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket
import WavelaneProtocol

extension ServerCore: DeliveryHost {
    /// Single instance: numbers the publication, records it in the history, hands it to every loop.
    func deliverNumbered(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> UInt64 {
        let shards = self.shardsBox.withLockedValue { $0 }
        return self.offsets.lock.withLock {
            let offset = self.offsets.nextLocked(topic)
            let publication = self.makePublicationLocked(topic: topic, offset: offset, epoch: nil, kind: kind, payload: payload,
                                                         priority: priority, key: key)
            self.offsets.recordLocked(publication)
            for shard in shards {
                shard.publish(publication)
            }
            return offset
        }
    }

    /// Encodes a publication once: the frame, and the shared compressed frame when any connection
    /// takes it. Call with `offsets.lock` held (it guards the shared compressor).
    private func makePublicationLocked(topic: String, offset: UInt64, epoch: String?, kind: PayloadKind,
                                       payload: UnsafeRawBufferPointer, priority: Priority, key: String?) -> Publication {
        let frame = TopicEnvelope.frame(topic: topic, offset: offset, kind: kind, payload: payload, allocator: self.allocator)
        let bodyLength = FrameEncoder.payloadLength(ofFrameSize: frame.readableBytes)
        let body = frame.getSlice(at: frame.readerIndex + frame.readableBytes - bodyLength, length: bodyLength)!
        let opcode: WebSocketOpcode = kind == .binary ? .binary : .text
        var compressed: ByteBuffer? = nil
        if self.config.compression.enabled, bodyLength >= self.config.compression.minSize,
           self.sharedDeflateConnections.load(ordering: .relaxed) > 0 {
            let bytes = body.withUnsafeReadableBytes { self.publicationDeflater.compress($0) }
            var buffer = self.allocator.buffer(capacity: FrameEncoder.headerSize(payloadLength: bytes.count) + bytes.count)
            FrameEncoder.writeHeader(opcode: opcode, payloadLength: bytes.count, rsv1: true, into: &buffer)
            buffer.writeBytes(bytes)
            compressed = buffer
        }
        return Publication(topic: topic, offset: offset, epoch: epoch, frame: frame, body: body, opcode: opcode,
                           compressedFrame: compressed, priority: priority, key: key,
                           origin: key == nil ? self.frameBlocks.append(frame) : nil)
    }

    /// An encoded publication for a message from the cluster stream or a topic's history.
    func makePublication(topic: String, message: ClusterMessage) -> Publication {
        message.payload.withUnsafeReadableBytes { payload in
            self.offsets.lock.withLock {
                self.makePublicationLocked(topic: topic, offset: message.offset, epoch: message.epoch, kind: message.kind,
                                           payload: payload, priority: message.priority, key: message.key)
            }
        }
    }

    /// Multi-instance mode: a publication arrived from Redis; hand it to every loop (in order: the
    /// Redis delivery calls this for one message after the other).
    func deliver(topic: String, message: ClusterMessage) {
        let publication = self.makePublication(topic: topic, message: message)
        for shard in self.shardsBox.withLockedValue({ $0 }) {
            shard.publish(publication)
        }
    }

    /// Multi-instance mode with Redis down: this instance's subscribers only, outside the sequence.
    func deliverLocally(topic: String, kind: PayloadKind, payload: UnsafeRawBufferPointer, priority: Priority, key: String?) {
        let shards = self.shardsBox.withLockedValue { $0 }
        self.offsets.lock.withLock {
            let publication = self.makePublicationLocked(topic: topic, offset: 0, epoch: nil, kind: kind, payload: payload,
                                                         priority: priority, key: key)
            for shard in shards {
                shard.publish(publication)
            }
        }
    }

    /// A `cluster` event for the application.
    func pushClusterEvent(_ payload: ByteBuffer) {
        self.queue.push(contentsOf: [InboundEvent(kind: .cluster, conn: 0, payload: payload)], from: nil)
    }

    /// Multi-instance mode: a join/leave event (JSON text) for the watchers of `topic`.
    func deliverPresenceEvent(topic: String, event: ByteBuffer) {
        let frame = event.withUnsafeReadableBytes { FrameEncoder.frame(opcode: .text, payload: $0, allocator: self.allocator) }
        for shard in self.shardsBox.withLockedValue({ $0 }) {
            shard.eventLoop.execute { shard.deliverPresence(topic: topic, frame: frame) }
        }
    }

    /// One frame to one of this instance's connections; false when it is unknown or closed.
    func sendLocally(conn: UInt64, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Bool {
        guard let connection = self.registry.connection(conn) else { return false }
        let opcode: WebSocketOpcode = binary ? .binary : .text
        if connection.deflate != nil && payload.count >= self.config.compression.minSize {
            var body = self.allocator.buffer(capacity: payload.count)
            body.writeBytes(payload)
            connection.shard.execute { [body] in connection.writeMessage(opcode: opcode, payload: body, priority: priority, key: key) }
        } else {
            let frame = FrameEncoder.frame(opcode: opcode, payload: payload, allocator: self.allocator)
            connection.shard.execute { connection.writeFrame(frame, priority: priority, key: key) }
        }
        return true
    }

    func connectionCount(ofUser user: String) -> Int {
        self.registry.connections(ofUser: user).count
    }

    @discardableResult
    func sendUserLocally(_ user: String, payload: UnsafeRawBufferPointer, binary: Bool, priority: Priority, key: String?) -> Int {
        let connections = self.registry.connections(ofUser: user)
        guard !connections.isEmpty else { return 0 }
        let opcode: WebSocketOpcode = binary ? .binary : .text
        let frame = FrameEncoder.frame(opcode: opcode, payload: payload, allocator: self.allocator)
        let body = frame.getSlice(at: frame.readerIndex + frame.readableBytes - payload.count, length: payload.count)!
        let compressible = payload.count >= self.config.compression.minSize
        for connection in connections {
            if connection.deflate != nil && compressible {
                connection.shard.execute { connection.writeMessage(opcode: opcode, payload: body, priority: priority, key: key) }
            } else {
                connection.shard.execute { connection.writeFrame(frame, priority: priority, key: key) }
            }
        }
        return connections.count
    }

    func localPosition(topic: String, since: StreamPosition?) -> PositionReply {
        self.offsets.position(topic: topic, since: since)
    }

    @discardableResult
    func disconnectUserLocally(_ user: String, code: UInt16, reason: String) -> Int {
        let connections = self.registry.connections(ofUser: user)
        for connection in connections {
            connection.shard.execute { connection.initiateClose(code: code, reason: reason) }
        }
        return connections.count
    }
}
