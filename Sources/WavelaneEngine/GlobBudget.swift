import NIOConcurrencyHelpers
import WavelaneProtocol

/// The distinct glob patterns held on this server, across every event loop (`max_globs`). A
/// pattern is counted once however many connections hold it; connections take and give back
/// references. In Redis mode every distinct pattern is one PSUBSCRIBE, so this bounds those too.
final class GlobBudget: @unchecked Sendable {
    private let lock = NIOLock()
    private var references: [ByteString: Int] = [:]
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes a reference on each pattern, all or none: false (nothing taken) if the new distinct
    /// patterns would exceed the limit. `force` takes them regardless (server-side subscriptions).
    func acquire(_ patterns: [ByteString], force: Bool = false) -> Bool {
        self.lock.withLock {
            if !force {
                var fresh = Set<ByteString>()
                for p in patterns where self.references[p] == nil { fresh.insert(p) }
                if self.references.count + fresh.count > self.limit { return false }
            }
            for p in patterns { self.references[p, default: 0] += 1 }
            return true
        }
    }

    /// Whether these patterns would fit now (without taking them).
    func fits(_ patterns: [ByteString]) -> Bool {
        self.lock.withLock {
            var fresh = Set<ByteString>()
            for p in patterns where self.references[p] == nil { fresh.insert(p) }
            return self.references.count + fresh.count <= self.limit
        }
    }

    func release(_ pattern: ByteString) {
        self.lock.withLock {
            guard let n = self.references[pattern] else { return }
            self.references[pattern] = n > 1 ? n - 1 : nil
        }
    }

    var count: Int { self.lock.withLock { self.references.count } }
}
