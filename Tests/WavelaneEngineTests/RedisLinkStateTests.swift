import Testing
@testable import WavelaneEngine

@Suite("RedisLinkState")
struct RedisLinkStateTests {
    private func up() -> RedisLinkState {
        var state = RedisLinkState()
        state.client = .connected
        state.pubsub = .connected
        state.subscriptionsRestored = true
        state.scriptsLoaded = true
        return state
    }

    @Test func upOnlyWithBothConnectionsSubscriptionsAndScripts() {
        var state = self.up()
        #expect(state.isUp)
        #expect(state.description == "connected")
        state.scriptsLoaded = false
        #expect(!state.isUp)
        #expect(state.description == "connecting: loading scripts")
        state.scriptsLoaded = true
        state.subscriptionsRestored = false
        #expect(!state.isUp)
        #expect(state.description == "connecting: restoring subscriptions")
        state.subscriptionsRestored = true
        state.pubsub = .connecting
        #expect(!state.isUp)
        #expect(state.description == "connecting")
    }

    @Test func aDisconnectedConnectionNamesTheLinkAndTheReason() {
        var state = RedisLinkState()
        state.client = .connected
        state.pubsub = .disconnected(reason: "connection refused")
        #expect(state.description == "disconnected: connection refused")
        #expect(state.reason == "connection refused")
        state.client = .disconnected(reason: "timeout")
        #expect(state.description == "disconnected: timeout")  // the command connection first
        state = RedisLinkState()
        #expect(state.description == "connecting")
        #expect(state.reason == "connecting")
    }

    @Test func flipsAreReportedOnceAndRetriesAreNotFlips() {
        var state = RedisLinkState()
        #expect(state.takeFlip() == nil)  // connecting: neither up nor down
        state.client = .disconnected(reason: "refused")
        #expect(state.takeFlip() == false)
        #expect(state.takeFlip() == nil)
        state.client = .connecting  // a retry
        #expect(state.takeFlip() == nil)
        state = self.up()
        #expect(state.takeFlip() == true)
        #expect(state.takeFlip() == nil)
        state.scriptsLoaded = false  // reloading after a reconnect of the command connection: not down
        #expect(state.takeFlip() == nil)
        state.pubsub = .disconnected(reason: "EOF")
        #expect(state.takeFlip() == false)
        state.pubsub = .connected
        state.scriptsLoaded = true
        #expect(state.takeFlip() == true)
    }
}
