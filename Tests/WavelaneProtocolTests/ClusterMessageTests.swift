import NIOCore
import Testing
import WavelaneProtocol

private let allocator = ByteBufferAllocator()

private func body(_ kind: PayloadKind, _ priority: Priority, _ key: String?, _ payload: [UInt8]) -> ByteBuffer {
    payload.withUnsafeBytes { ClusterMessage.body(kind: kind, priority: priority, key: key, payload: $0, allocator: allocator) }
}

/// What the Lua script publishes: `<offset>:<epoch>:` + body.
private func sequenced(_ offset: UInt64, _ epoch: String, _ body: ByteBuffer) -> ByteBuffer {
    var out = allocator.buffer(string: "\(offset):\(epoch):")
    var b = body
    out.writeBuffer(&b)
    return out
}

@Suite("ClusterMessage")
struct ClusterMessageTests {
    @Test func bodyBytesAreExact() {
        let b = body(.json, .high, "k1", Array(#"{"a":1}"#.utf8))
        #expect(Array(b.readableBytesView) == [1, 1, 1, 0, 2] + Array("k1".utf8) + Array(#"{"a":1}"#.utf8))
        let noKey = body(.binary, .background, nil, [0, 255])
        #expect(Array(noKey.readableBytesView) == [1, 2, 4, 0, 0, 0, 255])
    }

    @Test func roundTripsEveryKindAndPriority() throws {
        for kind in [PayloadKind.text, .json, .binary] {
            for priority in Priority.allCases {
                let payload: [UInt8] = kind == .binary ? [0, 1, 2, 0x3A, 0xFF] : Array("héllo:world".utf8)
                let m = try ClusterMessage.parse(sequenced(42, "ab12CD", body(kind, priority, "state:x", payload)))
                #expect(m.offset == 42)
                #expect(m.epoch == "ab12CD")
                #expect(m.kind == kind)
                #expect(m.priority == priority)
                #expect(m.key == "state:x")
                #expect(Array(m.payload.readableBytesView) == payload)
            }
        }
    }

    @Test func unsequencedHasOffsetZeroAndNoEpoch() throws {
        let whole = Array("hi".utf8).withUnsafeBytes {
            ClusterMessage.unsequenced(kind: .text, priority: .normal, key: nil, payload: $0, allocator: allocator)
        }
        #expect(Array(whole.readableBytesView.prefix(3)) == Array("0::".utf8))
        let m = try ClusterMessage.parse(whole)
        #expect(m.offset == 0 && m.epoch == "" && m.key == nil)
        #expect(String(buffer: m.payload) == "hi")
        #expect(m.conn == nil)
    }

    @Test func directMessageCarriesTheConnectionInAFieldOfItsOwn() throws {
        let direct = Array("yo".utf8).withUnsafeBytes {
            ClusterMessage.direct(conn: 0x0102_0304_0506_0708, kind: .binary, priority: .high, key: "k", payload: $0, allocator: allocator)
        }
        #expect(Array(direct.readableBytesView) == Array("0::".utf8) + [3, 1, 2, 3, 4, 5, 6, 7, 8, 2, 1, 0, 1] + Array("kyo".utf8))
        let d = try ClusterMessage.parse(direct)
        #expect(d.conn == 0x0102_0304_0506_0708)
        #expect(d.offset == 0 && d.epoch == "" && d.kind == .binary && d.priority == .high && d.key == "k")
        #expect(String(buffer: d.payload) == "yo")
        // Neither a user message nor a command; a cut-off connection id is refused.
        #expect(ClusterMessage.parseCommand(direct) == nil)
        #expect(throws: ClusterMessage.ParseError.truncated) {
            try ClusterMessage.parse(ByteBuffer(bytes: Array("0::".utf8) + [3, 0, 0, 0, 0, 0, 0]))
        }
        #expect(throws: ClusterMessage.ParseError.truncated) {
            try ClusterMessage.parse(ByteBuffer(bytes: Array("0::".utf8) + [3, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0]))
        }
        // A sequenced message never names a connection.
        #expect(try ClusterMessage.parse(sequenced(5, "e", body(.text, .normal, nil, [0x61]))).conn == nil)
    }

    @Test func largestOffsetParsesAndOverflowIsRefused() throws {
        let b = body(.text, .normal, nil, [])
        #expect(try ClusterMessage.parse(sequenced(UInt64.max, "e", b)).offset == UInt64.max)
        var over = allocator.buffer(string: "18446744073709551616:e:")
        var copy = b
        over.writeBuffer(&copy)
        #expect(throws: ClusterMessage.ParseError.badOffset) { try ClusterMessage.parse(over) }
    }

    @Test func malformedInputIsRefusedWithTheRightError() {
        func p(_ bytes: [UInt8]) throws(ClusterMessage.ParseError) -> ClusterMessage { try ClusterMessage.parse(ByteBuffer(bytes: bytes)) }
        let good = Array(body(.text, .normal, nil, Array("x".utf8)).readableBytesView)
        #expect(throws: ClusterMessage.ParseError.badOffset) { try p([]) }
        #expect(throws: ClusterMessage.ParseError.badOffset) { try p(Array(":e:".utf8) + good) }
        #expect(throws: ClusterMessage.ParseError.badOffset) { try p(Array("1x:e:".utf8) + good) }
        #expect(throws: ClusterMessage.ParseError.badEpoch) { try p(Array("1:no-colon".utf8)) }
        #expect(throws: ClusterMessage.ParseError.badEpoch) { try p(Array("1:e-1:".utf8) + good) }
        #expect(throws: ClusterMessage.ParseError.truncated) { try p(Array("1:e:".utf8) + [1, 0]) }
        #expect(throws: ClusterMessage.ParseError.unknownVersion(9)) { try p(Array("1:e:".utf8) + [9, 0, 0, 0, 0]) }
        #expect(throws: ClusterMessage.ParseError.badKind(7)) { try p(Array("1:e:".utf8) + [1, 7, 0, 0, 0]) }
        #expect(throws: ClusterMessage.ParseError.badPriority(5)) { try p(Array("1:e:".utf8) + [1, 0, 5, 0, 0]) }
        #expect(throws: ClusterMessage.ParseError.truncated) { try p(Array("1:e:".utf8) + [1, 0, 0, 0, 4, 0x61]) }
        #expect(throws: ClusterMessage.ParseError.badKey) { try p(Array("1:e:".utf8) + [1, 0, 0, 0, 1, 0xFF]) }
    }

    @Test func everySplitOfAMessageFailsCleanlyOrParsesWhole() {
        // A truncated message (a prefix) must never crash the parser.
        let whole = Array(sequenced(7, "ep", body(.json, .low, "k", Array(#"{"z":[1,2]}"#.utf8))).readableBytesView)
        for cut in 0..<whole.count {
            _ = try? ClusterMessage.parse(ByteBuffer(bytes: whole.prefix(cut)))
        }
        #expect((try? ClusterMessage.parse(ByteBuffer(bytes: whole)))?.offset == 7)
    }
}

@Suite("ClusterNames")
struct ClusterNamesTests {
    let names = ClusterNames(prefix: "app")

    @Test func keysAndChannels() {
        #expect(names.topicChannel("chat:1") == "app:t:chat:1")
        #expect(names.userChannel("alice") == "app:u:alice")
        #expect(names.presenceChannel("chat:1") == "app:p:chat:1")
        #expect(names.metaKey("chat:1") == "app:m:chat:1")
        #expect(names.historyKey("chat:1") == "app:h:chat:1")
        #expect(names.presenceKey("chat:1") == "app:pr:chat:1")
    }

    @Test func routesChannelsBack() {
        #expect(names.route("app:t:chat:1") == .topic("chat:1"))
        #expect(names.route("app:u:a:b") == .user("a:b"))
        #expect(names.route("app:p:x") == .presence("x"))
        #expect(names.route(names.nodeChannel("ab12")) == .node("ab12"))
        #expect(names.route("app:t:") == nil)
        #expect(names.route("other:t:x") == nil)
        #expect(names.route("app:z:x") == nil)
        #expect(names.route("apx:t:x") == nil)
        #expect(names.route("ap") == nil)
    }

    @Test func globPatternsAreEscapedAndNeverNarrower() {
        #expect(names.topicPattern("user:*:events") == "app:t:user:*:events")
        #expect(names.topicPattern("a[1]\\b") == #"app:t:a\[1\]\\b"#)
        // Redis' ? is one byte; ours is one character: widened to *, filtered exactly by the engine.
        #expect(names.topicPattern("room:?") == "app:t:room:*")
    }

    @Test func prefixValidation() {
        #expect(ClusterNames.validatePrefix("wavelane") == nil)
        #expect(ClusterNames.validatePrefix("my-app.v2:prod_1") == nil)
        #expect(ClusterNames.validatePrefix("") != nil)
        #expect(ClusterNames.validatePrefix("a*b") != nil)
        #expect(ClusterNames.validatePrefix("a b") != nil)
        #expect(ClusterNames.validatePrefix(String(repeating: "a", count: 65)) != nil)
    }
}

@Suite("Subscribe options and replies")
struct SubscribeOptionsTests {
    private func parse(_ s: String) -> ClientControl? { Array(s.utf8).withUnsafeBytes { ClientControl.parse($0) } }

    @Test func recoverAndPresenceAreParsed() {
        var options = SubscribeOptions()
        options.presence = true
        options.recover["a"] = StreamPosition(epoch: "e1", offset: 41)
        #expect(parse(#"{"type":"subscribe","topics":["a","b"],"presence":true,"recover":{"a":{"epoch":"e1","offset":41}}}"#)
                == .subscribe(topics: ["a", "b"], id: nil, options: options))
        #expect(parse(#"{"type":"subscribe","topics":["a"],"recover":null,"presence":null}"#) == .subscribe(topics: ["a"], id: nil))
    }

    @Test func badRecoverRequestsGetAnError() {
        func isInvalid(_ s: String) -> Bool {
            if case .invalid = parse(s) { return true }
            return false
        }
        #expect(isInvalid(#"{"type":"subscribe","topics":["a"],"recover":[1]}"#))
        #expect(isInvalid(#"{"type":"subscribe","topics":["a"],"recover":{"b":{"epoch":"e","offset":1}}}"#))
        #expect(isInvalid(#"{"type":"subscribe","topics":["a"],"recover":{"a":{"epoch":"e","offset":-1}}}"#))
        #expect(isInvalid(#"{"type":"subscribe","topics":["a"],"recover":{"a":{"epoch":1,"offset":1}}}"#))
        #expect(isInvalid(#"{"type":"subscribe","topics":["a"],"recover":{"a":{"epoch":"e","offset":1.5}}}"#))
        #expect(isInvalid(#"{"type":"subscribe","topics":["a"],"presence":"yes"}"#))
        #expect(isInvalid(#"{"type":"presence","topics":["a"]}"#))
        #expect(parse(#"{"type":"presence","topic":"a","id":3}"#) == .presence(topic: "a", id: .int(3)))
    }

    @Test func subscribedReplyCarriesPositionsAndRecovery() {
        var outcome = SubscribeOutcome()
        outcome.positions = [("a", StreamPosition(epoch: "e1", offset: 47)), ("b", StreamPosition(epoch: "e2", offset: 0))]
        outcome.recovered = [("a", true), ("b", false)]
        outcome.errors = [("b", "epoch changed")]
        let text = String(decoding: ServerMessage.subscribed(topics: ["a", "b"], id: .int(7), outcome: outcome), as: UTF8.self)
        #expect(text == #"{"type":"subscribed","topics":["a","b"],"id":7,"positions":{"a":{"epoch":"e1","offset":47},"b":{"epoch":"e2","offset":0}},"recovered":{"a":true,"b":false},"recovery_errors":{"b":"epoch changed"}}"#)
        let plain = String(decoding: ServerMessage.subscribed(topics: ["a"], id: nil, outcome: SubscribeOutcome()), as: UTF8.self)
        #expect(plain == #"{"type":"subscribed","topics":["a"]}"#)
    }

    @Test func presenceMessages() {
        let member = ServerMessage.member(user: "al\"ice", conn: 17, node: "n1", info: Array(#"{"x":1}"#.utf8))
        #expect(String(decoding: member, as: UTF8.self) == #"{"user":"al\"ice","conn":"17","node":"n1","info":{"x":1}}"#)
        let anon = ServerMessage.member(user: nil, conn: 1, node: "n", info: nil)
        #expect(String(decoding: anon, as: UTF8.self) == #"{"user":null,"conn":"1","node":"n","info":null}"#)
        #expect(String(decoding: ServerMessage.presenceEvent("join", topic: "t", member: anon), as: UTF8.self)
                == #"{"type":"join","topic":"t","member":{"user":null,"conn":"1","node":"n","info":null}}"#)
        #expect(String(decoding: ServerMessage.presence(topic: "t", members: [anon, anon], id: .string("q")), as: UTF8.self)
                == #"{"type":"presence","topic":"t","members":[{"user":null,"conn":"1","node":"n","info":null},{"user":null,"conn":"1","node":"n","info":null}],"id":"q"}"#)
    }
}

@Suite("ClusterMessage commands")
struct ClusterCommandTests {
    @Test func disconnectRoundTrip() throws {
        let m = ClusterMessage.disconnectCommand(node: "n1abc", code: 4003, reason: "revoked ✓", allocator: allocator)
        #expect(ClusterMessage.parseCommand(m) == .disconnect(node: "n1abc", code: 4003, reason: "revoked ✓"))
        // Instances that do not know commands refuse it as an unknown version (and ignore it).
        #expect(throws: ClusterMessage.ParseError.unknownVersion(2)) { try ClusterMessage.parse(m) }
    }

    /// Found by fuzzing (Fuzz/cluster.swift): a reason longer than 123 bytes was cut inside a
    /// character, so parseCommand refused the command and other instances ignored disconnect_user.
    @Test func longNonASCIIReasonIsCutOnACharacter() throws {
        let reason = String(repeating: "é", count: 100)  // 200 bytes of UTF-8
        let node = String(repeating: "ü", count: 200)    // 400 bytes
        let m = ClusterMessage.disconnectCommand(node: node, code: 4001, reason: reason, allocator: allocator)
        let parsed = try #require(ClusterMessage.parseCommand(m))
        #expect(parsed == .disconnect(node: String(repeating: "ü", count: 127), code: 4001, reason: String(repeating: "é", count: 61)))
    }

    @Test func userMessagesAreNotCommands() {
        let message = [UInt8]("hello".utf8).withUnsafeBytes {
            ClusterMessage.unsequenced(kind: .text, priority: .normal, key: nil, payload: $0, allocator: allocator)
        }
        #expect(ClusterMessage.parseCommand(message) == nil)
        #expect(ClusterMessage.parseCommand(allocator.buffer(string: "0::")) == nil)
        #expect(ClusterMessage.parseCommand(allocator.buffer(bytes: Array("0::".utf8) + [2, 1, 0x0f, 0xa3, 9, 0x61])) == nil)  // node truncated
        #expect(ClusterMessage.parseCommand(allocator.buffer(bytes: Array("0::".utf8) + [2, 7, 0x0f, 0xa3, 0])) == nil)  // unknown command
        #expect(ClusterMessage.parseCommand(allocator.buffer(bytes: Array("0::".utf8) + [2, 1, 0x0f, 0xa3, 0, 0xff])) == nil)  // reason not UTF-8
    }
}
