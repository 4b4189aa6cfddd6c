#!/usr/bin/env python3
"""permessage-deflate on the fan-out path: bytes on the wire and server CPU for a 2 KB JSON
publication to 1,000 subscribers, with and without compression.

    python benchmarks/deflate_fanout.py [--subs 1000] [--publications 200]

Subscribers are raw sockets (offering permessage-deflate, or not) that count the bytes they
receive; the server runs in a child process whose CPU time is read from /proc. With compression
the engine compresses each publication once and writes the same compressed frame to every
subscriber that negotiated no context takeover (what browsers do).
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import random
import resource
import selectors
import socket
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def document(i: int) -> dict:
    """A realistic ~2 KB JSON document (an order book snapshot)."""
    rng = random.Random(i)
    return {
        "symbol": "ACME",
        "seq": i,
        "bids": [{"price": round(100 - k * 0.01, 2), "size": rng.randint(1, 500), "venue": "XNAS"} for k in range(20)],
        "asks": [{"price": round(100 + k * 0.01, 2), "size": rng.randint(1, 500), "venue": "XNYS"} for k in range(20)],
    }


def server_main(q_out, q_in, compression: bool, publications: int):
    import wavelane

    server = wavelane.Server(port=0, threads=2, compression=compression, idle_timeout=600, ping_interval=300,
                             max_connections=5000, client_topics=["*"])
    server.start()
    q_out.put(server.port)
    docs = [document(i) for i in range(publications)]
    while True:
        server.drain(4096, 0.05)
        try:
            cmd = q_in.get_nowait()
        except Exception:
            continue
        if cmd == "publish":
            for i, d in enumerate(docs):
                server.publish("book", d)
                if i % 20 == 19:
                    time.sleep(0.01)
            q_out.put("published")
        elif cmd == "stop":
            server.stop(1)
            return


def subscriber(port: int, deflate: bool) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    s.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head, head
    assert (b"permessage-deflate" in head.lower()) == deflate, head
    msg = json.dumps({"type": "subscribe", "topics": ["book"]}).encode()
    mask = os.urandom(4)
    s.sendall(struct.pack("!BB", 0x81, 0x80 | len(msg)) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
    s.setblocking(False)
    return s


def run(compression: bool, subs: int, publications: int) -> dict:
    q_out, q_in = mp.Queue(), mp.Queue()
    proc = mp.Process(target=server_main, args=(q_out, q_in, compression, publications), daemon=True)
    proc.start()
    port = q_out.get(timeout=30)
    socks = [subscriber(port, compression) for _ in range(subs)]
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    total = 0

    def pump(seconds: float) -> None:
        nonlocal total
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for key, _ in sel.select(0.05):
                try:
                    data = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                total += len(data)

    pump(1.0)  # ready + subscribed
    baseline_bytes = total
    cpu0 = cpu_seconds(proc.pid)
    q_in.put("publish")
    assert q_out.get(timeout=60) == "published"
    pump(2.0)
    cpu = cpu_seconds(proc.pid) - cpu0
    wire = total - baseline_bytes
    q_in.put("stop")
    proc.join(10)
    for s in socks:
        s.close()
    raw = len(json.dumps(document(0), separators=(",", ":")))
    return {
        "compression": compression, "subscribers": subs, "publications": publications,
        "json_bytes_per_publication": raw, "wire_bytes": wire,
        "wire_bytes_per_delivery": round(wire / (subs * publications), 1),
        "server_cpu_seconds": round(cpu, 3),
        "server_cpu_us_per_delivery": round(cpu / (subs * publications) * 1e6, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--publications", type=int, default=200)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.subs + 100)), hard))
    plain = run(False, args.subs, args.publications)
    deflated = run(True, args.subs, args.publications)
    print(json.dumps({"without": plain, "with": deflated}, indent=2))
    print(f"deflate fan-out: {plain['wire_bytes_per_delivery']} -> {deflated['wire_bytes_per_delivery']} bytes/delivery "
          f"({deflated['wire_bytes'] / max(1, plain['wire_bytes']):.2f}x), server CPU "
          f"{plain['server_cpu_us_per_delivery']} -> {deflated['server_cpu_us_per_delivery']} us/delivery")
    return 0


if __name__ == "__main__":
    sys.exit(main())
