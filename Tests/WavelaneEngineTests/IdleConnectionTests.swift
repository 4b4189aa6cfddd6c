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

    @Test func theHandshakeStateKeepsOnlyTheHolds() throws {
        let (h, connection) = try upgraded()
        let state = try #require(connection.handshake)
        #expect(state.upgraded)
        #expect(state.slotHeld, "the connection slot is still held (given back at teardown)")
        #expect(state.accepted == nil, "id, user and connect payload went to the connection")
        #expect(state.subprotocol == nil)
        #expect(state.timeout == nil, "the handshake timeout was cancelled at the upgrade")
        #expect(state.cork == nil)
        #expect(h.core.stats.connectionSlots.load(ordering: .relaxed) == 1)
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

    @Test func thePipelineHoldsTheConnectionOnly() throws {
        let (h, _) = try upgraded()
        let sync = h.channel.pipeline.syncOperations
        #expect((try? sync.handler(type: Connection.self)) != nil)
        #expect((try? sync.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)) == nil)
        #expect((try? sync.handler(type: HTTPHandler.self)) == nil)
        #expect((try? sync.handler(type: UpgradeCork.self)) == nil)
    }
}
