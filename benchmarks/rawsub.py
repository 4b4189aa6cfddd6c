"""A fan-out subscriber that counts bytes instead of parsing frames.

It does the WebSocket upgrade by hand and answers the first text frame (the server's `ready`) with
a `subscribe`. After the `subscribed` reply it only counts the bytes that arrive, and keeps the
tail to check that the last publication's offset came last. That way the client is not what limits
a fan-out measurement. Used by `loadgen.py` (all engines) and `cluster_fanout.py`. Standard
library only, plus `servers/common.py`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from typing import Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers"))
from common import envelope, payload  # noqa: E402


def masked_text(text: bytes) -> bytes:
    """One masked client text frame (payload < 64 KiB)."""
    mask = os.urandom(4)
    n = len(text)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    m = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(text, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
    return head + mask + body


def frame_bytes(topic: str, count: int, size: int) -> int:
    """Bytes on the wire for offsets 1..count of `size`-byte str publications (uncompressed)."""
    pl = payload(size)
    total = 0
    for i in range(1, count + 1):
        n = len(envelope(topic, i, pl).encode())
        total += n + (2 if n < 126 else 4 if n < 65536 else 10)
    return total


class RawSub(asyncio.BufferedProtocol):
    """Subscribes to `topic` at ws://host:port/path and counts until `expect_bytes` arrived.

    `subscribed` resolves when the server acknowledged, `done` when everything arrived; `t_first`
    and `t_done` are `time.perf_counter()` stamps of the first and the last byte.

    A buffered protocol: the event loop reads into one buffer allocated here, once. A plain
    `Protocol` gets each read as a new `bytes` object; reads of 100-250 KB (what a fan-out run
    delivers per read) then went through mmap/munmap or heap growth and trimming, and page faults
    were about a third of the client's CPU: the load generator, not the server, set the pace.
    Every subscriber shares the buffer: the loop runs one callback at a time, and each read is
    consumed before the next one starts."""

    read_buffer = memoryview(bytearray(256 * 1024))

    def __init__(self, host: str, port: int, topic: str, expect_bytes: int, last_offset: int,
                 path: str = "/", token: Optional[str] = None):
        loop = asyncio.get_running_loop()
        auth = "Authorization: Bearer %s\r\n" % token if token else ""
        self.req = (
            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (path, host, port, base64.b64encode(os.urandom(16)).decode(), auth)
        ).encode()
        self.sub = masked_text(json.dumps({"type": "subscribe", "topics": [topic], "id": 1}).encode())
        self.expect = expect_bytes
        self.last_tag = b'"offset":%d,' % last_offset
        self.subscribed = loop.create_future()
        self.done = loop.create_future()
        self.state = 0  # 0 handshake, 1 control frames, 2 counting
        self.buf = bytearray()
        self.n = 0
        self.tail = b""
        self.t_first: Optional[float] = None
        self.t_done: Optional[float] = None
        self.got_ready = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.req)

    def connection_lost(self, exc):
        for f in (self.subscribed, self.done):
            if not f.done():
                f.set_exception(ConnectionError("connection lost"))

    def get_buffer(self, sizehint):
        return self.read_buffer

    def buffer_updated(self, nbytes):
        if self.state == 2:
            self.count(self.read_buffer[max(0, nbytes - 512):nbytes], nbytes)
        else:
            self.data_received(bytes(self.read_buffer[:nbytes]))

    def count(self, end, nbytes: int):
        """`nbytes` more arrived; `end` holds the last of them (at most 512 bytes)."""
        if self.t_first is None:
            self.t_first = time.perf_counter()
        self.n += nbytes
        self.tail = (self.tail + bytes(end))[-512:]
        if self.n >= self.expect and self.t_done is None:
            self.t_done = time.perf_counter()
            if not self.done.done():
                self.done.set_result(self.n)

    def data_received(self, data):
        if self.state == 2:
            self.count(data[-512:], len(data))
            return
        self.buf += data
        if self.state == 0:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            status = bytes(self.buf[:i].split(b"\r\n", 1)[0])
            if b" 101 " not in status:
                self.subscribed.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            del self.buf[: i + 4]
            self.state = 1
        while self.state == 1 and len(self.buf) >= 2:
            n = self.buf[1] & 0x7F
            hdr = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, hdr = int.from_bytes(self.buf[2:4], "big"), 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, hdr = int.from_bytes(self.buf[2:10], "big"), 10
            if len(self.buf) < hdr + n:
                return
            opcode = self.buf[0] & 0x0F
            body = bytes(self.buf[hdr: hdr + n])
            del self.buf[: hdr + n]
            if opcode != 1:
                continue
            if not self.got_ready:  # the first text frame is the server's hello
                self.got_ready = True
                self.transport.write(self.sub)
            elif b'"subscribed"' in body:
                self.state = 2
                rest = bytes(self.buf)
                self.buf = bytearray()
                self.subscribed.set_result(True)
                if rest:
                    self.data_received(rest)

    def verified(self) -> bool:
        return self.n == self.expect and self.last_tag in self.tail
