// The handshake timeout (`handshake_timeout`) of every connection on one event loop.

import NIOCore

/// The connections of one event loop still in their HTTP phase, oldest first, and one timer, for
/// the oldest's deadline. Every handshake gets the same timeout, so the list is in deadline order:
/// a connection costs a link when accepted and an unlink at its upgrade or close, and the timer
/// closes what is past its deadline when it fires, then waits for the new oldest.
///
/// A scheduled task per connection (what this replaces) allocated a task and a promise per
/// handshake, and cancelling one searches the loop's whole timer heap: quadratic in a storm of
/// pending handshakes. Touched only on `eventLoop`.
final class HandshakeDeadlines {
    private let eventLoop: EventLoop
    private let timeout: TimeAmount
    private let stats: EngineStats
    /// The oldest handshake in progress; each holds the next (`HandshakeState.next`).
    private var head: HandshakeState?
    private unowned(unsafe) var tail: HandshakeState?
    private var timer: Scheduled<Void>?
    /// Handshakes in progress (for tests and the memory bound: one entry per open channel).
    private(set) var count = 0

    init(eventLoop: EventLoop, timeout: TimeAmount, stats: EngineStats) {
        self.eventLoop = eventLoop
        self.timeout = timeout
        self.stats = stats
    }

    /// Starts `state`'s timeout: unless `remove`d first, `channel` is closed `timeout` from now.
    func add(_ state: HandshakeState, channel: Channel) {
        self.eventLoop.assertInEventLoop()
        precondition(state.deadlines == nil, "a handshake is timed once")
        state.deadlines = self
        state.channel = channel
        state.deadline = self.eventLoop.now + self.timeout
        state.previous = self.tail
        if let tail = self.tail {
            tail.next = state
        } else {
            self.head = state
        }
        self.tail = state
        self.count += 1
        if self.timer == nil { self.arm(state.deadline) }
    }

    /// Ends `state`'s timeout (its upgrade, or its channel closed). Idempotent.
    func remove(_ state: HandshakeState) {
        guard state.deadlines === self else { return }
        let next = state.next
        if let previous = state.previous {
            previous.next = next
        } else {
            self.head = next
        }
        if let next {
            next.previous = state.previous
        } else {
            self.tail = state.previous
        }
        state.next = nil
        state.previous = nil
        state.deadlines = nil
        state.channel = nil
        self.count -= 1
        // The timer stays: when it fires it finds the new oldest, or nothing and stops.
    }

    private func arm(_ deadline: NIODeadline) {
        self.timer = self.eventLoop.scheduleTask(deadline: deadline) { [weak self] in self?.expire() }
    }

    private func expire() {
        self.timer = nil
        let now = self.eventLoop.now
        while let oldest = self.head, oldest.deadline <= now {
            // Listed means not upgraded yet: the upgrade removes a handshake before anything else.
            let channel = oldest.channel
            self.remove(oldest)
            self.stats.add(.handshakeTimeouts)
            channel?.close(promise: nil)
        }
        if let oldest = self.head { self.arm(oldest.deadline) }
    }

    /// Stops the timer (the loop is shutting down); what is listed stays until its channel closes.
    func stop() {
        self.timer?.cancel()
        self.timer = nil
    }
}
