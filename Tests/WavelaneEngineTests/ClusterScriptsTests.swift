import Foundation
import NIOCore
import NIOPosix
import Testing
import WavelaneProtocol
@testable import WavelaneEngine

/// The Lua scripts of multi-instance mode, run in a real `redis-server`.
@Suite(.serialized)
struct ClusterScriptsTests {
    let names = ClusterNames(prefix: "t")

    private func withRedis(_ body: (RedisConnection) async throws -> Void) async throws {
        let redis = try RedisServerProcess()
        try redis.start()
        defer { redis.stop() }
        let url = RedisURL(port: redis.port)
        let connection = try await RedisConnection.connect(to: url, on: MultiThreadedEventLoopGroup.singleton.next()).get()
        defer { _ = connection.close() }
        try await body(connection)
    }

    private func publish(_ c: RedisConnection, _ topic: String, _ text: String, history: Int = 3, epoch: String = "e0") async throws -> Int64 {
        let body = Array(text.utf8).withUnsafeBytes {
            ClusterMessage.body(kind: .text, priority: .normal, key: nil, payload: $0, allocator: ByteBufferAllocator())
        }
        let reply = try await c.send([
            "EVAL", .string(ClusterScripts.publish), "2", .string(names.metaKey(topic)), .string(names.historyKey(topic)),
            .string(names.topicChannel(topic)), .string(epoch), .bytes(body), .string(String(history)), "60000",
        ]).get()
        return try #require(reply.integer, "\(reply)")
    }

    private func position(_ c: RedisConnection, _ topic: String, epoch: String = "", since: Int64 = -1) async throws -> [RESPValue] {
        let reply = try await c.send([
            "EVAL", .string(ClusterScripts.position), "2", .string(names.metaKey(topic)), .string(names.historyKey(topic)),
            .string(epoch), .string(String(since)), "60000",
        ]).get()
        return try #require(reply.elements, "\(reply)")
    }

    @Test func publishNumbersKeepsBoundedHistoryAndOneEpoch() async throws {
        try await withRedis { c in
            for i in 1...5 { #expect(try await publish(c, "chat", "m\(i)") == Int64(i)) }
            // Only the first publication's candidate epoch is used.
            #expect(try await publish(c, "chat", "m6", epoch: "other") == 6)
            let entries = try await c.send(["LRANGE", .string(names.historyKey("chat")), "0", "-1"]).get().elements ?? []
            let parsed = try entries.map { try ClusterMessage.parse(#require($0.bytes)) }
            #expect(parsed.map(\.offset) == [4, 5, 6])
            #expect(Set(parsed.map(\.epoch)) == ["e0"])
            #expect(parsed.map { String(buffer: $0.payload) } == ["m4", "m5", "m6"])
            let ttl = try await c.send(["PTTL", .string(names.metaKey("chat"))]).get().integer ?? -1
            #expect(ttl > 0 && ttl <= 60000)
            // No history: offsets still count, nothing is kept.
            #expect(try await publish(c, "quiet", "x", history: 0) == 1)
            #expect(try await c.send(["EXISTS", .string(names.historyKey("quiet"))]).get().integer == 0)
        }
    }

    @Test func positionAndRecoveryCases() async throws {
        try await withRedis { c in
            func keys() async throws -> Int64? { try await c.send(["DBSIZE"]).get().integer }
            // A topic nobody published to: offset 0 under a "~<Redis ms>" epoch, and no key is written.
            let fresh = try await position(c, "new")
            #expect(fresh.count == 2 && fresh[0].string?.hasPrefix("~") == true && fresh[1].integer == 0)
            let none = try #require(fresh[0].string)
            // Recovering from it while there is still no stream: up to date (and still no key).
            let idle = try await position(c, "new", epoch: none, since: 0)
            #expect(idle.count == 4 && idle[1].integer == 0 && idle[2].integer == 1 && idle[3].elements?.isEmpty == true)
            #expect(try await position(c, "new", epoch: none, since: 1).count == 2)  // claims offsets of no stream
            #expect(try await keys() == 0)
            // The stream that begins next is the one that epoch names: its publications are recovered.
            #expect(try await publish(c, "new", "a", epoch: "s1") == 1)
            #expect(try await publish(c, "new", "b", epoch: "ignored") == 2)  // the stream keeps "s1"
            let named = try await position(c, "new", epoch: none, since: 0)
            #expect(named[0].string == "s1" && named[1].integer == 2 && named[2].integer == 1)
            #expect(try (named[3].elements ?? []).map { try ClusterMessage.parse(#require($0.bytes)).offset } == [1, 2])
            // A "~" epoch from longer than the TTL before the stream began may have seen an older
            // stream come and go: not recoverable (epoch changed: only the position comes back).
            let stale = try await position(c, "new", epoch: "~1", since: 0)
            #expect(stale.count == 2 && stale[0].string == "s1")
            _ = try await c.send(["DEL", .string(names.metaKey("new")), .string(names.historyKey("new"))]).get()

            for i in 1...5 { _ = try await publish(c, "t1", "m\(i)") }  // history keeps 3, 4, 5
            let asked = try await position(c, "t1", epoch: "e0", since: 3)
            #expect(asked[0].string == "e0" && asked[1].integer == 5 && asked[2].integer == 1)
            let missed = try (asked[3].elements ?? []).map { try ClusterMessage.parse(#require($0.bytes)).offset }
            #expect(missed == [4, 5])
            // Exactly at the oldest kept offset minus one: still complete.
            let edge = try await position(c, "t1", epoch: "e0", since: 2)
            #expect(try (edge[3].elements ?? []).map { try ClusterMessage.parse(#require($0.bytes)).offset } == [3, 4, 5])
            // One further back: the history no longer reaches.
            let tooOld = try await position(c, "t1", epoch: "e0", since: 1)
            #expect(tooOld.count == 3 && tooOld[2].integer == 0)
            // Up to date: nothing to send. Ahead, or another epoch: only the position comes back.
            let upToDate = try await position(c, "t1", epoch: "e0", since: 5)
            #expect(upToDate.count == 4 && upToDate[2].integer == 1 && upToDate[3].elements?.isEmpty == true)
            #expect(try await position(c, "t1", epoch: "e0", since: 9).count == 2)
            let otherEpoch = try await position(c, "t1", epoch: "old", since: 3)
            #expect(otherEpoch.count == 2 && otherEpoch[0].string == "e0")
            // The stream is lost (FLUSHALL, expiry): a new epoch, offsets restart.
            _ = try await c.send(["FLUSHALL"]).get()
            let reset = try await position(c, "t1", epoch: "e0", since: 3)
            #expect(reset.count == 2 && reset[0].string?.hasPrefix("~") == true && reset[1].integer == 0)
            #expect(try await keys() == 0)
        }
    }

    @Test func presenceJoinRefreshReapAndMembers() async throws {
        try await withRedis { c in
            let key = names.presenceKey("room")
            let channel = names.presenceChannel("room")
            func join(_ field: String, _ member: String, most: Int = 100) async throws -> Int64? {
                try await c.send(["EVAL", .string(ClusterScripts.join), "1", .string(key), .string(field), .string(member), "60000",
                                  .string(channel), "{\"type\":\"join\"}", .string(String(most))]).get().integer
            }
            #expect(try await join("n1:1", #"{"conn":"1"}"#) == 1)
            #expect(try await join("n1:1", #"{"conn":"1","info":2}"#) == 0)  // an update, not a new member
            #expect(try await join("n2:7", #"{"conn":"7"}"#) == 1)
            // At the most: a new member is refused and nothing is written; an update still goes.
            #expect(try await join("n3:9", #"{"conn":"9"}"#, most: 2) == -1)
            #expect(try await c.send(["HEXISTS", .string(key), "n3:9"]).get().integer == 0)
            #expect(try await join("n2:7", #"{"conn":"7"}"#, most: 2) == 0)
            // A member of a crashed instance: its expiry is in the past.
            _ = try await c.send(["HSET", .string(key), "dead:3", #"1|{"conn":"3"}"#]).get()
            func members() async throws -> Set<String> {
                let reply = try await c.send(["EVAL", .string(ClusterScripts.members), "1", .string(key)]).get()
                return Set((reply.elements ?? []).compactMap(\.string))
            }
            #expect(try await members() == [#"{"conn":"1","info":2}"#, #"{"conn":"7"}"#])
            let reaped = try await c.send(["EVAL", .string(ClusterScripts.refresh), "1", .string(key), "60000", .string(channel), "\"room\"",
                                           "n1:1", #"{"conn":"1","info":2}"#]).get()
            #expect(reaped.integer == 1)
            #expect(try await c.send(["HEXISTS", .string(key), "dead:3"]).get().integer == 0)
            let left = try await c.send(["EVAL", .string(ClusterScripts.leave), "1", .string(key), "n2:7", .string(channel), "{}"]).get()
            #expect(left.integer == 1)
            #expect(try await c.send(["EVAL", .string(ClusterScripts.leave), "1", .string(key), "n2:7", .string(channel), "{}"]).get().integer == 0)
            #expect(try await members() == [#"{"conn":"1","info":2}"#])
        }
    }
}
