import NIOCore
import Testing
import WavelaneProtocol

private func parse(_ s: String) -> ClientControl? {
    Array(s.utf8).withUnsafeBytes { ClientControl.parse($0) }
}

private func parse(_ bytes: [UInt8]) -> ClientControl? {
    bytes.withUnsafeBytes { ClientControl.parse($0) }
}

private func str(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

private func frame(topic: String, offset: UInt64, kind: PayloadKind, payload: [UInt8]) -> [UInt8] {
    payload.withUnsafeBytes {
        Array(TopicEnvelope.frame(topic: topic, offset: offset, kind: kind, payload: $0, allocator: ByteBufferAllocator()).readableBytesView)
    }
}

@Suite("ClientControl.parse")
struct ClientControlParseTests {
    @Test func subscribeWithTopicsList() {
        #expect(parse(#"{"type":"subscribe","topics":["a","user:*:events"]}"#) == .subscribe(topics: ["a", "user:*:events"], id: nil))
        #expect(parse(#"{"type":"subscribe","topics":["a"],"id":7}"#) == .subscribe(topics: ["a"], id: .int(7)))
        #expect(parse(#"{"id":"x","topics":["b","c"],"type":"subscribe"}"#) == .subscribe(topics: ["b", "c"], id: .string("x")))
    }

    @Test func refresh() {
        #expect(parse(#"{"type":"refresh","token":"a.b.c","id":3}"#) == .refresh(token: "a.b.c", id: .int(3)))
        #expect(parse(#"{"type":"refresh","token":"a.b.c"}"#) == .refresh(token: "a.b.c", id: nil))
        #expect(parse(#"{"type":"refresh","id":3}"#) == .invalid(message: #"refresh needs "token": a string"#, id: .int(3)))
        #expect(parse(#"{"type":"refresh","token":""}"#) == .invalid(message: #"refresh needs "token": a string"#, id: nil))
        #expect(parse(#"{"type":"refresh","token":5}"#) == .invalid(message: #"refresh needs "token": a string"#, id: nil))
    }

    @Test func subscribeWithSingleTopic() {
        #expect(parse(#"{"type":"subscribe","topic":"news"}"#) == .subscribe(topics: ["news"], id: nil))
        // "topics" wins over "topic".
        #expect(parse(#"{"type":"subscribe","topic":"x","topics":["y"]}"#) == .subscribe(topics: ["y"], id: nil))
    }

    @Test func unsubscribe() {
        #expect(parse(#"{"type":"unsubscribe","topics":["a","b"],"id":1}"#) == .unsubscribe(topics: ["a", "b"], id: .int(1)))
        #expect(parse(#"{"type":"unsubscribe","topic":"a"}"#) == .unsubscribe(topics: ["a"], id: nil))
    }

    @Test func rpcCarriesMethodParamsAndId() {
        #expect(parse(#"{"type":"rpc","method":"add","params":{"a":1,"b":2},"id":7}"#)
            == .rpc(method: "add", params: .object(["a": .int(1), "b": .int(2)]), id: .int(7)))
        #expect(parse(#"{"type":"rpc","method":"now","id":"x"}"#) == .rpc(method: "now", params: nil, id: .string("x")))
        #expect(parse(#"{"type":"rpc","method":"now","params":null,"id":[1]}"#)
            == .rpc(method: "now", params: nil, id: .array([.int(1)])))
    }

    @Test func rpcWithoutIdOrMethodIsInvalid() {
        guard case .invalid(_, let id)? = parse(#"{"type":"rpc","method":"add"}"#) else { Issue.record("no id accepted"); return }
        #expect(id == nil)
        guard case .invalid? = parse(#"{"type":"rpc","method":"add","id":null}"#) else { Issue.record("null id accepted"); return }
        guard case .invalid(_, let id2)? = parse(#"{"type":"rpc","id":3}"#) else { Issue.record("no method accepted"); return }
        #expect(id2 == .int(3))
        guard case .invalid? = parse(#"{"type":"rpc","method":"","id":3}"#) else { Issue.record("empty method accepted"); return }
        guard case .invalid? = parse(#"{"type":"rpc","method":7,"id":3}"#) else { Issue.record("number method accepted"); return }
        let long = String(repeating: "m", count: ClientControl.maxMethodLength + 1)
        guard case .invalid? = parse(#"{"type":"rpc","method":"\#(long)","id":3}"#) else { Issue.record("long method accepted"); return }
    }

    @Test func pingWithIdOfEveryJSONType() {
        #expect(parse(#"{"type":"ping"}"#) == .ping(id: nil))
        #expect(parse(#"{"type":"ping","id":null}"#) == .ping(id: .null))
        #expect(parse(#"{"type":"ping","id":true}"#) == .ping(id: .bool(true)))
        #expect(parse(#"{"type":"ping","id":false}"#) == .ping(id: .bool(false)))
        #expect(parse(#"{"type":"ping","id":42}"#) == .ping(id: .int(42)))
        #expect(parse(#"{"type":"ping","id":-1.5}"#) == .ping(id: .double(-1.5)))
        #expect(parse(#"{"type":"ping","id":"abc"}"#) == .ping(id: .string("abc")))
        #expect(parse(#"{"type":"ping","id":[1,"two"]}"#) == .ping(id: .array([.int(1), .string("two")])))
        #expect(parse(#"{"type":"ping","id":{"k":"v"}}"#) == .ping(id: .object(["k": .string("v")])))
    }

    @Test func missingTopicsIsInvalid() {
        #expect(parse(#"{"type":"subscribe"}"#) == .invalid(message: #"subscribe needs "topics": a list of strings"#, id: nil))
        #expect(parse(#"{"type":"unsubscribe","id":3}"#) == .invalid(message: #"unsubscribe needs "topics": a list of strings"#, id: .int(3)))
        // Wrong container types count as missing.
        guard case .invalid = parse(#"{"type":"subscribe","topics":"a"}"#) else { Issue.record("topics as string"); return }
        guard case .invalid = parse(#"{"type":"subscribe","topic":5}"#) else { Issue.record("topic as number"); return }
        guard case .invalid = parse(#"{"type":"subscribe","topics":null}"#) else { Issue.record("topics null"); return }
    }

    @Test func nonStringTopicIsInvalid() {
        #expect(parse(#"{"type":"subscribe","topics":["a",1],"id":"q"}"#) == .invalid(message: "topics must be strings", id: .string("q")))
        #expect(parse(#"{"type":"unsubscribe","topics":[null]}"#) == .invalid(message: "topics must be strings", id: nil))
        #expect(parse(#"{"type":"subscribe","topics":[["a"]]}"#) == .invalid(message: "topics must be strings", id: nil))
    }

    @Test func emptyListIsInvalid() {
        #expect(parse(#"{"type":"subscribe","topics":[],"id":2}"#) == .invalid(message: "topics is empty", id: .int(2)))
        #expect(parse(#"{"type":"unsubscribe","topics":[]}"#) == .invalid(message: "topics is empty", id: nil))
    }

    @Test func applicationMessagesAreNotControl() {
        #expect(parse(#"{"type":"chat","text":"hi"}"#) == nil)
        #expect(parse(#"{"type":"PING"}"#) == nil, "types are case-sensitive")
        #expect(parse(#"{"type":1,"topics":["a"]}"#) == nil, "type must be a string")
        #expect(parse(#"{"kind":"subscribe","topics":["a"]}"#) == nil)
        #expect(parse(#"{"x":"type","topics":["a"]}"#) == nil, "\"type\" only as a value")
        #expect(parse(#"[{"type":"ping"}]"#) == nil)
        #expect(parse(#""{\"type\":\"ping\"}""#) == nil)
    }

    @Test func nonJSONIsNotControl() {
        #expect(parse("hello there, this is chat") == nil)
        #expect(parse(#"{"type":"ping""#) == nil, "truncated JSON")
        #expect(parse(#"{"type":"ping"} trailing"#) == nil)
        #expect(parse(#"{"type":"ping",}"#) == nil)
        #expect(parse(#"{'type':'ping'}  "#) == nil)
        #expect(parse([0x7B, 0x22, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D]) == nil, "invalid UTF-8")
    }

    @Test func leadingAndTrailingWhitespace() {
        #expect(parse(" \t\r\n" + #"{"type":"ping","id":1}"#) == .ping(id: .int(1)))
        #expect(parse(#"{"type":"ping"}"# + " \n") == .ping(id: nil))
        #expect(parse(#"  { "type" : "subscribe" , "topics" : [ "a" ] }"#) == .subscribe(topics: ["a"], id: nil))
        #expect(parse("x" + #"{"type":"ping"}"#) == nil)
    }

    @Test func sizeBounds() {
        #expect(parse(#"{"type"}"#) == nil)  // 8 bytes
        #expect(parse("") == nil)
        #expect(parse("{}") == nil)
        // Exactly maxSize bytes (padding with whitespace) is inspected; one more byte is not.
        let ping = #"{"type":"ping"}"#
        let exact = ping + String(repeating: " ", count: ClientControl.maxSize - ping.utf8.count)
        #expect(exact.utf8.count == 65536)
        #expect(parse(exact) == .ping(id: nil))
        #expect(parse(exact + " ") == nil)
        let bigSubscribe = #"{"type":"subscribe","topics":[""# + String(repeating: "t", count: 70_000) + #""]}"#
        #expect(parse(bigSubscribe) == nil)
    }

    @Test func duplicateKeysAreNotControl() {
        // The strict JSON parser refuses duplicate keys, so the frame is the application's.
        #expect(parse(#"{"type":"ping","type":"subscribe"}"#) == nil)
    }
}

@Suite("ServerMessage")
struct ServerMessageTests {
    @Test func ready() {
        let m = ServerMessage.ready(conn: 7, user: "alice", server: "wavelane/0.1.0", heartbeat: 20,
                                    epoch: "0123abcd", maxMessageSize: 1_048_576)
        #expect(str(m) == #"{"type":"ready","conn":"7","user":"alice","server":"wavelane/0.1.0","heartbeat":20,"epoch":"0123abcd","max_message_size":1048576}"#)
    }

    @Test func readyWithoutUserAndFractionalHeartbeat() {
        let m = ServerMessage.ready(conn: 18_446_744_073_709_551_615, user: nil, server: "s", heartbeat: 2.5,
                                    epoch: "e", maxMessageSize: 16)
        #expect(str(m) == #"{"type":"ready","conn":"18446744073709551615","user":null,"server":"s","heartbeat":2.5,"epoch":"e","max_message_size":16}"#)
    }

    @Test func readyWithExpAndRefreshed() {
        let m = ServerMessage.ready(conn: 1, user: "a", server: "s", heartbeat: 1, epoch: "e", maxMessageSize: 16, exp: 1_700_000_000)
        #expect(str(m) == #"{"type":"ready","conn":"1","user":"a","server":"s","heartbeat":1,"epoch":"e","max_message_size":16,"exp":1700000000}"#)
        #expect(str(ServerMessage.refreshed(exp: 1_700_000_300, id: .int(7))) == #"{"type":"refreshed","exp":1700000300,"id":7}"#)
        #expect(str(ServerMessage.refreshed(exp: nil, id: nil)) == #"{"type":"refreshed","exp":null}"#)
        #expect(str(ServerMessage.refreshed(exp: 1.5, id: .string("r"))) == #"{"type":"refreshed","exp":1.5,"id":"r"}"#)
    }

    @Test func readyEscapesUser() {
        let m = ServerMessage.ready(conn: 1, user: "a\"b\\c\n", server: "s", heartbeat: 1, epoch: "e", maxMessageSize: 16)
        #expect(str(m) == #"{"type":"ready","conn":"1","user":"a\"b\\c\n","server":"s","heartbeat":1,"epoch":"e","max_message_size":16}"#)
    }

    @Test func ack() {
        #expect(str(ServerMessage.ack("subscribed", topics: ["a", "b"], id: nil)) == #"{"type":"subscribed","topics":["a","b"]}"#)
        #expect(str(ServerMessage.ack("unsubscribed", topics: ["x"], id: .int(3))) == #"{"type":"unsubscribed","topics":["x"],"id":3}"#)
        #expect(str(ServerMessage.ack("subscribed", topics: [], id: .string("r"))) == #"{"type":"subscribed","topics":[],"id":"r"}"#)
        #expect(str(ServerMessage.ack("subscribed", topics: ["q\"uote", "back\\slash", "nl\n", "tab\t", "ctl\u{1}", "é😀"], id: .null))
                == #"{"type":"subscribed","topics":["q\"uote","back\\slash","nl\n","tab\t","ctl\u0001","é😀"],"id":null}"#)
    }

    @Test func pong() {
        #expect(str(ServerMessage.pong(id: nil)) == #"{"type":"pong"}"#)
        #expect(str(ServerMessage.pong(id: .int(-5))) == #"{"type":"pong","id":-5}"#)
        #expect(str(ServerMessage.pong(id: .string("a\"b"))) == #"{"type":"pong","id":"a\"b"}"#)
        #expect(str(ServerMessage.pong(id: .bool(true))) == #"{"type":"pong","id":true}"#)
        #expect(str(ServerMessage.pong(id: .null)) == #"{"type":"pong","id":null}"#)
        #expect(str(ServerMessage.pong(id: .array([.int(1), .double(0.5)]))) == #"{"type":"pong","id":[1,0.5]}"#)
        #expect(str(ServerMessage.pong(id: .object(["b": .int(2), "a": .int(1)]))) == #"{"type":"pong","id":{"a":1,"b":2}}"#)
    }

    @Test func error() {
        #expect(str(ServerMessage.error(code: "bad_request", message: "topics is empty", id: nil))
                == #"{"type":"error","code":"bad_request","message":"topics is empty"}"#)
        #expect(str(ServerMessage.error(code: "invalid_topic", message: "say \"hi\"\r\n", id: .int(9)))
                == #"{"type":"error","code":"invalid_topic","message":"say \"hi\"\r\n","id":9}"#)
    }

    @Test func outputsAreValidJSON() throws {
        let samples: [[UInt8]] = [
            ServerMessage.ready(conn: 1, user: "u\u{0}", server: "s", heartbeat: 0.25, epoch: "e", maxMessageSize: 1),
            ServerMessage.ack("subscribed", topics: ["\u{7}", "\u{1F}"], id: .object(["x": .array([])])),
            ServerMessage.error(code: "c", message: "\u{8}\u{C}", id: .double(1e300)),
        ]
        for s in samples {
            let v = try JSONParser.parse(bytes: s)
            #expect(v["type"]?.stringValue != nil)
        }
    }
}

@Suite("TopicEnvelope")
struct TopicEnvelopeTests {
    @Test func textPayload() {
        let body = #"{"type":"message","topic":"chat","offset":1,"data":"hello"}"#
        let f = frame(topic: "chat", offset: 1, kind: .text, payload: Array("hello".utf8))
        #expect(f == [0x81, UInt8(body.utf8.count)] + Array(body.utf8))
    }

    @Test func textPayloadIsEscaped() {
        let data = "he said \"hi\"\nback\\slash\ttab\u{1}é€😀"
        let body = #"{"type":"message","topic":"t\"q","offset":42,"data":"he said \"hi\"\nback\\slash\ttab\u0001é€😀"}"#
        let f = frame(topic: "t\"q", offset: 42, kind: .text, payload: Array(data.utf8))
        #expect(f == [0x81, UInt8(body.utf8.count)] + Array(body.utf8))
        #expect(f.count - 2 <= 125)
    }

    @Test func jsonPayloadIsInlined() {
        let json = #"{"a":[1,2,{"b":null}],"s":"x\"y"}"#
        let body = #"{"type":"message","topic":"t","offset":5,"data":"# + json + "}"
        let f = frame(topic: "t", offset: 5, kind: .json, payload: Array(json.utf8))
        #expect(f == [0x81, UInt8(body.utf8.count)] + Array(body.utf8))
        let nullBody = #"{"type":"message","topic":"n","offset":1,"data":null}"#
        #expect(frame(topic: "n", offset: 1, kind: .json, payload: Array("null".utf8))
                == [0x81, UInt8(nullBody.utf8.count)] + Array(nullBody.utf8))
    }

    @Test func largeOffset() {
        let body = #"{"type":"message","topic":"t","offset":18446744073709551615,"data":1}"#
        #expect(frame(topic: "t", offset: .max, kind: .json, payload: Array("1".utf8)) == [0x81, UInt8(body.utf8.count)] + Array(body.utf8))
    }

    @Test func textPayloadOver125Bytes() {
        let data = String(repeating: "x", count: 200)
        let body = #"{"type":"message","topic":"big","offset":3,"data":""# + data + #""}"#
        let n = body.utf8.count
        #expect(n > 125 && n <= 65535)
        let f = frame(topic: "big", offset: 3, kind: .text, payload: Array(data.utf8))
        #expect(f == [0x81, 0x7E, UInt8(n >> 8), UInt8(n & 0xFF)] + Array(body.utf8))
    }

    @Test func escapingGrowsTheLengthCorrectly() {
        // 100 quotes become 200 bytes: the header must count the escaped size.
        let data = String(repeating: "\"", count: 100)
        let body = #"{"type":"message","topic":"q","offset":1,"data":""# + String(repeating: "\\\"", count: 100) + #""}"#
        let n = body.utf8.count
        let f = frame(topic: "q", offset: 1, kind: .text, payload: Array(data.utf8))
        #expect(f == [0x81, 0x7E, UInt8(n >> 8), UInt8(n & 0xFF)] + Array(body.utf8))
    }

    @Test func jsonPayloadOver65535Bytes() {
        let json = "[" + String(repeating: "1,", count: 40_000) + "1]"
        let body = #"{"type":"message","topic":"j","offset":9,"data":"# + json + "}"
        let n = body.utf8.count
        #expect(n > 65535)
        let f = frame(topic: "j", offset: 9, kind: .json, payload: Array(json.utf8))
        let header: [UInt8] = [0x81, 0x7F] + (0..<8).reversed().map { UInt8(truncatingIfNeeded: n >> ($0 * 8)) }
        #expect(f.count == 10 + n)
        #expect(Array(f[0..<10]) == header)
        #expect(Array(f[10...]) == Array(body.utf8))
    }

    @Test func binaryPayload() {
        let payload: [UInt8] = [0xDE, 0xAD, 0xBE, 0xEF]
        let f = frame(topic: "ab", offset: 0x0102_0304_0506_0708, kind: .binary, payload: payload)
        let body: [UInt8] = [0x01, 0x01, 0x00, 0x02, 0x61, 0x62, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08] + payload
        #expect(f == [0x82, UInt8(body.count)] + body)
    }

    @Test func binaryEmptyPayloadAndUnicodeTopic() {
        let topic = "é😀"  // 6 bytes
        let f = frame(topic: topic, offset: 1, kind: .binary, payload: [])
        let body: [UInt8] = [0x01, 0x01, 0x00, 0x06] + Array(topic.utf8) + [0, 0, 0, 0, 0, 0, 0, 1]
        #expect(f == [0x82, UInt8(body.count)] + body)
    }

    @Test func binaryPayloadOver125Bytes() {
        let payload = (0..<200).map { UInt8($0) }
        let f = frame(topic: "t", offset: 2, kind: .binary, payload: payload)
        let n = 4 + 1 + 8 + 200
        #expect(Array(f[0..<4]) == [0x82, 0x7E, UInt8(n >> 8), UInt8(n & 0xFF)])
        #expect(Array(f[4..<17]) == [0x01, 0x01, 0x00, 0x01, 0x74, 0, 0, 0, 0, 0, 0, 0, 2])
        #expect(Array(f[17...]) == payload)
    }

    @Test func binaryPayloadOver65535Bytes() {
        let payload = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }
        let topic = String(repeating: "t", count: 300)
        let f = frame(topic: topic, offset: 77, kind: .binary, payload: payload)
        let n = 4 + 300 + 8 + 70_000
        let header: [UInt8] = [0x82, 0x7F] + (0..<8).reversed().map { UInt8(truncatingIfNeeded: n >> ($0 * 8)) }
        #expect(f.count == 10 + n)
        #expect(Array(f[0..<10]) == header)
        #expect(Array(f[10..<14]) == [0x01, 0x01, 0x01, 0x2C])  // topic length 300
        #expect(Array(f[14..<314]) == Array(topic.utf8))
        #expect(Array(f[314..<322]) == [0, 0, 0, 0, 0, 0, 0, 77])
        #expect(Array(f[322...]) == payload)
    }

    @Test func textEnvelopeIsValidJSON() throws {
        let data = "ctl\u{0}\u{1F}\u{7F} \"é\" \\ 😀"
        let f = frame(topic: "a:b", offset: 10, kind: .text, payload: Array(data.utf8))
        let v = try JSONParser.parse(bytes: Array(f[2...]))
        #expect(v == .object(["type": .string("message"), "topic": .string("a:b"), "offset": .int(10), "data": .string(data)]))
    }
}

private func mayBe(_ s: String) -> Bool {
    Array(s.utf8).withUnsafeBytes { ClientControl.mayBeControl($0) }
}

@Suite("ClientControl.mayBeControl (the sniff before parsing)")
struct ClientControlSniffTests {
    @Test func appMessagesWithATypeAreNotParsed() {
        #expect(!mayBe(#"{"type":"chat","text":"hi"}"#))
        #expect(!mayBe(#"{"type":"chat","text":"say \"hi\"\n\\ \/ \t"}"#), "escapes other than \\u")
        #expect(!mayBe(#"{"type":"PING"}"#))
        #expect(!mayBe(#"{"type":"pings"}"#))
        #expect(!mayBe(#"{"type":"chat","text":"ping subscribe rpc"}"#), "names not in quotes")
        #expect(!mayBe(#"{"kind":"ping"}"#), "no \"type\"")
        #expect(!mayBe("ixxxxxxxxxxxxxxx"))
        #expect(!mayBe(""))
    }

    @Test func everyControlTypeIsSeen() {
        for name in ["ping", "rpc", "refresh", "presence", "subscribe", "unsubscribe"] {
            #expect(mayBe(#"{"type":"\#(name)"}"#), "\(name)")
            #expect(mayBe(#"{ "id" : 3 , "type" : "\#(name)" }"#), "\(name)")
        }
    }

    @Test func hostileInputs() {
        // A value spelled with \u escapes is still that value: sniffed, parsed, recognised.
        #expect(mayBe(#"{"type":"p\u0069ng"}"#))
        #expect(parse(#"{"type":"p\u0069ng"}"#) == .ping(id: nil))
        // An escaped key never was a control message (parse has always needed the bytes "type")...
        #expect(parse(#"{"\u0074ype":"ping"}"#) == nil)
        // ...unless "type" also appears elsewhere; then both still agree.
        #expect(mayBe(#"{"\u0074ype":"ping","x":"type"}"#))
        #expect(parse(#"{"\u0074ype":"ping","x":"type"}"#) == .ping(id: nil))
        #expect(mayBe(#"{"\u0074ype":"ping","a":"x\"type"}"#), "\"type\" right after an escaped quote")
        #expect(parse(#"{"\u0074ype":"ping","a":"x\"type"}"#) == .ping(id: nil))
        // "type" nested in data: sniffed (the sniff does not know structure), then the parser says no.
        #expect(mayBe(#"{"type":"chat","data":{"type":"ping"}}"#))
        #expect(parse(#"{"type":"chat","data":{"type":"ping"}}"#) == nil)
        #expect(parse(#"{"data":{"type":"subscribe","topics":["a"]}}"#) == nil)
        // Duplicate keys: the strict parser refuses them.
        #expect(mayBe(#"{"type":"chat","type":"ping"}"#))
        #expect(parse(#"{"type":"chat","type":"ping"}"#) == nil)
        // A name at the very end, cut short, and "type" split across the end.
        #expect(!mayBe(#"{"type":"pin"#))
        #expect(!mayBe(#"{"ping":"typ"#))
    }

    @Test func hugeMessages() {
        let filler = String(repeating: "chat text with \"quotes\" and type ", count: 4000)  // ~140 KB
        #expect(!mayBe(#"{"type":"chat","text":"\#(filler)"}"#))
        #expect(mayBe(#"{"type":"chat","text":"\#(filler)","x":"ping"}"#))
        // Over maxSize nothing is inspected, control or not.
        #expect(parse(#"{"type":"ping","pad":"\#(filler)"}"#) == nil)
    }

    /// Generated objects (keys and values drawn from control-like and app-like pieces, escaped and
    /// nested): whenever parse finds a control message, the sniff let it through.
    @Test func neverHidesAControlMessage() {
        let keys = [#""type""#, #""\u0074ype""#, #""id""#, #""topics""#, #""topic""#, #""method""#, #""token""#, #""x""#, #""data""#]
        let values = [#""ping""#, #""p\u0069ng""#, #""rpc""#, #""refresh""#, #""presence""#, #""subscribe""#,
                      #""unsubscribe""#, #""chat""#, #""\"type\"""#, #""type""#, #"["a","b"]"#, #""m""#, "1", "null",
                      #"{"type":"ping"}"#, #""sub\u0073cribe""#, #""t""#]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        var controls = 0, skipped = 0
        for _ in 0..<20_000 {
            var pairs: [String] = []
            for _ in 0..<(1 + next(4)) { pairs.append(keys[next(keys.count)] + ":" + values[next(values.count)]) }
            let text = "{" + pairs.joined(separator: ",") + "}"
            let control = parse(text)
            if control != nil { controls += 1 }
            if !mayBe(text) { skipped += 1 }
            #expect(control == nil || mayBe(text), "\(text)")
        }
        #expect(controls > 1000)  // the property was exercised both ways
        #expect(skipped > 1000)
    }
}
