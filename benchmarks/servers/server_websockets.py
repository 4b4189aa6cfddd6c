"""websockets benchmark server (pure-Python WebSocket, asyncio + uvloop): the shared app."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time
from http import HTTPStatus

import jwt
import uvloop
import websockets
from websockets.asyncio.server import serve

from common import JWT_SECRET, Bench, announce, cpu_seconds, envelope, payload, raise_nofile

bench = Bench()
topics: dict = {}
ids = itertools.count(1)


def process_request(connection, request):
    auth = request.headers.get("Authorization", "")
    user = None
    if auth.startswith("Bearer "):
        try:
            user = jwt.decode(auth[7:], JWT_SECRET, algorithms=["HS256"]).get("sub")
        except jwt.PyJWTError:
            user = None
    if user is None:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")
    connection.user = user
    return None


async def publish(ws, topic: str, count: int, size: int) -> None:
    pl = payload(size)
    t0, c0 = time.perf_counter(), cpu_seconds()
    for i in range(1, count + 1):
        websockets.broadcast(topics.get(topic, ()), envelope(topic, i, pl))
        await asyncio.sleep(0)
    await ws.send(json.dumps({"type": "bench_done", "secs": time.perf_counter() - t0,
                              "cpu": cpu_seconds() - c0}))


async def handler(ws) -> None:
    conn = next(ids)
    mine: set = set()
    await ws.send(json.dumps({"type": "ready", "conn": str(conn), "user": ws.user}))
    try:
        async for data in ws:
            if not isinstance(data, str):
                continue
            c = data[:1]
            if c == "i":
                bench.count()
            elif c == "e":
                await ws.send(data)
            elif c == "{":
                cmd = json.loads(data)
                typ = cmd.get("type")
                if typ == "subscribe":
                    ts = cmd.get("topics") or [cmd.get("topic")]
                    for t in ts:
                        topics.setdefault(t, set()).add(ws)
                        mine.add(t)
                    await ws.send(json.dumps({"type": "subscribed", "topics": ts,
                                              "id": cmd.get("id")}))
                elif typ == "bench":
                    op = cmd.get("cmd")
                    if op == "publish":
                        asyncio.ensure_future(publish(ws, cmd["topic"], int(cmd["count"]),
                                                      int(cmd["size"])))
                    elif op == "reset":
                        bench.reset()
                        await ws.send('{"type":"reset_done"}')
                    elif op == "stats":
                        await ws.send(bench.stats())
                    elif op == "drain_test":
                        await ws.send('{"type":"drain_result","na":true}')
    except websockets.ConnectionClosed:
        pass
    finally:
        for t in mine:
            topics.get(t, set()).discard(ws)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    raise_nofile()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with serve(handler, args.host, args.port, process_request=process_request,
                     ping_interval=None, max_queue=None, compression=None, backlog=4096):
        announce(args.port)
        await stop.wait()


if __name__ == "__main__":
    uvloop.run(main())
