import Testing
import WavelaneProtocol

@Suite("EngineReports")
struct EngineReportsTests {
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func healthHasRedisOnlyWithALink() {
        #expect(self.text(ServerMessage.health(status: "ok", connections: 3, inboundQueue: 0, redis: nil))
                == #"{"status":"ok","connections":3,"inbound_queue":0}"#)
        #expect(self.text(ServerMessage.health(status: "degraded", connections: 0, inboundQueue: 7, redis: "disconnected: EOF"))
                == #"{"status":"degraded","connections":0,"inbound_queue":7,"redis":"disconnected: EOF"}"#)
    }

    @Test func httpBodies() {
        #expect(self.text(ServerMessage.published(offset: 18_446_744_073_709_551_615)) == #"{"offset":18446744073709551615}"#)
        #expect(self.text(ServerMessage.httpError("bad \"topic\"\n")) == #"{"error":"bad \"topic\"\n"}"#)
    }

    @Test func countersKeepTheirOrder() {
        #expect(self.text(ServerMessage.counters([])) == "{}")
        #expect(self.text(ServerMessage.counters([("b", 2), ("a", -1)])) == #"{"b":2,"a":-1}"#)
    }
}
