"""Wavelane benchmark server: the shared app (see common.py) on wavelane.Server + drain()."""

from __future__ import annotations

import argparse
import os
import json
import signal
import time

import wavelane

from common import JWT_SECRET, Bench, announce, cpu_seconds, payload, raise_nofile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    raise_nofile()

    srv = wavelane.Server(
        args.host,
        args.port,
        jwt_secret=JWT_SECRET,
        ping_interval=300,  # no pings inside a run (the fan-out client counts bytes)
        idle_timeout=600,
        max_connections=100000,
        inbound_queue_size=1 << 20,
        max_send_queue=64 << 20,
        slow_consumer_timeout=60,
        client_topics=["*"],  # the benchmark clients subscribe freely (deny by default otherwise)
        # Event loops: 0 = the cores the process may run on, less one for Python, at least 1 (the
        # default; pinned to one core: 1 loop). BENCH_WAVELANE_THREADS overrides it for experiments.
        threads=int(os.environ.get("BENCH_WAVELANE_THREADS", "0")),
        # drain()'s polling after a message (default 250 µs); BENCH_WAVELANE_SPIN_US overrides it.
        **({"drain_spin_us": int(os.environ["BENCH_WAVELANE_SPIN_US"])} if "BENCH_WAVELANE_SPIN_US" in os.environ else {}),
    )
    srv.start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    announce(srv.port)
    bench = Bench()
    drain, send, publish = srv.drain, srv.send, srv.publish

    def command(conn: int, text: str) -> None:
        cmd = json.loads(text)
        if cmd.get("type") != "bench":
            return
        op = cmd.get("cmd")
        if op == "publish":
            topic, count, pl = cmd["topic"], int(cmd["count"]), payload(int(cmd["size"]))
            t0, c0 = time.perf_counter(), cpu_seconds()
            for _ in range(count):
                publish(topic, pl)
            send(conn, json.dumps({"type": "bench_done", "secs": time.perf_counter() - t0,
                                   "cpu": cpu_seconds() - c0}))
        elif op == "reset":
            bench.reset()
            send(conn, '{"type":"reset_done"}')
        elif op == "stats":
            send(conn, bench.stats())
        elif op == "drain_test":
            # stop draining until the queue holds `expect` events, then time draining them
            expect = int(cmd["expect"])
            deadline = time.monotonic() + float(cmd.get("wait", 30))
            while srv.pending() < expect and time.monotonic() < deadline:
                time.sleep(0.002)
            queued = srv.pending()
            n = 0
            t0 = time.perf_counter()
            while n < expect and time.perf_counter() - t0 < 30:
                evs = drain(4096, 0.05)
                for kind, _c, data in evs:
                    if kind == "message" and data[:1] == "i":
                        n += 1
            secs = time.perf_counter() - t0
            bench.drain_result = {"events": n, "queued": queued, "secs": secs,
                                  "rate": n / secs if secs > 0 else 0.0}
            send(conn, json.dumps({"type": "drain_result", **bench.drain_result}))

    while not stop:
        evs = drain(4096, 0.05)
        if not evs:
            continue
        got = 0
        for kind, conn, data in evs:
            if kind != "message":
                continue  # connect/disconnect: nothing to do (ready is sent natively)
            c = data[:1]
            if c == "i":
                got += 1
            elif c == "e":
                send(conn, data)
            elif c == "{":
                if got:
                    bench.count(got)
                    got = 0
                command(conn, data)
        if got:
            bench.count(got)
    srv.stop(1.0)


if __name__ == "__main__":
    main()
