"""wse-server benchmark server: the shared app (see common.py) on RustWSEServer in drain mode."""

from __future__ import annotations

import argparse
import json
import signal
import time

from wse_server._wse_accel import RustWSEServer

from common import JWT_SECRET, Bench, announce, cpu_seconds, envelope, payload, raise_nofile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    raise_nofile()

    srv = RustWSEServer(
        args.host,
        args.port,
        max_connections=100000,
        jwt_secret=JWT_SECRET.encode(),
        max_inbound_queue_size=1 << 20,
        ping_interval=300,
        idle_timeout=600,
        max_outbound_queue_bytes=64 << 20,
        rate_limit_capacity=1e9,
        rate_limit_refill=1e9,
    )
    srv.enable_drain_mode()
    srv.start()
    # wait until it accepts
    import socket

    for _ in range(200):
        try:
            socket.create_connection((args.host, args.port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    announce(args.port)
    bench = Bench()
    drain, send, bcast, sub = srv.drain_inbound, srv.send, srv.broadcast_local, srv.subscribe_connection

    def command(conn: str, cmd: dict) -> None:
        typ = cmd.get("t") or cmd.get("type")
        if typ == "subscribe":
            topics = cmd.get("topics") or [cmd.get("topic")]
            sub(conn, topics)
            send(conn, json.dumps({"type": "subscribed", "topics": topics, "id": cmd.get("id")}))
            return
        if typ != "bench":
            return
        op = cmd.get("cmd")
        if op == "publish":
            topic, count, pl = cmd["topic"], int(cmd["count"]), payload(int(cmd["size"]))
            t0, c0 = time.perf_counter(), cpu_seconds()
            for i in range(1, count + 1):
                bcast(topic, envelope(topic, i, pl))
            send(conn, json.dumps({"type": "bench_done", "secs": time.perf_counter() - t0,
                                   "cpu": cpu_seconds() - c0}))
        elif op == "reset":
            bench.reset()
            send(conn, '{"type":"reset_done"}')
        elif op == "stats":
            send(conn, bench.stats())
        elif op == "drain_test":
            expect = int(cmd["expect"])
            deadline = time.monotonic() + float(cmd.get("wait", 30))
            while srv.inbound_queue_depth() < expect and time.monotonic() < deadline:
                time.sleep(0.002)
            queued = srv.inbound_queue_depth()
            n = 0
            t0 = time.perf_counter()
            while n < expect and time.perf_counter() - t0 < 30:
                for kind, _c, data in drain(4096, 50):
                    if kind == "raw" and data[:1] == "i":
                        n += 1
            secs = time.perf_counter() - t0
            bench.drain_result = {"events": n, "queued": queued, "secs": secs,
                                  "rate": n / secs if secs > 0 else 0.0}
            send(conn, json.dumps({"type": "drain_result", **bench.drain_result}))

    while not stop:
        evs = drain(4096, 50)
        if not evs:
            continue
        got = 0
        for kind, conn, data in evs:
            if kind == "raw":
                c = data[:1]
                if c == "i":
                    got += 1
                elif c == "e":
                    send(conn, data)
            elif kind == "msg":
                if got:
                    bench.count(got)
                    got = 0
                command(conn, data if isinstance(data, dict) else json.loads(data))
        if got:
            bench.count(got)
    srv.stop()


if __name__ == "__main__":
    main()
