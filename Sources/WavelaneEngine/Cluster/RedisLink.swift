// This instance's two connections to Redis: one for commands (publications, scripts, presence)
// and one subscriber. Tracks whether the link is usable (RedisLinkState), loads the Lua scripts
// on every new command connection, and says when the link flips between up and down.

import Logging
import NIOConcurrencyHelpers
import NIOCore
import WavelaneProtocol

final class RedisLink: @unchecked Sendable {
    let client: RedisClient
    let pubsub: RedisPubSub
    private let logger: Logger
    private let state = NIOLockedValueBox(RedisLinkState())

    /// How the hot scripts are called: by SHA once `SCRIPT LOAD` answered on the current command
    /// connection (a 40-byte name instead of the script text per publication), or with EVAL when
    /// the server refused SCRIPT LOAD. nil while (re)connecting.
    enum ScriptMode { case eval, sha(publish: String, position: String) }
    private let scripts = NIOLockedValueBox<ScriptMode?>(nil)

    /// Called (on any thread) when the link goes up or down: not for each retry.
    private let onFlip: @Sendable (_ up: Bool) -> Void

    init(url: RedisURL, eventLoop: EventLoop, logger: Logger,
         onMessage: @escaping @Sendable (_ channel: String, _ payload: ByteBuffer) -> Void,
         onFlip: @escaping @Sendable (_ up: Bool) -> Void) throws(RedisError) {
        self.logger = logger
        self.onFlip = onFlip
        var configuration = RedisClientConfiguration()
        configuration.connection.commandTimeout = .seconds(5)
        // Publications in flight are bounded by `PublishBudget` (which waits); this only backstops the rest.
        configuration.connection.maxPendingCommands = 1 << 20
        let weakSelf = WeakRedisLink()
        self.client = try RedisClient(url: url, eventLoop: eventLoop, configuration: configuration) { state in
            weakSelf.value?.stateChanged(client: state)
        }
        self.pubsub = try RedisPubSub(url: url, eventLoop: eventLoop, configuration: configuration, onMessage: onMessage,
                                      onStateChange: { state in weakSelf.value?.stateChanged(pubsub: state) })
        weakSelf.value = self
        self.pubsub.onReady = { weakSelf.value?.reportFlip() }
        self.client.onConnected = { connection in weakSelf.value?.loadScripts(on: connection) }
    }

    var url: RedisURL { self.client.url }

    func start() {
        self.client.start()
        self.pubsub.start()
    }

    func close() {
        _ = try? self.client.close().wait()
        _ = try? self.pubsub.close().wait()
    }

    /// A consistent reading of both connections, the subscriber's readiness and the scripts.
    private func withState<T>(_ body: (inout RedisLinkState) -> T) -> T {
        let restored = self.pubsub.isReady
        let loaded = self.scripts.withLockedValue { $0 != nil }
        return self.state.withLockedValue { state in
            state.subscriptionsRestored = restored
            state.scriptsLoaded = loaded
            return body(&state)
        }
    }

    /// Publications go through Redis only while this is true (RedisLinkState.isUp).
    var isUp: Bool { self.withState { $0.isUp } }

    /// "connected", or "disconnected: <why>" / "connecting".
    var description: String { self.withState { $0.description } }

    /// Why the link is down, as the `cluster` event says it.
    var reason: String { self.withState { $0.reason } }

    /// The current script mode, nil while the scripts are loading.
    var scriptMode: ScriptMode? { self.scripts.withLockedValue { $0 } }

    func scriptCommand(_ mode: ScriptMode, publish: Bool) -> [RESPArgument] {
        switch mode {
        case .eval: return ["EVAL", .string(publish ? ClusterScripts.publish : ClusterScripts.position)]
        case .sha(let p, let q): return ["EVALSHA", .string(publish ? p : q)]
        }
    }

    /// Redis answered NOSCRIPT (its script cache was flushed): load them again.
    func reloadScripts() {
        if let connection = self.client.currentConnection { self.loadScripts(on: connection) }
    }

    /// Loads the publish and position scripts on a new command connection; publications go
    /// through Redis once both are known.
    private func loadScripts(on connection: RedisConnection) {
        self.scripts.withLockedValue { $0 = nil }
        let publish = connection.send(["SCRIPT", "LOAD", .string(ClusterScripts.publish)])
        let position = connection.send(["SCRIPT", "LOAD", .string(ClusterScripts.position)])
        publish.and(position).whenComplete { result in
            guard case .success(let (a, b)) = result else { return }  // the connection dropped: the next one loads
            if let pa = a.string, let pb = b.string, a.errorMessage == nil, b.errorMessage == nil {
                self.scripts.withLockedValue { $0 = .sha(publish: pa, position: pb) }
            } else {
                self.logger.warning("SCRIPT LOAD refused: sending scripts with EVAL", metadata: [
                    "error": "\(a.errorMessage ?? b.errorMessage ?? "unexpected reply")"])
                self.scripts.withLockedValue { $0 = .eval }
            }
            self.reportFlip()
        }
    }

    private func stateChanged(client: RedisConnectionState) {
        self.state.withLockedValue { $0.client = client }
        if client != .connected { self.scripts.withLockedValue { $0 = nil } }
        self.reportFlip()
    }

    private func stateChanged(pubsub: RedisConnectionState) {
        self.state.withLockedValue { $0.pubsub = pubsub }
        self.reportFlip()
    }

    private func reportFlip() {
        guard let up = self.withState({ $0.takeFlip() }) else { return }
        self.onFlip(up)
    }
}

/// The Redis callbacks reach the link through this (they are made before the link exists).
private final class WeakRedisLink: @unchecked Sendable {
    weak var value: RedisLink?
}
