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
}

/// The connect and cluster events and log records (the bindings read these shapes byte for byte).
struct EngineEventsConnectClusterLogTests {
    @Test func connectEvent() throws {
        let out = ServerMessage.connectEvent(user: "alice", addr: "127.0.0.1:5", path: "/ws", subprotocol: nil, query: "a=1",
                                    headers: [("user-agent", "x \"y\"")], claims: Array(#"{"sub":"alice"}"#.utf8))
        #expect(text(out) == #"{"user":"alice","addr":"127.0.0.1:5","path":"/ws","subprotocol":null,"query":"a=1","headers":{"user-agent":"x \"y\""},"claims":{"sub":"alice"}}"#)
        let anonymous = ServerMessage.connectEvent(user: nil, addr: "a", path: "/", subprotocol: "v1", query: "", headers: [], claims: Array("{}".utf8))
        #expect(text(anonymous) == #"{"user":null,"addr":"a","path":"/","subprotocol":"v1","query":"","headers":{},"claims":{}}"#)
        #expect(try JSONParser.parse(text(out))["headers"]?["user-agent"]?.stringValue == "x \"y\"")
    }

    @Test func clusterEvent() {
        #expect(text(ServerMessage.clusterEvent(connected: true, reason: nil, undelivered: 0))
            == #"{"redis":"connected","reason":null,"undelivered":0}"#)
        #expect(text(ServerMessage.clusterEvent(connected: false, reason: "refused", undelivered: 12))
            == #"{"redis":"disconnected","reason":"refused","undelivered":12}"#)
    }

    @Test func logRecordIsOneSortedLine() {
        let out = ServerMessage.logRecord(level: "info", time: 1.5, message: "hi \"there\"",
                                      metadata: [("z", "1"), ("a", "x\ny")])
        #expect(text(out) == "{\"level\":\"info\",\"time\":1.5,\"message\":\"hi \\\"there\\\"\",\"metadata\":{\"a\":\"x\\ny\",\"z\":\"1\"}}\n")
    }
}
