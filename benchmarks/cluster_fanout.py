#!/usr/bin/env python3
"""Fan-out through Redis against fan-out on one instance, in the same run.

    python3 benchmarks/cluster_fanout.py [--quick] [--subs 1000] [--messages 10000] [--size 100] [--reps 3]

Scenarios (same subscribers, message size and count):

* ``single``:  one instance without Redis, every subscriber on it, publisher on it;
* ``cluster``: two instances sharing a redis-server, half of the subscribers on each, the
  publisher (``server.publish`` in the instance's Python) on the first one.

Instances run in their own processes (``python/tests/cluster_node.py``); the subscribers are
minimal raw WebSocket clients in one client process (uvloop when installed): after ``ready`` and
``subscribed`` they only count bytes. Every engine frame of a publication is
``{"type":"message","topic":T,"offset":n,"data":"<size bytes>"}`` with offsets 1..N, so the exact
byte total per subscriber proves that nothing was lost or duplicated, and the last frame's
offset is looked for at the end of the stream.

The rate is deliveries/s from the first publication to the last subscriber complete. CPU
seconds of the client process, of each instance and of redis-server over the same window are
reported: on a 2-core machine, a client near one full core means the client, not the server,
is the limit. Writes ``benchmarks/results/cluster_fanout.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))
sys.path.insert(0, os.path.join(ROOT, "python"))

from cluster import Node, RedisProcess, RedisUnavailable, topic_channel, wait_until  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from rawsub import RawSub, frame_bytes  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ------------------------------------------------------------------------------ client process


def client_main(conn, targets, topic, expect, last_offset, timeout):
    """Runs in its own process: opens the subscribers, reports 'ready', counts until done."""
    try:
        import uvloop

        uvloop.install()
        loop_kind = "uvloop"
    except ImportError:
        loop_kind = "asyncio"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    try:
        result = asyncio.run(_client(conn, targets, topic, expect, last_offset, timeout))
        result["loop"] = loop_kind
    except Exception as exc:  # reported to the parent
        result = {"error": f"{type(exc).__name__}: {exc}"}
    conn.send(("result", result))


async def _client(conn, targets, topic, expect, last_offset, timeout):
    loop = asyncio.get_running_loop()
    subs = []
    sem = asyncio.Semaphore(200)

    async def one(port):
        async with sem:
            s = RawSub("127.0.0.1", port, topic, expect, last_offset)
            await loop.create_connection(lambda: s, "127.0.0.1", port)
            await asyncio.wait_for(s.subscribed, 20)
            subs.append(s)

    await asyncio.gather(*(one(port) for port, n in targets for _ in range(n)))
    conn.send(("ready", len(subs)))
    # wait for "go" (the parent publishes right after sending it)
    await loop.run_in_executor(None, conn.recv)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(s.done for s in subs), return_exceptions=True), timeout)
    except asyncio.TimeoutError:
        pass
    t_end = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    done = [s.t_done for s in subs if s.t_done is not None]
    firsts = [s.t_first for s in subs if s.t_first is not None]
    out = {
        "subs": len(subs),
        "complete": len(done),
        "verified": sum(1 for s in subs if s.verified()),
        "over": sum(1 for s in subs if s.n > expect),
        "bytes": sum(s.n for s in subs),
        "t_go": t0,
        "t_first": min(firsts) if firsts else None,
        "t_last": max(done) if len(done) == len(subs) and subs else t_end,
        "client_cpu": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
        "client_window": t_end - t0,
    }
    for s in subs:
        s.transport.close()
    return out


# ------------------------------------------------------------------------------ scenarios


def run_scenario(name, nodes, redis, per_node, args, topic):
    """Subscribers on ``nodes`` (``per_node`` each), publisher on nodes[0]. Returns a dict."""
    expect = frame_bytes(topic, args.messages, args.size)
    parent, child = mp.Pipe()
    targets = [(n.port, per_node) for n in nodes]
    proc = mp.Process(target=client_main, args=(child, targets, topic, expect, args.messages, args.timeout), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("client process did not get ready")
        kind, ready = parent.recv()
        if kind != "ready":
            raise RuntimeError(f"client failed: {ready}")
        if redis is not None:
            wait_until(lambda: redis.numsub(topic_channel(topic)) >= len(nodes), 10, what="Redis subscriptions")
        time.sleep(0.3)  # let connection setup settle
        pids = {f"node{i}": n.pid for i, n in enumerate(nodes)}
        if redis is not None:
            pids["redis"] = redis.proc.pid
        cpu0 = {k: proc_cpu(p) for k, p in pids.items()}
        parent.send("go")
        t_pub0 = time.perf_counter()
        pub = nodes[0].call("publish_many", topic=topic, count=args.messages, size=args.size, timeout=args.timeout)
        if not parent.poll(args.timeout + 30):
            raise RuntimeError("client process did not report")
        kind, res = parent.recv()
        cpu1 = {k: proc_cpu(p) for k, p in pids.items()}
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    if "error" in res:
        raise RuntimeError(f"client: {res['error']}")
    elapsed = res["t_last"] - t_pub0
    deliveries = res["subs"] * args.messages
    delivered = res["bytes"] * args.messages // expect if expect else 0
    stats = [n.call("stats") for n in nodes]
    window = res["client_window"]
    return {
        "scenario": name,
        "instances": len(nodes),
        "subscribers": res["subs"],
        "messages": args.messages,
        "size": args.size,
        "deliveries": deliveries,
        "delivered_estimate": delivered,
        "complete_subscribers": res["complete"],
        "verified_subscribers": res["verified"],
        "over_subscribers": res["over"],
        "seconds": round(elapsed, 4),
        "publish_call_seconds": round(pub["seconds"], 4),
        "deliveries_per_s": round(deliveries / elapsed) if elapsed > 0 and res["verified"] == res["subs"] else 0,
        "client_cpu_s": round(res["client_cpu"], 3),
        "client_cpu_util": round(res["client_cpu"] / window, 3) if window > 0 else None,
        "server_cpu_s": {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0},
        "redis_missed": sum(s.get("redis_missed", 0) for s in stats),
        "redis_undelivered": sum(s.get("redis_undelivered", 0) for s in stats),
        "client_loop": res.get("loop"),
        "ok": res["verified"] == res["subs"] == ready and res["over"] == 0,
    }


def single(args, rep):
    node = Node("single")
    node.start({"threads": args.single_threads, "compression": False, "max_connections": args.subs + 100,
                "idle_timeout": 600, "ping_interval": 300})
    try:
        return run_scenario("single", [node], None, args.subs, args, f"fan{rep}")
    finally:
        node.stop()


def cluster(args, rep, redis):
    redis.flushall()
    nodes = []
    try:
        for i in range(2):
            nodes.append(Node(f"cluster{i}").start({
                "threads": args.cluster_threads, "compression": False, "max_connections": args.subs + 100,
                "idle_timeout": 600, "ping_interval": 300, "redis_url": redis.url}))
        return run_scenario("cluster", nodes, redis, args.subs // 2, args, f"fan{rep}")
    finally:
        for n in nodes:
            n.request_stop()
        for n in nodes:
            n.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2000 publications, 3 repetitions (< 1 min)")
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=None, help="publications per scenario (default 10000; quick 2000)")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    ap.add_argument("--single-threads", type=int, default=2, help="event loops of the single instance")
    ap.add_argument("--cluster-threads", type=int, default=1, help="event loops of each of the two instances")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "cluster_fanout.json"))
    args = ap.parse_args()
    if args.messages is None:
        args.messages = 2000 if args.quick else 10000
    if args.reps is None:
        args.reps = 3
    try:
        redis = RedisProcess().start()
    except RedisUnavailable as exc:
        print(f"cluster_fanout: {exc}", file=sys.stderr)
        return 2
    runs = []
    try:
        for rep in range(args.reps):
            runs.append(single(args, rep))
            runs.append(cluster(args, rep, redis))
    finally:
        redis.stop()

    def med(name, key):
        vals = [r[key] for r in runs if r["scenario"] == name]
        return statistics.median(vals) if vals else 0

    rate_single, rate_cluster = med("single", "deliveries_per_s"), med("cluster", "deliveries_per_s")
    ratio = rate_cluster / rate_single if rate_single else None
    print(f"\n{args.subs} subscribers x {args.messages} publications of {args.size} B, {args.reps} repetition(s); "
          f"{os.cpu_count()} cores; single: {args.single_threads} event loop(s), cluster: 2 x {args.cluster_threads}")
    hdr = f"{'scenario':<9} {'inst':>4} {'deliveries/s':>13} {'seconds':>8} {'client CPU':>11} {'server CPU s':>28} {'ok':>3}"
    print(hdr)
    print("-" * len(hdr))
    for r in runs:
        cpu = " ".join(f"{k}={v:.2f}" for k, v in r["server_cpu_s"].items())
        print(f"{r['scenario']:<9} {r['instances']:>4} {r['deliveries_per_s']:>13,} {r['seconds']:>8.3f} "
              f"{r['client_cpu_s']:>5.2f}s {100 * (r['client_cpu_util'] or 0):>3.0f}% {cpu:>28} {'yes' if r['ok'] else 'NO':>3}")
    print(f"\nmedian deliveries/s: single {rate_single:,.0f}, cluster {rate_cluster:,.0f}; "
          f"ratio cluster/single = {ratio:.2f}" if ratio else "\nratio: n/a (a scenario failed)")
    busy = [r for r in runs if (r["client_cpu_util"] or 0) > 0.8]
    if busy:
        print(f"note: the client used > 80% of a core in {len(busy)} run(s): the rate may be client-bound")
    result = {
        "benchmark": "cluster_fanout",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cores": os.cpu_count(),
        "params": {k: v for k, v in vars(args).items() if k != "out"},
        "runs": runs,
        "median_deliveries_per_s": {"single": rate_single, "cluster": rate_cluster},
        "ratio_cluster_over_single": ratio,
        "loadavg": os.getloadavg(),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {os.path.relpath(args.out, ROOT)}")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
