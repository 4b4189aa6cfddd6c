import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing
import WavelaneProtocol
@testable import WavelaneEngine

/// The single-instance delivery over a real (not started) engine as its host.
@Suite("LocalDelivery")
struct LocalDeliveryTests {
    /// The delivery holds its host unowned (the engine owns its delivery): the engine lives through `body`.
    private func with(_ body: (ServerCore, LocalDelivery) throws -> Void) throws {
        let server = try ServerCore(configuration: EngineConfiguration(json: .object(["presence": .bool(true)])))
        try withExtendedLifetime(server) { try body(server, LocalDelivery(host: server)) }
    }

    @Test func isThisInstanceWithoutALink() throws {
        try self.with { server, delivery in
            #expect(delivery.node == server.epoch)
            #expect(!delivery.redisConnected)
            #expect(delivery.redisState == nil)
        }
    }

    @Test func anotherInstancesConnectionNeedsRedis() throws {
        try self.with { _, delivery in
            #expect(throws: ArgumentError.self) {
                try [UInt8]("x".utf8).withUnsafeBytes { bytes throws(ArgumentError) in
                    try delivery.send(node: "abc", conn: 1, payload: bytes, binary: false, priority: .normal, key: nil)
                }
        }
        }
    }

    @Test func routedAtOnceInline() throws {
        try self.with { _, delivery in
            let ran = NIOLockedValueBox(false)
            delivery.whenRouted(["a", "b:*"], on: EmbeddedEventLoop()) { ran.withLockedValue { $0 = true } }
            #expect(ran.withLockedValue { $0 })  // before returning: the reply is not deferred
        }
    }

    @Test func presenceJoinsUpdatesRefusesAndLeaves() throws {
        try self.with { _, delivery in
            let refusals = NIOLockedValueBox(0)
            let refused: @Sendable () -> Void = { refusals.withLockedValue { $0 += 1 } }
            delivery.presenceJoin(topic: "room", conn: 2, member: Array(#"{"conn":2}"#.utf8), limit: 2, refused: refused)
            delivery.presenceJoin(topic: "room", conn: 1, member: Array(#"{"conn":1}"#.utf8), limit: 2, refused: refused)
            delivery.presenceJoin(topic: "room", conn: 3, member: Array(#"{"conn":3}"#.utf8), limit: 2, refused: refused)
            #expect(refusals.withLockedValue { $0 } == 1)
            delivery.presenceJoin(topic: "room", conn: 1, member: Array(#"{"conn":1,"x":1}"#.utf8), limit: 2, refused: refused)
            #expect(refusals.withLockedValue { $0 } == 1)  // an update is never refused
            let members = try delivery.presenceMembers(topic: "room", timeout: 1).map { String(decoding: $0, as: UTF8.self) }
            #expect(members == [#"{"conn":1,"x":1}"#, #"{"conn":2}"#])  // by connection id
            delivery.presenceLeave(topic: "room", conn: 1)
            delivery.presenceLeave(topic: "room", conn: 1)  // twice: nothing more
            let loop = EmbeddedEventLoop()
            let after = try delivery.presenceMembers(topic: "room", on: loop).wait()
            #expect(after.map { String(decoding: $0, as: UTF8.self) } == [#"{"conn":2}"#])
            #expect(try delivery.presenceMembers(topic: "elsewhere", timeout: 1).isEmpty)
        }
    }

    @Test func anUnpublishedTopicIsAtOffsetZero() throws {
        try self.with { _, delivery in
            let reply = try delivery.position(topic: "never", since: nil, on: EmbeddedEventLoop()).wait()
            #expect(reply.position.offset == 0)
        }
    }
}
