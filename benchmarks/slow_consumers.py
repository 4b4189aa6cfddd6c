#!/usr/bin/env python3
"""Slow consumers at scale: N subscribers of which some never read, M publications.

The healthy subscribers must receive everything in order; the server's RSS must stay bounded
(reported against a stated bound: baseline + healthy traffic + slow * (max_send_queue + NIO's
256 KiB write buffer) + slack); the slow ones lose low-priority messages (reported as `dropped`
events) instead of growing memory.

    python benchmarks/slow_consumers.py [--subs 1000] [--slow 100] [--messages 10000] [--size 100]

The server runs in a child process (its RSS is measured from /proc); the clients run in this
process with raw sockets and a minimal frame reader (no client library in the way).
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import resource
import selectors
import socket
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def server_main(port_q, cmd_q, args):
    import wavelane

    server = wavelane.Server(port=0, threads=2, max_send_queue=args.max_send_queue, slow_consumer_timeout=600,
                             idle_timeout=600, ping_interval=300, compression=False, max_connections=args.subs + 10,
                             client_topics=["*"])
    server.start()
    port_q.put(server.port)
    dropped_events = dropped_msgs = 0
    while True:
        for kind, conn, data in server.drain(4096, 0.05):
            if kind == "dropped":
                dropped_events += 1
                dropped_msgs += data["count"]
        try:
            cmd = cmd_q.get_nowait()
        except Exception:
            continue
        if cmd == "publish":
            payload = "x" * args.size
            t0 = time.perf_counter()
            batch = max(1, args.rate // 100)
            for i in range(args.messages):
                server.publish("feed", payload, priority="low")
                if i % batch == batch - 1:
                    # Paced at --rate publications/s (what the healthy readers can take).
                    ahead = (i + 1) / args.rate - (time.perf_counter() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                    for kind, conn, data in server.drain(4096, 0):
                        if kind == "dropped":
                            dropped_events += 1
                            dropped_msgs += data["count"]
            port_q.put(("published", time.perf_counter() - t0))
        elif cmd == "stats":
            for kind, conn, data in server.drain(65536, 0.2):
                if kind == "dropped":
                    dropped_events += 1
                    dropped_msgs += data["count"]
            port_q.put(("stats", server.stats(), dropped_events, dropped_msgs))
        elif cmd == "stop":
            server.stop(1)
            return


def connect(port: int, rcvbuf: int | None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    msg = json.dumps({"type": "subscribe", "topics": ["feed"]}).encode()
    mask = os.urandom(4)
    s.sendall(struct.pack("!BB", 0x81, 0x80 | len(msg)) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
    return s


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=100)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--max-send-queue", type=int, default=256 * 1024)
    ap.add_argument("--rate", type=int, default=1000, help="publications per second")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.subs + 100)), hard))

    port_q, cmd_q = mp.Queue(), mp.Queue()
    proc = mp.Process(target=server_main, args=(port_q, cmd_q, args), daemon=True)
    proc.start()
    port = port_q.get(timeout=30)
    time.sleep(0.3)
    rss_start = rss_kib(proc.pid)

    healthy_n = args.subs - args.slow
    healthy = [connect(port, None) for _ in range(healthy_n)]
    slow = [connect(port, 4096) for _ in range(args.slow)]
    for s in healthy:
        s.setblocking(False)
    time.sleep(1.0)
    rss_connected = rss_kib(proc.pid)

    sel = selectors.DefaultSelector()
    # Each healthy reader first gets `ready` and `subscribed` (read and checked here), then
    # exactly the topic messages with offsets 1..N: their exact total size proves none was lost.
    def frame_len(body_len: int) -> int:
        return body_len + (2 if body_len <= 125 else 4 if body_len <= 0xFFFF else 10)

    body = '{"type":"message","topic":"feed","offset":%d,"data":"' + "x" * args.size + '"}'
    expected_bytes = sum(frame_len(len(body % i)) for i in range(1, args.messages + 1))
    last_frame = ('\x81' if False else '') + body % args.messages
    preamble = {}
    got = {}
    tails = {}
    for s in healthy:
        sel.register(s, selectors.EVENT_READ)
        preamble[s] = bytearray()
        got[s] = 0
        tails[s] = b""
    cmd_q.put("publish")
    peak_rss = rss_connected
    t0 = time.perf_counter()
    deadline = t0 + args.timeout
    done = 0
    order_errors = 0
    last_rss_check = 0.0

    def skip_two_frames(buf: bytearray):
        """Returns the bytes after the first two frames, or None if not there yet."""
        pos = 0
        for _ in range(2):
            if len(buf) < pos + 2:
                return None
            n = buf[pos + 1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < pos + 4:
                    return None
                n = struct.unpack_from("!H", buf, pos + 2)[0]
                off = 4
            if len(buf) < pos + off + n:
                return None
            pos += off + n
        return bytes(buf[pos:])

    while done < healthy_n and time.perf_counter() < deadline:
        for key, _ in sel.select(0.05):
            s = key.fileobj
            try:
                chunk = s.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(s)
                continue
            if preamble[s] is not None:
                preamble[s].extend(chunk)
                rest = skip_two_frames(preamble[s])
                if rest is None:
                    continue
                preamble[s] = None
                chunk = rest
            got[s] += len(chunk)
            tails[s] = (tails[s] + chunk)[-4096:]
            if got[s] == expected_bytes:
                done += 1
                if not tails[s].endswith(last_frame.encode()):
                    order_errors += 1
            elif got[s] > expected_bytes:
                order_errors += 1
        now = time.perf_counter()
        if now - last_rss_check > 0.1:
            peak_rss = max(peak_rss, rss_kib(proc.pid))
            last_rss_check = now
    elapsed = time.perf_counter() - t0
    time.sleep(1.5)
    peak_rss = max(peak_rss, rss_kib(proc.pid))
    cmd_q.put("stats")
    published = None
    stats = None
    while stats is None:
        item = port_q.get(timeout=30)
        if item[0] == "published":
            published = item[1]
        elif item[0] == "stats":
            _, stats, dropped_events, dropped_msgs = item
    rss_end = rss_kib(proc.pid)
    cmd_q.put("stop")
    proc.join(10)
    for s in healthy + slow:
        s.close()

    received = sum(got.values())
    bound_kib = rss_connected + args.slow * (args.max_send_queue + 256 * 1024) // 1024 + 64 * 1024
    result = {
        "subscribers": args.subs, "slow": args.slow, "messages": args.messages, "size": args.size,
        "max_send_queue": args.max_send_queue,
        "healthy_complete": done, "healthy_expected": healthy_n,
        "bytes_to_healthy": received, "expected_bytes_each": expected_bytes, "order_errors": order_errors,
        "seconds": round(elapsed, 3), "publish_seconds": round(published or 0, 3),
        "rss_kib": {"start": rss_start, "connected": rss_connected, "peak": peak_rss, "end": rss_end},
        "rss_bound_kib": bound_kib,
        "dropped_events": dropped_events, "dropped_messages": dropped_msgs,
        "stats": {k: stats[k] for k in ("dropped_low", "slow_consumer_closes", "connections_active", "deliveries")},
    }
    print(json.dumps(result, indent=2))
    ok = done == healthy_n and order_errors == 0 and peak_rss <= bound_kib
    print(f"slow consumers: {'OK' if ok else 'FAILED'}: {done}/{healthy_n} healthy complete, "
          f"peak RSS {peak_rss/1024:.1f} MiB (bound {bound_kib/1024:.1f} MiB), {dropped_msgs} dropped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
