// The state of this instance's two Redis connections (commands, subscriber) as one value: is
// the link usable, how to describe it, and when has it flipped. Pure; `RedisLink` feeds it.

struct RedisLinkState: Equatable, Sendable {
    var client: RedisConnectionState = .connecting
    var pubsub: RedisConnectionState = .connecting
    /// The subscriber has every subscription it needs confirmed again after a (re)connect.
    var subscriptionsRestored = false
    /// The publish and position scripts are known on the current command connection.
    var scriptsLoaded = false
    /// What was last reported (nil: nothing yet).
    private(set) var reported: Bool? = nil

    private var bothConnected: Bool { self.client == .connected && self.pubsub == .connected }

    /// Publications go through Redis only while both connections are up, the subscriber has
    /// restored its subscriptions and the scripts are loaded: a publication made before that
    /// would get an offset and reach nobody here.
    var isUp: Bool { self.bothConnected && self.subscriptionsRestored && self.scriptsLoaded }

    /// "connected", or "disconnected: <why>" / "connecting: ...".
    var description: String {
        if self.bothConnected {
            if !self.subscriptionsRestored { return "connecting: restoring subscriptions" }
            return self.scriptsLoaded ? "connected" : "connecting: loading scripts"
        }
        for state in [self.client, self.pubsub] {
            if case .disconnected = state { return state.description }
        }
        return self.client == .connected ? self.pubsub.description : self.client.description
    }

    /// Why the link is down, for the `cluster` event's `reason` (`description` without "disconnected: ").
    var reason: String {
        var reason = self.description
        if reason.hasPrefix("disconnected: ") { reason.removeFirst("disconnected: ".count) }
        return reason
    }

    /// Records that up/down is being reported when it flipped since the last report (retries
    /// while connecting are not a flip); returns the new state to report, or nil.
    mutating func takeFlip() -> Bool? {
        let up = self.isUp
        var down = false
        switch (self.client, self.pubsub) {
        case (.disconnected, _), (_, .disconnected): down = true
        default: break
        }
        guard up || down, self.reported != up else { return nil }
        self.reported = up
        return up
    }
}
