import NIOCore
import WavelaneProtocol

/// The subscription bookkeeping of one connection, as a pure value (no channel, no futures): which
/// topics it holds, the options of requests waiting for the application's approval, the topics
/// whose `subscribed` reply waits for a stream position (their live publications are held
/// meanwhile), the floors below which publications were already sent, and the merge of recovered
/// (or backlog) publications with the held live ones. Its functions return the messages and
/// publications to write; `Connection` performs them and does the I/O (position requests, the
/// shard's index, presence, the glob budget).
struct SubscriptionSession {
    /// The server rules a client's subscribe request is checked against.
    struct Rules {
        var clientSubscriptions = true
        var subscribeApproval = false
        var maxTopicLength = 256
        var maxSubscriptions = 1000
        var maxGlobsPerConnection = 100
        var topicAccess = TopicAccess()
    }

    /// What to do with a client's subscribe request.
    enum RequestDecision {
        /// Refused as a whole: send this error reply.
        case refuse([UInt8])
        /// Every topic is granted: subscribe now.
        case subscribe
        /// The application decides (subscribe_approval); `newGlobs` must fit the server's budget.
        case askApplication(newGlobs: [ByteString])
    }

    /// A topic's position reply, and where its backlog starts when the client asked for one.
    struct Positioned {
        var reply: PositionReply
        var backlogFrom: StreamPosition?
    }

    /// Why a position could not be had (Redis down).
    struct PositionFailure: Error {
        var message: String
    }

    /// Most publications held for one topic while its position is fetched.
    static let pendingLimit = 100_000

    /// Topic-keyed state compares names as UTF-8 bytes (`ByteString`), never Unicode equivalence.
    private(set) var subscriptions = Set<ByteString>()
    /// How many of `subscriptions` are glob patterns.
    private(set) var globCount = 0
    /// Topics whose join/leave events this connection watches.
    private(set) var watchedPresence = Set<ByteString>()
    /// Topics whose `subscribed` reply waits for the stream position: publications that arrive
    /// meanwhile are held here, then merged with the recovered history by offset.
    private var pendingPositions: [ByteString: [Publication]] = [:]
    /// After a positioned subscribe: publications of the topic at or below this position were
    /// already sent (or predate the subscription) and are skipped. Cleared by the next one above.
    private var floors: [ByteString: StreamPosition] = [:]
    /// Options of subscribe requests waiting for the application's approval, per topic (bounded
    /// by max_subscriptions).
    private var approvalRecover: [ByteString: StreamPosition] = [:]
    private var approvalPresence = Set<ByteString>()
    private var approvalHistory: [ByteString: Int] = [:]

    func contains(_ topic: String) -> Bool { self.subscriptions.contains(ByteString(topic)) }
    /// Whether publications of `topic` are being held for a position.
    func isHolding(_ topic: String) -> Bool { self.pendingPositions[ByteString(topic)] != nil }
    func floor(of topic: String) -> StreamPosition? { self.floors[ByteString(topic)] }

    // MARK: requests

    /// Checks a client's subscribe request. Deny by default (docs/security.md): a request is
    /// decided as a whole. Unless every topic is the client's own or covered by client_topics, the
    /// whole request goes to the application (subscribe_approval) or is refused.
    func decide(topics: [String], id: JSONValue?, user: String?, rules: Rules) -> RequestDecision {
        guard rules.clientSubscriptions else {
            return .refuse(ServerMessage.error(code: "forbidden", message: "clients may not subscribe on this server", id: id))
        }
        for topic in topics {
            if let problem = Topic.validate(topic, maxLength: rules.maxTopicLength, allowWildcards: true) {
                return .refuse(ServerMessage.error(code: "invalid_topic", message: problem.message, id: id))
            }
        }
        let access = rules.topicAccess
        let needsApproval = topics.contains { !access.grants($0, sub: user) }
        if needsApproval && !rules.subscribeApproval {
            let refused = topics.first { !access.grants($0, sub: user) } ?? ""
            return .refuse(ServerMessage.error(code: "forbidden", message: "not allowed to subscribe to \"\(refused)\"", id: id))
        }
        let new = Set(topics.map { ByteString($0) }).subtracting(self.subscriptions)
        if self.subscriptions.count + new.count > rules.maxSubscriptions {
            return .refuse(ServerMessage.error(
                code: "too_many_subscriptions",
                message: "at most \(rules.maxSubscriptions) subscriptions per connection", id: id))
        }
        let newGlobs = new.filter { Topic.isPattern($0.string) }
        if self.globCount + newGlobs.count > rules.maxGlobsPerConnection {
            return .refuse(ServerMessage.error(
                code: "too_many_subscriptions",
                message: "at most \(rules.maxGlobsPerConnection) glob subscriptions per connection", id: id))
        }
        return needsApproval ? .askApplication(newGlobs: Array(newGlobs)) : .subscribe
    }

    /// Keeps the client's options of a request sent to the application, for when it approves
    /// (at most `limit` topics each).
    mutating func awaitApproval(topics: [String], options: SubscribeOptions, limit: Int) {
        for (topic, position) in options.recover where self.approvalRecover.count < limit {
            self.approvalRecover[ByteString(topic)] = position
        }
        if options.presence {
            for topic in topics where self.approvalPresence.count < limit {
                self.approvalPresence.insert(ByteString(topic))
            }
        }
        if options.history > 0 {
            for topic in topics where !Topic.isPattern(topic) && self.approvalHistory.count < limit {
                self.approvalHistory[ByteString(topic)] = options.history
            }
        }
    }

    /// The options a subscribe applies: `options`, plus for an acknowledged (approved) request the
    /// client's own options it sent with it (taken once).
    mutating func options(for topics: [String], _ options: SubscribeOptions?, acknowledged: Bool) -> SubscribeOptions {
        var options = options ?? SubscribeOptions()
        guard acknowledged, !self.approvalRecover.isEmpty || !self.approvalPresence.isEmpty || !self.approvalHistory.isEmpty else {
            return options
        }
        for topic in topics {
            let key = ByteString(topic)
            if let n = self.approvalHistory.removeValue(forKey: key) { options.history = max(options.history, n) }
            if let position = self.approvalRecover.removeValue(forKey: key), options.recover[topic] == nil {
                options.recover[topic] = position
            }
            if self.approvalPresence.remove(key) != nil { options.presence = true }
        }
        return options
    }

    // MARK: subscriptions

    /// Glob patterns among `topics` not held yet.
    func newGlobs(_ topics: [String]) -> [ByteString] {
        var globs = Set<ByteString>()
        for t in topics where Topic.isPattern(t) {
            let key = ByteString(t)
            if !self.subscriptions.contains(key) { globs.insert(key) }
        }
        return Array(globs)
    }

    /// Adds subscriptions; returns those that are new, in order.
    mutating func add(_ topics: [String]) -> [String] {
        var added: [String] = []
        for topic in topics where self.subscriptions.insert(ByteString(topic)).inserted {
            if Topic.isPattern(topic) { self.globCount += 1 }
            added.append(topic)
        }
        return added
    }

    /// Watches the join/leave events of the exact topics among `topics`; returns those newly watched.
    mutating func watch(_ topics: [String]) -> [String] {
        topics.filter { !Topic.isPattern($0) && self.watchedPresence.insert(ByteString($0)).inserted }
    }

    /// Removes one subscription; nil when it was not held. `wasWatched`: its presence events were.
    mutating func remove(_ topic: String) -> (isPattern: Bool, wasWatched: Bool)? {
        let key = ByteString(topic)
        guard self.subscriptions.remove(key) != nil else { return nil }
        let isPattern = Topic.isPattern(topic)
        if isPattern { self.globCount -= 1 }
        self.pendingPositions[key] = nil
        self.floors[key] = nil
        return (isPattern, self.watchedPresence.remove(key) != nil)
    }

    /// Forgets everything (the connection is gone); returns what it held.
    mutating func removeAll() -> (subscriptions: Set<ByteString>, watched: Set<ByteString>) {
        defer {
            self.subscriptions.removeAll()
            self.globCount = 0
            self.watchedPresence.removeAll()
            self.pendingPositions.removeAll()
            self.floors.removeAll()
        }
        return (self.subscriptions, self.watchedPresence)
    }

    // MARK: positions

    /// Holds the publications of `topics` from now on, until `complete` merges them.
    mutating func hold(_ topics: [String]) {
        for topic in topics where self.pendingPositions[ByteString(topic)] == nil {
            self.pendingPositions[ByteString(topic)] = []
        }
    }

    /// True when `admit` lets every publication through (no topic is held or has a floor).
    var admitsAll: Bool { self.pendingPositions.isEmpty && self.floors.isEmpty }

    /// Whether a live publication goes out now: false when it is held (its topic waits for a
    /// position) or was sent already (at or below the topic's floor, same epoch).
    @inline(__always)
    mutating func admit(_ publication: Publication) -> Bool {
        if !self.pendingPositions.isEmpty, self.pendingPositions[ByteString(publication.topic)] != nil {
            let key = ByteString(publication.topic)
            if self.pendingPositions[key]!.count < Self.pendingLimit {
                self.pendingPositions[key]!.append(publication)
            }
            return false
        }
        if !self.floors.isEmpty, let floor = self.floors[ByteString(publication.topic)], publication.offset != 0 {
            // Single-instance publications carry no epoch: the floor's is theirs.
            if (publication.epoch ?? floor.epoch) == floor.epoch && publication.offset <= floor.offset { return false }
            self.floors[ByteString(publication.topic)] = nil
        }
        return true
    }

    /// The `subscribed` reply when the server keeps no positions (history_size 0): recovery asked
    /// for is reported as failed.
    static func unpositionedReply(topics: [String], id: JSONValue?, options: SubscribeOptions) -> [UInt8] {
        guard !options.recover.isEmpty else { return ServerMessage.ack("subscribed", topics: topics, id: id) }
        var outcome = SubscribeOutcome()
        for topic in topics where options.recover[topic] != nil {
            outcome.recovered.append((topic, false))
            outcome.errors.append((topic, Topic.isPattern(topic) ? "a glob subscription has no position" : "history is off on this server"))
        }
        return ServerMessage.subscribed(topics: topics, id: id, outcome: outcome)
    }

    /// The positions came (`results`, one per topic of `positioned`): the `subscribed` reply with
    /// positions and recovery results, then per topic still subscribed the recovered (or backlog)
    /// publications and those held meanwhile, by offset, without gap or duplicate. Sets each
    /// topic's floor to the last offset sent.
    mutating func complete(topics: [String], positioned: [String], results: [Result<Positioned, PositionFailure>],
                           id: JSONValue?, options: SubscribeOptions) -> (reply: [UInt8], publications: [Publication]) {
        var outcome = SubscribeOutcome()
        for (topic, result) in zip(positioned, results) {
            switch result {
            case .success(let positioned):
                let reply = positioned.reply
                outcome.positions.append((topic, reply.position))
                guard positioned.backlogFrom == nil else { break }  // a backlog is not a recovery to report
                switch reply.recovery {
                case .none: break
                case .recovered: outcome.recovered.append((topic, true))
                case .failed(let reason):
                    outcome.recovered.append((topic, false))
                    outcome.errors.append((topic, reason))
                }
            case .failure(let failure):
                if options.recover[topic] != nil {
                    outcome.recovered.append((topic, false))
                    outcome.errors.append((topic, "redis unavailable: \(failure.message)"))
                }
            }
        }
        var out: [Publication] = []
        for (topic, result) in zip(positioned, results) where self.subscriptions.contains(ByteString(topic)) {  // not unsubscribed meanwhile
            let key = ByteString(topic)
            let held = self.pendingPositions.removeValue(forKey: key) ?? []
            self.floors[key] = nil  // an earlier subscribe's floor must not hide what is sent now
            guard case .success(let positioned) = result else {
                out.append(contentsOf: held)
                continue
            }
            let reply = positioned.reply
            var last = reply.position
            if case .recovered(let publications) = reply.recovery, let since = positioned.backlogFrom ?? options.recover[topic] {
                // The stream's own epoch: a client's epoch read while the topic had no stream names it too.
                last = StreamPosition(epoch: reply.position.epoch, offset: since.offset)
                for publication in publications where publication.offset > last.offset {
                    out.append(publication)
                    last.offset = publication.offset
                }
            }
            for publication in held {
                if publication.offset != 0, publication.epoch ?? last.epoch == last.epoch {
                    if publication.offset <= last.offset { continue }
                    last.offset = publication.offset
                }
                out.append(publication)
            }
            self.floors[key] = last
        }
        return (ServerMessage.subscribed(topics: topics, id: id, outcome: outcome), out)
    }
}
