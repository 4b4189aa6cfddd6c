import NIOCore
import WavelaneProtocol

extension SubscriptionSession.Rules {
    init(_ config: EngineConfiguration) {
        self.init(clientSubscriptions: config.clientSubscriptions, subscribeApproval: config.subscribeApproval,
                  maxTopicLength: config.maxTopicLength, maxSubscriptions: config.maxSubscriptions,
                  maxGlobsPerConnection: config.maxGlobsPerConnection, topicAccess: config.topicAccess)
    }
}

/// Subscribing: `SubscriptionSession` decides and merges; this side does the I/O it needs (the
/// shard's topic index, the glob budget, presence, stream positions) and writes what it returns.
extension Connection {
    /// A client's subscribe request: refused, subscribed, or handed to the application.
    func requestSubscribe(_ topics: [String], id: JSONValue?, options: SubscribeOptions) {
        switch self.session.decide(topics: topics, id: id, user: self.user, rules: SubscriptionSession.Rules(self.server.config)) {
        case .refuse(let reply):
            self.sendJSON(reply)
        case .subscribe:
            self.subscribe(topics, ack: .some(id), options: options, fromClient: true)
        case .askApplication(let newGlobs):
            if !newGlobs.isEmpty && !self.server.globBudget.fits(newGlobs) {
                self.sendJSON(Self.globBudgetError(self.server.config.maxGlobs, id: id))
                return
            }
            guard self.context != nil else { return }
            self.session.awaitApproval(topics: topics, options: options, limit: self.server.config.maxSubscriptions)
            self.pushEvent(.subscribeRequest, ServerMessage.subscribeRequestEvent(topics: topics, id: id))
        }
    }

    static func globBudgetError(_ limit: Int, id: JSONValue?) -> [UInt8] {
        ServerMessage.error(code: "too_many_subscriptions",
                            message: "the server holds its maximum of \(limit) glob patterns", id: id)
    }

    /// Adds subscriptions. `ack`: nil = no reply; .some(id) = reply `subscribed` with that id (nil: no
    /// id field). `options` (recovery, presence events) come from the client's request; for a request
    /// the application approved, those the client sent with it are used. `fromClient`: the client's
    /// own request, bound by `max_globs` (the application's subscriptions are not refused).
    func subscribe(_ topics: [String], ack: JSONValue??, options: SubscribeOptions? = nil, fromClient: Bool = false) {
        guard self.state == .open else { return }
        let newGlobs = self.session.newGlobs(topics)
        if !newGlobs.isEmpty && !self.server.globBudget.acquire(newGlobs, force: !fromClient) {
            if let ack { self.sendJSON(Self.globBudgetError(self.server.config.maxGlobs, id: ack)) }
            return
        }
        let options = self.session.options(for: topics, options, acknowledged: ack != nil)
        let presence = self.server.config.presence
        for topic in self.session.add(topics) {
            self.shard.addSubscription(self, topic)
            if presence && !Topic.isPattern(topic) {
                self.server.presenceJoin(topic: topic, conn: self.id, member: self.memberJSON()) {
                    self.eventLoop.execute { self.presenceRefused(topic) }
                }
            }
        }
        if options.presence && presence {
            for topic in self.session.watch(topics) { self.shard.watchPresence(self.id, topic) }
        }
        guard let ack else { return }
        // Multi-instance mode: `subscribed` means routed, i.e. Redis has confirmed this instance's
        // subscriptions, so whatever is published after the reply arrives (the topics with a
        // position wait for that inside `position`).
        let positioned = topics.filter { !Topic.isPattern($0) }
        let history = self.server.config.historySize > 0 && !positioned.isEmpty
        if history { self.session.hold(positioned) }  // hold their publications from now on, until the positions are known
        let waitFor = history ? topics.filter { Topic.isPattern($0) } : topics
        self.server.delivery.whenRouted(waitFor, on: self.eventLoop) { [options] in
            self.answerSubscribe(topics, positioned: positioned, history: history, ack: ack, options: options)
        }
    }

    private func answerSubscribe(_ topics: [String], positioned: [String], history: Bool, ack: JSONValue?,
                                 options: SubscribeOptions) {
        guard self.state == .open else { return }
        // Positions (and recovery) come with the history: history_size > 0.
        guard history else {
            self.sendJSON(SubscriptionSession.unpositionedReply(topics: topics, id: ack, options: options))
            return
        }
        self.session.hold(positioned)
        var requests: [EventLoopFuture<SubscriptionSession.Positioned>] = []
        for topic in positioned {
            requests.append(self.requestPosition(topic: topic, recover: options.recover[topic], backlog: UInt64(options.history)))
        }
        EventLoopFuture.whenAllComplete(requests, on: self.eventLoop).whenSuccess { results in
            guard self.state == .open else { return }
            let (reply, publications) = self.session.complete(
                topics: topics, positioned: positioned,
                results: results.map { $0.mapError { SubscriptionSession.PositionFailure(message: (($0 as? RedisError)?.message ?? "\($0)")) } },
                id: ack, options: options)
            self.sendJSON(reply)
            for publication in publications { self.deliver(publication) }
        }
    }

    /// A topic's position (and its recovery from `recover`). With a `backlog` and no recovery: read
    /// the position, then "recover" from `backlog` publications before it; the publications that
    /// arrive meanwhile are held and merged by offset, as for a recovery.
    private func requestPosition(topic: String, recover: StreamPosition?, backlog: UInt64) -> EventLoopFuture<SubscriptionSession.Positioned> {
        let first = self.server.position(topic: topic, since: recover, on: self.eventLoop)
        guard backlog > 0, recover == nil else {
            return first.map { SubscriptionSession.Positioned(reply: $0, backlogFrom: nil) }
        }
        return first.flatMap { reply -> EventLoopFuture<SubscriptionSession.Positioned> in
            guard reply.position.offset > 0 else {
                return first.eventLoop.makeSucceededFuture(SubscriptionSession.Positioned(reply: reply, backlogFrom: nil))
            }
            let from = StreamPosition(epoch: reply.position.epoch,
                                      offset: reply.position.offset > backlog ? reply.position.offset - backlog : 0)
            return self.server.position(topic: topic, since: from, on: self.eventLoop).map { second in
                guard case .recovered = second.recovery else { return SubscriptionSession.Positioned(reply: reply, backlogFrom: nil) }
                // Publications between the two reads moved the position on: the backlog is the last
                // `backlog` publications up to the position reported, not one more per publication.
                let top = second.position.offset
                let start = top > backlog ? max(from.offset, top - backlog) : from.offset
                return SubscriptionSession.Positioned(reply: second, backlogFrom: StreamPosition(epoch: from.epoch, offset: start))
            }.recover { _ in SubscriptionSession.Positioned(reply: reply, backlogFrom: nil) }
        }
    }

    func unsubscribe(_ topics: [String], ack: JSONValue??) {
        guard self.state == .open else { return }
        for topic in topics {
            guard let removed = self.session.remove(topic) else { continue }
            self.shard.removeSubscription(self, topic)
            if removed.isPattern { self.server.globBudget.release(ByteString(topic)) }
            if self.server.config.presence && !removed.isPattern { self.server.presenceLeave(topic: topic, conn: self.id) }
            if removed.wasWatched { self.shard.unwatchPresence(self.id, topic) }
        }
        if let ack { self.sendJSON(ServerMessage.ack("unsubscribed", topics: topics, id: ack)) }
    }
}
