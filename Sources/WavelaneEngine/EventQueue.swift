#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
#if os(Linux) && canImport(CNIOLinux)
import CNIOLinux  // eventfd (sys/eventfd.h is not in the Glibc module)
#endif

/// One inbound event for the application (docs/python-api.md, "Events").
public struct InboundEvent: Sendable {
    public enum Kind: UInt32, Sendable {
        case connect = 1
        case text = 2
        case binary = 3
        case disconnect = 4
        case subscribeRequest = 5
        /// Outbound messages for this connection were dropped (slow consumer); payload: JSON counts.
        case dropped = 6
        /// Multi-instance mode: the Redis link changed state or publications could not go through
        /// it; conn 0, payload: JSON {"redis":..,"reason":..,"undelivered":n}.
        case cluster = 7
        /// A client refreshed its token (same `sub`); payload: JSON {"claims":{..}} of the new token.
        case refresh = 8
        /// A client's remote procedure call; payload: JSON {"method":..,"params":..,"id":..}.
        case rpc = 9

        /// Whether the consumer is woken for it at the end of the tick that queued it. Connect and
        /// disconnect events alone wait up to `Shard.lifecycleWakeDelay` (they go with the next
        /// urgent wake-up if one comes first), and do not end `drain`'s polling (`drain_spin_us`).
        public var isUrgent: Bool { self != .connect && self != .disconnect }
    }

    public var kind: Kind
    /// The close code for `disconnect`, else 0.
    public var code: UInt32
    public var conn: UInt64
    public var payload: ByteBuffer

    public init(kind: Kind, code: UInt32 = 0, conn: UInt64, payload: ByteBuffer) {
        self.kind = kind
        self.code = code
        self.conn = conn
        self.payload = payload
    }
}

/// The bounded multi-producer, single-consumer queue between the event loops and Python.
///
/// Producers (event loops) never block: `push` appends and reports whether the queue is above its
/// high-water mark, in which case the producer's channel is recorded and must stop reading from
/// its socket (TCP backpressure). When the consumer drains the queue below the low-water mark
/// (half the capacity) every paused channel is resumed. The queue therefore holds at most about
/// `capacity` events plus what paused connections had already read, and nothing is ever dropped.
public final class EventQueue: @unchecked Sendable {
    // Heap-allocated so their addresses are stable (never `&` a stored pthread object in Swift).
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// The waiting events as the producers handed them over: each batch is one segment (its array
    /// changes hands, so no event is copied, and no payload retained and released, on the way),
    /// and `drainSegments` hands whole segments on.
    private var segments = CircularBuffer<[InboundEvent]>()
    /// Events of the first segment already taken.
    private var head = 0
    /// Events waiting (in every segment, less `head`).
    private var waiting = 0
    private var paused: [ObjectIdentifier: Channel] = [:]
    private var wakeups = 0
    private var open = true
    /// Readiness descriptor for event loops (`notificationFD`): -1 until first asked for.
    /// Linux: an eventfd; elsewhere the read end of a pipe (`notifyWriteFD` its write end).
    private var notifyFD: Int32 = -1
    private var notifyWriteFD: Int32 = -1
    /// Whether `notifyFD` is currently readable (signalled and not yet cleared). Both the signal
    /// and the clear happen under `mutex`, so the descriptor is readable exactly while this is
    /// true; it is set only on an empty→non-empty transition (or wake/close), so a busy queue
    /// costs no system call per event.
    private var signalled = false
    /// The consumer was signalled since it last found the queue empty: it will come for what
    /// waits, so producers need not wake it again.
    private var consumerWoken = false

    /// Wake-ups sent to the consumer (a `pthread_cond_signal` or broadcast): a spinning consumer
    /// (`spinNanos`) watches this instead of sleeping on the condition.
    private var signals = 0
    /// The last batch `drainSegments` handed out held an event that wakes the consumer at once (a
    /// message, a request: anything but connect and disconnect), so the next wait spins first.
    private var spinNext = false

    public let capacity: Int
    public var lowWater: Int { self.capacity / 2 }
    /// How long a `drainSegments` that finds nothing after an urgent batch polls (yielding the CPU
    /// between looks) before it sleeps on the condition: a reply that comes within it reaches the
    /// consumer without a futex wake-up and the context switch it costs (`drain_spin_us`).
    public let spinNanos: Int

    public init(capacity: Int, spinNanos: Int = 0) {
        self.capacity = capacity
        self.spinNanos = max(0, spinNanos)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(self.cond, &attr)
        pthread_condattr_destroy(&attr)
        pthread_mutex_init(self.mutex, nil)
    }

    deinit {
        if self.notifyFD >= 0 { close(self.notifyFD) }
        if self.notifyWriteFD >= 0 && self.notifyWriteFD != self.notifyFD { close(self.notifyWriteFD) }
        pthread_cond_destroy(self.cond)
        pthread_mutex_destroy(self.mutex)
        self.cond.deallocate()
        self.mutex.deallocate()
    }

    /// Number of events waiting.
    public var count: Int {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return self.waiting
    }

    /// Appends an event. Returns true when the producer's channel must pause reading; the channel
    /// is then resumed by a later `drain`.
    @discardableResult
    public func push(_ event: InboundEvent, from channel: Channel?) -> Bool {
        self.push(contentsOf: CollectionOfOne(event), from: channel)
    }

    /// Appends several events under one lock (and one wake-up); same contract as `push`.
    @discardableResult
    public func push<Events: Collection>(contentsOf batch: Events, from channel: Channel?) -> Bool
    where Events.Element == InboundEvent {
        guard !batch.isEmpty else { return false }
        pthread_mutex_lock(self.mutex)
        self.appendLocked(Array(batch))
        let pause = self.pauseIfFullLocked(channel)
        let wake = !self.consumerWoken
        if wake {
            self.consumerWoken = true
            self.signals &+= 1
            self.signalLocked()
        }
        pthread_mutex_unlock(self.mutex)
        if wake { pthread_cond_signal(self.cond) }
        return pause
    }

    /// Like `push(contentsOf:from:)` but leaves waking the consumer to the caller: the result's
    /// `wake` is true when the consumer has not been woken for what waits, and the caller must then call
    /// `wakeConsumer()` soon (an event loop does it once at the end of its tick, so the events of
    /// every connection read in that tick cost one wake-up of Python, not one each, and Python is
    /// not woken, and scheduled over the loop, in the middle of the loop's reads).
    public func pushDeferringWake<Events: Collection>(contentsOf batch: Events, from channel: Channel?) -> (pause: Bool, wake: Bool)
    where Events.Element == InboundEvent {
        guard !batch.isEmpty else { return (false, false) }
        pthread_mutex_lock(self.mutex)
        self.appendLocked(Array(batch))
        let pause = self.pauseIfFullLocked(channel)
        let wake = !self.consumerWoken
        pthread_mutex_unlock(self.mutex)
        return (pause, wake)
    }

    /// `pushDeferringWake` that takes `batch` as it is (its storage changes hands; `batch` is left
    /// empty, without storage).
    public func pushDeferringWake(moving batch: inout [InboundEvent], from channel: Channel?) -> (pause: Bool, wake: Bool) {
        guard !batch.isEmpty else { return (false, false) }
        pthread_mutex_lock(self.mutex)
        var segment: [InboundEvent] = []
        swap(&segment, &batch)
        self.appendLocked(segment)
        let pause = self.pauseIfFullLocked(channel)
        let wake = !self.consumerWoken
        pthread_mutex_unlock(self.mutex)
        return (pause, wake)
    }

    /// Queues one segment. Caller holds mutex.
    private func appendLocked(_ segment: [InboundEvent]) {
        self.waiting += segment.count
        self.segments.append(segment)
    }

    /// Records `channel` as paused when the queue is at capacity; true when it must stop reading.
    /// Caller holds mutex.
    private func pauseIfFullLocked(_ channel: Channel?) -> Bool {
        guard let channel, self.waiting >= self.capacity else { return false }
        self.paused[ObjectIdentifier(channel)] = channel
        return true
    }

    /// Wakes the consumer if events wait (the deferred half of `pushDeferringWake`).
    public func wakeConsumer() {
        pthread_mutex_lock(self.mutex)
        let wake = self.waiting > 0 && !self.consumerWoken
        if wake {
            self.consumerWoken = true
            self.signals &+= 1
            self.signalLocked()
        }
        pthread_mutex_unlock(self.mutex)
        if wake { pthread_cond_signal(self.cond) }
    }

    /// Takes up to `max` events, waiting up to `timeoutMs` for the first one. Returns an empty array
    /// on timeout, after `wake()`, or once the queue is closed and empty.
    public func drain(max: Int, timeoutMs: Int) -> [InboundEvent] {
        let segments = self.drainSegments(max: max, timeoutMs: timeoutMs)
        return segments.count == 1 ? segments[0] : Array(segments.joined())
    }

    /// `drain`, in the segments the producers handed over (in order): a whole segment is handed on
    /// as it is; only a segment that `max` cuts is copied (its part).
    public func drainSegments(max: Int, timeoutMs: Int) -> [[InboundEvent]] {
        pthread_mutex_lock(self.mutex)
        if self.waiting == 0 && timeoutMs > 0 && self.open {
            let wakeupsBefore = self.wakeups
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let ns = Int(deadline.tv_nsec) + (timeoutMs % 1000) * 1_000_000
            deadline.tv_sec += timeoutMs / 1000 + ns / 1_000_000_000
            deadline.tv_nsec = ns % 1_000_000_000
            if self.spinNext && self.spinNanos > 0 {
                self.spinLocked(for: min(self.spinNanos, timeoutMs * 1_000_000))
            }
            while self.waiting == 0 && self.open && self.wakeups == wakeupsBefore {
                if pthread_cond_timedwait(self.cond, self.mutex, &deadline) == ETIMEDOUT { break }
            }
        }
        let n = Swift.min(Swift.max(max, 0), self.waiting)
        var out: [[InboundEvent]] = []
        var resume: [Channel] = []
        if n > 0 {
            var taken = 0
            while taken < n {
                let left = self.segments.first!.count - self.head
                if self.head == 0 && left <= n - taken {
                    out.append(self.segments.removeFirst())
                    taken += left
                } else {
                    let k = Swift.min(left, n - taken)
                    out.append(Array(self.segments.first![self.head..<(self.head + k)]))
                    self.head += k
                    taken += k
                    if self.head == self.segments.first!.count {
                        self.segments.removeFirst()
                        self.head = 0
                    }
                }
            }
            self.waiting -= n
            self.spinNext = Self.holdsUrgent(out)
            if !self.paused.isEmpty && self.waiting <= self.lowWater {
                resume = Array(self.paused.values)
                self.paused.removeAll()
            }
        }
        if n == 0 { self.spinNext = false }  // a quiet spell: the next wait sleeps at once
        if self.waiting == 0 {
            self.clearLocked()
            self.consumerWoken = false
        }
        pthread_mutex_unlock(self.mutex)
        for channel in resume {
            channel.eventLoop.execute {
                channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            }
        }
        return out
    }

    /// Polls for a wake-up for up to `nanos`, the mutex released between looks and the CPU yielded
    /// (an event loop sharing the core runs at once): returns, holding the mutex, when one came
    /// (the caller then finds the queue's events without sleeping) or the time is up. A wake-up is
    /// what would have ended the sleep: connect and disconnect events alone do not end the spin,
    /// so their batching (`Shard.lifecycleWakeDelay`) is kept.
    private func spinLocked(for nanos: Int) {
        let signalsBefore = self.signals
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        while true {
            pthread_mutex_unlock(self.mutex)
            sched_yield()
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            pthread_mutex_lock(self.mutex)
            if self.signals != signalsBefore || !self.open { return }
            let elapsed = (Int(now.tv_sec) - Int(start.tv_sec)) * 1_000_000_000 + Int(now.tv_nsec) - Int(start.tv_nsec)
            if elapsed >= nanos { return }
        }
    }

    /// Whether `batch` holds an urgent event (`Kind.isUrgent`): looks until the first one.
    private static func holdsUrgent(_ batch: [[InboundEvent]]) -> Bool {
        batch.contains { segment in segment.contains { $0.kind.isUrgent } }
    }

    /// Wakes a consumer blocked in `drain` (it returns what is there, possibly nothing).
    public func wake() {
        pthread_mutex_lock(self.mutex)
        self.wakeups &+= 1
        self.signals &+= 1
        self.signalLocked()
        pthread_mutex_unlock(self.mutex)
        pthread_cond_broadcast(self.cond)
    }

    /// Marks the queue open (start) or closed (stop); a closed queue still hands out what it holds.
    public func setOpen(_ open: Bool) {
        pthread_mutex_lock(self.mutex)
        self.open = open
        if open {
            self.segments.removeAll()
            self.head = 0
            self.waiting = 0
            self.clearLocked()
        } else {
            self.signals &+= 1
            self.signalLocked()  // a consumer watching the descriptor sees the stop
        }
        self.paused.removeAll()
        pthread_mutex_unlock(self.mutex)
        pthread_cond_broadcast(self.cond)
    }

    /// A descriptor that is readable while events wait (and after `wake()` or a stop, until the
    /// next `drain` finds the queue empty), for event loops such as asyncio's `add_reader`. Never
    /// read or close it: `drain` clears it. Created on first call (an eventfd on Linux, a pipe
    /// elsewhere) and closed with the queue. Returns -1 if the system refuses a descriptor.
    public func notificationFD() -> Int32 {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        if self.notifyFD >= 0 { return self.notifyFD }
        #if os(Linux) && canImport(CNIOLinux)
        let fd = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard fd >= 0 else { return -1 }
        self.notifyFD = fd
        self.notifyWriteFD = fd
        #else
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return -1 }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        self.notifyFD = fds[0]
        self.notifyWriteFD = fds[1]
        #endif
        self.signalled = false
        if self.waiting > 0 || !self.open { self.signalLocked() }
        return self.notifyFD
    }

    /// Makes the descriptor readable (at most one write between two clears). Caller holds mutex.
    private func signalLocked() {
        guard self.notifyWriteFD >= 0, !self.signalled else { return }
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(self.notifyWriteFD, $0.baseAddress, $0.count) }
        self.signalled = true
    }

    /// Makes the descriptor unreadable again. Caller holds mutex.
    private func clearLocked() {
        guard self.notifyFD >= 0, self.signalled else { return }
        var buf: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &buf) { read(self.notifyFD, $0.baseAddress, $0.count) }
        self.signalled = false
    }

    public var isOpen: Bool {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return self.open
    }

    /// Channels currently paused for backpressure.
    public var pausedCount: Int {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return self.paused.count
    }
}
