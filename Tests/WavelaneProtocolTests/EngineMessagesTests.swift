import Testing
import WavelaneProtocol

@Suite("EngineMessages")
struct EngineMessagesTests {
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func connectEventBytesAreExact() {
        let event = ServerMessage.connectEvent(
            user: "al\"ice", addr: "127.0.0.1:5000", path: "/ws", subprotocol: nil, query: "room=1",
            headers: [("user-agent", "x/1"), ("x-a", "b")], claims: #"{"sub":"al\"ice"}"#)
        #expect(self.text(event) == #"{"user":"al\"ice","addr":"127.0.0.1:5000","path":"/ws","subprotocol":null,"query":"room=1","headers":{"user-agent":"x/1","x-a":"b"},"claims":{"sub":"al\"ice"}}"#)
        let anonymous = ServerMessage.connectEvent(user: nil, addr: "a", path: "/", subprotocol: "v1", query: "", headers: [], claims: "{}")
        #expect(self.text(anonymous) == #"{"user":null,"addr":"a","path":"/","subprotocol":"v1","query":"","headers":{},"claims":{}}"#)
    }

    @Test func clusterEventBytesAreExact() {
        #expect(self.text(ServerMessage.clusterEvent(connected: true, reason: nil, undelivered: 0))
                == #"{"redis":"connected","reason":null,"undelivered":0}"#)
        #expect(self.text(ServerMessage.clusterEvent(connected: false, reason: "connection refused \"x\"", undelivered: 12))
                == #"{"redis":"disconnected","reason":"connection refused \"x\"","undelivered":12}"#)
    }

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
