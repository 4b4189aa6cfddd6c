import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

/// `Connection` in an `EmbeddedChannel`: client frames in, the exact bytes out. Nothing of the
/// server's sockets runs; the connection's shard lives on the channel's embedded loop, so a flush
/// happens when the test runs the loop (`output()`).
private final class Harness {
    let channel = EmbeddedChannel()
    let core: ServerCore
    let shard: Shard
    let connection: Connection

    init(user: String? = "ann", _ configure: (inout EngineConfiguration) -> Void = { _ in }) throws {
        var config = EngineConfiguration()
        configure(&config)
        self.core = try ServerCore(configuration: config)
        self.core.queue.setOpen(true)
        self.shard = Shard(index: 0, eventLoop: self.channel.embeddedEventLoop, server: self.core)
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        self.connection = Connection(id: 7, user: user, connectPayload: ByteBuffer(string: "{}"), deflate: nil,
                                     shard: self.shard, server: self.core)
        try self.channel.pipeline.syncOperations.addHandler(self.connection)
    }

    /// A client frame (masked unless told), as the bytes of one read.
    func send(_ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true, masked: Bool = true) throws {
        try self.receive(clientFrame(opcode, payload, fin: fin, masked: masked))
    }

    /// Raw bytes as one read.
    func receive(_ bytes: [UInt8]) throws {
        try self.channel.writeInbound(ByteBuffer(bytes: bytes))
        self.channel.pipeline.fireChannelReadComplete()
    }

    func send(_ text: String) throws { try self.send(.text, Array(text.utf8)) }

    /// Runs the loop (the shard's flush) and returns every buffer written since, one array each.
    func writes() throws -> [[UInt8]] {
        self.channel.embeddedEventLoop.run()
        var out: [[UInt8]] = []
        while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) { out.append(Array(buffer.readableBytesView)) }
        return out
    }

    /// Everything written since the last call, as one byte string.
    func output() throws -> [UInt8] { try self.writes().flatMap { $0 } }

    /// What the application has been handed.
    func events() -> [(kind: InboundEvent.Kind, code: UInt32, payload: String)] {
        self.core.queue.drain(max: 100, timeoutMs: 0).map { ($0.kind, $0.code, String(buffer: $0.payload)) }
    }

    var isOpen: Bool { self.channel.isActive }

    /// The peer's FIN as NIO handles it without half-closure: the channel is closed, and writes not
    /// yet flushed are failed.
    func peerHangsUp() {
        self.channel.pipeline.fireChannelReadComplete()
        self.channel.close(promise: nil)
    }
}

/// A client frame's bytes: masked with 11 22 33 44 unless told.
private func clientFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true, masked: Bool = true) -> [UInt8] {
    let key: [UInt8] = [0x11, 0x22, 0x33, 0x44]
    var out: [UInt8] = [(fin ? 0x80 : 0) | UInt8(webSocketOpcode: opcode)]
    let maskBit: UInt8 = masked ? 0x80 : 0
    if payload.count < 126 {
        out.append(maskBit | UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
        out += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
        out.append(maskBit | 127)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((payload.count >> shift) & 0xFF)) }
    }
    if masked { out += key }
    for (i, byte) in payload.enumerated() { out.append(masked ? byte ^ key[i % 4] : byte) }
    return out
}

/// A server frame (unmasked, FIN) of a short payload.
private func frame(_ opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
    precondition(payload.count < 126)
    return [0x80 | opcode, UInt8(payload.count)] + payload
}

private func text(_ json: String) -> [UInt8] {
    let payload = Array(json.utf8)
    if payload.count < 126 { return frame(0x1, payload) }
    return [0x81, 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] + payload
}

private func close(_ code: UInt16, _ reason: String = "") -> [UInt8] {
    frame(0x8, [UInt8(code >> 8), UInt8(code & 0xFF)] + Array(reason.utf8))
}

private func publication(_ topic: String, _ offset: UInt64, _ data: String, priority: Priority = .normal, key: String? = nil,
                         epoch: String? = nil) -> Publication {
    let payload = Array(data.utf8)
    let frame = payload.withUnsafeBytes {
        TopicEnvelope.frame(topic: topic, offset: offset, kind: .text, payload: $0, allocator: ByteBufferAllocator())
    }
    let length = FrameEncoder.payloadLength(ofFrameSize: frame.readableBytes)
    return Publication(topic: topic, offset: offset, epoch: epoch, frame: frame,
                       body: frame.getSlice(at: frame.readerIndex + frame.readableBytes - length, length: length)!,
                       opcode: .text, compressedFrame: nil, priority: priority, key: key)
}

/// Publications `offsets` of `topic` whose frames sit one after the other in `writer`'s blocks, as
/// the publisher makes them.
private func blockPublications(_ topic: String, _ offsets: ClosedRange<UInt64>, _ writer: inout FrameBlockWriter,
                               priority: Priority = .normal) -> [Publication] {
    offsets.map { offset in
        let p = publication(topic, offset, "m\(offset)", priority: priority)
        return Publication(topic: p.topic, offset: p.offset, epoch: nil, frame: p.frame, body: p.body, opcode: .text,
                           compressedFrame: nil, priority: priority, key: nil, origin: writer.append(p.frame))
    }
}

private func message(_ topic: String, _ offset: UInt64, _ data: String) -> [UInt8] {
    text(#"{"type":"message","topic":"\#(topic)","offset":\#(offset),"data":"\#(data)"}"#)
}

@Suite("Connection in an EmbeddedChannel")
struct ConnectionTests {
    @Test func readyFrameThenConnectEvent() throws {
        let h = try Harness()
        let ready = #"{"type":"ready","conn":"7","user":"ann","server":"wavelane/\#(wavelaneVersion)","heartbeat":20,"epoch":"\#(h.core.epoch)","max_message_size":1048576}"#
        #expect(try h.output() == text(ready))
        let events = h.events()
        #expect(events.map(\.kind) == [.connect])
        #expect(events.first?.payload == "{}")
    }

    @Test func noReadyFrameWhenTurnedOff() throws {
        let h = try Harness { $0.readyMessage = false }
        #expect(try h.output() == [])
    }

    @Test func pingIsAnsweredWithPongOfTheSamePayload() throws {
        let h = try Harness { $0.readyMessage = false }
        try h.send(.ping, Array("hi".utf8))
        #expect(try h.output() == frame(0xA, Array("hi".utf8)))
        try h.send(.pong, [])  // unsolicited pong: nothing
        #expect(try h.output() == [])
    }

    @Test func controlPingAndMessagesToTheApplication() throws {
        let h = try Harness { $0.readyMessage = false }
        _ = h.events()
        try h.send(#"{"type":"ping","id":5}"#)
        #expect(try h.output() == text(#"{"type":"pong","id":5}"#))
        try h.send("hello")
        try h.send(.binary, [1, 2, 3])
        let events = h.events()
        #expect(events.map(\.kind) == [.text, .binary])
        #expect(events.first?.payload == "hello")
    }

    @Test func peerCloseIsEchoedAndReported() throws {
        let h = try Harness { $0.readyMessage = false }
        _ = h.events()
        try h.send(.connectionClose, [0x0F, 0xA0] + Array("bye".utf8))  // 4000
        #expect(try h.output() == close(4000))
        #expect(!h.isOpen)
        let events = h.events()
        #expect(events.map(\.kind) == [.disconnect])
        #expect(events.first?.code == 4000)
        #expect(events.first?.payload == "bye")
    }

    @Test func peerCloseWithoutCodeIsEchoedEmptyAndReported1005() throws {
        let h = try Harness { $0.readyMessage = false }
        _ = h.events()
        try h.send(.connectionClose, [])
        #expect(try h.output() == [0x88, 0x00])
        #expect(h.events().first?.code == 1005)
    }

    @Test func serverCloseWaitsForThePeersClose() throws {
        let h = try Harness { $0.readyMessage = false }
        _ = h.events()
        h.connection.initiateClose(code: 1001, reason: "server shutting down")
        #expect(try h.output() == close(1001, "server shutting down"))
        #expect(h.isOpen)
        // Nothing more goes out while closing.
        h.connection.sendJSON(Array("{}".utf8))
        try h.send(#"{"type":"ping"}"#)
        #expect(try h.output() == [])
        try h.send(.connectionClose, [0x03, 0xE9])
        #expect(try h.output() == [])  // no second close frame
        #expect(!h.isOpen)
        let events = h.events()
        #expect(events.last?.kind == .disconnect)
        #expect(events.last?.code == 1001)
        #expect(events.last?.payload == "server shutting down")
    }

    @Test func serverCloseTimesOut() throws {
        let h = try Harness { $0.readyMessage = false; $0.closeTimeout = 2 }
        _ = h.events()
        h.connection.initiateClose(code: CloseCode.tokenExpired, reason: "token expired")
        #expect(try h.output() == close(4001, "token expired"))
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1999))
        #expect(h.isOpen)
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!h.isOpen)
        #expect(h.events().map(\.code) == [4001])
    }

    @Test func oversizeMessageCloses1009() throws {
        let h = try Harness { $0.readyMessage = false; $0.maxMessageSize = 8 }
        _ = h.events()
        try h.send("123456789")
        #expect(try h.output() == close(1009, "message too big"))
        #expect(!h.isOpen)
        #expect(h.events().map(\.code) == [1009])
        #expect(h.core.stats.value(.protocolErrors) == 1)
    }

    @Test func aFrameHeaderOverMaxFrameSizeCloses1009BeforeItsPayload() throws {
        let h = try Harness { $0.readyMessage = false; $0.maxFrameSize = 100 }
        _ = h.events()
        // Only the header of a 1,000-byte frame: refused without waiting for the payload.
        try h.receive([0x82, 0x80 | 126, 0x03, 0xE8, 1, 2, 3, 4])
        #expect(try h.output() == close(1009, "frame too big"))
        #expect(!h.isOpen)
        #expect(h.events().map(\.code) == [1009])
        #expect(h.core.stats.value(.protocolErrors) == 1)
    }

    @Test func aCloseReplyIsNotWrittenToAPeerThatHungUpInTheSameReadBurst() throws {
        let h = try Harness { $0.readyMessage = false }
        _ = h.events()
        // The client's close and its FIN in one burst: the reply is queued for the tick's flush,
        // and the channel is closed (by NIO, on the FIN) before it.
        try h.channel.writeInbound(ByteBuffer(bytes: clientFrame(.connectionClose, [0x03, 0xE8])))
        h.peerHangsUp()
        #expect(try h.writes().isEmpty, "nothing written to a peer that is gone")
        #expect(!h.isOpen)
        #expect(h.events().map(\.kind) == [.disconnect])
        // Without the FIN, the reply goes out at the end of the tick, then the TCP close.
        let g = try Harness { $0.readyMessage = false }
        try g.receive(clientFrame(.connectionClose, [0x03, 0xE8]))
        #expect(try g.output() == close(1000, ""))
        #expect(!g.isOpen)
    }

    @Test func aProtocolErrorsCloseFrameIsFlushedBeforeLaterBytesOfTheBurstCloseTheChannel() throws {
        let h = try Harness { $0.readyMessage = false; $0.maxFrameSize = 100 }
        // A 1,025-byte text frame's header (refused at once), then more of it in the same burst.
        try h.channel.writeInbound(ByteBuffer(bytes: [0x81, 0x80 | 126, 0x04, 0x01, 1, 2, 3, 4]))
        try h.channel.writeInbound(ByteBuffer(bytes: Array(repeating: 0x7A, count: 64)))
        #expect(!h.isOpen)
        #expect(try h.output() == close(1009, "frame too big"))
    }

    @Test func aFragmentedOrLongControlFrameCloses1002() throws {
        for header: [UInt8] in [[0x09, 0x80], [0x89, 0x80 | 126, 0x00, 0x7E]] {
            let h = try Harness { $0.readyMessage = false }
            try h.receive(header + [1, 2, 3, 4])
            #expect(try h.output() == close(1002, "bad control frame"))
            #expect(!h.isOpen)
        }
    }

    @Test func messagesOfOneReadBeforeABrokenFrameAreDelivered() throws {
        let h = try Harness { $0.readyMessage = false; $0.maxFrameSize = 100 }
        _ = h.events()
        try h.receive(clientFrame(.text, Array("one".utf8)) + clientFrame(.binary, [1, 2]) + [0x82, 0x80 | 126, 0x03, 0xE8])
        let events = h.events()
        #expect(events.map(\.kind) == [.text, .binary, .disconnect])
        #expect(events.first?.payload == "one")
        #expect(events.last?.code == 1009)
    }

    @Test func aMessageSplitAcrossReadsByteByByte() throws {
        let h = try Harness { $0.readyMessage = false }
        _ = h.events()
        for byte in clientFrame(.text, Array("split in pieces".utf8)) + clientFrame(.text, Array("next".utf8)) {
            try h.receive([byte])
        }
        #expect(h.events().map(\.payload) == ["split in pieces", "next"])
        #expect(h.isOpen)
    }

    @Test func invalidUTF8Closes1007() throws {
        let h = try Harness { $0.readyMessage = false }
        _ = h.events()
        try h.send(.text, [0x68, 0xC3, 0x28])
        #expect(try h.output() == close(1007, "invalid UTF-8 in text message"))
        #expect(!h.isOpen)
        let events = h.events()
        #expect(events.map(\.kind) == [.disconnect])
        #expect(events.first?.code == 1007)
    }

    @Test func unmaskedFrameCloses1002() throws {
        let h = try Harness { $0.readyMessage = false }
        try h.send(.text, Array("x".utf8), masked: false)
        #expect(try h.output() == close(1002, "client frames must be masked"))
        #expect(!h.isOpen)
    }

    @Test func framesAfterAProtocolErrorAreIgnored() throws {
        let h = try Harness { $0.readyMessage = false }
        try h.send(.text, [0xFF])
        #expect(try h.output() == close(1007, "invalid UTF-8 in text message"))
        _ = h.events()
        #expect(h.connection.state == .closed)
    }

    @Test func subscribeRepliesSubscribedAndPublicationsArrive() throws {
        let h = try Harness { $0.readyMessage = false; $0.topicAccess = TopicAccess(clientTopics: ["room:*"]) }
        try h.send(#"{"type":"subscribe","topics":["room:1"],"id":1}"#)
        #expect(try h.output() == text(#"{"type":"subscribed","topics":["room:1"],"id":1}"#))
        h.shard.publish(publication("room:1", 1, "hello"))
        h.shard.publish(publication("room:2", 1, "elsewhere"))
        #expect(try h.output() == message("room:1", 1, "hello"))
        try h.send(#"{"type":"unsubscribe","topics":["room:1"],"id":2}"#)
        #expect(try h.output() == text(#"{"type":"unsubscribed","topics":["room:1"],"id":2}"#))
        h.shard.publish(publication("room:1", 2, "gone"))
        #expect(try h.output() == [])
    }

    @Test func subscribeRefusedByDefault() throws {
        let h = try Harness { $0.readyMessage = false }
        try h.send(#"{"type":"subscribe","topics":["room:1"],"id":1}"#)
        #expect(try h.output() == text(#"{"type":"error","code":"forbidden","message":"not allowed to subscribe to \"room:1\"","id":1}"#))
    }

    @Test func subscribeApprovalAsksTheApplication() throws {
        let h = try Harness { $0.readyMessage = false; $0.subscribeApproval = true }
        _ = h.events()
        try h.send(#"{"type":"subscribe","topics":["a","b:*"],"id":3}"#)
        #expect(try h.output() == [])
        let events = h.events()
        #expect(events.map(\.kind) == [.subscribeRequest])
        #expect(events.first?.payload == #"{"topics":["a"],"patterns":["b:*"],"id":3}"#)
        h.connection.subscribe(["a", "b:*"], ack: .some(.int(3)))
        #expect(try h.output() == text(#"{"type":"subscribed","topics":["a","b:*"],"id":3}"#))
    }

    @Test func recoveryThroughTheConnection() throws {
        let h = try Harness {
            $0.readyMessage = false
            $0.historySize = 10
            $0.topicAccess = TopicAccess(clientTopics: ["t"])
        }
        h.core.offsets.reset(epoch: h.core.epoch, history: (10, 1 << 20, 300))
        let epoch = h.core.offsets.position(topic: "t", since: nil).position.epoch
        for data in ["a", "b", "c"] {
            h.core.offsets.lock.withLock {
                let offset = h.core.offsets.nextLocked("t")
                h.core.offsets.recordLocked(publication("t", offset, data))
            }
        }
        try h.send(#"{"type":"subscribe","topics":["t"],"id":1,"recover":{"t":{"epoch":"\#(epoch)","offset":1}}}"#)
        #expect(try h.output()
                == text(#"{"type":"subscribed","topics":["t"],"id":1,"positions":{"t":{"epoch":"\#(epoch)","offset":3}},"recovered":{"t":true}}"#)
                + message("t", 2, "b") + message("t", 3, "c"))
        // A live copy of what was recovered is not sent twice; the next one is.
        h.shard.publish(publication("t", 3, "c"))
        h.shard.publish(publication("t", 4, "d"))
        #expect(try h.output() == message("t", 4, "d"))
    }

    @Test func smallFramesOfOneTickGoOutAsOneWrite() throws {
        let h = try Harness { $0.readyMessage = false }
        h.connection.subscribe(["t"], ack: nil)
        for i in 1...3 { h.shard.publish(publication("t", UInt64(i), "m\(i)")) }
        #expect(try h.channel.readOutbound(as: ByteBuffer.self) == nil)  // nothing before the tick's flush
        let writes = try h.writes()
        #expect(writes == [message("t", 1, "m1") + message("t", 2, "m2") + message("t", 3, "m3")])
    }

    @Test func publicationsOfOneBlockGoOutWithOneCopyOrQueueAsOneRun() throws {
        let h = try Harness { $0.readyMessage = false }
        h.connection.subscribe(["t"], ack: nil)
        var writer = FrameBlockWriter()
        for p in blockPublications("t", 1...3, &writer) { h.shard.publish(p) }
        #expect(try h.writes() == [message("t", 1, "m1") + message("t", 2, "m2") + message("t", 3, "m3")])
        // A backed-up socket: the tick's publications join the send queue as one run.
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        for p in blockPublications("t", 4...8, &writer) { h.shard.publish(p) }
        #expect(try h.output() == [])
        #expect(h.connection.outbox.queuedCount == 5)
        #expect(h.connection.outbox.queuedEntries == 1)
        // Another tick's publications extend that run.
        for p in blockPublications("t", 9...9, &writer) { h.shard.publish(p) }
        h.channel.embeddedEventLoop.run()
        #expect(h.connection.outbox.queuedEntries == 1)
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        #expect(try h.output() == (4...9).flatMap { message("t", $0, "m\($0)") })
        #expect(h.connection.outbox.queuedCount == 0)
    }

    @Test func aStretchOfOtherPrioritiesOrTopicsKeepsTheOrder() throws {
        let h = try Harness { $0.readyMessage = false }
        h.connection.subscribe(["a", "b"], ack: nil)
        var writer = FrameBlockWriter()
        let a = blockPublications("a", 1...2, &writer)
        let b = blockPublications("b", 1...1, &writer)
        let high = blockPublications("a", 3...3, &writer, priority: .high)
        for p in [a[0], a[1], b[0], high[0]] { h.shard.publish(p) }
        #expect(try h.output() == message("a", 1, "m1") + message("a", 2, "m2") + message("b", 1, "m1") + message("a", 3, "m3"))
    }

    @Test func aCallMadeAfterAPublicationReachesTheConnectionAfterIt() throws {
        let h = try Harness { $0.readyMessage = false }
        h.connection.subscribe(["t"], ack: nil)
        // As the publisher and the API hand them to the loop (LocalFanout, ServerAPI), in this order.
        let shard = h.shard, connection = h.connection
        let first = publication("t", 1, "first"), second = publication("t", 2, "unsubscribed")
        shard.publish(first)
        shard.execute { connection.sendJSON(Array(#"{"type":"after"}"#.utf8)) }
        shard.execute { connection.unsubscribe(["t"], ack: nil) }
        shard.publish(second)
        #expect(try h.output() == message("t", 1, "first") + text(#"{"type":"after"}"#))
    }

    @Test func largeFrameIsWrittenAfterTheCoalescedOnes() throws {
        let h = try Harness { $0.readyMessage = false }
        h.connection.subscribe(["t"], ack: nil)
        let big = String(repeating: "x", count: 2000)
        h.shard.publish(publication("t", 1, "s"))
        h.shard.publish(publication("t", 2, big))
        h.shard.publish(publication("t", 3, "s"))
        let writes = try h.writes()
        #expect(writes.count == 3)
        #expect(writes.first == message("t", 1, "s"))
        #expect(writes.last == message("t", 3, "s"))
        #expect(writes[1].count > 2000)
    }

    @Test func unwritableSocketQueuesByPriorityAndCoalescesByKey() throws {
        let h = try Harness { $0.readyMessage = false }
        h.connection.subscribe(["t"], ack: nil)
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        h.shard.publish(publication("t", 1, "low", priority: .low))
        h.shard.publish(publication("t", 2, "cursor1", key: "cursor"))
        h.shard.publish(publication("t", 3, "high", priority: .high))
        h.shard.publish(publication("t", 4, "cursor2", key: "cursor"))
        #expect(try h.output() == [])
        #expect(h.core.sendQueueBytes.load(ordering: .relaxed) > 0)
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        #expect(try h.output() == message("t", 3, "high") + message("t", 4, "cursor2") + message("t", 1, "low"))
        #expect(h.core.sendQueueBytes.load(ordering: .relaxed) == 0)
        #expect(h.core.stats.value(.coalesced) == 1)
    }

    @Test func fullSendQueueDropsAndReportsOnce() throws {
        let h = try Harness { $0.readyMessage = false; $0.maxSendQueue = 100 }
        h.connection.subscribe(["t"], ack: nil)
        _ = h.events()
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        for i in 1...4 { h.shard.publish(publication("t", UInt64(i), "0123456789", priority: .low)) }
        h.channel.embeddedEventLoop.run()  // the shard writes the tick's publications
        h.connection.reportDrops()
        h.connection.reportDrops()
        let events = h.events()
        #expect(events.map(\.kind) == [.dropped])
        let frameSize = message("t", 1, "0123456789").count
        // 63-byte frames in a 100-byte queue: each new one drops the one before.
        #expect(events.first?.payload == #"{"count":3,"bytes":\#(3 * frameSize),"priority":{"low":3}}"#)
        #expect(events.first?.code == 3)
        #expect(h.isOpen)
    }

    @Test func criticalOverflowClosesTheSlowConsumer() throws {
        let h = try Harness { $0.readyMessage = false; $0.maxSendQueue = 10 }
        h.connection.subscribe(["t"], ack: nil)
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        h.shard.publish(publication("t", 1, "must arrive", priority: .critical))
        h.channel.embeddedEventLoop.run()
        #expect(!h.isOpen)
        #expect(h.core.stats.value(.slowConsumerCloses) == 1)
        #expect(h.core.sendQueueBytes.load(ordering: .relaxed) == 0)
        #expect(h.events().last?.code == 1008)
    }

    @Test func gracefulStopClosesAfterTheQueueDrains() throws {
        let h = try Harness { $0.readyMessage = false }
        h.connection.subscribe(["t"], ack: nil)
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        h.shard.publish(publication("t", 1, "last"))
        h.channel.embeddedEventLoop.run()
        h.connection.closeAfterDrain(code: 1001, reason: "server shutting down")
        #expect(try h.output() == [])
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        #expect(try h.output() == message("t", 1, "last") + close(1001, "server shutting down"))
        #expect(h.connection.state == .closing)
    }
}
