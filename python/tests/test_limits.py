"""Limits, timeouts, the close handshake and connection clean-up, against a real in-process server.

Every test is bounded (socket timeouts, ``run(..., timeout)``, join timeouts) and takes well under
10 s; the whole file well under 40 s.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time
from typing import Callable, List, Optional, Tuple

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import open_client, raw_upgrade, recv, request, run

# ---------------------------------------------------------------------------- raw helpers


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def frame(opcode: int, payload: bytes = b"", fin: bool = True, length: Optional[int] = None) -> bytes:
    """A masked client frame; ``length`` overrides the announced payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code: Optional[int] = None, reason: str = "") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
    return frame(0x8, payload)


class FrameReader:
    """Reads server frames (unmasked) from a raw socket; ``pending`` holds bytes already read."""

    def __init__(self, sock: socket.socket, pending: bytes = b""):
        self.sock = sock
        self.buf = pending

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed with {len(self.buf)}/{n} bytes of a frame")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next(self) -> Tuple[int, bytes]:
        b0, b1 = self._need(2)
        assert b1 & 0x80 == 0, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        return b0 & 0x0F, self._need(n)

    def until_close(self, limit: int = 50) -> Tuple[Optional[int], str]:
        """Skip data frames until a close frame: (code or None, reason)."""
        for _ in range(limit):
            op, payload = self.next()
            if op == 0x8:
                if not payload:
                    return None, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8")
        raise AssertionError(f"no close frame within {limit} frames")


def wait_closed(sock: socket.socket, timeout: float) -> Tuple[float, bytes]:
    """Read until the peer closes (EOF or reset): (seconds it took, bytes received)."""
    t0 = time.monotonic()
    data = b""
    sock.settimeout(0.2)
    while time.monotonic() - t0 < timeout:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError(f"server did not close the connection within {timeout}s (got {data[:80]!r})")
    return time.monotonic() - t0, data


def poll(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def read_status(sock: socket.socket, timeout: float = 5.0) -> Tuple[str, bytes]:
    """Status line of the server's HTTP response, and the bytes after its headers."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode("latin-1"), rest


# ---------------------------------------------------------------------------- size limits


def _expect_close(ws, code: int):
    async def check():
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(10):  # skip anything queued before the close
                await recv(ws)
        assert info.value.rcvd is not None, "no close frame from the server"
        assert info.value.rcvd.code == code, info.value.rcvd
        return info.value

    return check()


def test_message_over_max_message_size_single_frame_closes_1009(make_server):
    srv, events = make_server(max_message_size=1024, max_frame_size=64 * 1024)

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        await ws.send("x" * 1024)  # exactly the limit: accepted
        _, _, data = await events.await_kind("message", conn)
        assert data == "x" * 1024
        await ws.send(b"y" * 1025)
        await _expect_close(ws, 1009)
        _, _, code = await events.await_kind("disconnect", conn)
        assert code == 1009

    run(main(), 10)
    assert len(events.of("message")) == 1  # the oversized message never reached Python


def test_message_over_max_message_size_fragmented_closes_1009(make_server):
    srv, events = make_server(max_message_size=1024, max_frame_size=64 * 1024)

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        await ws.send(["a" * 300, "b" * 300, "c" * 300])  # 900 bytes in 3 fragments: fine
        _, _, data = await events.await_kind("message", conn)
        assert data == "a" * 300 + "b" * 300 + "c" * 300
        await ws.send([b"a" * 400, b"b" * 400, b"c" * 400])  # every fragment fits, the message not
        await _expect_close(ws, 1009)
        _, _, code = await events.await_kind("disconnect", conn)
        assert code == 1009

    run(main(), 10)
    assert len(events.of("message")) == 1


def test_frame_over_max_frame_size_closes_1009(make_server):
    srv, events = make_server(max_message_size=64 * 1024, max_frame_size=1024)

    async def main():
        # no permessage-deflate: the frame on the wire must really be 1025 bytes
        ws, ready = await open_client(srv, compression=None)
        conn = int(ready["conn"])
        await ws.send([b"a" * 1000, b"b" * 1000])  # 2000-byte message of 1000-byte frames: fine
        _, _, data = await events.await_kind("message", conn)
        assert data == b"a" * 1000 + b"b" * 1000
        await ws.send("z" * 1025)
        await _expect_close(ws, 1009)
        _, _, code = await events.await_kind("disconnect", conn)
        assert code == 1009

    run(main(), 10)


def test_compressed_message_is_limited_by_its_decompressed_size(make_server):
    """permessage-deflate (when the server negotiates it): 1 MiB of "z" is a ~1 KiB frame, but
    the message is 1 MiB > max_message_size: 1009, not an allocation of the whole thing."""
    srv, events = make_server(max_message_size=64 * 1024, max_frame_size=64 * 1024)

    async def main():
        ws, ready = await open_client(srv)  # websockets offers permessage-deflate by default
        conn = int(ready["conn"])
        await ws.send("z" * 60_000)
        _, _, data = await events.await_kind("message", conn)
        assert data == "z" * 60_000
        await ws.send("z" * (1 << 20))
        await _expect_close(ws, 1009)
        _, _, code = await events.await_kind("disconnect", conn)
        assert code == 1009

    run(main(), 10)


def test_huge_announced_frame_length_is_refused_before_the_payload(make_server):
    """A header announcing 2**40 bytes gets 1009 at once: the server must not wait for (or
    allocate) the payload."""
    srv, events = make_server(max_message_size=1 << 20, max_frame_size=1 << 20)
    sock, status, rest = raw_upgrade(srv.port)
    with sock:
        assert status.startswith("HTTP/1.1 101"), status
        reader = FrameReader(sock, rest)
        op, ready = reader.next()
        assert op == 0x1 and b'"ready"' in ready
        sock.sendall(frame(0x2, b"", length=1 << 40)[:14])  # header + mask only
        t0 = time.monotonic()
        code, _ = reader.until_close()
        assert code == 1009
        assert time.monotonic() - t0 < 3
    events.wait_for(lambda e: e[0] == "disconnect" and e[2] == 1009, 5)


# ---------------------------------------------------------------------------- max_connections


def test_max_connections_refuses_with_503_then_accepts_again(make_server):
    srv, events = make_server(max_connections=2)
    socks: List[socket.socket] = []
    try:
        for _ in range(2):
            s, status, _ = raw_upgrade(srv.port)
            socks.append(s)
            assert status.startswith("HTTP/1.1 101"), status
        events.wait_count(lambda e: e[0] == "connect", 2, 5)

        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        with extra:
            extra.sendall(upgrade_request(srv.port))
            status, _ = read_status(extra)
            assert status.startswith("HTTP/1.1 503"), status
            wait_closed(extra, 5)  # and the server hangs up
        assert srv.stats()["rejected_capacity"] >= 1
        assert srv.stats()["connections_active"] == 2

        first = socks.pop(0)
        first.sendall(close_frame(1000))
        first.close()
        assert poll(lambda: srv.stats()["connections_active"] == 1, 5), srv.stats()
        events.wait_kind("disconnect", timeout=5)

        s, status, _ = raw_upgrade(srv.port)
        socks.append(s)
        assert status.startswith("HTTP/1.1 101"), status
        events.wait_count(lambda e: e[0] == "connect", 3, 5)
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------- handshake


def test_half_http_request_is_dropped_after_handshake_timeout(make_server):
    srv, events = make_server(handshake_timeout=1)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        took, data = wait_closed(sock, 5)
    assert 0.5 <= took <= 2.5, took
    assert not data or data.startswith(b"HTTP/1.1 4"), data[:80]
    assert poll(lambda: srv.stats()["handshake_timeouts"] >= 1, 2), srv.stats()
    assert events.of("connect") == []


def test_trickled_http_request_is_dropped_after_handshake_timeout(make_server):
    """Slowloris: one header byte every 100 ms must not extend the handshake deadline."""
    srv, _ = make_server(handshake_timeout=1)
    request_bytes = upgrade_request(srv.port)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        t0 = time.monotonic()
        closed_after = None
        for i in range(len(request_bytes) - 4):  # never the final CRLFCRLF
            if time.monotonic() - t0 > 5:
                break
            try:
                sock.sendall(request_bytes[i : i + 1])
            except OSError:
                closed_after = time.monotonic() - t0
                break
            sock.settimeout(0.1)
            try:
                if sock.recv(4096) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed_after = time.monotonic() - t0
                break
    assert closed_after is not None, "a trickling client was kept for more than 5 s"
    assert closed_after <= 2.5, closed_after


def test_long_upgrade_requests_take_several_reads(make_server):
    """The receive buffer starts at 512 bytes and the handshake reads one buffer per readable event:
    a request of 8 KB, in one write or in pieces that arrive apart, still upgrades whole."""
    srv, events = make_server(connect_headers=["x-last"])
    request_bytes = upgrade_request(srv.port)
    head, end = request_bytes[:-2], request_bytes[-2:]
    long_request = head + b"Cookie: c=" + b"v" * 8000 + b"\r\nX-Last: here\r\n" + end
    seen = set()
    for pieces in ([long_request], [long_request[:300], long_request[300:700], long_request[700:]]):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.05)
            status, rest = read_status(sock)
            assert status.startswith("HTTP/1.1 101"), status
            _, conn, data = events.wait_for(lambda e: e[0] == "connect" and e[1] not in seen)
            seen.add(conn)
            assert data["headers"] == {"x-last": "here"}  # the header after the long one came through
            # Frames are read after it as before: a close is answered.
            sock.sendall(close_frame(1000))
            events.wait_kind("disconnect", conn)


def test_handshake_timeout_does_not_affect_upgraded_connections(make_server):
    srv, _ = make_server(handshake_timeout=0.5)

    async def main():
        ws, _ = await open_client(srv)
        import asyncio

        await asyncio.sleep(1.2)
        assert await request(ws, {"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
        await ws.close()

    run(main(), 10)


@pytest.mark.parametrize(
    "garbage",
    [
        b"HELLO WORLD\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello start
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",  # no Sec-WebSocket-Key
        bytes(range(256)) * 4,
    ],
    ids=["words", "tls", "short", "no-key", "binary"],
)
def test_garbage_instead_of_http_gets_400_or_close(make_server, garbage):
    srv, events = make_server(handshake_timeout=5)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        try:
            sock.sendall(garbage)
        except OSError:
            pass  # already closed on us: fine
        took, data = wait_closed(sock, 4)
    assert took < 3, took  # answered or dropped at once, not by the handshake timeout
    if data:
        assert data.startswith(b"HTTP/1.1 400"), data[:80]
    assert events.of("connect") == []
    # the server is still fine
    s, status, _ = raw_upgrade(srv.port)
    s.close()
    assert status.startswith("HTTP/1.1 101"), status


# ---------------------------------------------------------------------------- topics limits


def test_max_subscriptions_and_max_topic_length_errors(make_server):
    srv, _ = make_server(max_subscriptions=3, max_topic_length=16)

    async def main():
        ws, _ = await open_client(srv)
        ok = await request(ws, {"type": "subscribe", "topics": ["a", "b"], "id": 1})
        assert ok["type"] == "subscribed" and ok["id"] == 1
        err = await request(ws, {"type": "subscribe", "topics": ["c", "d"], "id": 2})
        assert err["type"] == "error" and err["code"] == "too_many_subscriptions", err
        assert err["id"] == 2 and isinstance(err["message"], str)
        ok = await request(ws, {"type": "subscribe", "topic": "c", "id": 3})  # 3 is the limit
        assert ok["type"] == "subscribed", ok
        err = await request(ws, {"type": "subscribe", "topic": "e", "id": 4})
        assert err["code"] == "too_many_subscriptions", err
        # room again after an unsubscribe
        assert (await request(ws, {"type": "unsubscribe", "topic": "a", "id": 5}))["type"] == "unsubscribed"
        assert (await request(ws, {"type": "subscribe", "topic": "e", "id": 6}))["type"] == "subscribed"

        ws2, _ = await open_client(srv)
        err = await request(ws2, {"type": "subscribe", "topics": ["x" * 17], "id": "long"})
        assert err["type"] == "error" and err["code"] == "invalid_topic" and err["id"] == "long", err
        ok = await request(ws2, {"type": "subscribe", "topics": ["x" * 16], "id": 7})
        assert ok["type"] == "subscribed", ok
        for bad in ["", "a\nb", "tab\there", "\x00"]:
            err = await request(ws2, {"type": "subscribe", "topics": [bad], "id": 8})
            assert err["type"] == "error" and err["code"] == "invalid_topic", (bad, err)
        # a multi-byte topic is measured in UTF-8 bytes: 6 x 3 bytes = 18 > 16
        err = await request(ws2, {"type": "subscribe", "topics": ["€" * 6], "id": 9})
        assert err["code"] == "invalid_topic", err
        assert await request(ws2, {"type": "ping", "id": 10}) == {"type": "pong", "id": 10}
        await ws.close()
        await ws2.close()

    run(main(), 10)


# ---------------------------------------------------------------------------- close handshake


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
def test_client_close_is_echoed_with_the_same_code(server, code):
    srv, events = server

    async def main():
        ws, ready = await open_client(srv)
        await ws.close(code=code, reason="bye")
        rcvd = ws.protocol.close_rcvd
        assert rcvd is not None, "the server did not answer the close"
        assert rcvd.code == code, rcvd  # the code is echoed (the reason need not be)
        _, _, got = await events.await_kind("disconnect", int(ready["conn"]))
        assert got == code

    run(main(), 10)


def test_client_close_without_code_raw(server):
    srv, events = server
    sock, status, rest = raw_upgrade(srv.port)
    with sock:
        assert status.startswith("HTTP/1.1 101"), status
        reader = FrameReader(sock, rest)
        sock.sendall(close_frame(None))
        code, _ = reader.until_close()
        assert code in (None, 1000)
        wait_closed(sock, 5)  # then the server closes the TCP connection
    _, _, got = events.wait_kind("disconnect")
    assert got == 1005


def test_server_close_with_code_and_reason(server):
    srv, events = server

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        await events.await_kind("connect", conn)
        assert srv.close(conn, 4001, "x") is True
        closed = await _expect_close(ws, 4001)
        assert closed.rcvd.reason == "x"
        _, _, got = await events.await_kind("disconnect", conn)
        assert got == 4001
        assert srv.close(conn, 4001, "x") is False  # already gone

    run(main(), 10)


def test_server_close_waits_close_timeout_for_a_silent_client(make_server):
    srv, events = make_server(close_timeout=0.5)
    sock, status, rest = raw_upgrade(srv.port)
    with sock:
        assert status.startswith("HTTP/1.1 101"), status
        conn = events.wait_kind("connect")[1]
        assert srv.close(conn, 4002, "go")
        code, reason = FrameReader(sock, rest).until_close()
        assert (code, reason) == (4002, "go")
        took, _ = wait_closed(sock, 5)  # we never answer: dropped after close_timeout
        assert took < 3, took
    _, _, got = events.wait_kind("disconnect", conn)
    assert got == 4002
    assert poll(lambda: srv.stats()["connections_active"] == 0, 3)


# ---------------------------------------------------------------------------- clean-up


def test_half_closed_peer_is_cleaned_up(server):
    srv, events = server
    sock, status, _ = raw_upgrade(srv.port)
    with sock:
        assert status.startswith("HTTP/1.1 101"), status
        conn = events.wait_kind("connect")[1]
        sock.shutdown(socket.SHUT_WR)
        _, _, code = events.wait_kind("disconnect", conn, timeout=5)
        assert code == 1006
        wait_closed(sock, 5)  # the server closes its side too
    assert poll(lambda: srv.stats()["connections_active"] == 0, 3), srv.stats()


CYCLES = 5000
THREADS = 8


def _cycle(port: int, mode: int, request_bytes: bytes) -> bool:
    """One connect/abort cycle; True if the upgrade completed (a 101 was read)."""
    rst = struct.pack("ii", 1, 0)
    upgraded = False
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        if mode in (1, 3, 5, 7):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, rst)  # close() sends RST
        if mode in (0, 1, 4, 5, 6, 7):
            sock.sendall(request_bytes)
            status, _ = read_status(sock)
            assert status.startswith("HTTP/1.1 101"), status
            upgraded = True
            if mode in (4, 5):  # half a frame
                sock.sendall(frame(0x1, b"hello there")[:5])
            elif mode == 6:  # a whole message
                sock.sendall(frame(0x1, b"hi"))
        elif mode in (2, 3):  # half the HTTP request
            sock.sendall(request_bytes[: len(request_bytes) // 2])
        # mode 8/9 (below): connect and leave at once
    finally:
        sock.close()
    return upgraded


def test_connect_abort_cycles_leave_no_leak(make_server):
    srv, events = make_server(handshake_timeout=2)
    port = srv.port
    time.sleep(0.05)
    base_fds = fd_count()
    assert srv.stats()["connections_active"] == 0
    request_bytes = upgrade_request(port)
    upgrades = [0] * THREADS
    errors: List[BaseException] = []
    deadline = time.monotonic() + 25

    def worker(idx: int) -> None:
        try:
            for i in range(idx, CYCLES, THREADS):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {idx} out of time at cycle {i}")
                mode = i % 10
                if mode >= 8:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    if mode == 9:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                elif _cycle(port, mode, request_bytes):
                    upgrades[idx] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "connect/abort workers did not finish"
    assert not errors, errors[:3]
    total_upgrades = sum(upgrades)
    assert total_upgrades == CYCLES * 6 // 10
    took = time.monotonic() - t0

    # every upgraded connection produced one connect and, once cleaned up, one disconnect
    events.wait_count(lambda e: e[0] == "connect", total_upgrades, 10)
    events.wait_count(lambda e: e[0] == "disconnect", total_upgrades, 10)
    assert poll(lambda: srv.stats()["connections_active"] == 0, 5), srv.stats()
    assert poll(lambda: fd_count() <= base_fds, 5), (fd_count(), base_fds)
    connects = [e[1] for e in events.of("connect")]
    disconnects = [e[1] for e in events.of("disconnect")]
    assert len(connects) == len(set(connects)) == total_upgrades
    assert sorted(disconnects) == sorted(connects)
    # no event of a connection after its disconnect
    seen_gone = set()
    for kind, conn, _ in list(events.events):
        assert conn not in seen_gone, (kind, conn)
        if kind == "disconnect":
            seen_gone.add(conn)
    stats = srv.stats()
    assert stats["connections_accepted"] >= total_upgrades
    print(f"{CYCLES} cycles in {took:.1f}s, {total_upgrades} upgrades, stats {stats}")

    # and the server still serves
    s, status, _ = raw_upgrade(port)
    s.close()
    assert status.startswith("HTTP/1.1 101"), status


def _close_code(sock: socket.socket, buf: bytes = b"", timeout: float = 5.0) -> Optional[int]:
    """Reads server frames until a close frame; its code (None when the socket ends first)."""
    sock.settimeout(timeout)
    while True:
        while len(buf) >= 2:
            opcode, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, off = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, off = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < off + n:
                break
            payload, buf = buf[off : off + n], buf[off + n :]
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk


def test_partly_received_messages_share_a_global_budget(make_server):
    """max_partial_bytes bounds the fragments all connections hold: the connection whose fragment
    would go beyond it is closed 1013; a message over max_message_size still closes 1009."""
    srv, events = make_server(max_message_size=64 * 1024, max_frame_size=64 * 1024, max_partial_bytes=100 * 1024)

    def wait_partial(n: int) -> None:
        deadline = time.monotonic() + 5
        while srv.stats()["partial_bytes"] != n:
            assert time.monotonic() < deadline, srv.stats()["partial_bytes"]
            time.sleep(0.01)

    a, status, rest_a = raw_upgrade(srv.port)
    assert " 101 " in status
    a.sendall(frame(0x1, b"a" * 60_000, fin=False))
    wait_partial(60_000)
    # B's first fragment fits its own message but not the shared budget: 1013, nothing kept.
    b, _, rest_b = raw_upgrade(srv.port)
    b.sendall(frame(0x1, b"b" * 60_000, fin=False))
    assert _close_code(b, rest_b) == 1013
    b.close()
    assert srv.stats()["partial_budget_closes"] == 1
    wait_partial(60_000)
    # D: over max_message_size (and the budget): 1009, as without the budget.
    d, _, rest_d = raw_upgrade(srv.port)
    d.sendall(frame(0x2, b"d" * 30_000, fin=False))
    wait_partial(90_000)
    d.sendall(frame(0x0, b"d" * 40_000, fin=False))
    assert _close_code(d, rest_d) == 1009
    d.close()
    wait_partial(60_000)
    # A finishes its message: delivered whole, its share released.
    a.sendall(frame(0x0, b"z" * 10, fin=True))
    msg = events.wait_for(lambda e: e[0] == "message" and len(e[2]) == 60_010)
    assert msg[2] == "a" * 60_000 + "z" * 10
    wait_partial(0)
    # Room again; a connection that vanishes mid-message gives its share back.
    c, _, _ = raw_upgrade(srv.port)
    c.sendall(frame(0x1, b"c" * 60_000, fin=False))
    wait_partial(60_000)
    c.close()
    wait_partial(0)
    a.close()
    assert srv.stats()["partial_budget_closes"] == 1
