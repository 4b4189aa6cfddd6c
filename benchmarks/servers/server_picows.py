"""picows benchmark server (Cython WebSocket on asyncio + uvloop): the shared app in Python."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time

import uvloop
from picows import (WSListener, WSMsgType, WSUpgradeResponse, WSUpgradeResponseWithListener,
                    ws_create_server)

from common import Bench, bearer_sub, announce, cpu_seconds, envelope, payload, raise_nofile

TEXT = WSMsgType.TEXT
bench = Bench()
topics: dict = {}
ids = itertools.count(1)


def check_jwt(request) -> str | None:
    return bearer_sub(request.headers.get("authorization") or request.headers.get("Authorization") or "")


async def publish(transport, topic: str, count: int, size: int) -> None:
    pl = payload(size)
    t0, c0 = time.perf_counter(), cpu_seconds()
    for i in range(1, count + 1):
        msg = envelope(topic, i, pl).encode()
        for l in list(topics.get(topic, ())):
            l.transport.send(TEXT, msg)
        await asyncio.sleep(0)  # let the loop write
    transport.send(TEXT, json.dumps({"type": "bench_done", "secs": time.perf_counter() - t0,
                                     "cpu": cpu_seconds() - c0}).encode())


class App(WSListener):
    def __init__(self, user: str) -> None:
        self.user = user
        self.conn = next(ids)
        self.subs: set = set()
        self.transport = None

    def on_ws_connected(self, transport) -> None:
        self.transport = transport
        transport.send(TEXT, json.dumps({"type": "ready", "conn": str(self.conn),
                                         "user": self.user}).encode())

    def on_ws_disconnected(self, transport) -> None:
        for t in self.subs:
            s = topics.get(t)
            if s is not None:
                s.discard(self)

    def on_ws_frame(self, transport, frame) -> None:
        op = frame.msg_type
        if op == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if op != TEXT:
            return
        data = frame.get_payload_as_bytes()
        c = data[:1]
        if c == b"i":
            bench.count()
        elif c == b"e":
            transport.send(TEXT, data)
        elif c == b"{":
            cmd = json.loads(data)
            typ = cmd.get("type")
            if typ == "subscribe":
                ts = cmd.get("topics") or [cmd.get("topic")]
                for t in ts:
                    topics.setdefault(t, set()).add(self)
                    self.subs.add(t)
                transport.send(TEXT, json.dumps({"type": "subscribed", "topics": ts,
                                                 "id": cmd.get("id")}).encode())
            elif typ == "bench":
                op = cmd.get("cmd")
                if op == "publish":
                    asyncio.ensure_future(publish(transport, cmd["topic"], int(cmd["count"]),
                                                  int(cmd["size"])))
                elif op == "reset":
                    bench.reset()
                    transport.send(TEXT, b'{"type":"reset_done"}')
                elif op == "stats":
                    transport.send(TEXT, bench.stats().encode())
                elif op == "drain_test":  # no queue to pre-fill in an asyncio server
                    transport.send(TEXT, b'{"type":"drain_result","na":true}')


def factory(request):
    user = check_jwt(request)
    if user is None:
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_error_response(401, b"invalid token"), None)
    return App(user)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    raise_nofile()
    server = await ws_create_server(factory, args.host, args.port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    announce(args.port)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    uvloop.run(main())
