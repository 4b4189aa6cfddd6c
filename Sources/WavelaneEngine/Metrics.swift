import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// `GET /metrics`: the engine's counters, gauges and latency histograms in the Prometheus text
/// format, rendered by swift-prometheus. The hot paths only bump `EngineStats`' relaxed atomics;
/// a scrape moves the increments since the previous scrape into the Prometheus counters, so
/// exporting costs nothing per message.
final class MetricsExporter: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let lock = NIOLock()
    private var exported: [Int]
    private let counters: [Prometheus.Counter]
    let handshakeSeconds: DurationHistogram
    let publishSeconds: DurationHistogram
    private let connectionsActive: Gauge
    private let usersActive: Gauge
    private let inboundQueue: Gauge
    private let inboundPaused: Gauge
    private let topicsWithOffsets: Gauge
    private let sendQueueBytes: Gauge
    private let redisConnected: Gauge
    private let historyBytes: Gauge

    init() {
        let all = EngineStats.Counter.allCases
        self.exported = [Int](repeating: 0, count: all.count)
        var made: [Prometheus.Counter] = []
        for counter in all {
            let (name, labels, help) = Self.describe(counter)
            made.append(self.registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels))
        }
        self.counters = made
        let latencyBuckets: [Duration] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ]
        self.handshakeSeconds = self.registry.makeDurationHistogram(
            descriptor: Self.descriptor("wavelane_handshake_duration_seconds",
                                        "From TCP accept to the WebSocket upgrade (HTTP parse, JWT check, 101)."),
            labels: [], buckets: latencyBuckets)
        self.publishSeconds = self.registry.makeDurationHistogram(
            descriptor: Self.descriptor("wavelane_publish_duration_seconds",
                                        "Time spent in publish(): validation, offset, encoding (and compression) once, hand-off to the event loops."),
            labels: [], buckets: latencyBuckets)
        self.connectionsActive = self.registry.makeGauge(descriptor: Self.descriptor("wavelane_connections_active", "Open WebSocket connections."))
        self.usersActive = self.registry.makeGauge(descriptor: Self.descriptor("wavelane_users_active", "Distinct users with at least one connection."))
        self.inboundQueue = self.registry.makeGauge(descriptor: Self.descriptor("wavelane_inbound_queue_depth", "Events waiting for Python's drain()."))
        self.inboundPaused = self.registry.makeGauge(descriptor: Self.descriptor(
            "wavelane_inbound_paused_connections", "Connections not being read because the inbound queue is full."))
        self.topicsWithOffsets = self.registry.makeGauge(descriptor: Self.descriptor("wavelane_topics", "Topics with a publication offset."))
        self.sendQueueBytes = self.registry.makeGauge(descriptor: Self.descriptor(
            "wavelane_send_queue_bytes", "Bytes held in per-connection send queues for slow consumers."))
        self.redisConnected = self.registry.makeGauge(descriptor: Self.descriptor(
            "wavelane_redis_connected",
            "1 while publications go through Redis (both connections up, subscriptions confirmed, scripts loaded), else 0."))
        self.historyBytes = self.registry.makeGauge(descriptor: Self.descriptor(
            "wavelane_history_bytes", "Bytes of the in-memory topic history (single-instance mode with history_size)."))
    }

    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Prometheus name, labels and help for a counter.
    static func describe(_ counter: EngineStats.Counter) -> (String, [(String, String)], String) {
        let name = counter.name
        if name.hasPrefix("rejected_") {
            return ("wavelane_connections_rejected_total", [("reason", String(name.dropFirst("rejected_".count)))],
                    "Upgrades refused before the 101, by reason.")
        }
        if name.hasPrefix("dropped_") && name != "dropped_bytes" {
            return ("wavelane_dropped_messages_total", [("priority", String(name.dropFirst("dropped_".count)))],
                    "Outbound messages dropped for slow consumers, by priority.")
        }
        switch counter {
        case .handshakeTimeouts:
            return ("wavelane_connections_rejected_total", [("reason", "handshake_timeout")], "Upgrades refused before the 101, by reason.")
        case .idleTimeouts:
            return ("wavelane_closes_total", [("reason", "idle_timeout")], "Connections closed by the server, by reason.")
        case .slowConsumerCloses:
            return ("wavelane_closes_total", [("reason", "slow_consumer")], "Connections closed by the server, by reason.")
        case .rateLimitCloses:
            return ("wavelane_closes_total", [("reason", "rate_limit")], "Connections closed by the server, by reason.")
        case .protocolErrors:
            return ("wavelane_closes_total", [("reason", "protocol_error")], "Connections closed by the server, by reason.")
        case .redisPublished:
            return ("wavelane_redis_published_total", [], "Publications and user messages sent to Redis.")
        case .redisReceived:
            return ("wavelane_redis_received_total", [], "Messages received from Redis (after de-duplication).")
        case .redisUndelivered:
            return ("wavelane_redis_undelivered_total", [],
                    "Publications and user messages that could not go through Redis (delivered locally only, or unconfirmed).")
        case .redisMissed:
            return ("wavelane_redis_missed_total", [], "Publications missing from the Redis stream (offset gaps seen by this instance).")
        case .partialBudgetCloses:
            return ("wavelane_closes_total", [("reason", "partial_budget")], "Connections closed by the server, by reason.")
        case .presenceRefused:
            return ("wavelane_presence_refused_total", [], "Presence joins refused: the topic had max_presence_members members.")
        case .rateLimited:
            return ("wavelane_rate_limited_messages_total", [], "Inbound messages refused by the rate limit.")
        case .connectionsAccepted: return ("wavelane_connections_accepted_total", [], "WebSocket connections upgraded.")
        case .connectionsClosed: return ("wavelane_connections_closed_total", [], "WebSocket connections ended (for any reason).")
        case .messagesIn: return ("wavelane_messages_in_total", [], "Complete inbound messages (control messages included).")
        case .bytesIn: return ("wavelane_bytes_in_total", [], "Payload bytes of inbound messages.")
        case .framesOut: return ("wavelane_frames_out_total", [], "WebSocket frames written (data, control, close).")
        case .bytesOut: return ("wavelane_bytes_out_total", [], "Bytes of the frames written, headers included.")
        case .publications: return ("wavelane_publications_total", [], "publish() calls accepted.")
        case .deliveries: return ("wavelane_deliveries_total", [], "Publications handed to subscribers (one per subscriber).")
        case .backpressurePauses:
            return ("wavelane_backpressure_pauses_total", [], "Times a connection stopped being read because the inbound queue was full.")
        case .droppedBytes: return ("wavelane_dropped_bytes_total", [], "Bytes of outbound messages dropped for slow consumers.")
        case .coalesced: return ("wavelane_coalesced_total", [], "Queued messages replaced by a newer one with the same key.")
        default:
            return ("wavelane_\(name)_total", [], "Wavelane \(name.replacingUnderscores).")
        }
    }

    /// The exposition text for one scrape.
    func render(_ server: ServerCore) -> [UInt8] {
        self.lock.withLock {
            for counter in EngineStats.Counter.allCases {
                let i = counter.rawValue
                let now = server.stats.value(counter)
                if now > self.exported[i] {
                    self.counters[i].increment(by: Int64(now - self.exported[i]))
                    self.exported[i] = now
                }
            }
            self.connectionsActive.set(Int64(server.registry.count))
            self.usersActive.set(Int64(server.registry.userCount))
            self.inboundQueue.set(Int64(server.queue.count))
            self.inboundPaused.set(Int64(server.queue.pausedCount))
            self.topicsWithOffsets.set(Int64(server.offsets.count))
            self.sendQueueBytes.set(Int64(server.sendQueueBytes.load(ordering: .relaxed)))
            self.redisConnected.set(Int64(server.delivery.redisConnected ? 1 : 0))
            self.historyBytes.set(Int64(server.offsets.historyBytes))
            return self.registry.emitToBuffer()
        }
    }
}

extension String {
    var replacingUnderscores: String { String(self.map { $0 == "_" ? " " : $0 }) }
}
