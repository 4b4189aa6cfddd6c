import NIOCore
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

private func pub(_ topic: String, _ offset: UInt64, epoch: String? = nil) -> Publication {
    let frame = ByteBuffer(string: "\(topic)#\(offset)")
    return Publication(topic: topic, offset: offset, epoch: epoch, frame: frame, body: frame, opcode: .text,
                       compressedFrame: nil, priority: .normal, key: nil)
}

private func offsets(_ publications: [Publication]) -> [UInt64] { publications.map(\.offset) }

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

private func positioned(_ epoch: String, _ offset: UInt64, recovered: [Publication]? = nil,
                        failed: String? = nil, backlogFrom: StreamPosition? = nil) -> Result<SubscriptionSession.Positioned, SubscriptionSession.PositionFailure> {
    let recovery: PositionReply.Recovery = recovered.map { .recovered($0) } ?? failed.map { .failed($0) } ?? .none
    return .success(SubscriptionSession.Positioned(reply: PositionReply(position: StreamPosition(epoch: epoch, offset: offset), recovery: recovery),
                                                   backlogFrom: backlogFrom))
}

private func recovering(_ topic: String, from position: StreamPosition) -> SubscribeOptions {
    var options = SubscribeOptions()
    options.recover[topic] = position
    return options
}

struct SubscriptionSessionTests {
    // MARK: the merge of recovered and live publications

    @Test func recoveryMergesHeldLivePublicationsWithoutGapOrDuplicate() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        // Live publications arrive while the position (and recovery from 5) is fetched.
        for offset: UInt64 in [7, 8, 9, 10] { #expect(session.admit(pub("t", offset)) == false) }
        let (reply, out) = session.complete(
            topics: ["t"], positioned: ["t"],
            results: [positioned("E", 8, recovered: [pub("t", 6), pub("t", 7), pub("t", 8)])],
            id: .int(1), options: recovering("t", from: StreamPosition(epoch: "E", offset: 5)))
        #expect(offsets(out) == [6, 7, 8, 9, 10])
        #expect(text(reply) == #"{"type":"subscribed","topics":["t"],"id":1,"positions":{"t":{"epoch":"E","offset":8}},"recovered":{"t":true}}"#)
        #expect(session.floor(of: "t") == StreamPosition(epoch: "E", offset: 10))
        #expect(!session.isHolding("t"))
        // Later live ones: at or below the floor were sent already; the next above goes and clears it.
        #expect(session.admit(pub("t", 9)) == false)
        #expect(session.admit(pub("t", 10)) == false)
        #expect(session.admit(pub("t", 11)) == true)
        #expect(session.floor(of: "t") == nil)
        #expect(session.admit(pub("t", 3)) == true)  // no floor any more: everything goes
    }

    @Test func recoveredPublicationsAtOrBelowTheClientsOffsetAreSkipped() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        let (_, out) = session.complete(
            topics: ["t"], positioned: ["t"],
            results: [positioned("E", 4, recovered: [pub("t", 2), pub("t", 3), pub("t", 4)])],
            id: nil, options: recovering("t", from: StreamPosition(epoch: "E", offset: 2)))
        #expect(offsets(out) == [3, 4])
    }

    @Test func recoveredComeBeforeHeldEvenWhenHeldArrivedFirst() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        #expect(session.admit(pub("t", 12)) == false)
        #expect(session.admit(pub("t", 11)) == false)  // out of order on the wire: kept as it came, but never below
        let (_, out) = session.complete(
            topics: ["t"], positioned: ["t"],
            results: [positioned("E", 10, recovered: [pub("t", 9), pub("t", 10)])],
            id: nil, options: recovering("t", from: StreamPosition(epoch: "E", offset: 8)))
        #expect(offsets(out) == [9, 10, 12])  // 11 is below what went out last (12): a duplicate's place
    }

    @Test func heldOutsideTheSequenceOrOfAnotherEpochAlwaysGo() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        #expect(session.admit(pub("t", 0, epoch: "E")) == false)       // published while Redis was down
        #expect(session.admit(pub("t", 2, epoch: "F")) == false)       // a reset stream's
        #expect(session.admit(pub("t", 3, epoch: "E")) == false)       // already recovered
        #expect(session.admit(pub("t", 6, epoch: "E")) == false)
        let (_, out) = session.complete(
            topics: ["t"], positioned: ["t"],
            results: [positioned("E", 5, recovered: [pub("t", 4, epoch: "E"), pub("t", 5, epoch: "E")])],
            id: nil, options: recovering("t", from: StreamPosition(epoch: "E", offset: 3)))
        #expect(offsets(out) == [4, 5, 0, 2, 6])
        #expect(session.floor(of: "t") == StreamPosition(epoch: "E", offset: 6))
    }

    @Test func plainPositionedSubscribeSetsTheFloorAtThePosition() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        #expect(session.admit(pub("t", 4)) == false)  // predates the position read: skipped by the merge
        #expect(session.admit(pub("t", 6)) == false)
        let (reply, out) = session.complete(topics: ["t"], positioned: ["t"], results: [positioned("E", 5)],
                                            id: .string("a"), options: SubscribeOptions())
        #expect(offsets(out) == [6])
        #expect(text(reply) == #"{"type":"subscribed","topics":["t"],"id":"a","positions":{"t":{"epoch":"E","offset":5}}}"#)
        #expect(session.floor(of: "t") == StreamPosition(epoch: "E", offset: 6))
    }

    @Test func backlogIsMergedLikeARecoveryButNotReportedAsOne() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        #expect(session.admit(pub("t", 21)) == false)
        var options = SubscribeOptions()
        options.history = 3
        let from = StreamPosition(epoch: "E", offset: 17)
        let (reply, out) = session.complete(
            topics: ["t"], positioned: ["t"],
            results: [positioned("E", 20, recovered: [pub("t", 18), pub("t", 19), pub("t", 20)], backlogFrom: from)],
            id: nil, options: options)
        #expect(offsets(out) == [18, 19, 20, 21])
        #expect(text(reply) == #"{"type":"subscribed","topics":["t"],"positions":{"t":{"epoch":"E","offset":20}}}"#)
    }

    @Test func failedRecoveryIsReportedAndHeldPublicationsGo() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        #expect(session.admit(pub("t", 9)) == false)
        let (reply, out) = session.complete(
            topics: ["t"], positioned: ["t"], results: [positioned("E", 9, failed: "epoch changed: the stream was reset")],
            id: nil, options: recovering("t", from: StreamPosition(epoch: "D", offset: 3)))
        #expect(offsets(out) == [])  // at the position, which the reply tells: not after it
        #expect(text(reply) == #"{"type":"subscribed","topics":["t"],"positions":{"t":{"epoch":"E","offset":9}},"recovered":{"t":false},"recovery_errors":{"t":"epoch changed: the stream was reset"}}"#)
    }

    @Test func unavailablePositionWritesWhatWasHeldAndReportsRequestedRecovery() {
        var session = SubscriptionSession()
        _ = session.add(["a", "b"])
        session.hold(["a", "b"])
        #expect(session.admit(pub("a", 0)) == false)
        #expect(session.admit(pub("b", 0)) == false)
        let failure = SubscriptionSession.PositionFailure(message: "connection refused")
        let (reply, out) = session.complete(
            topics: ["a", "b"], positioned: ["a", "b"], results: [.failure(failure), .failure(failure)],
            id: nil, options: recovering("a", from: StreamPosition(epoch: "E", offset: 1)))
        #expect(out.map(\.topic) == ["a", "b"])
        #expect(text(reply) == #"{"type":"subscribed","topics":["a","b"],"recovered":{"a":false},"recovery_errors":{"a":"redis unavailable: connection refused"}}"#)
        #expect(session.floor(of: "a") == nil)
        #expect(session.admit(pub("a", 1)) == true)
    }

    @Test func topicUnsubscribedWhileWaitingGetsNothing() {
        var session = SubscriptionSession()
        _ = session.add(["t", "u"])
        session.hold(["t", "u"])
        #expect(session.admit(pub("t", 2)) == false)
        #expect(session.admit(pub("u", 2)) == false)
        #expect(session.remove("t")?.isPattern == false)
        #expect(!session.isHolding("t"))
        #expect(session.admit(pub("t", 3)) == true)  // not held any more (the shard no longer delivers it anyway)
        let (_, out) = session.complete(topics: ["t", "u"], positioned: ["t", "u"],
                                        results: [positioned("E", 1), positioned("E", 1)], id: nil, options: SubscribeOptions())
        #expect(out.map(\.topic) == ["u"])
        #expect(session.floor(of: "t") == nil)
    }

    @Test func heldPublicationsAreBounded() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        for offset in 1...UInt64(SubscriptionSession.pendingLimit + 10) { _ = session.admit(pub("t", offset)) }
        let (_, out) = session.complete(topics: ["t"], positioned: ["t"], results: [positioned("E", 0)],
                                        id: nil, options: SubscribeOptions())
        #expect(out.count == SubscriptionSession.pendingLimit)
        #expect(out.last?.offset == UInt64(SubscriptionSession.pendingLimit))
    }

    @Test func holdDoesNotResetAnAlreadyHeldTopic() {
        var session = SubscriptionSession()
        _ = session.add(["t"])
        session.hold(["t"])
        #expect(session.admit(pub("t", 1)) == false)
        session.hold(["t"])
        let (_, out) = session.complete(topics: ["t"], positioned: ["t"], results: [positioned("E", 0)],
                                        id: nil, options: SubscribeOptions())
        #expect(offsets(out) == [1])
    }

    @Test func unpositionedReply() {
        #expect(text(SubscriptionSession.unpositionedReply(topics: ["a", "b.*"], id: .int(2), options: SubscribeOptions()))
                == #"{"type":"subscribed","topics":["a","b.*"],"id":2}"#)
        var options = SubscribeOptions()
        options.recover["a"] = StreamPosition(epoch: "E", offset: 1)
        options.recover["b.*"] = StreamPosition(epoch: "E", offset: 1)
        #expect(text(SubscriptionSession.unpositionedReply(topics: ["a", "b.*"], id: nil, options: options))
                == #"{"type":"subscribed","topics":["a","b.*"],"recovered":{"a":false,"b.*":false},"recovery_errors":{"a":"history is off on this server","b.*":"a glob subscription has no position"}}"#)
    }

    // MARK: requests and approvals

    @Test func requestDecisions() {
        var rules = SubscriptionSession.Rules()
        rules.maxSubscriptions = 3
        rules.maxGlobsPerConnection = 1
        rules.topicAccess = TopicAccess(clientTopics: ["public.*"])
        var session = SubscriptionSession()
        func decide(_ topics: [String], user: String? = "ann") -> String {
            switch session.decide(topics: topics, id: .int(1), user: user, rules: rules) {
            case .refuse(let reply): return text(reply)
            case .subscribe: return "subscribe"
            case .askApplication(let globs): return "ask \(globs.map(\.string).sorted())"
            }
        }
        #expect(decide(["public.a", "public.b"]) == "subscribe")
        #expect(decide(["public.a", "secret"]).contains(#""code":"forbidden","message":"not allowed to subscribe to \"secret\"""#))
        #expect(decide(["bad topic\u{0}"]).contains(#""code":"invalid_topic""#))
        #expect(decide(["a", "b", "c", "d"].map { "public.\($0)" }).contains("at most 3 subscriptions per connection"))
        #expect(decide(["public.*.x", "public.y.*"]).contains("at most 1 glob subscriptions per connection"))
        rules.subscribeApproval = true
        #expect(decide(["public.a", "secret.*"]) == "ask [\"secret.*\"]")
        _ = session.add(["public.a", "public.b", "public.c"])
        // Topics already held do not count again.
        #expect(decide(["public.a", "public.b"]) == "subscribe")
        #expect(decide(["public.d"]).contains("too_many_subscriptions"))
        rules.clientSubscriptions = false
        #expect(decide(["public.a"]) == #"{"type":"error","code":"forbidden","message":"clients may not subscribe on this server","id":1}"#)
    }

    @Test func approvedRequestGetsTheClientsOwnOptionsOnce() {
        var session = SubscriptionSession()
        var asked = SubscribeOptions()
        asked.recover["a"] = StreamPosition(epoch: "E", offset: 4)
        asked.presence = true
        asked.history = 7
        session.awaitApproval(topics: ["a", "g.*"], options: asked, limit: 10)
        // The application's own subscribe (no ack) does not take them.
        #expect(session.options(for: ["a"], nil, acknowledged: false) == SubscribeOptions())
        let approved = session.options(for: ["a", "g.*"], nil, acknowledged: true)
        #expect(approved.recover["a"] == StreamPosition(epoch: "E", offset: 4))
        #expect(approved.presence)
        #expect(approved.history == 7)
        // Taken once.
        #expect(session.options(for: ["a", "g.*"], nil, acknowledged: true) == SubscribeOptions())
    }

    @Test func approvalOptionsAreBounded() {
        var session = SubscriptionSession()
        var asked = SubscribeOptions()
        for i in 0..<5 { asked.recover["t\(i)"] = StreamPosition(epoch: "E", offset: 1) }
        asked.history = 2
        asked.presence = true
        let topics = (0..<5).map { "t\($0)" }
        session.awaitApproval(topics: topics, options: asked, limit: 2)
        let approved = session.options(for: topics, nil, acknowledged: true)
        #expect(approved.recover.count == 2)
    }

    @Test func addWatchRemoveAndRemoveAll() {
        var session = SubscriptionSession()
        #expect(session.add(["a", "b.*", "a", "c"]) == ["a", "b.*", "c"])
        #expect(session.add(["a", "d"]) == ["d"])
        #expect(session.globCount == 1)
        #expect(session.newGlobs(["b.*", "e.*", "e.*", "f"]).map(\.string) == ["e.*"])
        #expect(session.watch(["a", "b.*", "a"]) == ["a"])
        #expect(session.remove("zzz") == nil)
        let removed = session.remove("a")
        #expect(removed?.isPattern == false)
        #expect(removed?.wasWatched == true)
        #expect(session.remove("b.*")?.isPattern == true)
        #expect(session.globCount == 0)
        #expect(!session.contains("a"))
        #expect(session.contains("c"))
        _ = session.watch(["c"])
        let all = session.removeAll()
        #expect(Set(all.subscriptions.map(\.string)) == ["c", "d"])
        #expect(all.watched.map(\.string) == ["c"])
        #expect(session.subscriptions.isEmpty)
        #expect(session.watchedPresence.isEmpty)
    }
}
