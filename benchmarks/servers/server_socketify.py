"""socketify benchmark server (uWebSockets' C++ core through CFFI, one thread): the shared app.

Fan-out uses uWS's native pub/sub (`ws.subscribe` + `app.publish`): the topic's subscribers are
found and written in C++, the envelope is built once per publication in Python (as every
Python-side app here does). Two traps, both handled (docs/benchmarks.md):

* publishing from inside a uWS message handler corks the socket and makes uWS write every
  delivery with its own syscall (10x slower): publications are made from the asyncio loop
  (`call_soon`), outside any handler, a slice at a time so the loop can write between slices;
* uWS silently skips a send past `max_backpressure`: it is raised far above what a run queues,
  and the load generator checks byte totals.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import time

from socketify import App, CompressOptions, OpCode

from common import Bench, bearer_sub, announce, cpu_seconds, envelope, payload, raise_nofile

bench = Bench()
ids = itertools.count(1)
SLICE = 64  # publications per loop turn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    raise_nofile()
    app = App()
    aloop = app.loop.loop  # the asyncio loop that drives uWS' libuv loop

    def publish(ws, topic: str, count: int, size: int) -> None:
        pl = payload(size)
        t0, c0 = time.perf_counter(), cpu_seconds()
        state = {"i": 0}

        def step() -> None:
            i = state["i"]
            end = min(count, i + SLICE)
            while i < end:
                i += 1
                app.publish(topic, envelope(topic, i, pl), OpCode.TEXT)
            state["i"] = i
            if i < count:
                aloop.call_soon(step)
            else:
                ws.send(json.dumps({"type": "bench_done", "secs": time.perf_counter() - t0,
                                    "cpu": cpu_seconds() - c0}), OpCode.TEXT)

        aloop.call_soon(step)

    def upgrade(res, req, socket_context) -> None:
        user = bearer_sub(req.get_header("authorization") or "")
        if user is None:
            res.write_status(401).end("invalid token")
            return
        res.upgrade(req.get_header("sec-websocket-key"), req.get_header("sec-websocket-protocol"),
                    req.get_header("sec-websocket-extensions"), socket_context,
                    {"user": user, "conn": next(ids)})

    def on_open(ws) -> None:
        d = ws.get_user_data()
        ws.send(json.dumps({"type": "ready", "conn": str(d["conn"]), "user": d["user"]}), OpCode.TEXT)

    def on_message(ws, message, opcode) -> None:
        if opcode != OpCode.TEXT:
            return
        data = message if isinstance(message, str) else bytes(message).decode("utf-8", "replace")
        c = data[:1]
        if c == "i":
            bench.count()
        elif c == "e":
            ws.send(data, OpCode.TEXT)
        elif c == "{":
            cmd = json.loads(data)
            typ = cmd.get("type")
            if typ == "subscribe":
                ts = cmd.get("topics") or [cmd.get("topic")]
                for t in ts:
                    ws.subscribe(t)
                ws.send(json.dumps({"type": "subscribed", "topics": ts, "id": cmd.get("id")}), OpCode.TEXT)
            elif typ == "bench":
                op = cmd.get("cmd")
                if op == "publish":
                    publish(ws, cmd["topic"], int(cmd["count"]), int(cmd["size"]))
                elif op == "reset":
                    bench.reset()
                    ws.send('{"type":"reset_done"}', OpCode.TEXT)
                elif op == "stats":
                    ws.send(bench.stats(), OpCode.TEXT)
                elif op == "drain_test":  # no queue to pre-fill
                    ws.send('{"type":"drain_result","na":true}', OpCode.TEXT)

    app.ws("/*", {
        "compression": CompressOptions.DISABLED,
        "max_payload_length": 16 * 1024 * 1024,
        "idle_timeout": 600,
        # far above a run's queue (1,000 x 10,000 x ~100 B spread over the run): never skip a send
        "max_backpressure": 1 << 30,
        "upgrade": upgrade,
        "open": on_open,
        "message": on_message,
    })
    app.any("/*", lambda res, req: res.write_status(404).end("not found"))

    def stop(*_a) -> None:
        app.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app.listen(args.port, lambda config: announce(args.port))
    app.run()


if __name__ == "__main__":
    main()
