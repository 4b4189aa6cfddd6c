import Synchronization

/// Engine counters, updated with relaxed atomics from any thread and read as one snapshot.
public final class EngineStats: Sendable {
    public enum Counter: Int, CaseIterable, Sendable {
        case connectionsAccepted
        case connectionsClosed
        case rejectedAuth
        case rejectedCapacity
        case rejectedBadRequest
        case handshakeTimeouts
        case messagesIn
        case bytesIn
        case framesOut
        case bytesOut
        case publications
        case deliveries
        case protocolErrors
        case idleTimeouts
        case slowConsumerCloses
        case backpressurePauses
        case droppedHigh
        case droppedNormal
        case droppedLow
        case droppedBackground
        case droppedBytes
        case coalesced
        // Admission and inbound rate limits (Policies.swift)
        case rejectedRate
        case rejectedIP
        case rejectedIPTableFull
        case rejectedUser
        case rejectedOrigin
        case rejectedSubprotocol
        case rateLimited
        case rateLimitCloses
        // Multi-instance mode (Delivery/RedisDelivery.swift)
        case redisPublished
        case redisReceived
        case redisUndelivered
        case redisMissed
        // Bounded shared state (Streams.swift, Connection.swift)
        case presenceRefused
        case partialBudgetCloses

        public var name: String {
            switch self {
            case .connectionsAccepted: return "connections_accepted"
            case .connectionsClosed: return "connections_closed"
            case .rejectedAuth: return "rejected_auth"
            case .rejectedCapacity: return "rejected_capacity"
            case .rejectedBadRequest: return "rejected_bad_request"
            case .handshakeTimeouts: return "handshake_timeouts"
            case .messagesIn: return "messages_in"
            case .bytesIn: return "bytes_in"
            case .framesOut: return "frames_out"
            case .bytesOut: return "bytes_out"
            case .publications: return "publications"
            case .deliveries: return "deliveries"
            case .protocolErrors: return "protocol_errors"
            case .idleTimeouts: return "idle_timeouts"
            case .slowConsumerCloses: return "slow_consumer_closes"
            case .backpressurePauses: return "backpressure_pauses"
            case .droppedHigh: return "dropped_high"
            case .droppedNormal: return "dropped_normal"
            case .droppedLow: return "dropped_low"
            case .droppedBackground: return "dropped_background"
            case .droppedBytes: return "dropped_bytes"
            case .coalesced: return "coalesced"
            case .rejectedRate: return "rejected_rate"
            case .rejectedIP: return "rejected_ip"
            case .rejectedIPTableFull: return "rejected_ip_table_full"
            case .rejectedUser: return "rejected_user"
            case .rejectedOrigin: return "rejected_origin"
            case .rejectedSubprotocol: return "rejected_subprotocol"
            case .rateLimited: return "rate_limited"
            case .rateLimitCloses: return "rate_limit_closes"
            case .redisPublished: return "redis_published"
            case .redisReceived: return "redis_received"
            case .redisUndelivered: return "redis_undelivered"
            case .redisMissed: return "redis_missed"
            case .presenceRefused: return "presence_refused"
            case .partialBudgetCloses: return "partial_budget_closes"
            }
        }
    }

    final class Cell: Sendable {
        let value = Atomic<Int>(0)
    }

    private let counters: [Cell]
    /// Connections upgraded and not yet closed, plus handshakes holding a slot.
    let connectionSlots = Atomic<Int>(0)

    public init() {
        self.counters = Counter.allCases.map { _ in Cell() }
    }

    @inline(__always)
    public func add(_ counter: Counter, _ n: Int = 1) {
        self.counters[counter.rawValue].value.wrappingAdd(n, ordering: .relaxed)
    }

    public func value(_ counter: Counter) -> Int {
        self.counters[counter.rawValue].value.load(ordering: .relaxed)
    }

    public var activeConnections: Int {
        self.value(.connectionsAccepted) - self.value(.connectionsClosed)
    }
}
