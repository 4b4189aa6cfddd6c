"""Server lifecycle, inbound events, direct sends, close codes, limits."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed

import wavelane
from conftest import open_client, raw_upgrade, recv, request, run


def test_ready_message_and_connect_event(server):
    srv, events = server

    async def main():
        ws, ready = await open_client(srv, "/feed?x=1")
        conn = int(ready["conn"])
        assert isinstance(ready["conn"], str) and ready["conn"].isdigit()
        assert ready["user"] is None  # no JWT configured: anonymous
        assert ready["server"].startswith("wavelane/")
        assert ready["heartbeat"] == 20
        _, c, data = await events.await_kind("connect", conn)
        assert c == conn
        assert data["user"] is None
        assert data["path"].startswith("/feed")
        assert isinstance(data["addr"], str) and "127.0.0.1" in data["addr"]
        assert isinstance(data["claims"], dict)
        await ws.close()

    run(main())


def _server_sockets_to(port: int):
    """The server's accepted TCP sockets whose peer is 127.0.0.1:`port`, found through this
    process's descriptors (the server runs in it)."""
    import os

    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if s.type == socket.SOCK_STREAM and s.family == socket.AF_INET and s.getpeername()[1] == port:
                found.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        except OSError:
            pass
        finally:
            s.close()
    return found


def test_accepted_sockets_have_nodelay(server):
    """Frames go out at once, not after Nagle's delay: TCP_NODELAY on every accepted socket."""
    srv, _ = server

    async def main():
        ws, _ = await open_client(srv)
        local_port = ws.transport.get_extra_info("sockname")[1]
        assert [bool(v) for v in _server_sockets_to(local_port)] == [True]
        await ws.close()

    run(main())


def test_heartbeat_reflects_ping_interval(make_server):
    srv, _ = make_server(ping_interval=7)

    async def main():
        ws, ready = await open_client(srv)
        assert ready["heartbeat"] == 7
        await ws.close()

    run(main())


def test_ping_pong_control_message(server):
    srv, _ = server

    async def main():
        ws, _ = await open_client(srv)
        assert await request(ws, {"type": "ping", "id": 5}) == {"type": "pong", "id": 5}
        await ws.close()

    run(main())


def test_inbound_text_binary_json_in_order(make_server):
    srv, events = make_server(parse_json=True)
    sent = ["plain", b"\x00\xffbin", '{"x": 1}', "[1, 2]", "{not json", "", '"quoted"', b""]

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        for m in sent:
            await ws.send(m)
        msgs = await asyncio.to_thread(
            events.wait_count, lambda e: e[0] == "message" and e[1] == conn, len(sent)
        )
        assert [m[2] for m in msgs] == ["plain", b"\x00\xffbin", {"x": 1}, [1, 2], "{not json", "", '"quoted"', b""]
        await ws.close()

    run(main())


def test_undecodable_message_keeps_the_drained_batch():
    """A client's 10,000 nested ``[`` (RecursionError in json.loads) arrives as the str; the other
    clients' connects and messages of the same drained batch arrive with it."""
    srv = wavelane.Server(port=0, threads=1, parse_json=True)
    srv.start()
    hostile = "[" * 10_000

    async def main():
        a, ready_a = await open_client(srv)
        b, ready_b = await open_client(srv)
        await a.send(hostile)
        await b.send('{"ok": 1}')
        await a.send("[1]")
        deadline = time.monotonic() + 5
        while srv.pending() < 5 and time.monotonic() < deadline:  # 2 connects + 3 messages
            await asyncio.sleep(0.01)
        batch = srv.drain(1024, 0)
        await a.close()
        await b.close()
        return int(ready_a["conn"]), int(ready_b["conn"]), batch

    try:
        ca, cb, batch = run(main())
    finally:
        srv.stop(1.0)
    expected = [("connect", ca), ("connect", cb), ("message", ca), ("message", ca), ("message", cb)]
    assert sorted((k, c) for k, c, _ in batch) == sorted(expected), batch
    assert [d for k, c, d in batch if k == "message" and c == ca] == [hostile, [1]]
    assert [d for k, c, d in batch if k == "message" and c == cb] == [{"ok": 1}]


def test_inbound_json_not_parsed_by_default(server):
    srv, events = server

    async def main():
        ws, ready = await open_client(srv)
        await ws.send('{"a": 1}')
        _, _, data = await events.await_kind("message", int(ready["conn"]))
        assert data == '{"a": 1}'
        await ws.close()

    run(main())


def test_disconnect_event_carries_client_close_code(server):
    srv, events = server

    async def main():
        ws, ready = await open_client(srv)
        await ws.close(code=4001, reason="done")
        _, _, code = await events.await_kind("disconnect", int(ready["conn"]))
        assert code == 4001

    run(main())


def test_send_to_one_connection_text_and_binary(server):
    srv, events = server

    async def main():
        ws1, r1 = await open_client(srv)
        ws2, r2 = await open_client(srv)
        c1, c2 = int(r1["conn"]), int(r2["conn"])
        await events.await_kind("connect", c2)
        assert srv.send(c1, "hello one") is True
        assert srv.send(c1, b"\x01\x02") is True
        assert srv.send(c1, memoryview(b"mv")) is True
        assert srv.send(c2, "hello two") is True
        assert await recv(ws1) == "hello one"
        assert await recv(ws1) == b"\x01\x02"
        assert await recv(ws1) == b"mv"
        assert await recv(ws2) == "hello two"
        await ws1.close()
        await ws2.close()

    run(main())


def test_send_to_unknown_or_closed_connection_returns_false(server):
    srv, events = server
    assert srv.send(987654321, "nobody") is False
    assert srv.close(987654321) is False

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        await ws.close()
        await events.await_kind("disconnect", conn)
        assert srv.send(conn, "too late") is False

    run(main())


def test_send_rejects_bad_arguments(server):
    srv, _ = server
    with pytest.raises(TypeError, match="data"):
        srv.send(1, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="conn"):
        srv.send("1", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="conn"):
        srv.send(-1, "x")


def test_close_connection_with_code_and_reason(server):
    srv, events = server

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        await events.await_kind("connect", conn)
        assert srv.close(conn, 4000, "bye") is True
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4000
        assert info.value.rcvd.reason == "bye"
        _, _, code = await events.await_kind("disconnect", conn)
        assert code == 4000

    run(main())


def test_close_rejects_invalid_code(server):
    srv, _ = server
    with pytest.raises(ValueError):
        srv.close(1, 1005)
    with pytest.raises(ValueError):
        srv.close(1, 2999)


def test_stop_closes_clients_with_1001_promptly_and_restart_works(make_server):
    srv, events = make_server()

    async def connect_some(n):
        clients = [await open_client(srv) for _ in range(n)]
        return clients

    async def first_round():
        clients = await connect_some(3)
        t0 = time.monotonic()
        await asyncio.to_thread(srv.stop, 5.0)
        assert time.monotonic() - t0 < 3.0
        assert not srv.running
        for ws, _ in clients:
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await recv(ws)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001

    run(first_round())
    srv.stop()  # idempotent
    srv.start()
    assert srv.running and srv.port > 0

    async def second_round():
        ws, _ = await open_client(srv)
        assert await request(ws, {"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
        await ws.close()

    run(second_round())


def test_context_manager_starts_and_stops():
    with wavelane.Server(port=0) as srv:
        assert srv.running
        port = srv.port
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    assert not srv.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_port_in_use_raises_start_error():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        srv = wavelane.Server(port=port)
        with pytest.raises(wavelane.StartError) as info:
            srv.start()
        assert isinstance(info.value, OSError)
        assert not srv.running
    finally:
        blocker.close()


def test_second_server_on_same_port_raises_start_error(server):
    srv, _ = server
    other = wavelane.Server(port=srv.port)
    with pytest.raises(wavelane.StartError):
        other.start()


def test_twenty_thousand_messages_through_drain(make_server):
    srv, events = make_server()
    n_clients, per_client = 4, 5000

    async def client(i):
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        for k in range(per_client):
            await ws.send(f"{i}:{k}")
        return ws, conn

    async def main():
        results = await asyncio.gather(*(client(i) for i in range(n_clients)))
        msgs = await asyncio.to_thread(
            events.wait_count, lambda e: e[0] == "message", n_clients * per_client, 30.0
        )
        for i, (ws, conn) in enumerate(results):
            mine = [m[2] for m in msgs if m[1] == conn]
            assert mine == [f"{i}:{k}" for k in range(per_client)]
            await ws.close()

    run(main(), timeout=60)


def test_idle_timeout_closes_silent_client(make_server):
    srv, events = make_server(ping_interval=0.3, idle_timeout=1)
    sock, status, _ = raw_upgrade(srv.port)
    try:
        assert " 101 " in status + " ", status
        ev = events.wait_kind("connect", timeout=5)
        t0 = time.monotonic()
        sock.settimeout(6)
        # Read (and never answer) pings until the server gives up on us.
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
        assert time.monotonic() - t0 < 5.5
        events.wait_kind("disconnect", ev[1], timeout=5)
    finally:
        sock.close()


def test_stats_is_a_dict(server):
    srv, _ = server
    stats = srv.stats()
    assert isinstance(stats, dict) and stats


def test_pending_and_wake(make_server):
    srv = wavelane.Server(port=0)
    srv.start()
    try:
        assert srv.pending() == 0

        async def main():
            ws, _ = await open_client(srv)
            await ws.send("one")
            deadline = time.monotonic() + 5
            while srv.pending() < 2 and time.monotonic() < deadline:  # connect + message
                await asyncio.sleep(0.02)
            assert srv.pending() >= 2
            evs = srv.drain(timeout=1)
            assert [e[0] for e in evs][:2] == ["connect", "message"]
            await ws.close()

        run(main())
        import threading

        t = threading.Timer(0.2, srv.wake)
        t.start()
        t0 = time.monotonic()
        srv.drain(timeout=10)
        assert time.monotonic() - t0 < 2.0
        t.join()
    finally:
        srv.stop()


def test_drain_after_stop_returns_promptly():
    srv = wavelane.Server(port=0)
    srv.start()
    srv.stop()
    t0 = time.monotonic()
    while srv.drain(timeout=0.1):
        pass
    assert srv.drain(timeout=5) == []
    assert time.monotonic() - t0 < 2.0


def test_add_route_serves_http(make_server):
    from conftest import http_get

    srv = wavelane.Server(port=0, ws_path="/ws")
    srv.add_route("/hello.txt", b"hi there", "text/plain")
    srv.start()
    try:
        status, headers, body = http_get(srv.port, "/hello.txt")
        assert status == 200 and body == b"hi there"
        assert headers["content-type"].startswith("text/plain")
        status, _, _ = http_get(srv.port, "/missing")
        assert status == 404
    finally:
        srv.stop()
