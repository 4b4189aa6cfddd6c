"""asyncio without threads: Server.fileno(), drain_async() and events() over real sockets.

These tests use no Collector (no drain thread): the event loop watches the server's descriptor.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import threading
import time

import pytest

import wavelane
from conftest import open_client, run, url
from websockets.asyncio.client import connect


@pytest.fixture
def aserver():
    server = wavelane.Server(port=0, threads=2)
    server.start()
    yield server
    server.stop(1.0)


def _readable(fd: int, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_fileno_readable_exactly_while_events_wait(aserver):
    fd = aserver.fileno()
    assert isinstance(fd, int) and fd >= 0
    assert aserver.fileno() == fd  # one descriptor for the server's lifetime
    assert not _readable(fd)

    async def main():
        ws, _ = await open_client(aserver)
        await ws.send("a")
        await ws.send("b")
        # readable while the connect and the two messages wait...
        deadline = time.monotonic() + 5
        while aserver.pending() < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert _readable(fd)
        assert [e[0] for e in aserver.drain(1, 0)] == ["connect"]
        assert _readable(fd)  # two still wait
        assert [e[2] for e in aserver.drain(10, 0)] == ["a", "b"]
        assert not _readable(fd)  # cleared once the queue is empty
        await ws.close()

    run(main())


def test_connect_event_within_100ms_and_10000_messages_in_order_without_threads(aserver):
    threads_before = set(threading.enumerate())
    per_client, clients = 1000, 10

    async def main():
        # the first event, awaited without any thread: arrives within 100 ms of the upgrade
        consumer = asyncio.ensure_future(aserver.drain_async())
        await asyncio.sleep(0.05)  # consumer is parked on the descriptor
        t0 = time.monotonic()
        ws0 = await connect(url(aserver))
        upgraded = time.monotonic()
        events = await asyncio.wait_for(consumer, 1.0)
        got = time.monotonic()
        assert events[0][0] == "connect"
        assert got - upgraded < 0.1, f"connect event {1000 * (got - upgraded):.1f} ms after the upgrade"
        assert got - t0 < 1.0
        await ws0.close()

        wss = [await connect(url(aserver), max_size=None) for _ in range(clients)]
        connected = {}
        received: dict = {}
        done = asyncio.Event()

        async def consume():
            async for kind, conn, data in aserver.events():
                if kind == "connect":
                    connected[conn] = True
                elif kind == "message":
                    received.setdefault(conn, []).append(data)
                    if sum(len(v) for v in received.values()) == clients * per_client:
                        done.set()
                        return

        task = asyncio.ensure_future(consume())

        async def send(i, ws):
            for j in range(per_client):
                await ws.send(f"{i}:{j}")

        await asyncio.gather(*(send(i, ws) for i, ws in enumerate(wss)))
        await asyncio.wait_for(done.wait(), 20)
        await task
        assert len(received) == clients
        for msgs in received.values():
            i = msgs[0].split(":")[0]
            assert msgs == [f"{i}:{j}" for j in range(per_client)]  # in order per connection
        for ws in wss:
            await ws.close()

    run(main())
    assert set(threading.enumerate()) <= threads_before  # no thread was started for this


def test_cancellation_is_prompt_and_loses_nothing(aserver):
    async def main():
        # 1. a waiting drain_async is cancelled within 100 ms
        waiter = asyncio.ensure_future(aserver.drain_async())
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert time.monotonic() - t0 < 0.1

        # 2. a consumer of events() cancelled in the middle of a batch: the rest comes next time
        ws, _ = await open_client(aserver)
        for i in range(50):
            await ws.send(str(i))
        deadline = time.monotonic() + 5
        while aserver.pending() < 51 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        first: list = []
        gate = asyncio.Event()

        async def consume():
            async for kind, conn, data in aserver.events():
                first.append(data)
                if len(first) == 5:  # the whole batch was taken from the engine by now
                    gate.set()
                    await asyncio.sleep(10)  # cancelled here, between two events of the batch

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(gate.wait(), 5)
        assert aserver.pending() == 0
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 0.1

        rest: list = []
        async for kind, conn, data in aserver.events():
            rest.append(data)
            if len(first) + len(rest) == 51:
                break
        messages = [d for d in first + rest if isinstance(d, str)]
        assert messages == [str(i) for i in range(50)]

        # 3. a consumer leaving the loop early keeps the remainder too
        for i in range(50, 60):
            await ws.send(str(i))
        while aserver.pending() < 10 and time.monotonic() < deadline + 5:
            await asyncio.sleep(0.01)
        async for kind, conn, data in aserver.events():
            assert data == "50"
            break
        assert [e[2] for e in aserver.drain(100, 0)] == [str(i) for i in range(51, 60)]
        await ws.close()

    run(main())


def test_events_ends_when_server_stops(aserver):
    async def main():
        ws, _ = await open_client(aserver)
        seen = []

        async def consume():
            async for kind, conn, data in aserver.events():
                seen.append(kind)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.1)
        aserver.stop(1.0)  # a consumer parked on the descriptor sees the stop
        await asyncio.wait_for(task, 2)
        assert seen[0] == "connect"
        assert await aserver.drain_async() == []

    run(main())


def test_events_ends_after_drain_and_stop_from_another_thread(make_server):
    """The FastAPI pattern: drain_and_stop in a worker thread while events() waits; the consumer
    must end (the engine's stop signal can come before the Python side marks the server stopped)."""
    async def main():
        for _ in range(5):
            import wavelane

            server = wavelane.Server(port=0, threads=2)
            server.start()
            ws, _ = await open_client(server)
            kinds = []

            async def consume():
                async for kind, conn, data in server.events():
                    kinds.append(kind)

            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.05)
            await asyncio.to_thread(server.drain_and_stop, 2.0)
            await asyncio.wait_for(task, 3)  # hung before the fix, now and then
            assert kinds[0] == "connect" and "disconnect" in kinds
            await ws.close()

    run(main(), timeout=60)
