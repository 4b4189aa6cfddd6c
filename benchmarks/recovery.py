#!/usr/bin/env python3
"""Recovery after a disconnect, across instances: how long until a client has what it missed.

    python3 benchmarks/recovery.py [--quick] [--missed 500] [--size 100] [--reps 10]

Two instances share a redis-server (``history_size`` >= missed). For each repetition, on a fresh
topic: a client subscribes on instance A and keeps the position (epoch, offset) from the
``subscribed`` reply; it goes offline; instance B publishes ``--missed`` messages (we wait until
Redis numbered them all); the client reconnects to A with ``recover`` and reads. Reported:

* ``connect_to_all_ms``: from starting the TCP connect to having all missed messages;
* ``subscribe_to_reply_ms`` / ``subscribe_to_all_ms``: from sending the ``subscribe`` (with
  ``recover``) to its reply / to the last missed message;
* ``ok``: ``recovered`` is true and the offsets are exactly N+1 .. N+missed, in order, no
  duplicate (and nothing else arrives).

Writes ``benchmarks/results/recovery.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))
sys.path.insert(0, os.path.join(ROOT, "python"))

from cluster import Node, RedisProcess, RedisUnavailable, wait_until  # noqa: E402

PREFIX = "wlbench"


class RawClient:
    """A minimal blocking WebSocket client (raw socket, frames parsed by hand): the Python
    `websockets` library would spend ~20 us per message, as much as what is measured here."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))
        self.buf = bytearray(rest)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def send_json(self, obj) -> None:
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv_json(self, timeout: float = 10.0):
        self.sock.settimeout(timeout)
        while True:
            buf = self.buf
            if len(buf) >= 2:
                n, hdr = buf[1] & 0x7F, 2
                if n == 126 and len(buf) >= 4:
                    n, hdr = int.from_bytes(buf[2:4], "big"), 4
                elif n == 127 and len(buf) >= 10:
                    n, hdr = int.from_bytes(buf[2:10], "big"), 10
                if n < 126 or hdr > 2:
                    if len(buf) >= hdr + n:
                        opcode = buf[0] & 0x0F
                        body = bytes(buf[hdr:hdr + n])
                        del buf[:hdr + n]
                        if opcode == 1:
                            return json.loads(body)
                        continue  # ping/pong/binary: not expected here
            self._fill()

    def close(self) -> None:
        self.sock.close()


def one_rep(a: Node, b: Node, redis: RedisProcess, topic: str, missed: int, size: int) -> dict:
    b.call("publish_many", topic=topic, count=3, size=size)  # the stream exists
    c = RawClient(a.port)
    assert c.recv_json()["type"] == "ready"
    c.send_json({"type": "subscribe", "topics": [topic], "id": 1})
    reply = c.recv_json()
    pos = reply["positions"][topic]
    c.close()
    # offline: B publishes; wait until Redis has numbered every publication
    b.call("publish_many", topic=topic, count=missed, size=size, timeout=60)
    target = pos["offset"] + missed
    wait_until(lambda: int(redis.command("HGET", f"{PREFIX}:m:{topic}", "o") or 0) >= target, 20, 0.005,
               "Redis numbered the publications")
    t0 = time.perf_counter()
    c = RawClient(a.port)
    assert c.recv_json()["type"] == "ready"
    t_sub = time.perf_counter()
    c.send_json({"type": "subscribe", "topics": [topic], "id": 2,
                 "recover": {topic: {"epoch": pos["epoch"], "offset": pos["offset"]}}})
    reply = c.recv_json()
    t_reply = time.perf_counter()
    offsets = []
    while len(offsets) < missed:
        m = c.recv_json()
        if m.get("type") == "message":
            offsets.append(m["offset"])
    t_all = time.perf_counter()
    extra = []
    try:
        while True:
            extra.append(c.recv_json(0.2))
    except socket.timeout:
        pass
    c.close()
    expected = list(range(pos["offset"] + 1, pos["offset"] + missed + 1))
    ok = reply.get("recovered") == {topic: True} and offsets == expected and not extra
    return {
        "topic": topic,
        "from_offset": pos["offset"],
        "recovered": reply.get("recovered"),
        "recovery_errors": reply.get("recovery_errors"),
        "received": len(offsets),
        "in_order_no_dup": offsets == expected,
        "extra_frames": len(extra),
        "connect_to_all_ms": round((t_all - t0) * 1000, 3),
        "subscribe_to_reply_ms": round((t_reply - t_sub) * 1000, 3),
        "subscribe_to_all_ms": round((t_all - t_sub) * 1000, 3),
        "ok": ok,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 repetitions")
    ap.add_argument("--missed", type=int, default=500)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 10; quick 5)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "recovery.json"))
    args = ap.parse_args()
    if args.reps is None:
        args.reps = 5 if args.quick else 10
    try:
        redis = RedisProcess().start()
    except RedisUnavailable as exc:
        print(f"recovery: {exc}", file=sys.stderr)
        return 2
    nodes = []
    try:
        cfg = {"redis_url": redis.url, "redis_prefix": PREFIX, "history_size": max(1000, 2 * args.missed),
               "compression": False, "threads": 1}
        a = Node("a").start(cfg)
        nodes.append(a)
        b = Node("b").start(cfg)
        nodes.append(b)
        reps = [one_rep(a, b, redis, f"rec{i}", args.missed, args.size) for i in range(args.reps)]
    finally:
        for n in nodes:
            n.request_stop()
        for n in nodes:
            n.stop()
        redis.stop()

    def med(key):
        return statistics.median(r[key] for r in reps)

    print(f"\nrecovery of {args.missed} missed publications ({args.size} B) through another instance, "
          f"{args.reps} repetitions")
    hdr = f"{'rep':>3} {'connect->all ms':>16} {'sub->reply ms':>14} {'sub->all ms':>12} {'recovered':>10} {'in order, no dup':>17}"
    print(hdr)
    print("-" * len(hdr))
    for i, r in enumerate(reps):
        print(f"{i:>3} {r['connect_to_all_ms']:>16.2f} {r['subscribe_to_reply_ms']:>14.2f} {r['subscribe_to_all_ms']:>12.2f} "
              f"{str(r['recovered'][r['topic']] if r['recovered'] else None):>10} {'yes' if r['in_order_no_dup'] and not r['extra_frames'] else 'NO':>17}")
    ok = all(r["ok"] for r in reps)
    print(f"\nmedian: connect->all {med('connect_to_all_ms'):.2f} ms, subscribe->all {med('subscribe_to_all_ms'):.2f} ms; "
          f"all complete, in order, no duplicate: {'yes' if ok else 'NO'}")
    result = {
        "benchmark": "recovery",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cores": os.cpu_count(),
        "params": {k: v for k, v in vars(args).items() if k != "out"},
        "reps": reps,
        "median_ms": {k: med(k) for k in ("connect_to_all_ms", "subscribe_to_reply_ms", "subscribe_to_all_ms")},
        "all_ok": ok,
        "loadavg": os.getloadavg(),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {os.path.relpath(args.out, ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
