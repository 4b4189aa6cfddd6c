import Testing
import WavelaneProtocol

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

struct EngineEventsTests {
    @Test func rpcEvent() {
        #expect(text(ServerMessage.rpcEvent(method: "add", params: .array([.int(1), .int(2)]), id: .int(7)))
                == #"{"method":"add","params":[1,2],"id":7}"#)
        #expect(text(ServerMessage.rpcEvent(method: "q\"", params: nil, id: .string("x")))
                == #"{"method":"q\"","params":null,"id":"x"}"#)
    }

    @Test func subscribeRequestEventSplitsTopicsAndPatterns() {
        #expect(text(ServerMessage.subscribeRequestEvent(topics: ["a", "b:*", "c", "d?"], id: .int(3)))
                == #"{"topics":["a","c"],"patterns":["b:*","d?"],"id":3}"#)
        #expect(text(ServerMessage.subscribeRequestEvent(topics: [], id: nil)) == #"{"topics":[],"patterns":[],"id":null}"#)
    }

    @Test func refreshEventInlinesClaims() {
        #expect(text(ServerMessage.refreshEvent(claimsJSON: #"{"sub":"ann","exp":5}"#)) == #"{"claims":{"sub":"ann","exp":5}}"#)
    }

    @Test func droppedEventListsPrioritiesWithDrops() {
        var dropped = SendQueue.Dropped()
        dropped.count = 3
        dropped.bytes = 120
        dropped.byPriority = [0, 1, 0, 2, 0]
        #expect(text(ServerMessage.droppedEvent(dropped)) == #"{"count":3,"bytes":120,"priority":{"high":1,"low":2}}"#)
        #expect(text(ServerMessage.droppedEvent(SendQueue.Dropped())) == #"{"count":0,"bytes":0,"priority":{}}"#)
    }

    @Test func presenceFull() {
        #expect(text(ServerMessage.presenceFull(topic: "room\"1", maxMembers: 2))
                == #"{"type":"error","code":"presence_full","topic":"room\"1","message":"presence of room\"1 is full (max_presence_members 2): subscribed without presence"}"#)
    }

    @Test func connectEventBytesAreExact() {
        let event = ServerMessage.connectEvent(
            user: "al\"ice", addr: "127.0.0.1:5000", path: "/ws", subprotocol: nil, query: "room=1",
            headers: [("user-agent", "x/1"), ("x-a", "b")], claims: #"{"sub":"al\"ice"}"#)
        #expect(text(event) == #"{"user":"al\"ice","addr":"127.0.0.1:5000","path":"/ws","subprotocol":null,"query":"room=1","headers":{"user-agent":"x/1","x-a":"b"},"claims":{"sub":"al\"ice"}}"#)
        let anonymous = ServerMessage.connectEvent(user: nil, addr: "a", path: "/", subprotocol: "v1", query: "", headers: [], claims: "{}")
        #expect(text(anonymous) == #"{"user":null,"addr":"a","path":"/","subprotocol":"v1","query":"","headers":{},"claims":{}}"#)
    }

    @Test func clusterEventBytesAreExact() {
        #expect(text(ServerMessage.clusterEvent(connected: true, reason: nil, undelivered: 0))
                == #"{"redis":"connected","reason":null,"undelivered":0}"#)
        #expect(text(ServerMessage.clusterEvent(connected: false, reason: "connection refused \"x\"", undelivered: 12))
                == #"{"redis":"disconnected","reason":"connection refused \"x\"","undelivered":12}"#)
    }
}
