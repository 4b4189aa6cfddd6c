import NIOCore
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Control messages (docs/protocol.md, "Client to server"): ping, rpc, subscribe, unsubscribe,
/// presence, refresh; token expiry and presence membership.
extension Connection {
    func handle(_ control: ClientControl) {
        switch control {
        case .ping(let id):
            self.sendJSON(ServerMessage.pong(id: id))
        case .invalid(let message, let id):
            self.sendJSON(ServerMessage.error(code: "bad_request", message: message, id: id))
        case .unsubscribe(let topics, let id):
            self.unsubscribe(topics, ack: .some(id))
        case .presence(let topic, let id):
            self.answerPresence(topic: topic, id: id)
        case .refresh(let token, let id):
            self.refresh(token: token, id: id)
        case .rpc(let method, let params, let id):
            self.pushEvent(.rpc, ServerMessage.rpcEvent(method: method, params: params, id: id))
        case .subscribe(let topics, let id, let options):
            self.requestSubscribe(topics, id: id, options: options)
        }
    }

    /// An event for the application with a JSON body.
    func pushEvent(_ kind: InboundEvent.Kind, _ body: [UInt8]) {
        guard let context = self.context else { return }
        var payload = context.channel.allocator.buffer(capacity: body.count)
        payload.writeBytes(body)
        self.push(InboundEvent(kind: kind, conn: self.id, payload: payload))
    }

    // MARK: token expiry

    /// A client's new token: verified like the handshake's (same verifier, keys, issuer, audience,
    /// leeway) and for the same `sub`. Success moves the expiry and tells the application; a failure
    /// leaves the old expiry in place.
    private func refresh(token: String, id: JSONValue?) {
        guard let verifier = self.server.verifier else {
            self.sendJSON(ServerMessage.error(code: "unauthorized", message: "this server does not use tokens", id: id))
            return
        }
        let now = NIODeadline.now()
        if self.refreshBudget == nil {
            self.refreshBudget = TokenBucket(rate: Self.refreshRate, capacity: Self.refreshBurst, now: now)
        }
        guard self.refreshBudget!.take(1, now: now) else {
            self.sendJSON(ServerMessage.error(code: "rate_limited", message: "too many refresh attempts; slow down", id: id))
            return
        }
        switch verifier.verify(token, now: Int64(time(nil))) {
        case .success(let verified) where verified.subject == self.user:
            self.tokenExpiry = verified.claims["exp"]?.doubleValue
            self.sendJSON(ServerMessage.refreshed(exp: self.tokenExpiry, id: id))
            self.pushEvent(.refresh, ServerMessage.refreshEvent(claimsJSON: verified.claimsJSON))
        case .success:
            self.sendJSON(ServerMessage.error(code: "unauthorized", message: "the token is for another user", id: id))
        case .failure(let error):
            self.sendJSON(ServerMessage.error(code: "unauthorized", message: error.reason, id: id))
        }
    }

    /// Closes the connection with 4001 once its token's exp + `leeway` is before `now` (Unix
    /// seconds). Called by the shard's sweep.
    func checkExpiry(now: Double, leeway: Double) {
        guard let exp = self.tokenExpiry, self.state == .open, now > exp + leeway else { return }
        self.server.logger.debug("closing connection: token expired", metadata: ["conn": "\(self.id)"])
        self.initiateClose(code: CloseCode.tokenExpired, reason: "token expired")
    }

    // MARK: presence

    func memberJSON() -> [UInt8] {
        ServerMessage.member(user: self.user, conn: self.id, node: self.server.node, info: self.presenceInfo)
    }

    /// The topic's presence was full: subscribed, but not a member. Told once per refusal.
    func presenceRefused(_ topic: String) {
        guard self.state == .open, self.session.contains(topic) else { return }
        self.sendJSON(ServerMessage.presenceFull(topic: topic, maxMembers: self.server.config.maxPresenceMembers))
    }

    func setPresenceInfo(_ info: [UInt8]) {
        self.presenceInfo = info
        guard self.state == .open, self.server.config.presence else { return }
        let member = self.memberJSON()
        for topic in self.session.subscriptions where !Topic.isPattern(topic.string) {
            self.server.presenceJoin(topic: topic.string, conn: self.id, member: member)
        }
    }

    private func answerPresence(topic: String, id: JSONValue?) {
        guard self.server.config.presence else {
            self.sendJSON(ServerMessage.error(code: "presence_off", message: "presence is not enabled on this server", id: id))
            return
        }
        guard self.session.contains(topic) else {
            self.sendJSON(ServerMessage.error(code: "not_subscribed", message: "subscribe to a topic to see who is there", id: id))
            return
        }
        self.server.presenceMembers(topic: topic, on: self.eventLoop).hop(to: self.eventLoop).whenComplete { result in
            switch result {
            case .success(let members):
                self.sendJSON(ServerMessage.presence(topic: topic, members: members, id: id))
            case .failure(let error):
                self.sendJSON(ServerMessage.error(code: "unavailable", message: "presence: \((error as? RedisError)?.message ?? "\(error)")", id: id))
            }
        }
    }
}
