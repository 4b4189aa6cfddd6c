"""Backpressure both ways, over real sockets: slow consumers (priorities, drops, coalescing,
closing) and a Python loop that falls behind (TCP backpressure, nothing lost)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import threading
import time
from typing import Dict, List


from conftest import open_client, raw_upgrade, recv_json, request, run, upgrade


def _masked_text(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", 0x81, 0x80 | n) if n <= 125 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _never_reading_subscriber(port: int, topic: str) -> socket.socket:
    """A raw client with a tiny receive buffer (set before connecting, so the TCP window stays
    small) that subscribes and then never reads."""
    sock, status, _, _ = upgrade(port, rcvbuf=4096)
    assert status == 101
    sock.sendall(_masked_text(json.dumps({"type": "subscribe", "topics": [topic], "id": 1}).encode()))
    return sock


def test_slow_consumers_lose_low_priority_healthy_get_everything(make_server):
    srv, events = make_server(max_send_queue=1024 * 1024, slow_consumer_timeout=60, compression=False)
    n_messages = 2500
    payload = "x" * 4000
    slow = [_never_reading_subscriber(srv.port, "feed") for _ in range(4)]
    received: Dict[int, List[int]] = {}

    async def healthy_client(i: int, ready_evt: asyncio.Event, counter: List[int]):
        ws, _ = await open_client(srv)
        await request(ws, {"type": "subscribe", "topics": ["feed"], "id": 1})
        counter[0] += 1
        if counter[0] == 10:
            ready_evt.set()
        offsets: List[int] = []
        while len(offsets) < n_messages + 1:
            msg = await recv_json(ws, timeout=20)
            offsets.append(msg["offset"])
        received[i] = offsets
        await ws.close()

    async def scenario():
        ready_evt = asyncio.Event()
        counter = [0]
        tasks = [asyncio.create_task(healthy_client(i, ready_evt, counter)) for i in range(10)]
        await asyncio.wait_for(ready_evt.wait(), 10)
        await asyncio.sleep(0.2)  # the raw subscribers' subscribe requests are processed

        def publish_all():
            # Paced so that the (Python) healthy clients keep up; the raw ones never read.
            for i in range(n_messages):
                srv.publish("feed", payload, priority="low")
                if i % 100 == 99:
                    time.sleep(0.05)
            srv.publish("feed", "the end", priority="critical")

        await asyncio.to_thread(publish_all)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

    try:
        run(scenario(), timeout=90)
        # Every healthy subscriber got every publication, in order.
        for offsets in received.values():
            assert offsets == list(range(1, n_messages + 2))
        # The never-reading ones lost low-priority messages, and each loss was reported.
        dropped = events.wait_count(lambda e: e[0] == "dropped", 4, timeout=5)
        conns_with_drops = {e[1] for e in dropped}
        assert len(conns_with_drops) == 4
        total = sum(e[2]["count"] for e in dropped)
        assert total > 0 and all(set(e[2]["priority"]) <= {"low"} for e in dropped)
        stats = srv.stats()
        assert stats["dropped_low"] >= total and stats["dropped_normal"] == 0
        # What is held back for the slow ones is bounded by max_send_queue each.
        assert 0 < stats["send_queue_bytes"] <= 4 * 1024 * 1024
        # The healthy clients left; the slow ones are still connected (they lost low-priority
        # messages instead: their queues stay within max_send_queue).
        assert stats["connections_active"] == 4
    finally:
        for s in slow:
            s.close()


def test_coalescing_key_keeps_latest_state(make_server):
    srv, events = make_server(max_send_queue=1024 * 1024, compression=False)
    slow = _never_reading_subscriber(srv.port, "ticks")
    try:
        time.sleep(0.2)
        # Fill the kernel's buffers (a few MB on loopback) and NIO's, so that later messages wait
        # in our queue (background ones get dropped once it is full: they are the lowest priority).
        for _ in range(1500):
            srv.publish("ticks", "f" * 8000, priority="background")
        time.sleep(0.2)
        for i in range(2000):
            srv.publish("ticks", {"symbol": "ACME", "price": i}, key="ACME")
        time.sleep(0.3)
        assert srv.stats()["coalesced"] >= 1500
    finally:
        slow.close()


def test_critical_overflow_closes_with_1008(make_server):
    srv, events = make_server(max_send_queue=64 * 1024, compression=False)
    slow = _never_reading_subscriber(srv.port, "alerts")
    try:
        time.sleep(0.2)
        for _ in range(2000):
            srv.publish("alerts", "c" * 4000, priority="critical")
        _, _, code = events.wait_for(lambda e: e[0] == "disconnect", timeout=10)
        assert code == 1008
        assert srv.stats()["slow_consumer_closes"] >= 1
    finally:
        slow.close()


def test_python_falling_behind_loses_nothing():
    """Clients flood while Python does not drain for 2 s: the engine stops reading (TCP
    backpressure) instead of queueing everything, and every message arrives afterwards, in order
    per connection."""
    # A server without the background collector: this test drains by hand.
    from wavelane import Server

    server = Server(port=0, inbound_queue_size=1000, threads=2, compression=False)
    server.start()
    clients, per_client = 100, 1000
    socks = []
    try:
        for _ in range(clients):
            s, status, _ = raw_upgrade(server.port)
            assert "101" in status
            socks.append(s)
        connects = 0
        while connects < clients:
            connects += sum(1 for e in server.drain(1024, 0.5) if e[0] == "connect")
        pad = "p" * 90
        frames = [b"".join(_masked_text(f"{c}:{i}:{pad}".encode()) for i in range(per_client)) for c in range(clients)]

        def send(idx: int):
            socks[idx].sendall(frames[idx])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # Python is "busy"
        backlog = server.pending()
        # The engine paused reading instead of taking everything in.
        assert backlog < clients * per_client, backlog
        assert server.stats()["backpressure_pauses"] > 0
        seen: Dict[str, int] = {}
        total = 0
        deadline = time.monotonic() + 30
        while total < clients * per_client and time.monotonic() < deadline:
            for kind, conn, data in server.drain(1024, 0.2):
                if kind != "message":
                    continue
                c, i, _ = data.split(":")
                assert int(i) == seen.get(c, -1) + 1, (c, i, seen.get(c))
                seen[c] = int(i)
                total += 1
        for t in threads:
            t.join(5)
        assert total == clients * per_client
    finally:
        for s in socks:
            s.close()
        server.stop(1)


def test_drain_and_stop_flushes_then_closes_1001(make_server):
    srv, events = make_server()

    async def scenario():
        ws, _ = await open_client(srv)
        await request(ws, {"type": "subscribe", "topics": ["bye"], "id": 1})
        for i in range(200):
            srv.publish("bye", i)
        stopper = asyncio.create_task(asyncio.to_thread(srv.drain_and_stop, 5))
        got = []
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["data"])
        except Exception:
            pass
        await stopper
        assert got == list(range(200))
        assert ws.close_code == 1001

    run(scenario())
    assert not srv.running
