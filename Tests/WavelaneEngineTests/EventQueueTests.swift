#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import NIOConcurrencyHelpers
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

    private func readable(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 1 && (p.revents & Int16(POLLIN)) != 0
    }

    @Test func deferredWakeSignalsOnlyWhenAskedAndIsAskedForUntilTheConsumerIsWoken() {
        let q = EventQueue(capacity: 100)
        let fd = q.notificationFD()
        #expect(q.pushDeferringWake(contentsOf: [event(1)], from: nil) == (pause: false, wake: true))
        // Not woken yet (a loop may have deferred the wake-up of lifecycle events): still asked for.
        #expect(q.pushDeferringWake(contentsOf: [event(2), event(3)], from: nil) == (pause: false, wake: true))
        #expect(!readable(fd), "not signalled before wakeConsumer")
        q.wakeConsumer()
        #expect(readable(fd))
        // Woken: it will come for these too.
        #expect(q.pushDeferringWake(contentsOf: [event(4)], from: nil) == (pause: false, wake: false))
        q.wakeConsumer()  // idempotent
        #expect(q.drain(max: 2, timeoutMs: 0).map(\.conn) == [1, 2])
        #expect(readable(fd), "events still wait")
        #expect(q.pushDeferringWake(contentsOf: [event(5)], from: nil) == (pause: false, wake: false))
        #expect(q.drain(max: 10, timeoutMs: 0).map(\.conn) == [3, 4, 5])
        #expect(!readable(fd))
        q.wakeConsumer()  // nothing waits: no signal
        #expect(!readable(fd))
        #expect(q.pushDeferringWake(contentsOf: [InboundEvent](), from: nil) == (pause: false, wake: false))
        // Found empty: the next events need a wake-up again.
        #expect(q.pushDeferringWake(contentsOf: [event(6)], from: nil) == (pause: false, wake: true))
    }

    @Test func segmentsAreHandedOnWholeAndCutOnlyAtMax() {
        let q = EventQueue(capacity: 100)
        var batch = [event(1), event(2), event(3)]
        _ = q.pushDeferringWake(moving: &batch, from: nil)
        #expect(batch.isEmpty && batch.capacity == 0, "the array went to the queue")
        _ = q.push(contentsOf: [event(4)], from: nil)
        _ = q.push(contentsOf: [event(5), event(6)], from: nil)
        #expect(q.count == 6)
        #expect(q.drainSegments(max: 4, timeoutMs: 0).map { $0.map(\.conn) } == [[1, 2, 3], [4]])
        #expect(q.drainSegments(max: 1, timeoutMs: 0).map { $0.map(\.conn) } == [[5]])
        #expect(q.count == 1)
        #expect(q.drain(max: 10, timeoutMs: 0).map(\.conn) == [6])
        #expect(q.count == 0)
    }

    @Test func deferredWakeReleasesABlockedConsumer() {
        let q = EventQueue(capacity: 100)
        let done = DispatchSemaphore(value: 0)
        let got = NIOLockedValueBox<[UInt64]>([])
        Thread.detachNewThread {  // a real thread blocked in drain, as Python's is
            got.withLockedValue { $0 = q.drain(max: 10, timeoutMs: 10_000).map(\.conn) }
            done.signal()
        }
        usleep(50_000)
        _ = q.pushDeferringWake(contentsOf: [event(7)], from: nil)
        q.wakeConsumer()
        #expect(done.wait(timeout: .now() + 5) == .success, "woken well before its 10 s timeout")
        #expect(got.withLockedValue { $0 } == [7])
    }

    @Test func notificationDescriptorIsReadableExactlyWhileEventsWait() {
        let q = EventQueue(capacity: 100)
        q.push(event(1), from: nil)
        let fd = q.notificationFD()
        #expect(fd >= 0)
        #expect(q.notificationFD() == fd)
        #expect(readable(fd), "events already waiting when it was created")
        for i in 2...5 { q.push(event(UInt64(i)), from: nil) }
        #expect(q.drain(max: 2, timeoutMs: 0).count == 2)
        #expect(readable(fd), "three still wait")
        #expect(q.drain(max: 10, timeoutMs: 0).count == 3)
        #expect(!readable(fd), "cleared once empty")
        q.push(event(6), from: nil)
        #expect(readable(fd))
        #expect(q.drain(max: 10, timeoutMs: 0).count == 1)
        #expect(!readable(fd))
        q.wake()
        #expect(readable(fd), "wake() makes it readable")
        #expect(q.drain(max: 10, timeoutMs: 0).isEmpty)
        #expect(!readable(fd))
        q.setOpen(false)
        #expect(readable(fd), "a stop makes it readable")
        q.setOpen(true)
        #expect(!readable(fd))
    }

    /// CPU time of the calling thread.
    private func threadCPU() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    @Test func spinAfterAMessageIsBoundedThenTheConsumerSleeps() {
        // 20 ms of spin, a 300 ms wait: the rest of the wait is asleep, not polling.
        let q = EventQueue(capacity: 100, spinNanos: 20_000_000)
        q.push(event(1), from: nil)
        #expect(q.drain(max: 10, timeoutMs: 0).map(\.conn) == [1])  // a message: the next wait spins
        let cpu0 = self.threadCPU(), start = NIODeadline.now()
        #expect(q.drain(max: 10, timeoutMs: 300).isEmpty)
        #expect(NIODeadline.now() - start >= .milliseconds(250))
        #expect(self.threadCPU() - cpu0 < 0.15, "spun \(self.threadCPU() - cpu0) s of a 0.3 s wait")
        // That wait found nothing: the next one sleeps at once (an idle server does not poll).
        let cpu1 = self.threadCPU()
        #expect(q.drain(max: 10, timeoutMs: 100).isEmpty)
        #expect(self.threadCPU() - cpu1 < 0.01)
    }

    @Test func aSpinningConsumerTakesWokenEventsAndLeavesLifecycleOnesToTheirWakeUp() {
        let q = EventQueue(capacity: 100, spinNanos: 2_000_000_000)  // spins for the whole test
        q.push(event(1), from: nil)
        _ = q.drain(max: 10, timeoutMs: 0)
        let done = DispatchSemaphore(value: 0)
        let got = NIOLockedValueBox<[UInt64]>([])
        Thread.detachNewThread {
            got.withLockedValue { $0 = q.drain(max: 10, timeoutMs: 10_000).map(\.conn) }
            done.signal()
        }
        usleep(50_000)
        // A connect event whose wake-up is deferred (Shard.lifecycleWakeDelay) does not end the spin...
        let connect = InboundEvent(kind: .connect, conn: 8, payload: ByteBuffer(string: "{}"))
        #expect(q.pushDeferringWake(contentsOf: [connect], from: nil).wake)
        #expect(done.wait(timeout: .now() + .milliseconds(100)) == .timedOut, "the spin ended without a wake-up")
        // ...its wake-up does, well before the spin's 2 s, with everything that waits.
        q.wakeConsumer()
        #expect(done.wait(timeout: .now() + 1) == .success)
        #expect(got.withLockedValue { $0 } == [8])
        // A batch of lifecycle events alone: the next wait does not spin.
        let cpu0 = self.threadCPU()
        #expect(q.drain(max: 10, timeoutMs: 100).isEmpty)
        #expect(self.threadCPU() - cpu0 < 0.01)
    }
}
