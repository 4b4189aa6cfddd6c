"""Admission and inbound rate limits over real sockets (issue #4): the per-connection token bucket
(messages/s, bytes/s), per-IP new-connection rate (429) and concurrency (503), per-user concurrency
(503), the Origin allowlist (403) and subprotocol negotiation.

Every test is bounded (socket timeouts, ``run(..., timeout)``) and takes well under 10 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Iterable, List, Tuple

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wavelane
from conftest import open_client, recv, recv_json, run, upgrade, url

SECRET = "policies-test-secret-0123456789abcdef0123456789abcdef"


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")


def status_of(port: int, headers: Iterable[Tuple[str, str]] = ()) -> int:
    sock, status, _, _ = upgrade(port, headers)
    sock.close()
    return status


async def flood(
    srv: wavelane.Server, messages: List[str], quiet: float = 3.0
) -> Tuple[int, List[dict], object]:
    """Sends every message at once, then reads until the server closes (or ``quiet`` s of silence).
    Returns (conn, replies, close frame received or None)."""
    ws, ready = await open_client(srv)
    for m in messages:
        try:
            await ws.send(m)
        except ConnectionClosed:
            break
    replies: List[dict] = []
    close = None
    try:
        while True:
            replies.append(json.loads(await recv(ws, quiet)))
    except ConnectionClosed as exc:
        close = exc.rcvd
    except asyncio.TimeoutError:
        await ws.close()
    return int(ready["conn"]), replies, close


# ---------------------------------------------------------------------------- inbound rate limit


def test_message_flood_is_limited_then_closed_1008(make_server):
    srv, events = make_server(rate_limit_messages=5, rate_limit_burst_messages=5, rate_limit_strikes=10)
    t0 = time.monotonic()
    conn, replies, close = run(flood(srv, [f"m{i}" for i in range(200)]), timeout=8)
    elapsed = time.monotonic() - t0
    events.wait_kind("disconnect", conn, timeout=5)
    delivered = [e for e in events.of("message", conn)]
    # The budget: the burst plus what refilled while the flood lasted.
    assert 1 <= len(delivered) <= 5 + int(5 * elapsed) + 1, (len(delivered), elapsed)
    assert [e[2] for e in delivered] == [f"m{i}" for i in range(len(delivered))]  # in order, none skipped before
    errors = [r for r in replies if r.get("type") == "error"]
    assert errors and all(r["code"] == "rate_limited" for r in errors)
    assert len(errors) <= 1 + int(elapsed)  # at most one reply per second
    assert close is not None and close.code == 1008 and close.reason == "rate limit exceeded"
    assert events.wait_kind("disconnect", conn)[2] == 1008
    stats = srv.stats()
    assert stats["rate_limited"] >= 10
    assert stats["rate_limit_closes"] == 1


def test_control_messages_count_against_the_message_budget(make_server):
    srv, events = make_server(rate_limit_messages=2, rate_limit_burst_messages=3, rate_limit_strikes=0)

    async def main():
        ws, _ = await open_client(srv)
        for i in range(8):
            await ws.send(json.dumps({"type": "ping", "id": i}))
        replies = []
        try:
            while True:
                replies.append(json.loads(await recv(ws, 0.7)))
        except asyncio.TimeoutError:
            pass
        await ws.close()
        return replies

    replies = run(main(), timeout=8)
    pongs = [r for r in replies if r["type"] == "pong"]
    errors = [r for r in replies if r["type"] == "error"]
    assert [p["id"] for p in pongs] == [0, 1, 2]
    assert len(errors) == 1 and errors[0]["code"] == "rate_limited"
    # strikes=0: drops only, the connection stays open
    assert srv.stats()["rate_limited"] == 5
    assert srv.stats()["rate_limit_closes"] == 0


def test_byte_rate_limit(make_server):
    srv, events = make_server(rate_limit_bytes=1000, rate_limit_burst_bytes=1000, rate_limit_strikes=0)

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        for i in range(5):
            await ws.send(f"{i}" * 400)  # 400 bytes each: two fit the 1000-byte burst
        first = await recv_json(ws)
        with pytest.raises(asyncio.TimeoutError):
            await recv(ws, 0.5)  # one error reply, not one per refused message
        await asyncio.to_thread(events.wait_count, lambda e: e[0] == "message" and e[1] == conn, 2, 5)
        await asyncio.sleep(0.6)  # > 400 bytes refilled since the refusals
        await ws.send("x" * 400)
        await asyncio.to_thread(events.wait_count, lambda e: e[0] == "message" and e[1] == conn, 3, 5)
        await ws.close()
        return conn, first

    conn, first = run(main(), timeout=8)
    assert first["type"] == "error" and first["code"] == "rate_limited"
    assert [e[2] for e in events.of("message", conn)] == ["0" * 400, "1" * 400, "x" * 400]
    assert srv.stats()["rate_limited"] == 3


def test_no_limit_by_default(server):
    srv, events = server
    conn, replies, close = run(flood(srv, [f"m{i}" for i in range(300)], quiet=0.3), timeout=8)
    assert replies == [] and close is None
    assert events.wait_count(lambda e: e[0] == "message" and e[1] == conn, 300)
    assert srv.stats()["rate_limited"] == 0


# ---------------------------------------------------------------------------- admission


def test_new_connections_per_second_per_ip_gets_429(make_server):
    srv, events = make_server(max_connections_per_ip_rate=1, max_connections_per_ip_rate_burst=3)
    socks = []
    try:
        for _ in range(3):
            sock, status, _, _ = upgrade(srv.port)
            socks.append(sock)
            assert status == 101
        sock, status, headers, body = upgrade(srv.port)
        socks.append(sock)
        assert status == 429
        assert int(headers["retry-after"]) >= 1
        assert b"too many new connections" in body or headers.get("content-length") != "0"
    finally:
        for s in socks:
            s.close()
    assert srv.stats()["rejected_rate"] == 1
    # Closing does not give rate back: still 429 until a token refills (1/s).
    assert status_of(srv.port) == 429
    time.sleep(1.1)
    assert status_of(srv.port) == 101
    assert srv.stats()["rejected_rate"] == 2


def test_concurrent_connections_per_ip_gets_503(make_server):
    srv, events = make_server(max_connections_per_ip=2)
    a, sa, _, _ = upgrade(srv.port)
    b, sb, _, _ = upgrade(srv.port)
    try:
        assert (sa, sb) == (101, 101)
        c, sc, headers, body = upgrade(srv.port)
        c.close()
        assert sc == 503 and b"from this address" in body
        assert srv.stats()["rejected_ip"] == 1
        a.close()
        events.wait_count(lambda e: e[0] == "disconnect", 1)
        d, sd, _, _ = upgrade(srv.port)
        d.close()
        assert sd == 101
    finally:
        a.close()
        b.close()


def test_concurrent_connections_per_user_gets_503(make_server):
    srv, events = make_server(jwt_secret=SECRET, max_connections_per_user=2)
    alice = [("Authorization", f"Bearer {token('alice')}")]
    socks = []
    try:
        for _ in range(2):
            sock, status, _, _ = upgrade(srv.port, alice)
            socks.append(sock)
            assert status == 101
        sock, status, _, body = upgrade(srv.port, alice)
        sock.close()
        assert status == 503 and b"this user" in body
        sock, status, _, _ = upgrade(srv.port, [("Authorization", f"Bearer {token('bob')}")])
        socks.append(sock)
        assert status == 101
        assert srv.stats()["rejected_user"] == 1
        # A bad token is still 401 (and holds nothing).
        assert status_of(srv.port, [("Authorization", "Bearer nope")]) == 401
        socks.pop(0).close()
        events.wait_count(lambda e: e[0] == "disconnect", 1)
        sock, status, _, _ = upgrade(srv.port, alice)
        socks.append(sock)
        assert status == 101
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------- origins


def test_origin_allowlist(make_server):
    srv, events = make_server(allowed_origins=["https://app.example.com", "https://*.example.org"])
    assert status_of(srv.port, [("Origin", "https://evil.example.net")]) == 403
    assert status_of(srv.port, [("Origin", "http://app.example.com")]) == 403  # scheme
    assert status_of(srv.port, [("Origin", "https://app.example.com:8443")]) == 403  # port
    assert status_of(srv.port, [("Origin", "https://example.org")]) == 403  # wildcard is not the apex
    assert status_of(srv.port, [("Origin", "null")]) == 403
    assert srv.stats()["rejected_origin"] == 5
    assert status_of(srv.port, [("Origin", "https://APP.example.com")]) == 101
    assert status_of(srv.port, [("Origin", "https://chat.eu.example.org")]) == 101
    assert status_of(srv.port) == 101  # no Origin: a non-browser client

    async def browser():
        ws, _ = await open_client(srv, origin="https://live.example.org")
        await ws.close()
        with pytest.raises(InvalidStatus) as info:
            await connect(url(srv), origin="https://attacker.example", open_timeout=5)
        return info.value.response.status_code

    assert run(browser(), timeout=8) == 403


def test_require_origin(make_server):
    srv, _ = make_server(require_origin=True)
    assert status_of(srv.port) == 403
    assert status_of(srv.port, [("Origin", "https://anything.example")]) == 101


# ---------------------------------------------------------------------------- subprotocols


def test_subprotocol_is_chosen_echoed_and_reported(make_server):
    srv, events = make_server(subprotocols=["v2.chat", "v1.chat"])

    async def main():
        ws, ready = await open_client(srv, subprotocols=["v1.chat", "v2.chat"])
        chosen = ws.subprotocol
        _, _, data = await events.await_kind("connect", int(ready["conn"]))
        await ws.close()
        plain, ready2 = await open_client(srv)
        _, _, data2 = await events.await_kind("connect", int(ready2["conn"]))
        await plain.close()
        return chosen, data, data2

    chosen, data, data2 = run(main(), timeout=8)
    assert chosen == "v1.chat"  # the client's first offer that the server speaks
    assert data["subprotocol"] == "v1.chat"
    assert data2["subprotocol"] is None
    sock, status, headers, _ = upgrade(srv.port, [("Sec-WebSocket-Protocol", "x, v2.chat")])
    sock.close()
    assert status == 101 and headers["sec-websocket-protocol"] == "v2.chat"
    sock, status, headers, _ = upgrade(srv.port, [("Sec-WebSocket-Protocol", "unknown")])
    sock.close()
    assert status == 101 and "sec-websocket-protocol" not in headers


def test_subprotocol_required(make_server):
    srv, _ = make_server(subprotocols=["v1.chat"], subprotocol_required=True)
    sock, status, _, body = upgrade(srv.port, [("Sec-WebSocket-Protocol", "graphql-ws, mqtt")])
    sock.close()
    assert status == 400 and b"v1.chat" in body
    assert status_of(srv.port) == 400
    assert status_of(srv.port, [("Sec-WebSocket-Protocol", "v1.chat")]) == 101
    assert srv.stats()["rejected_subprotocol"] == 2


# ---------------------------------------------------------------------------- configuration


def test_policy_config_errors_name_the_key():
    bad = [
        ({"allowed_origins": ["example.com"]}, "allowed_origins"),
        ({"allowed_origins": "https://a.example"}, "allowed_origins"),
        ({"subprotocol_required": True}, "subprotocol_required"),
        ({"subprotocols": ["has space"]}, "subprotocols"),
        ({"rate_limit_messages": -1}, "rate_limit_messages"),
        ({"rate_limit_messages": "fast"}, "rate_limit_messages"),
        ({"rate_limit_burst_messages": 5}, "rate_limit_burst_messages"),
        ({"max_connections_per_ip": 1.5}, "max_connections_per_ip"),
        ({"max_tracked_ips": 0}, "max_tracked_ips"),
        ({"require_origin": "yes"}, "require_origin"),
    ]
    for cfg, key in bad:
        with pytest.raises(wavelane.ConfigError) as info:
            wavelane.Server(port=0, **cfg)
        assert info.value.key == key, (cfg, str(info.value))


def test_policy_keys_from_environment_and_stats():
    from wavelane.config import load_config

    cfg = load_config(
        env={
            "WAVELANE_ALLOWED_ORIGINS": "https://a.example, https://*.b.example",
            "WAVELANE_RATE_LIMIT_MESSAGES": "2.5",
            "WAVELANE_MAX_CONNECTIONS_PER_IP": "7",
            "WAVELANE_REQUIRE_ORIGIN": "true",
        }
    )
    assert cfg == {
        "allowed_origins": ["https://a.example", "https://*.b.example"],
        "rate_limit_messages": 2.5,
        "max_connections_per_ip": 7,
        "require_origin": True,
    }
    srv = wavelane.Server(port=0, **cfg)
    stats = srv.stats()
    for name in ("rejected_rate", "rejected_ip", "rejected_ip_table_full", "rejected_user",
                 "rejected_origin", "rejected_subprotocol", "rate_limited", "rate_limit_closes"):
        assert stats[name] == 0
