// The C ABI of libwavelane.so: thin @_cdecl shims over `ServerCore`. Prototypes and the contract
// of every function are in Sources/CWavelane/include/wavelane.h (also at include/wavelane.h).
// Nothing here blocks except wl_drain (on the queue's condition variable) and wl_server_stop.

import CWavelane
import NIOCore
import WavelaneEngine
import WavelaneProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

private func writeError(_ message: String, _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) {
    guard let err, errLen > 0 else { return }
    let bytes = FrameEncoder.truncatedUTF8(message, maxBytes: errLen - 1)
    bytes.withUnsafeBytes { src in
        if let base = src.baseAddress { _ = memcpy(err, base, src.count) }
    }
    err[bytes.count] = 0
}

/// Returns a string through the ABI's one pattern (wavelane.h): a malloc'd, NUL-terminated copy
/// in *out and its length, or -1 with err filled.
private func returnString<Bytes: Collection>(_ utf8: Bytes, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                                             _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64
where Bytes.Element == UInt8 {
    out?.pointee = nil
    guard let out else {
        writeError("out: must not be NULL", err, errLen)
        return -1
    }
    let count = utf8.count
    guard let buffer = malloc(count + 1)?.assumingMemoryBound(to: UInt8.self) else {
        writeError("out of memory", err, errLen)
        return -1
    }
    _ = UnsafeMutableBufferPointer(start: buffer, count: count).initialize(from: utf8)
    buffer[count] = 0
    out.pointee = UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: CChar.self)
    return Int64(count)
}

private func noServer<T: SignedInteger>(_ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> T {
    writeError("server: NULL", err, errLen)
    return -1
}

private func string(_ ptr: UnsafePointer<CChar>?, _ len: Int) -> String? {
    guard let ptr else { return len == 0 ? "" : nil }
    let buffer = UnsafeRawBufferPointer(start: ptr, count: len)
    guard UTF8Validator.isValid(buffer) else { return nil }
    return String(decoding: buffer, as: UTF8.self)
}

private func bytes(_ ptr: UnsafePointer<CChar>?, _ len: Int) -> UnsafeRawBufferPointer {
    guard let ptr, len > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
    return UnsafeRawBufferPointer(start: ptr, count: len)
}

private func server(_ s: OpaquePointer?) -> ServerCore? {
    guard let s else { return nil }
    return Unmanaged<ServerCore>.fromOpaque(UnsafeRawPointer(s)).takeUnretainedValue()
}

/// Parses an optional JSON value passed as (pointer, length): NULL/0 means "absent".
private func optionalJSON(_ ptr: UnsafePointer<CChar>?, _ len: Int) -> Result<JSONValue?, ArgumentError> {
    guard let ptr, len > 0 else { return .success(nil) }
    do {
        return .success(try JSONParser.parse(UnsafeRawBufferPointer(start: ptr, count: len)))
    } catch {
        return .failure(ArgumentError("id: not valid JSON: \(error.message)"))
    }
}

private func topicList(_ ptr: UnsafePointer<CChar>?, _ len: Int) -> Result<[String], ArgumentError> {
    guard let ptr, len > 0 else { return .failure(ArgumentError("topics: missing")) }
    guard let value = try? JSONParser.parse(UnsafeRawBufferPointer(start: ptr, count: len)),
          let list = value.arrayValue else {
        return .failure(ArgumentError("topics: must be a JSON array of strings"))
    }
    var topics: [String] = []
    for item in list {
        guard let s = item.stringValue else { return .failure(ArgumentError("topics: must be a JSON array of strings")) }
        topics.append(s)
    }
    return .success(topics)
}

@_cdecl("wl_version")
public func wl_version(_ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                       _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    returnString(wavelaneVersion.utf8, out, err, errLen)
}

@_cdecl("wl_config_schema")
public func wl_config_schema(_ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                             _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    returnString(ConfigSchema.json.utf8, out, err, errLen)
}

@_cdecl("wl_server_new")
public func wl_server_new(_ configJSON: UnsafePointer<CChar>?, _ configLen: Int,
                          _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> OpaquePointer? {
    let json: JSONValue
    if let configJSON, configLen > 0 {
        do {
            json = try JSONParser.parse(UnsafeRawBufferPointer(start: configJSON, count: configLen))
        } catch {
            writeError("config: not valid JSON: \(error.message)", err, errLen)
            return nil
        }
    } else {
        json = .object([:])
    }
    do {
        let configuration = try EngineConfiguration(json: json)
        let core = try ServerCore(configuration: configuration)
        return OpaquePointer(Unmanaged.passRetained(core).toOpaque())
    } catch {
        writeError(error.message, err, errLen)
        return nil
    }
}

@_cdecl("wl_server_add_route")
public func wl_server_add_route(_ s: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ pathLen: Int,
                                _ contentType: UnsafePointer<CChar>?, _ ctLen: Int,
                                _ body: UnsafePointer<CChar>?, _ bodyLen: Int,
                                _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    guard let path = string(path, pathLen), path.hasPrefix("/") else {
        writeError("path: must be UTF-8 starting with '/'", err, errLen)
        return -1
    }
    guard let contentType = string(contentType, ctLen) else {
        writeError("content_type: not valid UTF-8", err, errLen)
        return -1
    }
    core.addRoute(path: path, contentType: contentType, body: Array(bytes(body, bodyLen)))
    return 0
}

@_cdecl("wl_server_start")
public func wl_server_start(_ s: OpaquePointer?, _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    do {
        try core.start()
        return 0
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_server_port")
public func wl_server_port(_ s: OpaquePointer?) -> Int32 {
    Int32(server(s)?.port ?? 0)
}

@_cdecl("wl_server_stop")
public func wl_server_stop(_ s: OpaquePointer?, _ timeoutMs: Int32) {
    server(s)?.stop(timeout: Double(max(0, timeoutMs)) / 1000)
}

@_cdecl("wl_server_drain_and_stop")
public func wl_server_drain_and_stop(_ s: OpaquePointer?, _ timeoutMs: Int32) {
    server(s)?.drainAndStop(timeout: Double(max(0, timeoutMs)) / 1000)
}

/// Priority and coalescing key from the C arguments.
private func sendOptions(_ priority: Int32, _ key: UnsafePointer<CChar>?, _ keyLen: Int) -> Result<(Priority, String?), ArgumentError> {
    guard let p = UInt8(exactly: priority).flatMap(Priority.init(rawValue:)) else {
        return .failure(ArgumentError("priority: must be 0 (critical), 1 (high), 2 (normal), 3 (low) or 4 (background), got \(priority)"))
    }
    guard let key, keyLen > 0 else { return .success((p, nil)) }
    guard let k = string(key, keyLen) else { return .failure(ArgumentError("key: not valid UTF-8")) }
    return .success((p, k))
}

@_cdecl("wl_server_free")
public func wl_server_free(_ s: OpaquePointer?) {
    guard let s else { return }
    let unmanaged = Unmanaged<ServerCore>.fromOpaque(UnsafeRawPointer(s))
    unmanaged.takeUnretainedValue().stop(timeout: 0)
    unmanaged.release()
}

/// A drained batch: the C event array, and the events themselves, whose payloads the array points
/// into (no copy). A payload's bytes are the readable bytes of its `ByteBuffer`, which the batch
/// keeps alive and which nobody writes: an event's payload is never mutated after it is queued,
/// and storage shared with other buffers (a read's `PayloadBuffers` slice) is only reused once no
/// slice of it is left. So the pointers stay valid until `wl_batch_free`, on whichever thread.
private final class Batch {
    let events: UnsafeMutablePointer<wl_event>
    let count: Int
    /// The drained events, in the queue's segments: the C array points into their payloads.
    private let drained: [[InboundEvent]]

    init(_ drained: [[InboundEvent]]) {
        self.drained = drained
        self.count = drained.reduce(0) { $0 + $1.count }
        self.events = .allocate(capacity: self.count)
        // Borrowed in place: a copy of each event (a retain and a release of its payload) was ~3%
        // of the inbound profile.
        var i = 0
        for segment in drained {
            segment.withUnsafeBufferPointer { all in
                for e in all.indices {
                    let n = all[e].payload.readableBytes
                    let data: UnsafePointer<CChar>? = n == 0 ? nil : all[e].payload.withUnsafeReadableBytes {
                        $0.baseAddress.map { UnsafePointer($0.assumingMemoryBound(to: CChar.self)) }
                    }
                    (self.events + i).initialize(to: wl_event(kind: all[e].kind.rawValue, code: all[e].code, conn: all[e].conn,
                                                              data: data, len: n))
                    i += 1
                }
            }
        }
    }

    deinit {
        self.events.deallocate()
    }
}

@_cdecl("wl_drain")
public func wl_drain(_ s: OpaquePointer?, _ maxEvents: Int32, _ timeoutMs: Int32,
                     _ eventsOut: UnsafeMutablePointer<UnsafePointer<wl_event>?>?,
                     _ batchOut: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    eventsOut?.pointee = nil
    batchOut?.pointee = nil
    guard let core = server(s) else { return -1 }
    let drained = core.queue.drainSegments(max: Int(maxEvents), timeoutMs: Int(timeoutMs))
    if drained.isEmpty {
        return core.queue.isOpen ? 0 : -1
    }
    let batch = Batch(drained)
    eventsOut?.pointee = UnsafePointer(batch.events)
    batchOut?.pointee = Unmanaged.passRetained(batch).toOpaque()
    return Int32(batch.count)
}

@_cdecl("wl_batch_free")
public func wl_batch_free(_ batch: UnsafeMutableRawPointer?) {
    guard let batch else { return }
    Unmanaged<Batch>.fromOpaque(batch).release()
}

@_cdecl("wl_wake")
public func wl_wake(_ s: OpaquePointer?) {
    server(s)?.queue.wake()
}

@_cdecl("wl_event_fd")
public func wl_event_fd(_ s: OpaquePointer?, _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    let fd = core.queue.notificationFD()
    if fd < 0 { writeError("event descriptor: \(String(cString: strerror(errno)))", err, errLen) }
    return fd
}

@_cdecl("wl_pending")
public func wl_pending(_ s: OpaquePointer?) -> Int64 {
    Int64(server(s)?.queue.count ?? 0)
}

@_cdecl("wl_publish")
public func wl_publish(_ s: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ topicLen: Int,
                       _ data: UnsafePointer<CChar>?, _ len: Int, _ payloadKind: Int32,
                       _ priority: Int32, _ key: UnsafePointer<CChar>?, _ keyLen: Int,
                       _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    guard let core = server(s) else { return noServer(err, errLen) }
    guard let topic = string(topic, topicLen) else {
        writeError("topic: not valid UTF-8", err, errLen)
        return -1
    }
    guard let kind = PayloadKind(rawValue: payloadKind) else {
        writeError("kind: must be 0 (text), 1 (json) or 2 (binary)", err, errLen)
        return -1
    }
    do {
        let (p, k) = try sendOptions(priority, key, keyLen).get()
        return Int64(try core.publish(topic: topic, kind: kind, payload: bytes(data, len), priority: p, key: k))
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_send")
public func wl_send(_ s: OpaquePointer?, _ conn: UInt64, _ data: UnsafePointer<CChar>?, _ len: Int, _ binary: Int32,
                    _ priority: Int32, _ key: UnsafePointer<CChar>?, _ keyLen: Int,
                    _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    do {
        let (p, k) = try sendOptions(priority, key, keyLen).get()
        return try core.send(conn: conn, payload: bytes(data, len), binary: binary != 0, priority: p, key: k) ? 1 : 0
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_send_node")
public func wl_send_node(_ s: OpaquePointer?, _ node: UnsafePointer<CChar>?, _ nodeLen: Int, _ conn: UInt64,
                         _ data: UnsafePointer<CChar>?, _ len: Int, _ binary: Int32,
                         _ priority: Int32, _ key: UnsafePointer<CChar>?, _ keyLen: Int,
                         _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    guard let node = string(node, nodeLen) else {
        writeError("node: not valid UTF-8", err, errLen)
        return -1
    }
    do {
        let (p, k) = try sendOptions(priority, key, keyLen).get()
        return try core.send(conn: conn, payload: bytes(data, len), binary: binary != 0, priority: p, key: k, node: node) ? 1 : 0
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_send_user")
public func wl_send_user(_ s: OpaquePointer?, _ user: UnsafePointer<CChar>?, _ userLen: Int,
                         _ data: UnsafePointer<CChar>?, _ len: Int, _ binary: Int32,
                         _ priority: Int32, _ key: UnsafePointer<CChar>?, _ keyLen: Int,
                         _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    guard let core = server(s) else { return noServer(err, errLen) }
    guard let user = string(user, userLen) else {
        writeError("user: not valid UTF-8", err, errLen)
        return -1
    }
    do {
        let (p, k) = try sendOptions(priority, key, keyLen).get()
        return Int64(try core.sendUser(user, payload: bytes(data, len), binary: binary != 0, priority: p, key: k))
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_disconnect_user")
public func wl_disconnect_user(_ s: OpaquePointer?, _ user: UnsafePointer<CChar>?, _ userLen: Int, _ code: Int32,
                               _ reason: UnsafePointer<CChar>?, _ reasonLen: Int,
                               _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    guard let core = server(s) else { return noServer(err, errLen) }
    guard let user = string(user, userLen) else {
        writeError("user: not valid UTF-8", err, errLen)
        return -1
    }
    guard let reason = string(reason, reasonLen) else {
        writeError("reason: not valid UTF-8", err, errLen)
        return -1
    }
    guard let code = UInt16(exactly: code) else {
        writeError("code: \(code) is not a close code", err, errLen)
        return -1
    }
    do {
        return Int64(try core.disconnectUser(user, code: code, reason: reason))
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

private func subscription(_ s: OpaquePointer?, _ conn: UInt64, _ topicsJSON: UnsafePointer<CChar>?, _ topicsLen: Int,
                          _ ackJSON: UnsafePointer<CChar>?, _ ackLen: Int,
                          _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int, subscribe: Bool) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    do {
        let topics = try topicList(topicsJSON, topicsLen).get()
        // Absent ack → no reply; present → a reply carrying that id.
        let ack: JSONValue?? = (ackJSON == nil || ackLen == 0) ? nil : .some(try optionalJSON(ackJSON, ackLen).get())
        let ok = subscribe
            ? try core.subscribe(conn: conn, topics: topics, ack: ack)
            : try core.unsubscribe(conn: conn, topics: topics, ack: ack)
        return ok ? 1 : 0
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_subscribe")
public func wl_subscribe(_ s: OpaquePointer?, _ conn: UInt64, _ topicsJSON: UnsafePointer<CChar>?, _ topicsLen: Int,
                         _ ackJSON: UnsafePointer<CChar>?, _ ackLen: Int,
                         _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    subscription(s, conn, topicsJSON, topicsLen, ackJSON, ackLen, err, errLen, subscribe: true)
}

@_cdecl("wl_unsubscribe")
public func wl_unsubscribe(_ s: OpaquePointer?, _ conn: UInt64, _ topicsJSON: UnsafePointer<CChar>?, _ topicsLen: Int,
                           _ ackJSON: UnsafePointer<CChar>?, _ ackLen: Int,
                           _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    subscription(s, conn, topicsJSON, topicsLen, ackJSON, ackLen, err, errLen, subscribe: false)
}

@_cdecl("wl_deny")
public func wl_deny(_ s: OpaquePointer?, _ conn: UInt64, _ code: UnsafePointer<CChar>?, _ codeLen: Int,
                    _ message: UnsafePointer<CChar>?, _ msgLen: Int,
                    _ ackJSON: UnsafePointer<CChar>?, _ ackLen: Int,
                    _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    do throws(ArgumentError) {
        let id = try optionalJSON(ackJSON, ackLen).get()
        guard let code = string(code, codeLen) else { throw ArgumentError("code: not valid UTF-8") }
        guard let text = message == nil ? ServerMessage.defaultDenyMessage : string(message, msgLen) else {
            throw ArgumentError("message: not valid UTF-8")
        }
        return core.deny(conn: conn, code: code.isEmpty ? ServerMessage.defaultDenyCode : code, message: text, id: id) ? 1 : 0
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_close")
public func wl_close(_ s: OpaquePointer?, _ conn: UInt64, _ code: Int32, _ reason: UnsafePointer<CChar>?, _ reasonLen: Int,
                     _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    do throws(ArgumentError) {
        guard let reason = string(reason, reasonLen) else { throw ArgumentError("reason: not valid UTF-8") }
        guard let code = UInt16(exactly: code) else {
            throw ArgumentError("code: \(code) is not a close code an application may send (1000, 1001, 1003, 1007-1009, 1011-1013, 3000-4999)")
        }
        return try core.close(conn: conn, code: code, reason: reason) ? 1 : 0
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_log_pending")
public func wl_log_pending(_ s: OpaquePointer?) -> Int64 {
    Int64(server(s)?.logSink.pending ?? 0)
}

@_cdecl("wl_logs")
public func wl_logs(_ s: OpaquePointer?, _ maxBytes: Int, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                    _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    guard let core = server(s) else {
        out?.pointee = nil
        return noServer(err, errLen)
    }
    return returnString(core.logSink.take(maxBytes: maxBytes), out, err, errLen)
}

@_cdecl("wl_stats")
public func wl_stats(_ s: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                     _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    guard let core = server(s) else {
        out?.pointee = nil
        return noServer(err, errLen)
    }
    return returnString(core.statsJSON().utf8, out, err, errLen)
}

@_cdecl("wl_presence")
public func wl_presence(_ s: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ topicLen: Int, _ timeoutMs: Int32,
                        _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                        _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    out?.pointee = nil
    guard let core = server(s) else { return noServer(err, errLen) }
    guard let topic = string(topic, topicLen) else {
        writeError("topic: not valid UTF-8", err, errLen)
        return -1
    }
    do {
        let members = try core.presence(topic: topic, timeout: Double(max(1, timeoutMs)) / 1000)
        return returnString(JSONWriter.array(ofSerialized: members), out, err, errLen)
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_free")
public func wl_free(_ p: UnsafeMutableRawPointer?) {
    free(p)
}

@_cdecl("wl_set_presence_info")
public func wl_set_presence_info(_ s: OpaquePointer?, _ conn: UInt64, _ info: UnsafePointer<CChar>?, _ infoLen: Int,
                                 _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int32 {
    guard let core = server(s) else { return noServer(err, errLen) }
    do {
        return try core.setPresenceInfo(conn: conn, info: bytes(info, infoLen)) ? 1 : 0
    } catch {
        writeError(error.message, err, errLen)
        return -1
    }
}

@_cdecl("wl_node")
public func wl_node(_ s: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                    _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> Int64 {
    guard let core = server(s) else {
        out?.pointee = nil
        return noServer(err, errLen)
    }
    return returnString(core.nodeID.utf8, out, err, errLen)
}
