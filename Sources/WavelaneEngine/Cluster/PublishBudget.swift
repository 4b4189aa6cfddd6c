// Publications sent to Redis and not yet acknowledged, and their bytes. A slow Redis cannot make
// them pile up: at either bound, a publisher waits (on its own thread, never an event loop) up to
// `wait` for room, then the publication is treated as if Redis were down.

import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class PublishBudget: Sendable {
    let maxBytes: Int
    let maxCount: Int
    let wait: TimeAmount
    private let bytes = Atomic<Int>(0)
    private let count = Atomic<Int>(0)

    init(maxBytes: Int = 64 << 20, maxCount: Int = 65_536, wait: TimeAmount = .seconds(2)) {
        self.maxBytes = maxBytes
        self.maxCount = maxCount
        self.wait = wait
    }

    /// Publications (and their bytes) waiting for Redis' replies.
    var inFlight: (count: Int, bytes: Int) { (self.count.load(ordering: .relaxed), self.bytes.load(ordering: .relaxed)) }

    /// Makes room for one publication of `size` bytes, waiting up to `wait` while `open` stays
    /// true. False: `open` turned false (Redis is down), Redis is still too slow, or the caller
    /// may not wait (`mayWait` false: it is the loop that drains the replies). One oversized
    /// publication may still go alone.
    func reserve(_ size: Int, mayWait: Bool, while open: () -> Bool) -> Bool {
        var deadline: NIODeadline?
        while open() {
            let count = self.count.wrappingAdd(1, ordering: .relaxed).newValue
            let bytes = self.bytes.wrappingAdd(size, ordering: .relaxed).newValue
            if count <= self.maxCount && (bytes <= self.maxBytes || bytes == size) { return true }
            self.release(size)
            if !mayWait { return false }
            let now = NIODeadline.now()
            if deadline == nil { deadline = now + self.wait }
            if now >= deadline! { return false }
            usleep(100)
        }
        return false
    }

    /// Redis answered (or the command failed): the publication no longer counts.
    func release(_ size: Int) {
        self.count.wrappingSubtract(1, ordering: .relaxed)
        self.bytes.wrappingSubtract(size, ordering: .relaxed)
    }
}
