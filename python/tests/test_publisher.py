"""wavelane.Publisher: publishing into a multi-instance deployment from a process with no clients."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time

import jwt
import pytest

import wavelane
from cluster import free_port, make_redis, redis_server, topic_channel  # noqa: F401  (fixtures by name)
from conftest import Collector, open_client, run

SECRET = "publisher-test-secret-0123456789abcdef"


def _publish_from_another_process(redis_url: str) -> None:
    """Runs in a 'spawn' child: no server, no clients — a Celery task would look like this."""
    with wavelane.Publisher(redis_url=redis_url) as pub:
        assert pub.connected
        for i in range(1, 101):
            assert pub.publish("feed", {"n": i}) == 0  # Redis assigns the offset
        pub.send_user("alice", "direct from the publisher")
        pub.disconnect_user("alice", 4003, "logged out elsewhere")


def test_publisher_in_another_process_reaches_a_servers_client_with_contiguous_offsets(redis_server):
    server = wavelane.Server(port=0, threads=2, jwt_secret=SECRET, redis_url=redis_server.url, history_size=200)
    server.start()
    events = Collector(server, handler=lambda e: server.subscribe(e[1], "feed") if e[0] == "connect" else None)
    try:
        assert server.wait_for_redis(10)

        async def main():
            token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
            ws, ready = await open_client(server, f"/?token={token}")
            await events.await_kind("connect", int(ready["conn"]))
            deadline = time.monotonic() + 10
            while redis_server.numsub(topic_channel("feed")) < 1:  # the server's Redis subscription is live
                assert time.monotonic() < deadline, "server never subscribed to the topic's channel"
                await asyncio.sleep(0.02)

            child = multiprocessing.get_context("spawn").Process(
                target=_publish_from_another_process, args=(redis_server.url,), daemon=True)
            child.start()
            offsets, data = [], []
            while len(offsets) < 100:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                assert msg["type"] == "message" and msg["topic"] == "feed", msg
                offsets.append(msg["offset"])
                data.append(msg["data"]["n"])
            assert offsets == list(range(1, 101))  # contiguous, as with Server.publish
            assert data == list(range(1, 101))
            assert await asyncio.wait_for(ws.recv(), 10) == "direct from the publisher"
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 4003 and ws.close_reason == "logged out elsewhere"
            await asyncio.to_thread(child.join, 20)
            assert child.exitcode == 0

        run(main(), 60)
    finally:
        events.close()
        server.stop(1.0)


def test_publisher_only_mode_binds_nothing_and_needs_redis(redis_server):
    with pytest.raises(wavelane.ConfigError) as info:
        wavelane.Server(port=0, listen=False)
    assert info.value.key == "listen"
    port = free_port()
    with wavelane.Publisher(redis_url=redis_server.url, port=port) as pub:
        assert pub.connected
        import socket

        with socket.socket() as s:  # nothing listens on the configured port
            assert s.connect_ex(("127.0.0.1", port)) != 0


def test_publisher_without_redis_fails_to_start_naming_redis_url():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(wavelane.StartError) as info:
        wavelane.Publisher(redis_url=f"redis://127.0.0.1:{port}/0", connect_timeout=0.5)
    assert str(info.value).startswith("redis_url:")
    assert time.monotonic() - t0 < 5
