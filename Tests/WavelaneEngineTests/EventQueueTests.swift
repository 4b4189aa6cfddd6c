import NIOCore
import Testing
@testable import WavelaneEngine

@Suite struct EventQueueTests {
    private func event(_ n: UInt64) -> InboundEvent {
        InboundEvent(kind: .text, conn: n, payload: ByteBuffer(string: "m\(n)"))
    }

    @Test func drainsInOrderInBatches() {
        let q = EventQueue(capacity: 100)
        for i in 1...10 { q.push(event(UInt64(i)), from: nil) }
        let first = q.drain(max: 4, timeoutMs: 0)
        #expect(first.map(\.conn) == [1, 2, 3, 4])
        let rest = q.drain(max: 100, timeoutMs: 0)
        #expect(rest.map(\.conn) == [5, 6, 7, 8, 9, 10])
        #expect(q.count == 0)
    }

    @Test func timesOutWhenEmpty() {
        let q = EventQueue(capacity: 10)
        let start = NIODeadline.now()
        #expect(q.drain(max: 10, timeoutMs: 30).isEmpty)
        #expect(NIODeadline.now() - start >= .milliseconds(25))
    }
}
