import Testing
import WavelaneProtocol

/// The close handshake and lifecycle, without I/O: each transition and the action it returns.
struct ConnectionStateMachineTests {
    @Test func startsOpen() {
        let machine = ConnectionStateMachine()
        #expect(machine.state == .open)
        #expect(machine.isOpen)
        #expect(!machine.isDraining)
        #expect(machine.closeCode == nil)
    }

    @Test func serverCloseSendsCloseThenWaitsForThePeer() {
        var machine = ConnectionStateMachine()
        #expect(machine.close(code: 1000, reason: "bye") == .sendClose(code: 1000, reason: "bye"))
        #expect(machine.state == .closing)
        // A second close while closing does nothing: one close frame only.
        #expect(machine.close(code: 1001, reason: "again") == .none)
        // The peer's answer completes the handshake.
        #expect(machine.receivedClose(code: 1000, reason: "") == .closeChannel)
        #expect(machine.state == .closed)
        #expect(machine.receivedClose(code: 1000, reason: "") == .none)
        let (code, reason) = machine.closed()
        #expect(code == 1000)
        #expect(reason == "bye")
    }

    @Test func peerCloseIsEchoedWithItsCodeAndNoReason() {
        var machine = ConnectionStateMachine()
        #expect(machine.receivedClose(code: 4000, reason: "done") == .replyCloseThenClose(code: 4000))
        #expect(machine.state == .closed)
        // After the peer's close nothing more is sent.
        #expect(machine.close(code: 1000, reason: "") == .none)
        #expect(machine.abort(code: 1001, reason: "") == .none)
        #expect(machine.fail(code: 1002, reason: "") == .none)
        let (code, reason) = machine.closed()
        #expect(code == 4000)
        #expect(reason == "done")
    }

    @Test func peerCloseWithoutCodeIsEchoedEmptyAndReported1005() {
        var machine = ConnectionStateMachine()
        #expect(machine.receivedClose(code: nil, reason: "") == .replyCloseThenClose(code: nil))
        #expect(machine.closed().code == CloseCode.noStatus)
    }

    @Test func failWhileOpenSendsCodeAndReasonThenCloses() {
        var machine = ConnectionStateMachine()
        #expect(machine.fail(code: 1009, reason: "message too big") == .sendCloseThenClose(code: 1009, reason: "message too big"))
        #expect(machine.state == .closed)
        #expect(machine.fail(code: 1002, reason: "again") == .none)
        let (code, reason) = machine.closed()
        #expect(code == 1009)
        #expect(reason == "message too big")
    }

    @Test func failWhileClosingClosesWithoutAnotherFrame() {
        var machine = ConnectionStateMachine()
        _ = machine.close(code: 1008, reason: "rate limit exceeded")
        #expect(machine.fail(code: 1002, reason: "bad frame") == .closeChannel)
        // The first close decides what the application is told.
        #expect(machine.closed().code == 1008)
    }

    @Test func abortWhileOpenSendsCloseAndClosesAtOnce() {
        var machine = ConnectionStateMachine()
        #expect(machine.abort(code: 1008, reason: "slow consumer") == .sendCloseAndAbort(code: 1008, reason: "slow consumer"))
        #expect(machine.state == .closed)
        #expect(machine.abort(code: 1001, reason: "") == .none)
        let (code, reason) = machine.closed()
        #expect(code == 1008)
        #expect(reason == "slow consumer")
    }

    @Test func abortWhileClosingOnlyClosesTheChannel() {
        var machine = ConnectionStateMachine()
        _ = machine.close(code: 1001, reason: "server shutting down")
        #expect(machine.abort(code: 1001, reason: "server shutting down") == .closeChannel)
        #expect(machine.state == .closed)
    }

    @Test func vanishedPeerIsReported1006() {
        var machine = ConnectionStateMachine()
        let (code, reason) = machine.closed()
        #expect(code == CloseCode.abnormal)
        #expect(reason == "")
        #expect(machine.state == .closed)
    }

    @Test func closeAfterDrainWithEmptyQueueClosesNow() {
        var machine = ConnectionStateMachine()
        #expect(machine.closeAfterDrain(code: 1001, reason: "stop", queueEmpty: true) == .sendClose(code: 1001, reason: "stop"))
        #expect(!machine.isDraining)
        #expect(machine.state == .closing)
    }

    @Test func closeAfterDrainWaitsForTheQueue() {
        var machine = ConnectionStateMachine()
        #expect(machine.closeAfterDrain(code: 1001, reason: "stop", queueEmpty: false) == .none)
        #expect(machine.isDraining)
        #expect(machine.state == .open)
        #expect(machine.queueDrained() == .sendClose(code: 1001, reason: "stop"))
        #expect(!machine.isDraining)
        #expect(machine.state == .closing)
        // Drained again (nothing pending): nothing to do.
        #expect(machine.queueDrained() == .none)
    }

    @Test func queueDrainedWithoutGracefulStopDoesNothing() {
        var machine = ConnectionStateMachine()
        #expect(machine.queueDrained() == .none)
        #expect(machine.state == .open)
    }

    @Test func closeAfterDrainWhenNotOpenDoesNothing() {
        var machine = ConnectionStateMachine()
        _ = machine.close(code: 1000, reason: "")
        #expect(machine.closeAfterDrain(code: 1001, reason: "stop", queueEmpty: false) == .none)
        #expect(!machine.isDraining)
    }

    @Test func peerCloseDuringDrainWinsAndDrainIsForgotten() {
        var machine = ConnectionStateMachine()
        _ = machine.closeAfterDrain(code: 1001, reason: "stop", queueEmpty: false)
        #expect(machine.receivedClose(code: 1000, reason: "") == .replyCloseThenClose(code: 1000))
        // The queue drains later: the connection is closed already, so no second close frame.
        #expect(machine.queueDrained() == .none)
        #expect(machine.closed().code == 1000)
    }
}
