"""Load generator: one process, uvloop, the same for every engine.

picows clients drive the inbound, round-trip, handshake and idle scenarios. The fan-out
receivers are minimal raw WebSocket clients on uvloop (handshake and control frames parsed in
Python, then publications counted by bytes: every engine sends byte-identical envelopes, so the
exact byte total proves that no frame was lost, and the tail of the stream is checked for the
last offset). That keeps the client at a fraction of a core even at millions of deliveries/s.

Prints ``PHASE <name>`` lines (run.py samples the server's /proc counters on them) and, last, a
JSON line ``{"result": {...}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time

import jwt
import uvloop
from picows import WSListener, WSMsgType, ws_connect

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers"))
from common import JWT_SECRET, raise_nofile  # noqa: E402
from rawsub import RawSub, frame_bytes  # noqa: E402

TEXT = WSMsgType.TEXT


def token(sub: str = "bench") -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def phase(name: str) -> None:
    sys.stdout.write("PHASE %s\n" % name)
    sys.stdout.flush()


def src_ip(i: int, base: int = 2, spread: int = 50) -> str:
    return "127.0.0.%d" % (base + i % spread)


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


async def bounded(coros, limit: int):
    sem = asyncio.Semaphore(limit)

    async def run(c):
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)


# ------------------------------------------------------------------ picows clients

class Client(WSListener):
    """Collects text frames; the first one (the server's ready) resolves `ready`."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.q: asyncio.Queue = asyncio.Queue()
        self.transport = None
        self.waiter = None

    def on_ws_connected(self, transport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport, frame) -> None:
        if frame.msg_type == TEXT:
            if not self.ready.done():
                self.ready.set_result(frame.get_payload_as_bytes())
                return
            w = self.waiter
            if w is not None and not w.done():
                self.waiter = None
                w.set_result(frame.get_payload_as_bytes())
            else:
                self.q.put_nowait(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before ready"))

    def send(self, text) -> None:
        self.transport.send(TEXT, text if isinstance(text, bytes) else text.encode())

    async def request(self, cmd: dict, want: str, timeout: float) -> dict:
        self.send(json.dumps(cmd))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no %r reply" % want)
            msg = json.loads(await asyncio.wait_for(self.q.get(), left))
            if msg.get("type") == want:
                return msg


async def connect(url: str, tok: str, timeout: float = 10.0, **kw) -> Client:
    _, client = await ws_connect(Client, url, extra_headers={"Authorization": "Bearer " + tok},
                                 websocket_handshake_timeout=timeout, **kw)
    # no wait_for here (it costs a Task per connection, which the handshake scenario would
    # measure): a server that never sends its first frame closes the connection or is caught by
    # the run's overall timeout
    await client.ready
    return client


async def fanout(a) -> dict:
    loop = asyncio.get_running_loop()
    url = "ws://%s:%d/ws" % (a.host, a.port)
    tok = token()
    expect = frame_bytes(a.topic, a.count, a.size)
    subs = []

    async def one(i):
        s = RawSub(a.host, a.port, a.topic, expect, a.count, path="/ws", token=tok)
        await loop.create_connection(lambda: s, a.host, a.port, local_addr=(src_ip(i), 0))
        await asyncio.wait_for(s.subscribed, 20)
        subs.append(s)

    t_c = time.perf_counter()
    res = await bounded([one(i) for i in range(a.subs)], 200)
    errors = [repr(r) for r in res if isinstance(r, BaseException)]
    connect_secs = time.perf_counter() - t_c
    ctl = await connect(url, tok)
    phase("publish_start")
    c0, t0 = cpu(), time.perf_counter()
    ctl.send(json.dumps({"type": "bench", "cmd": "publish", "topic": a.topic,
                         "count": a.count, "size": a.size}))
    try:
        await asyncio.wait_for(asyncio.gather(*(s.done for s in subs), return_exceptions=True),
                               a.timeout)
    except asyncio.TimeoutError:
        pass
    t_end = time.perf_counter()
    phase("publish_end")
    c1 = cpu()
    done = None
    while not ctl.q.empty():
        m = json.loads(ctl.q.get_nowait())
        if m.get("type") == "bench_done":
            done = m
    finished = [s.t_done for s in subs if s.t_done is not None]
    t1 = max(finished) if len(finished) == len(subs) and subs else t_end
    received_bytes = sum(s.n for s in subs)
    ok = sum(1 for s in subs if s.verified())
    per_frame = expect / a.count
    expected_deliveries = a.subs * a.count
    delivered = int(round(received_bytes / per_frame)) if per_frame else 0
    wall = t1 - t0
    return {
        "subs": a.subs, "count": a.count, "size": a.size,
        "connected": len(subs), "connect_errors": errors[:5], "connect_secs": connect_secs,
        "expected": expected_deliveries, "delivered": min(delivered, expected_deliveries),
        "lost": max(0, expected_deliveries - delivered) + (a.subs - len(subs)) * a.count,
        "verified_clients": ok, "secs": wall,
        "rate": (delivered / wall) if wall > 0 else 0.0,
        "server_publish": done,
        "client_cpu": c1 - c0, "client_cpu_util": (c1 - c0) / (t_end - t0) if t_end > t0 else 0,
    }


# ------------------------------------------------------------------ inbound

INBOUND_BURST = 16


def masked_text_frame(payload: bytes, key: bytes = b"\x5a\xa5\x3c\xc3") -> bytes:
    """One complete client text frame (FIN, masked with `key`), payload < 64 KiB."""
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126, n >> 8, n & 0xFF])
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + masked

async def inbound(a) -> dict:
    url = "ws://%s:%d/ws" % (a.host, a.port)
    tok = token()
    res = await bounded([connect(url, tok, local_addr=(src_ip(i), 0)) for i in range(a.clients)], 100)
    clients = [r for r in res if isinstance(r, Client)]
    if len(clients) != a.clients:
        raise RuntimeError("only %d of %d clients connected: %r" % (
            len(clients), a.clients, [r for r in res if not isinstance(r, Client)][:3]))
    ctl = await connect(url, tok)
    await ctl.request({"type": "bench", "cmd": "reset"}, "reset_done", 10)
    total = a.clients * a.count
    if a.drain_test:
        ctl.send(json.dumps({"type": "bench", "cmd": "drain_test", "expect": total}))
        await asyncio.sleep(0.2)
    msg = ("i" + "x" * (a.size - 1)).encode()
    # Flooding clients: each write carries BURST complete masked frames, pre-built once, so the
    # load generator's cost per message is a memcpy, not a frame build and a syscall (one send()
    # per frame kept it at ~97% of its core and made it the bound for every engine when pinned).
    burst = min(INBOUND_BURST, a.count)
    frame = masked_text_frame(msg)
    full = frame * burst
    phase("send_start")
    c0, t0 = cpu(), time.perf_counter()
    sent = 0
    while sent < a.count:
        n = min(burst, a.count - sent)
        chunk = full if n == burst else frame * n
        for c in clients:
            c.transport.underlying_transport.write(chunk)
        sent += n
        await asyncio.sleep(0)
    t_sent = time.perf_counter()
    stats = None
    drain = None
    deadline = time.monotonic() + a.timeout
    if a.drain_test:
        while time.monotonic() < deadline:
            try:
                m = json.loads(await asyncio.wait_for(ctl.q.get(), 1.0))
            except asyncio.TimeoutError:
                continue
            if m.get("type") == "drain_result":
                drain = m
                break
        t_done = time.perf_counter()
    else:
        while time.monotonic() < deadline:
            stats = await ctl.request({"type": "bench", "cmd": "stats"}, "stats", 10)
            if stats["inbound"] >= total:
                break
            await asyncio.sleep(0.01)
        t_done = time.perf_counter()
    phase("send_end")
    c1 = cpu()
    out = {"clients": a.clients, "count": a.count, "size": a.size, "expected": total,
           "send_secs": t_sent - t0, "send_rate": total / (t_sent - t0),
           "client_cpu": c1 - c0, "client_cpu_util": (c1 - c0) / (t_done - t0)}
    if a.drain_test:
        out["drain"] = drain
    else:
        got = stats["inbound"] if stats else 0
        out.update({"received": got, "lost": max(0, total - got), "secs": t_done - t0,
                    "rate": got / (t_done - t0), "server_rate": stats.get("rate") if stats else None})
    return out


# ------------------------------------------------------------------ round trip

async def rtt(a) -> dict:
    url = "ws://%s:%d/ws" % (a.host, a.port)
    loop = asyncio.get_running_loop()
    c = await connect(url, token())
    msg = ("e" + "x" * (a.size - 1)).encode()
    lat = []
    phase("rtt_start")
    c0, t0 = cpu(), time.perf_counter()
    for k in range(a.warmup + a.count):
        fut = loop.create_future()
        c.waiter = fut
        s = time.perf_counter_ns()
        c.transport.send(TEXT, msg)
        reply = await asyncio.wait_for(fut, 5)
        e = time.perf_counter_ns()
        if reply != msg:
            raise RuntimeError("echo mismatch")
        if k >= a.warmup:
            lat.append((e - s) / 1000.0)
    t1 = time.perf_counter()
    phase("rtt_end")
    c1 = cpu()
    return {"count": a.count, "size": a.size, "p50_us": pct(lat, 50), "p90_us": pct(lat, 90),
            "p99_us": pct(lat, 99), "max_us": max(lat), "mean_us": sum(lat) / len(lat),
            "secs": t1 - t0, "client_cpu_util": (c1 - c0) / (t1 - t0)}


# ------------------------------------------------------------------ handshakes

class HandshakeClient(asyncio.Protocol):
    """A minimal WebSocket client for the handshake scenario: writes one pre-built upgrade request,
    checks the 101, waits for the server's first frame, sends a masked close and closes. picows'
    client (a full handshake parser, a Task per connection) kept the load generator at ~97% of its
    core, so it, not the server, was the bound when pinned."""

    def __init__(self, request: bytes, done: asyncio.Future) -> None:
        self.request, self.done, self.buf, self.transport = request, done, b"", None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.done.done():
            return
        if not self.buf.startswith(b"HTTP/1.1 101"):
            self.fail(ConnectionError(self.buf.split(b"\r\n", 1)[0].decode("latin-1")))
            return
        frame = self.buf[end + 4:]
        if len(frame) < 2:
            return
        n = frame[1] & 0x7F
        need = 2 + n if n < 126 else (4 + int.from_bytes(frame[2:4], "big") if n == 126 else 10)
        if len(frame) < need:
            return
        self.transport.write(CLOSE_FRAME)
        self.transport.close()
        self.done.set_result(None)

    def fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        self.transport.abort()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed before the first frame"))


# a masked close frame, code 1000
CLOSE_FRAME = bytes([0x88, 0x82]) + b"\x01\x02\x03\x04" + bytes(b ^ k for b, k in zip(b"\x03\xe8", b"\x01\x02"))


async def handshakes(a) -> dict:
    loop = asyncio.get_running_loop()
    tok = token()
    request = ("GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (a.host, a.port, tok)).encode()
    lat, errors = [], []
    nxt = iter(range(a.count))

    async def worker():
        for i in nxt:
            s = time.perf_counter()
            done = loop.create_future()
            try:
                await loop.create_connection(lambda: HandshakeClient(request, done), a.host, a.port,
                                             local_addr=(src_ip(i, base=60, spread=100), 0))
                await done
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
                continue
            lat.append((time.perf_counter() - s) * 1e6)

    phase("hs_start")
    c0, t0 = cpu(), time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(a.concurrency))), a.timeout)
    t1 = time.perf_counter()
    phase("hs_end")
    c1 = cpu()
    return {"count": a.count, "concurrency": a.concurrency, "ok": len(lat), "errors": len(errors),
            "error_samples": errors[:3], "secs": t1 - t0, "rate": len(lat) / (t1 - t0),
            "p50_us": pct(lat, 50), "p99_us": pct(lat, 99), "max_us": max(lat) if lat else None,
            "client_cpu_util": (c1 - c0) / (t1 - t0)}


# ------------------------------------------------------------------ idle connections

async def idle(a) -> dict:
    url = "ws://%s:%d/ws" % (a.host, a.port)
    tok = token()
    loop = asyncio.get_running_loop()
    held, failed = [], []
    steps = [int(x) for x in a.steps.split(",")]
    out = []
    for step in steps:
        start = len(held) + len(failed)
        res = await bounded([connect(url, tok, 20, local_addr=(src_ip(i, base=170, spread=80), 0))
                             for i in range(start, step)], 256)
        for r in res:
            (held if isinstance(r, Client) else failed).append(r)
        await asyncio.sleep(0.5)
        alive = sum(1 for c in held if not c.transport.is_disconnected)
        sys.stdout.write(json.dumps({"step": step, "open": alive, "failed": len(failed),
                                     "fail_samples": [repr(f) for f in failed[:2]]}) + "\n")
        sys.stdout.flush()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "stop":
            break
    return {"steps": steps, "open": len(held), "failed": len(failed)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["fanout", "inbound", "rtt", "handshakes", "idle"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--topic", default="bench")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--steps", default="1000,5000")
    ap.add_argument("--drain-test", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    raise_nofile()
    fn = {"fanout": fanout, "inbound": inbound, "rtt": rtt, "handshakes": handshakes,
          "idle": idle}[a.mode]
    result = uvloop.run(asyncio.wait_for(fn(a), a.timeout + 60))
    sys.stdout.write(json.dumps({"result": result}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait for thousands of graceful closes


if __name__ == "__main__":
    main()
