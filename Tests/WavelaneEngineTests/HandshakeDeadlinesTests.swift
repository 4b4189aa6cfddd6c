import NIOCore
import NIOEmbedded
import Testing
@testable import WavelaneEngine

/// The handshake timeout: one list and one timer per loop (`HandshakeDeadlines`).
@Suite("HandshakeDeadlines: the handshake timeout of a loop's connections")
struct HandshakeDeadlinesTests {
    @Test func aRequestNotFinishedInTimeIsClosedAndCounted() throws {
        let h = try ChildHarness { $0.handshakeTimeout = 1 }
        _ = try h.send(Array("GET /ws HTTP/1.1\r\nHost: x\r\n".utf8))
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        #expect(h.channel.isActive)
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!h.channel.isActive)
        #expect(h.core.stats.value(.handshakeTimeouts) == 1)
        #expect(h.core.shardsBox.withLockedValue { $0[0].handshakeDeadlines.count } == 0)
    }

    /// Channels accepted at 0, 0.3, 0.6 and 0.9 s with a 1 s timeout; the second and the last leave
    /// the list early (an upgrade or a close, in the middle and at the tail), the others expire in
    /// order, each at its own deadline, by the one timer re-armed for the new oldest.
    @Test func eachExpiresAtItsOwnDeadlineInOrderAndRemovedOnesNever() throws {
        let loop = EmbeddedEventLoop()
        let stats = EngineStats()
        let deadlines = HandshakeDeadlines(eventLoop: loop, timeout: .seconds(1), stats: stats)
        var channels: [EmbeddedChannel] = []
        var states: [HandshakeState] = []
        for i in 0..<4 {
            if i > 0 { loop.advanceTime(by: .milliseconds(300)) }
            let channel = EmbeddedChannel(loop: loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            let state = HandshakeState()
            deadlines.add(state, channel: channel)
            channels.append(channel)
            states.append(state)
        }
        #expect(deadlines.count == 4)
        deadlines.remove(states[1])
        deadlines.remove(states[1])  // idempotent
        deadlines.remove(states[3])
        #expect(deadlines.count == 2)
        #expect(states[1].channel == nil && states[1].next == nil && states[1].previous == nil)

        loop.advanceTime(to: .uptimeNanoseconds(0) + .milliseconds(999))  // EmbeddedEventLoop starts at 0
        #expect(channels.map(\.isActive) == [true, true, true, true])
        loop.advanceTime(to: .uptimeNanoseconds(0) + .milliseconds(1000))
        #expect(channels.map(\.isActive) == [false, true, true, true])
        loop.advanceTime(to: .uptimeNanoseconds(0) + .milliseconds(1599))
        #expect(channels.map(\.isActive) == [false, true, true, true])
        loop.advanceTime(to: .uptimeNanoseconds(0) + .milliseconds(1600))
        #expect(channels.map(\.isActive) == [false, true, false, true])
        loop.advanceTime(by: .seconds(5))
        #expect(channels.map(\.isActive) == [false, true, false, true], "removed ones are never closed")
        #expect(stats.value(.handshakeTimeouts) == 2)
        #expect(deadlines.count == 0)

        // An empty list stopped its timer; the next handshake arms it again.
        let late = EmbeddedChannel(loop: loop)
        try late.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        deadlines.add(HandshakeState(), channel: late)
        loop.advanceTime(by: .seconds(1))
        #expect(!late.isActive)
        #expect(stats.value(.handshakeTimeouts) == 3)
    }
}
