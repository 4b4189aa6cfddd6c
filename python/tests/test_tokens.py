"""Issue 10 §3, §4, §8: token expiry and refresh on live connections, disconnect_user, cookie tokens
only from allowed origins, failed handshakes per IP, upgrade bodies, short HMAC secrets,
trusted_proxies. Every test runs a real server on loopback and real clients."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Dict, Optional

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wavelane
from conftest import open_client, recv_json, request, run, upgrade, url

SECRET = "tokens-test-secret-0123456789abcdef-0123456789abcdef"


def token(sub: Optional[str] = "alice", exp: Optional[float] = None, secret: str = SECRET, **claims: Any) -> str:
    payload: Dict[str, Any] = dict(claims)
    if sub is not None:
        payload["sub"] = sub
    if exp is not None:
        payload["exp"] = exp
    return jwt.encode(payload, secret, algorithm="HS256")


async def closed_with(ws, timeout: float) -> ConnectionClosed:
    """Reads until the server closes the connection; returns the close exception."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"still open after {timeout} s")
            await asyncio.wait_for(ws.recv(), left)
    return info.value


async def still_open(ws) -> None:
    reply = await request(ws, {"type": "ping", "id": "alive"})
    assert reply == {"type": "pong", "id": "alive"}, reply


# -- §3 expiry ------------------------------------------------------------------------------


def test_expired_token_closes_the_connection_with_4001(make_server):
    srv, events = make_server(jwt_secret=SECRET, jwt_leeway=0)

    async def main():
        exp = int(time.time()) + 2
        ws, ready = await open_client(srv, f"/?token={token(exp=exp)}")
        assert ready["exp"] == exp
        t0 = time.monotonic()
        closed = await closed_with(ws, 8)
        assert closed.rcvd is not None and closed.rcvd.code == 4001 and closed.rcvd.reason == "token expired"
        assert time.time() >= exp  # not before exp (+ leeway 0)
        assert time.monotonic() - t0 < 6
        _, _, code = await events.await_for(lambda e: e[0] == "disconnect" and e[1] == int(ready["conn"]))
        assert code == 4001

    run(main())


def test_leeway_delays_the_close_and_tokens_without_exp_never_expire(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_leeway=3)

    async def main():
        exp = int(time.time()) + 1
        ws, ready = await open_client(srv, f"/?token={token(exp=exp)}")
        forever, ready2 = await open_client(srv, f"/?token={token(sub='bob')}")
        assert "exp" not in ready2
        await asyncio.sleep(exp + 2 - time.time())  # past exp, within the leeway
        await still_open(ws)
        closed = await closed_with(ws, 5)
        assert closed.rcvd.code == 4001
        assert time.time() > exp + 3
        await still_open(forever)
        await forever.close()

    run(main())


def test_refresh_moves_the_expiry_and_reaches_python(make_server):
    srv, events = make_server(jwt_secret=SECRET, jwt_leeway=0)

    async def main():
        exp = int(time.time()) + 2
        ws, ready = await open_client(srv, f"/?token={token(exp=exp)}")
        new_exp = int(time.time()) + 300
        reply = await request(ws, {"type": "refresh", "token": token(exp=new_exp, role="x"), "id": 7})
        assert reply == {"type": "refreshed", "exp": new_exp, "id": 7}
        _, conn, data = await events.await_kind("refresh", int(ready["conn"]))
        assert data["claims"]["exp"] == new_exp and data["claims"]["role"] == "x" and data["claims"]["sub"] == "alice"
        await asyncio.sleep(exp + 2.5 - time.time())  # the old expiry has passed
        await still_open(ws)
        await ws.close()

    run(main())


def test_refresh_without_exp_clears_the_expiry(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_leeway=0)

    async def main():
        exp = int(time.time()) + 2
        ws, _ = await open_client(srv, f"/?token={token(exp=exp)}")
        reply = await request(ws, {"type": "refresh", "token": token(), "id": 1})
        assert reply == {"type": "refreshed", "exp": None, "id": 1}
        await asyncio.sleep(exp + 2.5 - time.time())
        await still_open(ws)
        await ws.close()

    run(main())


def test_failed_refresh_keeps_the_old_expiry(make_server):
    srv, events = make_server(jwt_secret=SECRET, jwt_leeway=0)

    async def main():
        exp = int(time.time()) + 3
        ws, ready = await open_client(srv, f"/?token={token(exp=exp)}")
        later = int(time.time()) + 300
        bad = [
            (token(sub="mallory", exp=later), "another user"),
            (token(exp=later, secret="not-the-secret-0123456789abcdef-0123456789"), "invalid signature"),
            (token(exp=int(time.time()) - 10), "token expired"),
            ("garbage", "malformed token"),
        ]
        for i, (tok, why) in enumerate(bad):
            reply = await request(ws, {"type": "refresh", "token": tok, "id": i})
            assert reply["type"] == "error" and reply["code"] == "unauthorized" and reply["id"] == i, reply
            assert why in reply["message"], reply
        reply = await request(ws, {"type": "refresh", "id": 9})
        assert reply["type"] == "error" and reply["code"] == "bad_request"
        closed = await closed_with(ws, 6)
        assert closed.rcvd.code == 4001
        assert not events.of("refresh")

    run(main())


def test_refresh_attempts_are_rate_limited(make_server):
    srv, _ = make_server(jwt_secret=SECRET)

    async def main():
        ws, _ = await open_client(srv, f"/?token={token()}")
        codes = []
        for i in range(7):
            reply = await request(ws, {"type": "refresh", "token": "x.y.z", "id": i})
            codes.append(reply.get("code"))
        assert codes[:5] == ["unauthorized"] * 5
        assert codes[5:] == ["rate_limited"] * 2
        # A valid refresh is refused too while the budget is empty: no signature check at all.
        reply = await request(ws, {"type": "refresh", "token": token(), "id": 99})
        assert reply["code"] == "rate_limited"
        await ws.close()

    run(main())


def test_refresh_on_a_server_without_tokens(make_server):
    srv, _ = make_server()

    async def main():
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "refresh", "token": token(), "id": 1})
        assert reply["code"] == "unauthorized" and reply["id"] == 1
        await ws.close()

    run(main())


# -- §3 disconnect_user ---------------------------------------------------------------------


def test_disconnect_user_closes_every_connection_of_that_user(make_server):
    srv, _ = make_server(jwt_secret=SECRET)

    async def main():
        bobs = [(await open_client(srv, f"/?token={token(sub='bob')}"))[0] for _ in range(2)]
        alice, _ = await open_client(srv, f"/?token={token()}")
        assert await asyncio.to_thread(srv.disconnect_user, "bob", reason="revoked") == 2
        for ws in bobs:
            closed = await closed_with(ws, 5)
            assert closed.rcvd.code == 4003 and closed.rcvd.reason == "revoked"
        await still_open(alice)
        assert srv.disconnect_user("alice", code=4100) == 1
        assert (await closed_with(alice, 5)).rcvd.code == 4100
        assert srv.disconnect_user("nobody") == 0
        with pytest.raises(ValueError):
            srv.disconnect_user("bob", code=1006)
        with pytest.raises(ValueError):
            srv.disconnect_user("bob", reason="x" * 124)

    run(main())


# -- §4 cookie tokens -----------------------------------------------------------------------


APP = "https://app.example"


async def status_of(srv, **kwargs) -> int:
    try:
        ws = await connect(url(srv), open_timeout=5, **kwargs)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


def test_cookie_token_counts_only_from_an_allowed_origin(make_server):
    """Cross-site WebSocket hijacking: a page on another site makes the browser send bob's cookie."""
    open_srv, _ = make_server(jwt_secret=SECRET)  # no allowed_origins: any origin, but no cookie tokens
    srv, events = make_server(jwt_secret=SECRET, allowed_origins=[APP])
    cookie = {"Cookie": f"token={token(sub='bob')}"}

    async def main():
        assert await status_of(open_srv, additional_headers=cookie, origin="https://evil.example") == 403
        assert await status_of(open_srv, additional_headers=cookie) == 403  # no Origin: not a browser page we know
        assert await status_of(srv, additional_headers=cookie, origin="https://evil.example") == 403
        assert await status_of(srv, additional_headers=cookie) == 403
        ws, ready = await open_client(srv, additional_headers=cookie, origin=APP)
        assert ready["user"] == "bob"
        await ws.close()
        # Header and query tokens are unchanged: no Origin needed.
        ws, ready = await open_client(open_srv, additional_headers={"Authorization": f"Bearer {token(sub='carol')}"})
        assert ready["user"] == "carol"
        await ws.close()
        ws, ready = await open_client(open_srv, f"/?token={token(sub='dave')}", additional_headers=cookie)
        assert ready["user"] == "dave"
        await ws.close()

    run(main())
    # No 101 was sent for the refused ones: only the accepted connections reached Python (bob's
    # connect may still be on its way to the collector: wait for it; the refused ones came first).
    events.wait_kind("connect", None, 5.0)
    users = sorted(d["user"] for k, _, d in events.of("connect"))
    assert users == ["bob"]


def test_cookie_refusal_on_a_raw_socket_is_403_without_101(make_server):
    srv, _ = make_server(jwt_secret=SECRET)
    sock, status, headers, rest = upgrade(
        srv.port, [("Cookie", f"token={token(sub='bob')}"), ("Origin", "https://evil.example")]
    )
    body = rest + sock.recv(4096)
    sock.close()
    assert status == 403
    assert b"allowed_origins" in body


# -- §8 failed handshakes per IP ------------------------------------------------------------


def raw_status(port: int, headers=(), path: str = "/"):
    sock, status, hdrs, _ = upgrade(port, headers, path)
    sock.close()
    return status, hdrs


def test_failed_handshakes_are_rate_limited_by_default(make_server):
    srv, _ = make_server(jwt_secret=SECRET)
    junk = [("Authorization", "Bearer junk")]
    # Under the limit a valid handshake is not affected.
    for _ in range(10):
        assert raw_status(srv.port, junk)[0] == 401
    assert raw_status(srv.port, [("Authorization", f"Bearer {token()}")])[0] == 101
    statuses = [raw_status(srv.port, junk)[0] for _ in range(16)]
    assert 429 in statuses and statuses.count(401) <= 13, statuses  # default burst 20 (+ refill at 5/s)
    status, headers = raw_status(srv.port, junk)
    assert status == 429 and int(headers["retry-after"]) >= 1


def test_failed_handshake_limit_is_checked_before_the_token_and_refills(make_server):
    srv, _ = make_server(jwt_secret=SECRET, max_failed_handshakes_per_ip_rate=0.5, max_failed_handshakes_per_ip_burst=3)
    off, _ = make_server(jwt_secret=SECRET, max_failed_handshakes_per_ip_rate=0)
    junk = [("Authorization", "Bearer junk")]
    good = [("Authorization", f"Bearer {token()}")]
    assert [raw_status(srv.port, junk)[0] for _ in range(4)] == [401, 401, 401, 429]
    # Over the limit the check comes before the token is verified: a valid token waits as well.
    status, headers = raw_status(srv.port, good)
    assert status == 429 and headers["retry-after"] == "2"
    time.sleep(2.1)  # one token back at 0.5/s
    assert raw_status(srv.port, good)[0] == 101  # a valid handshake takes nothing
    assert raw_status(srv.port, junk)[0] == 401
    assert raw_status(srv.port, junk)[0] == 429
    assert all(raw_status(off.port, junk)[0] == 401 for _ in range(30))


def test_failed_handshake_config_errors_name_the_key():
    for key, value in (("max_failed_handshakes_per_ip_rate", -1), ("max_failed_handshakes_per_ip_burst", 0)):
        with pytest.raises(wavelane.ConfigError) as info:
            wavelane.Server(port=0, jwt_secret=SECRET, **{key: value})
        assert info.value.key == key


# -- §8 upgrade with a body -----------------------------------------------------------------


def upgrade_with_body(port: int, headers, body: bytes) -> int:
    import base64
    import os
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        lines = [
            "GET / HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13",
        ] + [f"{k}: {v}" for k, v in headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ")[1])


@pytest.mark.parametrize(
    "headers, body",
    [
        ([("Content-Length", "5")], b"hello"),
        ([("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n"),
        ([("Transfer-Encoding", "chunked")], b"0\r\n\r\n"),
    ],
)
def test_upgrade_with_a_body_is_refused(make_server, headers, body):
    srv, events = make_server()
    assert upgrade_with_body(srv.port, headers, body) == 400
    assert upgrade_with_body(srv.port, [("Content-Length", "0")], b"") == 101
    time.sleep(0.2)
    assert len(events.of("connect")) == 1


# -- §8 short HMAC secret -------------------------------------------------------------------


def test_short_hmac_secret_logs_a_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="wavelane")
    for secret, warned in (("short-secret", True), ("x" * 32, False)):
        caplog.clear()
        server = wavelane.Server(port=0, jwt_secret=secret)
        server.start()
        server.stop(1)
        warnings = [r for r in caplog.records if r.name == "wavelane" and r.levelno == logging.WARNING
                    and "shorter than 32 bytes" in r.getMessage()]
        assert bool(warnings) == warned, (secret, [r.getMessage() for r in caplog.records])
        if warned:
            assert "jwt_secret" in warnings[0].getMessage() and warnings[0].wavelane["bytes"] == "12"


# -- §8 trusted_proxies ---------------------------------------------------------------------


def test_forwarded_for_from_an_untrusted_peer_is_ignored(make_server):
    srv, events = make_server(max_connections_per_ip=1)

    async def main():
        ws, ready = await open_client(srv, additional_headers={"X-Forwarded-For": "203.0.113.9"})
        _, _, data = await events.await_kind("connect", int(ready["conn"]))
        assert data["addr"].startswith("127.0.0.1:")
        # A spoofed, different address does not escape the per-IP limit.
        status = await status_of(srv, additional_headers={"X-Forwarded-For": "198.51.100.1", "X-Real-IP": "198.51.100.2"})
        assert status == 503
        await ws.close()

    run(main())


def test_forwarded_for_from_a_trusted_proxy_is_believed(make_server):
    srv, events = make_server(trusted_proxies=["127.0.0.1", "10.0.0.0/8", "fd00::/8"], max_connections_per_ip=1)

    async def main():
        async def addr_of(headers):
            ws, ready = await open_client(srv, additional_headers=headers)
            _, _, data = await events.await_kind("connect", int(ready["conn"]))
            return ws, data["addr"]

        # The rightmost address that is not a trusted proxy is the client.
        a, addr = await addr_of({"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.1.2.3"})
        assert addr == "203.0.113.9:0"
        b, addr = await addr_of({"X-Real-IP": "2001:db8::5"})
        assert addr == "[2001:db8::5]:0"
        # Per-IP limits count the forwarded address: the same client again is over its limit ...
        assert await status_of(srv, additional_headers={"X-Forwarded-For": "203.0.113.9"}) == 503
        # ... while the proxy itself (no header) is a client of its own.
        c, addr = await addr_of({})
        assert addr.startswith("127.0.0.1:")
        for ws in (a, b, c):
            await ws.close()

    run(main())


@pytest.mark.parametrize("entry", ["not-an-ip", "10.0.0.0/33", "::1/129", "1.2.3.4/", "10.0.0.0/8/8", ""])
def test_invalid_trusted_proxies_entry_is_a_config_error(entry):
    with pytest.raises(wavelane.ConfigError) as info:
        wavelane.Server(port=0, trusted_proxies=["127.0.0.1", entry])
    assert info.value.key == "trusted_proxies"
