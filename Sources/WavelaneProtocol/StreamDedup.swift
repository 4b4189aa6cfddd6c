/// What an instance remembers of each topic's Redis stream: the last (epoch, offset) it delivered.
///
/// Redis sends a publication once per matching subscription, so a message that matches both a
/// topic's channel and a glob pattern arrives twice: the second copy is a duplicate. A jump in
/// offsets within one epoch, or a new epoch whose first offsets never arrived (Redis lost the
/// topic), is counted as missed. Pure: the caller delivers and counts.
public struct StreamDedup: Sendable {
    public enum Verdict: Equatable, Sendable {
        /// Already delivered (a second copy): drop it.
        case duplicate
        /// New: deliver it. `missed` publications of this stream came before it and never arrived.
        case deliver(missed: UInt64)
    }

    /// Most topics remembered; at the limit, a new topic clears the table (forgetting only lets a
    /// rare second copy through, never drops a message).
    public let limit: Int
    private var last: [ByteString: (epoch: String, offset: UInt64)] = [:]

    public init(limit: Int = 1 << 18) {
        self.limit = max(1, limit)
    }

    /// Topics remembered.
    public var count: Int { self.last.count }

    /// Judges a message of `topic`'s stream and remembers it when it is new.
    public mutating func admit(topic: ByteString, epoch: String, offset: UInt64) -> Verdict {
        var missed: UInt64 = 0
        if let seen = self.last[topic] {
            if seen.epoch.utf8.elementsEqual(epoch.utf8) {
                if offset <= seen.offset { return .duplicate }
                missed = offset - seen.offset - 1
            } else if offset > 1 {
                missed = offset - 1
            }
        } else if self.last.count >= self.limit {
            self.last.removeAll()
        }
        self.last[topic] = (epoch, offset)
        return .deliver(missed: missed)
    }

    /// Forgets a topic (its last subscription here is gone).
    public mutating func forget(_ topic: ByteString) {
        self.last[topic] = nil
    }

    /// Forgets every topic (a pattern went: the topics seen only through it would linger).
    public mutating func forgetAll() {
        self.last.removeAll()
    }
}
