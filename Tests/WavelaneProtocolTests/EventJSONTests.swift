import Testing
@testable import WavelaneProtocol

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Byte-exact: bindings (and Python's TypedDicts) read these shapes.
@Suite("EventJSON")
struct EventJSONTests {
    @Test func connect() throws {
        let out = EventJSON.connect(user: "alice", addr: "127.0.0.1:5", path: "/ws", subprotocol: nil, query: "a=1",
                                    headers: [("user-agent", "x \"y\"")], claims: Array(#"{"sub":"alice"}"#.utf8))
        #expect(text(out) == #"{"user":"alice","addr":"127.0.0.1:5","path":"/ws","subprotocol":null,"query":"a=1","headers":{"user-agent":"x \"y\""},"claims":{"sub":"alice"}}"#)
        let anonymous = EventJSON.connect(user: nil, addr: "a", path: "/", subprotocol: "v1", query: "", headers: [], claims: Array("{}".utf8))
        #expect(text(anonymous) == #"{"user":null,"addr":"a","path":"/","subprotocol":"v1","query":"","headers":{},"claims":{}}"#)
        #expect(try JSONParser.parse(text(out))["headers"]?["user-agent"]?.stringValue == "x \"y\"")
    }

    @Test func subscribeRequestSplitsExactTopicsAndPatterns() {
        #expect(text(EventJSON.subscribeRequest(topics: ["a", "b:*", "c"], id: .int(7)))
            == #"{"topics":["a","c"],"patterns":["b:*"],"id":7}"#)
        #expect(text(EventJSON.subscribeRequest(topics: [], id: nil)) == #"{"topics":[],"patterns":[],"id":null}"#)
    }

    @Test func rpc() {
        #expect(text(EventJSON.rpc(method: "m\n", params: nil, id: .string("x"))) == #"{"method":"m\n","params":null,"id":"x"}"#)
        #expect(text(EventJSON.rpc(method: "m", params: .array([.int(1)]), id: .int(2))) == #"{"method":"m","params":[1],"id":2}"#)
    }

    @Test func cluster() {
        #expect(text(EventJSON.cluster(connected: true, reason: nil, undelivered: 0))
            == #"{"redis":"connected","reason":null,"undelivered":0}"#)
        #expect(text(EventJSON.cluster(connected: false, reason: "refused", undelivered: 12))
            == #"{"redis":"disconnected","reason":"refused","undelivered":12}"#)
    }

    @Test func droppedListsPrioritiesWithDropsOnly() {
        let out = EventJSON.dropped(count: 3, bytes: 30, byPriority: [("high", 0), ("low", 2), ("background", 1)])
        #expect(text(out) == #"{"count":3,"bytes":30,"priority":{"low":2,"background":1}}"#)
        #expect(text(EventJSON.dropped(count: 0, bytes: 0, byPriority: [])) == #"{"count":0,"bytes":0,"priority":{}}"#)
    }

    @Test func logRecordIsOneSortedLine() {
        let out = EventJSON.logRecord(level: "info", time: 1.5, message: "hi \"there\"",
                                      metadata: [("z", "1"), ("a", "x\ny")])
        #expect(text(out) == "{\"level\":\"info\",\"time\":1.5,\"message\":\"hi \\\"there\\\"\",\"metadata\":{\"a\":\"x\\ny\",\"z\":\"1\"}}\n")
    }

    @Test func presenceFull() {
        #expect(text(ServerMessage.presenceFull(topic: "t", message: "full"))
            == #"{"type":"error","code":"presence_full","topic":"t","message":"full"}"#)
    }
}
