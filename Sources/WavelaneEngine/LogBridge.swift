import Logging
import NIOConcurrencyHelpers
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The engine logs with swift-log; these records are handed to Python's `logging` (logger
/// `wavelane`) by the bindings, which take them in batches (`wl_logs`) from Python's own thread.
/// An event loop only appends to a bounded buffer under a short lock: it never blocks on Python.
/// When the buffer is full the oldest records are dropped and counted.
public final class LogSink: @unchecked Sendable {
    public struct Record: Sendable {
        public var level: Logger.Level
        public var message: String
        public var metadata: Logger.Metadata
        public var time: Double
    }

    private let lock = NIOLock()
    private var records: [Record] = []
    private var head = 0
    public let capacity: Int
    public private(set) var dropped = 0

    public init(capacity: Int = 4096) {
        self.capacity = capacity
    }

    func append(_ record: Record) {
        self.lock.withLock {
            if self.records.count - self.head >= self.capacity {
                self.head += 1
                self.dropped += 1
            }
            self.records.append(record)
            if self.head > 1024 && self.head * 2 > self.records.count {
                self.records.removeFirst(self.head)
                self.head = 0
            }
        }
    }

    public var pending: Int { self.lock.withLock { self.records.count - self.head } }

    /// Takes records as JSON lines (`{"level":..,"message":..,"time":..,"metadata":{..}}\n`) until
    /// `maxBytes` would be passed; the first waiting record is taken however long it is.
    public func take(maxBytes: Int) -> [UInt8] {
        self.lock.withLock {
            var out: [UInt8] = []
            while self.head < self.records.count {
                let line = Self.encode(self.records[self.head])
                if !out.isEmpty && out.count + line.count > maxBytes { break }
                out.append(contentsOf: line)
                self.head += 1
            }
            if self.head == self.records.count {
                self.records.removeAll(keepingCapacity: true)
                self.head = 0
            }
            return out
        }
    }

    static func encode(_ r: Record) -> [UInt8] {
        ServerMessage.logRecord(level: r.level.rawValue, time: r.time, message: r.message,
                            metadata: r.metadata.map { (key: $0.key, value: $0.value.description) })
    }
}

/// A swift-log handler writing into a `LogSink`.
struct SinkLogHandler: LogHandler {
    let sink: LogSink
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        self.sink.append(.init(level: event.level, message: event.message.description, metadata: merged,
                               time: Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9))
    }
}
