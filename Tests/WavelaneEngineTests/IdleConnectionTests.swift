import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
@testable import WavelaneEngine

/// What an upgraded connection keeps while idle (issue #12's idle RSS): only what it needs after
/// the handshake.
@Suite("Idle connection state after the upgrade")
struct IdleConnectionTests {
    private func upgraded() throws -> (ChildHarness, Connection) {
        let h = try ChildHarness { $0.policies.subprotocols = ["v1"] }
        let flushes = try h.send(upgradeRequest(extra: "Sec-WebSocket-Protocol: v1\r\n"))
        #expect(String(decoding: flushes.first ?? [], as: UTF8.self).contains("Sec-WebSocket-Protocol: v1\r\n"))
        let connection = try #require(h.core.shardsBox.withLockedValue { $0.first?.connections[1] })
        return (h, connection)
    }

    @Test func theHandshakeStateGoesWithTheUpgradeAndTheConnectionKeepsTheHolds() throws {
        let h = try ChildHarness { $0.handshakeTimeout = 1 }
        weak var state = try h.channel.pipeline.syncOperations.handler(type: HTTPHandler.self).state
        #expect(state != nil)
        _ = try h.send(upgradeRequest())
        #expect(state == nil, "no close callback, timeout or handler keeps the handshake state")
        let connection = try #require(h.core.shardsBox.withLockedValue { $0.first?.connections[1] })
        #expect(connection.holds.slot, "the connection slot is still held (given back at teardown)")
        #expect(h.core.stats.connectionSlots.load(ordering: .relaxed) == 1)
        // The handshake timeout was cancelled at the upgrade.
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(h.channel.isActive)
        #expect(h.core.stats.value(.handshakeTimeouts) == 0)
        h.recorder.closeFromHead?()
        h.channel.embeddedEventLoop.run()
        #expect(!connection.holds.slot)
        #expect(h.core.stats.connectionSlots.load(ordering: .relaxed) == 0)
    }

    @Test func aChannelClosedBeforeTheUpgradeGivesBackTheSlotAndCancelsTheTimeout() throws {
        let h = try ChildHarness { $0.handshakeTimeout = 1 }
        let state = try h.channel.pipeline.syncOperations.handler(type: HTTPHandler.self).state
        // As if the checks had passed (they take the slot) and the peer were gone before the upgrade.
        state.holds.slot = true
        h.core.stats.connectionSlots.wrappingAdd(1, ordering: .relaxed)
        _ = try h.send(Array("GET /ws HTTP/1.1\r\nHost: x\r\n".utf8))
        h.recorder.closeFromHead?()
        h.channel.embeddedEventLoop.run()
        #expect(!state.holds.slot)
        #expect(h.core.stats.connectionSlots.load(ordering: .relaxed) == 0)
        #expect(state.deadlines == nil && state.channel == nil, "out of the loop's handshake deadlines")
        #expect(h.core.shardsBox.withLockedValue { $0[0].handshakeDeadlines.count } == 0)
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(h.core.stats.value(.handshakeTimeouts) == 0, "a closed channel is no handshake timeout")
    }

    @Test func theConnectPayloadIsHandedOverNotKept() throws {
        let (h, connection) = try upgraded()
        #expect(connection.connectPayload == nil)
        let events = h.core.queue.drain(max: 10, timeoutMs: 0)
        #expect(events.map(\.kind) == [.connect])
        #expect(String(buffer: events[0].payload).contains(#""subprotocol":"v1""#))
    }

    @Test func aConnectionThatSentNothingHasNoEventArray() throws {
        let (h, connection) = try upgraded()
        #expect(connection.pendingEvents.capacity == 0)
        // A message still goes through it, as before.
        let masked: [UInt8] = [0x81, 0x82, 1, 2, 3, 4, UInt8(ascii: "h") ^ 1, UInt8(ascii: "i") ^ 2]
        _ = try h.send(masked)
        #expect(h.core.queue.drain(max: 10, timeoutMs: 0).map(\.kind) == [.connect, .text])
    }

    @Test func aUserWithOneConnectionHasNoDictionaryOfItsOwn() throws {
        let core = try ServerCore(configuration: EngineConfiguration())
        let loop = EmbeddedEventLoop()
        let shard = Shard(index: 0, eventLoop: loop, server: core)
        func make(_ id: UInt64, _ user: String) -> Connection {
            Connection(id: id, user: user, connectPayload: ByteBuffer(), deflate: nil, shard: shard, server: core)
        }
        let ann = (1...3).map { make($0, "ann") }
        let bob = make(4, "bob")
        for connection in ann + [bob] { core.registry.add(connection) }
        var one = ConnectionRegistry.UserConnections()
        one.insert(bob)
        #expect(one.one === bob && one.more.capacity == 0, "one connection: no dictionary")
        #expect(Set(core.registry.connections(ofUser: "ann").map(\.id)) == [1, 2, 3])
        #expect(core.registry.connections(ofUser: "bob").map(\.id) == [4])
        #expect(core.registry.userCount == 2)
        // The first one leaves, then a new one comes: all still found.
        core.registry.remove(ann[0])
        let later = make(5, "ann")
        core.registry.add(later)
        #expect(Set(core.registry.connections(ofUser: "ann").map(\.id)) == [2, 3, 5])
        for connection in [ann[1], ann[2], later, bob] { core.registry.remove(connection) }
        #expect(core.registry.userCount == 0)
        #expect(core.registry.connections(ofUser: "ann").isEmpty)
    }

    @Test func thePipelineHoldsTheConnectionOnly() throws {
        let (h, _) = try upgraded()
        let sync = h.channel.pipeline.syncOperations
        #expect((try? sync.handler(type: Connection.self)) != nil)
        #expect((try? sync.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)) == nil)
        #expect((try? sync.handler(type: HTTPHandler.self)) == nil)
    }
}
