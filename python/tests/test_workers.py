"""Several worker processes on one port (``reuse_port=True``), joined through Redis."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue
import time
from typing import Any, Dict

import pytest

import wavelane
from cluster import free_port, make_redis, redis_server  # noqa: F401  (fixtures are used by name)
from conftest import recv_json, run
from websockets.asyncio.client import connect


def test_reuse_port_lets_two_servers_share_a_port_and_is_off_by_default():
    a = wavelane.Server(port=0, reuse_port=True).start()
    try:
        b = wavelane.Server(port=a.port, reuse_port=True).start()  # same port, same host
        b.stop(1.0)
        with pytest.raises(wavelane.StartError):
            wavelane.Server(port=a.port).start()  # a server without it cannot join
    finally:
        a.stop(1.0)
    plain = wavelane.Server(port=0).start()
    try:
        with pytest.raises(wavelane.StartError):
            wavelane.Server(port=plain.port, reuse_port=True).start()  # nor join one without it
    finally:
        plain.stop(1.0)


def _worker(index: int, port: int, redis_url: str, commands: Any, reports: Any) -> None:
    """One worker process (started with 'spawn'): its own server on the shared port."""
    server = wavelane.Server(port=port, reuse_port=True, redis_url=redis_url, threads=1)
    server.start()
    try:
        if not server.wait_for_redis(10):
            reports.put(("error", index, "redis not connected"))
            return
        reports.put(("ready", index, None))
        while True:
            for kind, conn, _ in server.drain(256, 0.02):
                if kind == "connect":
                    server.subscribe(conn, "news")
                    reports.put(("connect", index, conn))
            try:
                cmd, arg = commands.get_nowait()
            except queue.Empty:
                continue
            if cmd == "publish":
                server.publish("news", arg)
                reports.put(("published", index, arg))
            elif cmd == "stop":
                return
    finally:
        server.stop(1.0)


def _next(reports: Any, kind: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind!r} report within {timeout}s")
        item = reports.get(timeout=left)
        if item[0] == "error":
            raise AssertionError(f"worker {item[1]}: {item[2]}")
        if item[0] == kind:
            return item


def test_two_worker_processes_on_one_port_behave_as_one(redis_server):
    ctx = multiprocessing.get_context("spawn")  # servers start after the process exists, never before a fork
    port = free_port()
    reports = ctx.Queue()
    commands = [ctx.Queue(), ctx.Queue()]
    workers = [
        ctx.Process(target=_worker, args=(i, port, redis_server.url, commands[i], reports), daemon=True)
        for i in range(2)
    ]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            _next(reports, "ready", 30)

        async def main():
            clients = []
            for _ in range(50):
                ws = await connect(f"ws://127.0.0.1:{port}/", open_timeout=5)
                assert (await recv_json(ws))["type"] == "ready"
                clients.append(ws)
            per_worker: Dict[int, int] = {0: 0, 1: 0}
            for _ in range(50):
                _, index, _ = await asyncio.to_thread(_next, reports, "connect")
                per_worker[index] += 1
            assert per_worker[0] > 0 and per_worker[1] > 0, per_worker  # the kernel spread them
            for index in (0, 1):
                text = f"from worker {index}"
                commands[index].put(("publish", text))
                await asyncio.to_thread(_next, reports, "published")
                for ws in clients:
                    msg = await recv_json(ws, 10)
                    assert msg["type"] == "message" and msg["topic"] == "news" and msg["data"] == text, msg
            for ws in clients:
                await ws.close()

        run(main(), 60)
    finally:
        for q in commands:
            q.put(("stop", None))
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()
                w.join(5)
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
