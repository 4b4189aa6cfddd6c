import NIOCore
import Testing
import WavelaneProtocol
@testable import WavelaneEngine

/// The position script's reply, read without Redis (ClusterScriptsTests runs the script itself).
@Suite("ClusterRecovery")
struct ClusterRecoveryTests {
    private func encode(_ message: ClusterMessage) -> Publication {
        Publication(topic: "t", offset: message.offset, epoch: message.epoch, frame: ByteBuffer(), body: message.payload,
                    opcode: .text, compressedFrame: nil, priority: message.priority, key: message.key)
    }

    private func entry(_ offset: UInt64, _ epoch: String, _ text: String) -> RESPValue {
        var wire = ByteBuffer(string: "\(offset):\(epoch):")
        var body = Array(text.utf8).withUnsafeBytes {
            ClusterMessage.body(kind: .text, priority: .normal, key: nil, payload: $0, allocator: ByteBufferAllocator())
        }
        wire.writeBuffer(&body)
        return .bulkString(wire)
    }

    private func reply(_ value: RESPValue, since: StreamPosition?, historySize: Int = 10) throws -> PositionReply {
        try ClusterRecovery.reply(value, topic: "t", since: since, historySize: historySize, encode: self.encode)
    }

    private func offsets(_ reply: PositionReply) -> [UInt64]? {
        guard case .recovered(let publications) = reply.recovery else { return nil }
        return publications.map(\.offset)
    }

    @Test func positionOnly() throws {
        let r = try self.reply(.array([.bulkString(ByteBuffer(string: "ep")), .integer(7)]), since: nil)
        #expect(r.position == StreamPosition(epoch: "ep", offset: 7))
        guard case .none = r.recovery else { Issue.record("expected no recovery"); return }
    }

    @Test func vouchedHistoryKeepsOnlyWhatCameAfterTheClient() throws {
        let value = RESPValue.array([.bulkString(ByteBuffer(string: "ep")), .integer(5), .integer(1),
                                     .array([self.entry(3, "ep", "c"), self.entry(4, "ep", "d"), self.entry(5, "ep", "e")])])
        let r = try self.reply(value, since: StreamPosition(epoch: "ep", offset: 3))
        #expect(r.position == StreamPosition(epoch: "ep", offset: 5))
        #expect(self.offsets(r) == [4, 5])
    }

    @Test func unvouchedHistoryFallsBackToTheCommonChecks() throws {
        let top = [RESPValue.bulkString(ByteBuffer(string: "ep")), .integer(9)]
        let changed = try self.reply(.array(top + [.integer(0)]), since: StreamPosition(epoch: "old", offset: 2))
        guard case .failed(let why) = changed.recovery else { Issue.record("expected a failure"); return }
        #expect(why.contains("epoch changed"))
        let current = try self.reply(.array(top), since: StreamPosition(epoch: "ep", offset: 9))
        #expect(self.offsets(current) == [])
        let gone = try self.reply(.array(top + [.integer(0)]), since: StreamPosition(epoch: "ep", offset: 2))
        guard case .failed(let reason) = gone.recovery else { Issue.record("expected a failure"); return }
        #expect(reason.contains("no longer reaches back to offset 3"))
    }

    @Test func historyOffRefusesRecovery() throws {
        let r = try self.reply(.array([.bulkString(ByteBuffer(string: "ep")), .integer(1)]),
                               since: StreamPosition(epoch: "ep", offset: 0), historySize: 0)
        guard case .failed(let why) = r.recovery else { Issue.record("expected a failure"); return }
        #expect(why == "history is off on this server")
    }

    @Test func badRepliesAreErrorsNotCrashes() {
        #expect(throws: RedisError.self) { try self.reply(.error("ERR boom"), since: nil) }
        #expect(throws: RedisError.self) { try self.reply(.array([.integer(1)]), since: nil) }
        #expect(throws: RedisError.self) { try self.reply(.array([.bulkString(ByteBuffer(string: "e")), .integer(-1)]), since: nil) }
        let malformed = RESPValue.array([.bulkString(ByteBuffer(string: "ep")), .integer(5), .integer(1),
                                         .array([.bulkString(ByteBuffer(string: "garbage"))])])
        #expect(throws: RedisError.self) { try self.reply(malformed, since: StreamPosition(epoch: "ep", offset: 1)) }
    }
}
