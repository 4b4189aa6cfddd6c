import NIOCore
import NIOWebSocket

/// One WebSocket frame as a client sent it (RFC 6455 §5.2): the header's first byte, whether it was
/// masked, and the payload with the mask removed.
public struct ClientFrame {
    /// The header's first byte: FIN, RSV1–3 and the opcode.
    public let firstByte: UInt8
    /// The client masked the payload (RFC 6455 requires it of every client frame).
    public let masked: Bool
    /// The payload, unmasked.
    public let payload: ByteBuffer
    /// Every byte of the payload is known to be ASCII (the reader saw them while unmasking); false
    /// when not known. A text frame that is all ASCII needs no UTF-8 check (`MessageAssembler`).
    public let ascii: Bool

    public init(firstByte: UInt8, masked: Bool, payload: ByteBuffer, ascii: Bool = false) {
        self.firstByte = firstByte
        self.masked = masked
        self.payload = payload
        self.ascii = ascii
    }

    /// The frame NIOWebSocket would have decoded (tests and fuzzers build frames so), unmasked.
    public init(_ frame: WebSocketFrame) {
        let flags: UInt8 = (frame.fin ? 0x80 : 0) | (frame.rsv1 ? 0x40 : 0) | (frame.rsv2 ? 0x20 : 0) | (frame.rsv3 ? 0x10 : 0)
        self.init(firstByte: flags | UInt8(webSocketOpcode: frame.opcode), masked: frame.maskKey != nil,
                  payload: frame.maskKey.map { Unmask.copy(frame.data, key: $0) } ?? frame.data)
    }

    public var fin: Bool { self.firstByte & 0x80 != 0 }
    public var rsv1: Bool { self.firstByte & 0x40 != 0 }
    public var rsv2: Bool { self.firstByte & 0x20 != 0 }
    public var rsv3: Bool { self.firstByte & 0x10 != 0 }
    public var opcode: WebSocketOpcode { WebSocketOpcode(encodedWebSocketOpcode: self.firstByte & 0x0F)! }
    public var length: Int { self.payload.readableBytes }
}

/// Cuts a connection's inbound bytes into `ClientFrame`s: a pure value type the connection drives
/// from its `channelRead` (no handler of its own, no frame object or pipeline hop per frame).
///
/// `receive` takes the bytes of one read and unmasks the payloads of every complete frame in them
/// into one buffer (one allocation per read, not one per message), noting each frame's header and
/// whether its payload is all ASCII; `next()` then hands the frames out one by one from those notes
/// (no header is parsed twice), their payloads slices of that buffer, sized to fit them and nothing
/// else. `endRead`
/// keeps what is left of an incomplete frame, and only that: a tight copy when it sits in the read
/// buffer (so SwiftNIO can reuse its receive buffer), nothing between frames. A header that announces
/// a frame longer than `maxFrameSize`, a fragmented control frame or a control frame longer than 125
/// bytes is an error as soon as the header is read (the payload is never waited for); the reader
/// then refuses every later byte.
public struct FrameReader {
    public enum Error: Swift.Error, Equatable {
        /// The frame's length is over `maxFrameSize` (close with 1009).
        case frameTooLong
        /// A control frame without FIN (close with 1002).
        case fragmentedControlFrame
        /// A control frame longer than 125 bytes (close with 1002).
        case controlFrameTooLong
    }

    /// A frame's header, read from the bytes without consuming them.
    struct Header {
        var firstByte: UInt8
        /// The masking key as `Unmask.word` makes it; nil for an unmasked frame.
        var key: UInt32?
        /// Bytes of the header itself (2 to 14).
        var size: Int
        var length: Int
    }

    /// The payload of every empty frame (no allocation, and no reference to a read buffer).
    private static let empty = ByteBuffer()

    public let maxFrameSize: Int
    /// The unread bytes: of the current read, or what an incomplete frame left (nil when none).
    private var pending: ByteBuffer?
    /// `pending` is a buffer of our own (not SwiftNIO's receive buffer).
    private var owned = false
    /// The unmasked payloads of the current read's complete frames, in order (nil between reads).
    private var payloads: ByteBuffer?
    /// The current read's complete frames as `receive` found them, in order; `next()` hands out
    /// `parsed[nextParsed...]` (its capacity is kept from read to read).
    private var parsed: [Parsed] = []
    private var nextParsed = 0

    /// A complete frame of the current read: its header, and whether its payload is all ASCII.
    struct Parsed {
        var header: Header
        var ascii: Bool
    }
    public private(set) var failed = false

    public init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    /// Bytes held for an incomplete frame between reads.
    public var bufferedBytes: Int { self.pending?.readableBytes ?? 0 }

    /// Takes the bytes of one read, after whatever an incomplete frame left, and unmasks the payloads
    /// of the complete frames in them.
    public mutating func receive(_ bytes: ByteBuffer, buffers: inout PayloadBuffers, allocator: ByteBufferAllocator) {
        guard !self.failed else { return }
        if var held = self.pending, held.readableBytes > 0 {
            self.pending = nil  // uniquely referenced while it grows
            var bytes = bytes
            held.writeBuffer(&bytes)
            self.pending = held
        } else {
            self.pending = bytes
            self.owned = false
        }
        self.unmaskCompleteFrames(buffers: &buffers, allocator: allocator)
    }

    /// Fills `payloads`: two passes over the complete frames' headers, one to size it, one to unmask
    /// into it. All its writes come before any slice of it is handed out (a slice shares the storage,
    /// and a write to shared storage would copy it).
    private mutating func unmaskCompleteFrames(buffers: inout PayloadBuffers, allocator: ByteBufferAllocator) {
        self.parsed.removeAll(keepingCapacity: true)
        self.nextParsed = 0
        guard let bytes = self.pending else { return }
        let maxFrameSize = self.maxFrameSize
        let total = bytes.withUnsafeReadableBytes { all in
            var at = 0
            var total = 0
            while let header = try? Self.header(all, at: at, maxFrameSize: maxFrameSize),
                  all.count - at - header.size >= header.length {
                self.parsed.append(Parsed(header: header, ascii: header.key != nil))
                total += header.length
                at += header.size + header.length
            }
            return total
        }
        guard total > 0 else { return }
        var out = buffers.take(capacity: total, allocator: allocator)
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { dst in
            bytes.withUnsafeReadableBytes { all in
                var at = 0  // in `all`
                var written = 0
                for k in self.parsed.indices {
                    let header = self.parsed[k].header
                    if header.length > 0 {
                        self.parsed[k].ascii = Self.copyPayload(of: header, at: at, in: all, to: dst.baseAddress! + written)
                    }
                    written += header.length
                    at += header.size + header.length
                }
                return total
            }
        }
        self.payloads = out
    }

    /// The next complete frame of what `receive` took, or nil when the bytes hold no complete frame.
    public mutating func next() throws(Error) -> ClientFrame? {
        // `pending` is read in place, not bound to a copy (a retain and a release per frame).
        guard !self.failed, self.pending != nil else { return nil }
        let header: Header
        var ascii = false
        if self.nextParsed < self.parsed.count {
            // A complete frame `receive` found: its header is known, its bytes are all there.
            header = self.parsed[self.nextParsed].header
            ascii = self.parsed[self.nextParsed].ascii
            self.nextParsed += 1
        } else {
            // Past the complete frames: an incomplete one (nil), or a header that must fail.
            do {
                guard let h = try Self.header(self.pending!, at: self.pending!.readerIndex, maxFrameSize: self.maxFrameSize) else { return nil }
                header = h
            } catch {
                self.stop()
                throw error
            }
            guard self.pending!.readableBytes - header.size >= header.length else { return nil }
        }
        self.pending!.moveReaderIndex(forwardBy: header.size + header.length)
        let payload: ByteBuffer
        if header.length == 0 {
            payload = Self.empty
        } else if let slice = self.payloads?.readSlice(length: header.length) {
            payload = slice  // every complete frame's payload is in `payloads`, in order (`receive`)
        } else {
            // Not reached (`receive` unmasked every complete frame); a copy of its own if it were.
            var out = ByteBufferAllocator().buffer(capacity: header.length)
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: header.length) { dst in
                self.pending!.withUnsafeReadableBytes { Self.copyPayload(of: header, at: 0, in: $0, to: dst.baseAddress!) }
                return header.length
            }
            payload = out
        }
        return ClientFrame(firstByte: header.firstByte, masked: header.key != nil, payload: payload, ascii: ascii)
    }

    /// Ends a read: keeps the bytes of an incomplete frame (in a buffer of our own), nothing else; the
    /// payloads' buffer goes back to `buffers`.
    public mutating func endRead(buffers: inout PayloadBuffers, allocator: ByteBufferAllocator) {
        self.parsed.removeAll(keepingCapacity: true)
        self.nextParsed = 0
        if let payloads = self.payloads {
            self.payloads = nil
            buffers.giveBack(payloads)
        }
        guard var buffer = self.pending else { return }
        if buffer.readableBytes == 0 || self.failed {
            self.pending = nil
            self.owned = false
        } else if !(self.owned && buffer.readerIndex <= buffer.readableBytes) {
            // A tight copy, so SwiftNIO can reuse its receive buffer for the next read. An owned
            // buffer that is mostly the incomplete frame still keeps growing in place.
            var rest = allocator.buffer(capacity: buffer.readableBytes)
            rest.writeBuffer(&buffer)
            self.pending = rest
            self.owned = true
        }
    }

    /// Writes the payload of the frame whose header starts at `at` in `bytes`, unmasked, to
    /// `destination`; returns whether it is all ASCII (known only for a masked frame: an unmasked
    /// one is refused anyway, and is not scanned).
    @discardableResult
    private static func copyPayload(of header: Header, at: Int, in bytes: UnsafeRawBufferPointer,
                                    to destination: UnsafeMutableRawPointer) -> Bool {
        guard header.length > 0 else { return true }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[(at + header.size)..<(at + header.size + header.length)])
        if let key = header.key {
            return Unmask.apply(payload, to: destination, key: key)
        }
        destination.copyMemory(from: payload.baseAddress!, byteCount: header.length)
        return false
    }

    /// Drops everything held and every later byte (the connection is gone).
    public mutating func stop() {
        self.pending = nil
        self.payloads = nil
        self.parsed = []
        self.nextParsed = 0
        self.failed = true
    }

    /// The header of the frame at `index` of `buffer`, or nil when the bytes do not hold all of it
    /// yet. Throws as soon as the header shows a frame that must not be read.
    static func header(_ buffer: ByteBuffer, at index: Int, maxFrameSize: Int) throws(Error) -> Header? {
        let offset = index - buffer.readerIndex
        let result = buffer.withUnsafeReadableBytes { bytes in
            Result { () throws(Error) -> Header? in try Self.header(bytes, at: offset, maxFrameSize: maxFrameSize) }
        }
        return try result.get()
    }

    /// `header` over raw bytes (`at` counts from their start).
    static func header(_ bytes: UnsafeRawBufferPointer, at index: Int, maxFrameSize: Int) throws(Error) -> Header? {
        let available = bytes.count - index
        guard available >= 2 else { return nil }
        let first = bytes[index]
        let second = bytes[index + 1]
        var size = 2
        var length = Int(second & 0x7F)
        if length == 126 {
            guard available >= 4 else { return nil }
            length = Int(bytes[index + 2]) << 8 | Int(bytes[index + 3])
            size = 4
        } else if length == 127 {
            guard available >= 10 else { return nil }
            let long = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: index + 2, as: UInt64.self))
            guard long <= UInt64(maxFrameSize) else { throw .frameTooLong }
            length = Int(long)
            size = 10
        }
        guard length <= maxFrameSize else { throw .frameTooLong }
        if first & 0x08 != 0 {
            guard first & 0x80 != 0 else { throw .fragmentedControlFrame }
            guard length <= 125 else { throw .controlFrameTooLong }
        }
        var key: UInt32?
        if second & 0x80 != 0 {
            guard available >= size + 4 else { return nil }
            key = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index + size, as: UInt32.self))
            size += 4
        }
        return Header(firstByte: first, key: key, size: size, length: length)
    }
}

/// Buffers for the unmasked payloads of one read (`FrameReader`), recycled: a buffer goes back after
/// its read and is reused, oldest first, once no slice of it is left (the application has taken those
/// events). That saves an allocation per read, and the kernel's zeroing of the fresh pages a large
/// allocation gets once the allocator has handed freed ones back (~6% of an event loop's time in the
/// inbound benchmark). One per event loop: `take` and `giveBack` come in pairs, one read at a time.
/// At most `count` buffers of at most `maxCapacity` bytes are kept.
public struct PayloadBuffers {
    private var ring: [ByteBuffer] = []
    /// The oldest slot: `take` takes it, `giveBack` fills it.
    private var oldest = 0
    public let count: Int
    public let maxCapacity: Int

    public init(count: Int = 16, maxCapacity: Int = 64 << 10) {
        self.count = count
        self.maxCapacity = maxCapacity
    }

    /// Buffers kept.
    public var kept: Int { self.ring.count }

    /// An empty buffer of at least `capacity` bytes: the oldest kept one, which `clear` keeps when no
    /// slice of it is left and replaces with a fresh one of `capacity` bytes otherwise.
    public mutating func take(capacity: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard capacity <= self.maxCapacity, self.ring.count == self.count else { return allocator.buffer(capacity: capacity) }
        var buffer = self.ring[self.oldest]
        self.ring[self.oldest] = Self.placeholder  // so that `buffer` alone holds it, if no slice does
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Keeps `buffer` (the one `take` gave) for a later `take`.
    public mutating func giveBack(_ buffer: ByteBuffer) {
        guard buffer.capacity <= self.maxCapacity else { return }
        if self.ring.count < self.count {
            self.ring.append(buffer)
        } else {
            self.ring[self.oldest] = buffer
            self.oldest = (self.oldest + 1) % self.count
        }
    }

    private static let placeholder = ByteBuffer()
}
