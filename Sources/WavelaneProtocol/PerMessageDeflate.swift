import CWavelaneZlib
import NIOCore

/// permessage-deflate (RFC 7692): negotiation, and the compressor / decompressor on the system zlib.
public enum PerMessageDeflate {
    /// What the server is willing to do (from the configuration).
    public struct ServerPolicy: Sendable, Equatable {
        public var enabled = true
        /// Keep the compressor's window across messages (better ratio, ~64-300 KB per connection).
        /// Off: one compressor per event loop is reset after each message, and a publication is
        /// compressed once for all subscribers.
        public var serverContextTakeover = false
        /// Let the client keep its window across messages: the server then keeps a ~44 KB
        /// decompressor per connection. Off: the server answers `client_no_context_takeover` and
        /// inflates with one decompressor per event loop.
        public var clientContextTakeover = false
        /// The largest window the server compresses with (8...15).
        public var maxWindowBits = 15
        /// zlib level 1 (fastest) ... 9 (smallest).
        public var level = 6
        /// zlib memLevel 1...9: compressor memory (2^(memLevel+9) bytes of hash and buffers).
        public var memLevel = 8
        /// Messages smaller than this go out uncompressed (RSV1 clear).
        public var minSize = 256

        public init() {}
    }

    /// The parameters agreed for one connection.
    public struct Parameters: Sendable, Equatable {
        /// Window of the server's compressor; 8 means "Huffman coding only" (no back-references),
        /// which is valid for any window the client may have asked for.
        public var serverWindowBits: Int
        public var serverNoContextTakeover: Bool
        public var clientNoContextTakeover: Bool
        /// The value for the response's `client_max_window_bits`, when the client offered it.
        public var clientMaxWindowBits: Int?

        public init(serverWindowBits: Int, serverNoContextTakeover: Bool, clientNoContextTakeover: Bool,
                    clientMaxWindowBits: Int?) {
            self.serverWindowBits = serverWindowBits
            self.serverNoContextTakeover = serverNoContextTakeover
            self.clientNoContextTakeover = clientNoContextTakeover
            self.clientMaxWindowBits = clientMaxWindowBits
        }

        /// The `Sec-WebSocket-Extensions` response value.
        public var responseHeader: String {
            var s = "permessage-deflate"
            if self.serverNoContextTakeover { s += "; server_no_context_takeover" }
            if self.clientNoContextTakeover { s += "; client_no_context_takeover" }
            if self.serverWindowBits < 15 { s += "; server_max_window_bits=\(self.serverWindowBits)" }
            if let bits = self.clientMaxWindowBits { s += "; client_max_window_bits=\(bits)" }
            return s
        }
    }

    /// Picks the first acceptable permessage-deflate offer among the `Sec-WebSocket-Extensions`
    /// header values (RFC 7692 §5 and §7.1). Offers with unknown, duplicate or invalid parameters
    /// are declined; nil means "no compression" (the upgrade still succeeds).
    public static func negotiate(offers headerValues: [String], policy: ServerPolicy) -> Parameters? {
        guard policy.enabled else { return nil }
        for value in headerValues {
            for offer in splitOutsideQuotes(value, separator: ",") {
                var parts = splitOutsideQuotes(offer, separator: ";").map { $0.trimmingWhitespace() }
                guard !parts.isEmpty, parts.removeFirst().lowercased() == "permessage-deflate" else { continue }
                if let parameters = accept(parts, policy: policy) { return parameters }
            }
        }
        return nil
    }

    private static func accept(_ params: [String], policy: ServerPolicy) -> Parameters? {
        var seen = Set<String>()
        var serverNoContext = !policy.serverContextTakeover
        var clientNoContext = !policy.clientContextTakeover
        var serverBits = policy.maxWindowBits
        var clientBits: Int? = nil
        for param in params where !param.isEmpty {
            // Keep empty pieces: "=" or "=15" must give a (then unknown, empty) name, not an empty array.
            let kv = param.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { String($0).trimmingWhitespace() }
            let name = kv[0].lowercased()
            var value: String? = kv.count > 1 ? kv[1] : nil
            if let v = value, v.count >= 2, v.hasPrefix("\""), v.hasSuffix("\"") { value = String(v.dropFirst().dropLast()) }
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "server_no_context_takeover":
                guard value == nil else { return nil }
                serverNoContext = true
            case "client_no_context_takeover":
                guard value == nil else { return nil }
                clientNoContext = true
            case "server_max_window_bits":
                guard let v = value, let bits = windowBits(v) else { return nil }
                serverBits = min(serverBits, bits)
            case "client_max_window_bits":
                if let v = value {
                    guard let bits = windowBits(v) else { return nil }
                    clientBits = bits
                } else {
                    clientBits = 15
                }
            default:
                return nil
            }
        }
        // We inflate with a 15-bit window, which reads any smaller client window; echo the client's
        // limit only when it offered one with a value below 15 (never when it did not offer it).
        let echoClientBits = clientBits.flatMap { $0 < 15 ? $0 : nil }
        return Parameters(serverWindowBits: serverBits, serverNoContextTakeover: serverNoContext,
                          clientNoContextTakeover: clientNoContext, clientMaxWindowBits: echoClientBits)
    }

    private static func windowBits(_ s: String) -> Int? {
        guard !s.isEmpty, s.count <= 2, s.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(s), (8...15).contains(n),
              !(s.hasPrefix("0")) else { return nil }
        return n
    }

    static func splitOutsideQuotes(_ s: String, separator: Character) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false
        for c in s {
            if c == "\"" { quoted.toggle() }
            if c == separator && !quoted {
                out.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        out.append(current)
        return out
    }

    /// The four bytes every sync-flushed deflate block ends with; stripped on send, re-added on receive.
    static let tail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

public enum DeflateError: Error, Equatable, Sendable {
    /// The inflated message would exceed the limit (a decompression bomb, or just too big): close 1009.
    case tooBig
    /// The compressed data is corrupt: close 1007.
    case corrupt
}

/// A raw-deflate compressor producing RFC 7692 message payloads. Not thread-safe: one owner.
public final class Deflater {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private let contextTakeover: Bool
    private var scratch: [UInt8] = []

    /// `windowBits` 9...15; 8 selects Huffman-only coding (no back-references) with zlib's minimum
    /// window, which is valid for a client that asked for an 8-bit window.
    public init(level: Int, windowBits: Int, memLevel: Int, contextTakeover: Bool) {
        self.contextTakeover = contextTakeover
        self.stream.initialize(to: z_stream())
        let huffmanOnly = windowBits <= 8
        let rc = wavelane_deflate_init(self.stream, Int32(level), -Int32(max(9, windowBits)), Int32(memLevel),
                                       huffmanOnly ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY)
        precondition(rc == Z_OK, "deflateInit2 failed: \(rc)")
    }

    deinit {
        deflateEnd(self.stream)
        self.stream.deallocate()
    }

    /// Compresses one message; the result is the frame payload (trailing 00 00 FF FF removed).
    public func compress(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        let bound = Int(deflateBound(self.stream, uLong(input.count))) + 16
        if self.scratch.count < bound { self.scratch = [UInt8](repeating: 0, count: bound) }
        var produced = 0
        self.scratch.withUnsafeMutableBytes { out in
            self.stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            self.stream.pointee.avail_in = uInt(input.count)
            while true {
                self.stream.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self) + produced
                self.stream.pointee.avail_out = uInt(out.count - produced)
                let rc = deflate(self.stream, Z_SYNC_FLUSH)
                produced = out.count - Int(self.stream.pointee.avail_out)
                precondition(rc == Z_OK || rc == Z_BUF_ERROR, "deflate failed: \(rc)")
                if self.stream.pointee.avail_out != 0 { break }
                // deflateBound was too small (cannot happen with sync flush + margin): stop safely.
                break
            }
        }
        self.stream.pointee.next_in = nil
        self.stream.pointee.next_out = nil
        if !self.contextTakeover { deflateReset(self.stream) }
        var end = produced
        if end >= 4, self.scratch[end - 4] == 0, self.scratch[end - 3] == 0, self.scratch[end - 2] == 0xFF, self.scratch[end - 1] == 0xFF {
            end -= 4
        }
        if end == 0 { return [0x00] }  // an empty message: a single empty stored block marker (RFC 7692 §7.2.3.6)
        return Array(self.scratch[0..<end])
    }
}

/// A raw-deflate decompressor for RFC 7692 message payloads, with an output limit. One owner.
public final class Inflater {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private let contextTakeover: Bool
    private var chunk = [UInt8](repeating: 0, count: 16 * 1024)

    public init(contextTakeover: Bool) {
        self.contextTakeover = contextTakeover
        self.stream.initialize(to: z_stream())
        let rc = wavelane_inflate_init(self.stream, -15)
        precondition(rc == Z_OK, "inflateInit2 failed: \(rc)")
    }

    deinit {
        inflateEnd(self.stream)
        self.stream.deallocate()
    }

    /// Inflates one message payload (the 00 00 FF FF tail is appended here). Fails with `.tooBig`
    /// as soon as the output would pass `limit` bytes, so a bomb never allocates more than that.
    public func decompress(_ payload: ByteBuffer, limit: Int, allocator: ByteBufferAllocator) throws(DeflateError) -> ByteBuffer {
        var output = allocator.buffer(capacity: min(limit, max(256, payload.readableBytes * 4)))
        defer {
            self.stream.pointee.next_in = nil
            self.stream.pointee.next_out = nil
            if !self.contextTakeover { inflateReset(self.stream) }
        }
        var failure: DeflateError? = nil
        func run(_ input: UnsafeRawBufferPointer) -> Bool {
            guard input.count > 0 else { return true }
            self.stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
            self.stream.pointee.avail_in = uInt(input.count)
            while self.stream.pointee.avail_in > 0 {
                var produced = 0
                var rc: Int32 = Z_OK
                self.chunk.withUnsafeMutableBytes { out in
                    self.stream.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    self.stream.pointee.avail_out = uInt(out.count)
                    rc = inflate(self.stream, Z_SYNC_FLUSH)
                    produced = out.count - Int(self.stream.pointee.avail_out)
                }
                if produced > 0 {
                    if output.readableBytes + produced > limit {
                        failure = .tooBig
                        return false
                    }
                    _ = self.chunk.withUnsafeBytes { output.writeBytes(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) }
                }
                switch rc {
                case Z_OK:
                    continue
                case Z_BUF_ERROR:
                    if produced == 0 { return true }  // needs more input
                case Z_STREAM_END:
                    // A final block: anything after it is not part of the message.
                    return true
                default:
                    failure = .corrupt
                    return false
                }
            }
            return true
        }
        let ok = payload.withUnsafeReadableBytes { run($0) } && PerMessageDeflate.tail.withUnsafeBytes { run($0) }
        if !ok, let failure { throw failure }
        return output
    }
}
