"""permessage-deflate (RFC 7692) with real clients: negotiation, both directions, limits."""

from __future__ import annotations

import json
import os
import socket
import struct
import zlib

import pytest
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from conftest import open_client, raw_upgrade, recv, recv_json, request, run, upgrade, url


def _mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _client_frame(opcode: int, payload: bytes, *, rsv1: bool = False, fin: bool = True) -> bytes:
    key = os.urandom(4)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n <= 125:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + key + _mask(payload, key)


def _read_frame(sock: socket.socket, buf: bytearray):
    def need(n):
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf.extend(chunk)

    need(2)
    first, second = buf[0], buf[1]
    n = second & 0x7F
    off = 2
    if n == 126:
        need(4)
        n = struct.unpack("!H", bytes(buf[2:4]))[0]
        off = 4
    elif n == 127:
        need(10)
        n = struct.unpack("!Q", bytes(buf[2:10]))[0]
        off = 10
    need(off + n)
    payload = bytes(buf[off : off + n])
    del buf[: off + n]
    return first, payload


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    return d.decompress(data + b"\x00\x00\xff\xff")


def test_negotiated_and_large_publication_is_compressed(server):
    srv, events = server
    text = "wavelane " * 400  # 3.6 KB, very compressible

    async def scenario():
        ws, _ = await open_client(srv)
        try:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ext.startswith("permessage-deflate")
            assert "server_no_context_takeover" in ext and "client_no_context_takeover" in ext
            await request(ws, {"type": "subscribe", "topics": ["big"], "id": 1})
            srv.publish("big", text)
            msg = await recv_json(ws)
            assert msg == {"type": "message", "topic": "big", "offset": 1, "data": text}
            await ws.send(text)  # the client compresses too
            kind, _, data = await events.await_for(lambda e: e[0] == "message")
            assert data == text
        finally:
            await ws.close()

    run(scenario())
    stats = srv.stats()
    # The frame went out compressed: far fewer bytes than the 3.6 KB text.
    assert stats["bytes_out"] < 1500, stats


def test_raw_frames_rsv1_set_and_payload_inflates(server):
    srv, events = server
    sock, status, rest = raw_upgrade(
        srv.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    )
    try:
        assert status.endswith("101 Switching Protocols"), status
        buf = bytearray(rest)
        first, ready = _read_frame(sock, buf)
        assert first == 0x81  # small control message: not compressed
        conn = int(json.loads(ready)["conn"])
        body = ("x" * 1000).encode()
        assert srv.send(conn, body.decode())
        first, payload = _read_frame(sock, buf)
        assert first == 0xC1  # FIN + RSV1 + text
        assert _inflate(payload) == body
        # A compressed frame from the client, split in two fragments.
        compressed = _deflate(("héllo " * 200).encode())
        half = len(compressed) // 2
        sock.sendall(_client_frame(0x1, compressed[:half], rsv1=True, fin=False) + _client_frame(0x0, compressed[half:]))
        _, _, data = events.wait_for(lambda e: e[0] == "message")
        assert data == "héllo " * 200
    finally:
        sock.close()


def test_decompression_bomb_closes_1009(make_server):
    srv, events = make_server(max_message_size=64 * 1024)
    sock, status, rest = raw_upgrade(srv.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    try:
        assert "101" in status
        buf = bytearray(rest)
        _read_frame(sock, buf)  # ready
        bomb = _deflate(b"\x00" * (16 * 1024 * 1024))  # 16 MiB of zeros: ~16 KB compressed
        assert len(bomb) < 64 * 1024
        sock.sendall(_client_frame(0x2, bomb, rsv1=True))
        first, payload = _read_frame(sock, buf)
        assert first & 0x0F == 0x8
        assert struct.unpack("!H", payload[:2])[0] == 1009
        _, _, code = events.wait_for(lambda e: e[0] == "disconnect")
        assert code == 1009
    finally:
        sock.close()
    assert not events.of("message")


def test_rsv1_without_negotiation_is_a_protocol_error(make_server):
    srv, events = make_server(compression=False)
    sock, status, rest = raw_upgrade(srv.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    try:
        assert "101" in status
        buf = bytearray(rest)
        _read_frame(sock, buf)
        sock.sendall(_client_frame(0x1, _deflate(b"hello"), rsv1=True))
        first, payload = _read_frame(sock, buf)
        assert first & 0x0F == 0x8 and struct.unpack("!H", payload[:2])[0] == 1002
    finally:
        sock.close()


@pytest.mark.parametrize(
    "offer, expect",
    [
        ("permessage-deflate; server_max_window_bits=10", "server_max_window_bits=10"),
        ("permessage-deflate; client_max_window_bits=9", "client_max_window_bits=9"),
        ("permessage-deflate; unknown_param", None),
        ("permessage-deflate; server_max_window_bits=7", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; server_max_window_bits=7, permessage-deflate", "permessage-deflate"),
        # found by fuzzing: a nameless parameter crashed the server process (index out of range)
        ("permessage-deflate;=", None),
        ("permessage-deflate; =15, permessage-deflate", "permessage-deflate"),
    ],
)
def test_offer_negotiation(server, offer, expect):
    srv, _ = server
    sock, status, headers, _ = upgrade(srv.port, [("Sec-WebSocket-Extensions", offer)])
    sock.close()
    assert status == 101  # an unacceptable offer is declined, never a failed upgrade
    answer = headers.get("sec-websocket-extensions")
    if expect is None:
        assert answer is None, headers
    else:
        assert answer is not None and expect in answer, headers


def test_window_bits_8_client_gets_valid_stream(server):
    """A client that asks for an 8-bit server window can inflate what we send."""
    srv, _ = server

    async def scenario():
        factory = ClientPerMessageDeflateFactory(server_max_window_bits=8, client_max_window_bits=9)
        async with connect(url(srv), extensions=[factory], open_timeout=5, max_size=None) as ws:
            ready = json.loads(await recv(ws))
            conn = int(ready["conn"])
            text = "".join(chr(0x41 + (i * 7919) % 26) for i in range(5000)) + "abc" * 2000
            assert srv.send(conn, text)
            assert await recv(ws) == text

    run(scenario())
