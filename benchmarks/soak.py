#!/usr/bin/env python3
"""Soak: run real Wavelane servers for a given duration under churn, abuse and faults, and assert
that nothing is delivered twice or out of order, that every loss is accounted for, that memory and
file descriptors reach a plateau and that the event loops never stall.

    python benchmarks/soak.py --duration 1800 --cluster --fault-every 180 --out DIR
    python benchmarks/soak.py --ci            # CI: 60 s, cluster mode, one of each fault

What runs (docs/reliability.md, "Soak", has the details and the figures of a 30-minute run):

* servers: ``benchmarks/soak_server.py`` processes (a ``wavelane.Server`` drained in Python, a
  publisher thread at a steady rate); with ``--cluster`` two instances ``a`` and ``b`` and a real
  ``redis-server`` (history in Redis). Instance ``a`` is never killed: its RSS/fd series is the
  plateau figure; ``b`` is SIGKILLed and restarted by the faults.
* clients (asyncio, ``websockets`` and raw sockets): healthy subscribers that check every offset
  and recover (``recover``) every gap; slow readers (small TCP window) and silent clients (never
  read) on a low-priority bulk topic; connection churn (connect, subscribe — some with ``recover``
  or ``history`` —, close or abort, bad tokens); rate-limited floods; oversized, malformed and
  invalid-UTF-8 frames; tokens that expire (closed with 4001) or are refreshed (stay open); an
  echo client per instance (through Python: order and loss of the inbound queue) and a probe per
  instance (engine ``ping``/``pong`` round trip: event-loop stalls).
* faults, one every ``--fault-every`` seconds in turn: redis-server SIGKILLed and restarted,
  instance ``b`` SIGKILLed and restarted, instance ``a``'s drain loop stalled.

Assertions (any violation makes the exit status 1; each is listed in the summary):

* per topic and subscriber, offsets strictly increase by one; a gap is recovered with
  ``recover`` (then the missing publications must arrive, in order) or answered
  ``recovered: false``, which is allowed only in a documented case (a Redis fault: ``epoch
  changed`` / ``redis unavailable``); a duplicate or a step back within one epoch is always a
  violation;
* a gap a slow reader sees outside fault windows is covered by the ``dropped`` count the engine
  reported for that connection; a healthy subscriber's gap outside fault windows is a violation
  unless so covered;
* every echo comes back once and in order (a connection lost with a killed instance excepted);
* every abuse case ends as documented (1008 for floods, 1009/1002/1007 for bad frames, 4001 for an
  expired token, a refreshed connection stays open, silent clients closed within a bound, 401 for a
  bad token) and the servers' counters move accordingly;
* the probe's ping round trip stays under ``--max-rtt`` (max and p99 reported);
* RSS and fd slopes (least squares over the second half of instance ``a``'s run) under
  ``--max-rss-slope`` KB/min and ``--max-fd-slope`` fds/min (runs of ``--min-slope-duration``
  seconds or more; shorter ones report them), and after the clients left every instance's fds
  come back to their baseline (+ ``--fd-slack``) and its connection count to 0.

Output in ``--out``: ``series.csv`` / ``series.json`` (one row per second and instance) and
``summary.json``; ``benchmarks/soak_plot.py`` draws the plots from them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))

from cluster import RedisProcess, free_port  # noqa: E402  (the test harness' redis-server wrapper)

try:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus
except ImportError:  # pragma: no cover
    sys.exit("soak.py needs the websockets package (pip install 'websockets>=13')")

SECRET = "wavelane-soak-secret-0123456789abcdef0123"
TOPICS = ["soak:0", "soak:1", "soak:2", "soak:3"]
LEEWAY = 1

# ------------------------------------------------------------------------------------ helpers


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(sub: str, exp_in: Optional[float] = 3600, secret: str = SECRET) -> str:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims: Dict[str, Any] = {"sub": sub, "iat": int(time.time())}
    if exp_in is not None:
        claims["exp"] = int(time.time() + exp_in)
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(sig)}"


def slope_per_min(ts: List[float], ys: List[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per minute; 0 for fewer than 3 points."""
    n = len(ts)
    if n < 3:
        return 0.0
    mt = sum(ts) / n
    my = sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return 60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var


def pct(values: List[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def proc_rss_kb(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid: int) -> Optional[int]:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


# ------------------------------------------------------------------------------------ servers


class Instance:
    """A soak_server.py process; restartable on the same port."""

    def __init__(self, name: str, config: Dict[str, Any], publish: Dict[str, Any], log_dir: str):
        self.name = name
        self.config = dict(config)
        self.config["port"] = free_port()
        self.port = self.config["port"]
        self.publish = publish
        self.log_dir = log_dir
        self.proc: Optional[subprocess.Popen] = None
        self.pid = 0
        self.generation = 0
        self.lock = threading.Lock()
        self.up = False
        self.started_at = 0.0
        self.last_stats: Dict[str, Any] = {}
        # per generation: the drops the engine reported per connection (kept after a kill)
        self.dropped_by_conn: Dict[Tuple[int, str], int] = {}

    def start(self, timeout: float = 30.0) -> None:
        err = open(os.path.join(self.log_dir, f"server-{self.name}.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "soak_server.py"), json.dumps(self.config), self.name,
             json.dumps(self.publish)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        err.close()
        line = self._readline(timeout)
        info = json.loads(line)
        if "fatal" in info:
            raise RuntimeError(f"instance {self.name}: {info['fatal']}")
        self.pid = info["pid"]
        self.generation += 1
        self.started_at = time.monotonic()
        self.up = True

    def _readline(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        out: List[str] = []

        def read():
            out.append(self.proc.stdout.readline())

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive() or not out or not out[0]:
            raise RuntimeError(f"instance {self.name}: no answer within {timeout}s")
        return out[0]

    def command(self, cmd: Dict[str, Any], timeout: float = 10.0) -> Dict[str, Any]:
        with self.lock:
            if not self.up or self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"instance {self.name} is down")
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            reply = json.loads(self._readline(timeout))
        if not reply.get("ok"):
            raise RuntimeError(f"instance {self.name}: {reply.get('error')}")
        return reply

    def stats(self) -> Optional[Dict[str, Any]]:
        try:
            reply = self.command({"cmd": "stats"})
        except (RuntimeError, OSError, ValueError):
            return None
        self.last_stats = reply
        for conn, n in reply.get("dropped_by_conn", {}).items():
            self.dropped_by_conn[(self.generation, conn)] = n
        return reply

    def kill(self) -> None:
        with self.lock:
            self.up = False
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)

    def stop(self) -> None:
        with self.lock:
            self.up = False
            if self.proc is None or self.proc.poll() is not None:
                return
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"cmd":"stop"}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


# ------------------------------------------------------------------------------------ the soak


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.monotonic()
        self.stopping = False
        self.violations: List[Dict[str, Any]] = []
        self.faults: List[Dict[str, Any]] = []  # {"kind","start","end","recovered_s",...}
        self.windows: List[Tuple[str, float, float]] = []  # (kind, start, end) with grace
        self.open_windows: Dict[str, float] = {}
        self.rtt_mark: Dict[str, int] = {}
        self.c: Dict[str, int] = {}  # client-side counters
        self.per_inst: Dict[Tuple[str, int], Dict[str, int]] = {}  # (instance, generation) -> counters
        self.silent_close_times: List[float] = []
        self.silent_codes: Dict[str, int] = {}
        self.rtts: Dict[str, List[float]] = {}
        self.rtt_interval_max: Dict[str, float] = {}
        self.echo_lat_max = 0.0
        self.deliveries_interval = 0
        self.series: List[Dict[str, Any]] = []
        self.instances: List[Instance] = []
        self.redis: Optional[RedisProcess] = None
        self.baseline: Dict[str, Dict[str, float]] = {}
        self.kill_recoveries: List[float] = []
        self.pending_kill_recovery: Optional[Dict[str, Any]] = None
        self.slow_records: List[Dict[str, Any]] = []
        self.healthy_gap_records: List[Dict[str, Any]] = []
        self.resyncs: List[Dict[str, Any]] = []
        self.tasks: List[asyncio.Task] = []
        self.probe_procs: List[Any] = []

    # -- bookkeeping

    def now(self) -> float:
        return time.monotonic() - self.t0

    def count(self, key: str, n: int = 1) -> None:
        self.c[key] = self.c.get(key, 0) + n

    def inst_count(self, inst: "Instance", key: str) -> None:
        d = self.per_inst.setdefault((inst.name, inst.generation), {})
        d[key] = d.get(key, 0) + 1

    def violation(self, what: str, **detail: Any) -> None:
        v = {"t": round(self.now(), 2), "what": what, **detail}
        self.violations.append(v)
        if len(self.violations) <= 50:
            print(f"[{v['t']:8.1f}s] VIOLATION {what} {detail}", flush=True)

    def log(self, msg: str) -> None:
        if not self.args.quiet:
            print(f"[{self.now():8.1f}s] {msg}", flush=True)

    def in_window(self, t: float, kinds: Tuple[str, ...] = ("redis", "kill", "stall")) -> bool:
        for kind, start in self.open_windows.items():
            if kind in kinds and t >= start:
                return True
        for kind, start, end in self.windows:
            if kind in kinds and start <= t <= end:
                return True
        return False

    def fault_begin(self, kind: str) -> float:
        t = self.now()
        self.open_windows[kind] = t
        self.rtt_mark = {n: len(v) for n, v in self.rtts.items()}
        return t

    def probe_during(self) -> Dict[str, float]:
        """The probe's worst round trip (ms) per instance since the fault began."""
        return {n: round(max(v[self.rtt_mark.get(n, 0):], default=0) * 1000, 1) for n, v in self.rtts.items()}

    def fault_end(self, kind: str, grace: float) -> None:
        start = self.open_windows.pop(kind)
        self.windows.append((kind, start - 0.5, self.now() + grace))

    def inst(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def url(self, inst: Instance, tok: Optional[str] = None) -> str:
        q = f"?token={tok}" if tok else ""
        return f"ws://127.0.0.1:{inst.port}/{q}"

    async def connect(self, inst: Instance, sub: str, exp_in: Optional[float] = 3600, **kw: Any):
        kw.setdefault("open_timeout", 10)
        kw.setdefault("max_size", None)
        kw.setdefault("ping_interval", None)
        kw.setdefault("close_timeout", 2)
        ws = await ws_connect(self.url(inst), additional_headers={"Authorization": f"Bearer {token(sub, exp_in)}"},
                              **kw)
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if ready.get("type") != "ready":
            raise RuntimeError(f"first frame is not ready: {ready}")
        return ws, ready

    def pick(self, prefer: Optional[str] = None) -> Optional[Instance]:
        ups = [i for i in self.instances if i.up]
        if not ups:
            return None
        if prefer is not None:
            for i in ups:
                if i.name == prefer:
                    return i
        return random.choice(ups)

    # -- servers

    def server_config(self, redis_url: Optional[str]) -> Dict[str, Any]:
        cfg: Dict[str, Any] = {
            "host": "127.0.0.1",
            "threads": 1,
            "jwt_secret": SECRET,
            "jwt_leeway": LEEWAY,
            "client_topics": ["*"],
            "history_size": 1000,
            "history_ttl": 600,
            "ping_interval": 2,
            "idle_timeout": 6,
            "slow_consumer_timeout": 4,
            "max_send_queue": 256 * 1024,
            "max_message_size": 64 * 1024,
            "max_frame_size": 64 * 1024,
            "inbound_queue_size": 2048,
            "rate_limit_messages": 100,
            "rate_limit_burst_messages": 200,
            "rate_limit_strikes": 10,
            "log_level": "error",
        }
        if redis_url:
            cfg["redis_url"] = redis_url
        return cfg

    def start_servers(self) -> None:
        a = self.args
        redis_url = None
        if a.cluster:
            self.redis = RedisProcess()
            self.redis.start()
            redis_url = self.redis.url
        cfg = self.server_config(redis_url)
        names = ["a", "b"] if a.cluster else ["a"]
        per = len(names)
        for name in names:
            pub = {"topics": TOPICS, "rate": a.rate / per, "bulk_rate": a.bulk_rate / per, "bulk_size": a.bulk_size}
            inst = Instance(name, cfg, pub, a.out)
            inst.start()
            self.instances.append(inst)
            self.rtts[name] = []
            self.rtt_interval_max[name] = 0.0
        self.log(f"servers up: {[(i.name, i.port, i.pid) for i in self.instances]}"
                 + (f", redis {self.redis.port}" if self.redis else ""))

    # -- probe: engine ping/pong round trip (never touches Python)

    async def probe(self, name: str) -> None:
        """Runs ``soak.py --probe-child PORT`` (its own process, so that the soak's own load does not
        show up as server latency) and collects its round trips."""
        inst = self.inst(name)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "--probe-child", str(inst.port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self.probe_procs.append(proc)
        try:
            while not self.stopping:
                line = await proc.stdout.readline()
                if not line:
                    if not self.stopping:
                        self.violation("probe process ended", instance=name)
                    return
                kind, _, value = line.decode().strip().partition(" ")
                if kind == "rtt":
                    rtt = float(value)
                    self.rtts[name].append(rtt)
                    self.rtt_interval_max[name] = max(self.rtt_interval_max[name], rtt)
                    if rtt > self.args.max_rtt:
                        self.violation("probe round trip over the bound", instance=name, rtt_s=round(rtt, 3))
                elif kind == "lost":
                    await asyncio.sleep(0.3)  # the kill marks the instance down before the signal
                    if inst.up and not self.stopping and not self.in_window(self.now(), ("kill",)):
                        self.violation("probe connection lost while its instance was up", instance=name,
                                       error=value[:200])
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    # -- healthy subscribers: every offset checked, every gap recovered

    async def subscriber(self, idx: int, home: str) -> None:
        pos: Dict[str, Tuple[str, int]] = {}  # topic -> (epoch, last offset processed)
        topics = TOPICS + (["bulk"] if idx % 5 == 0 else [])
        sub_id = 0
        while not self.stopping:
            inst = self.pick(home)
            if inst is None:
                await asyncio.sleep(0.2)
                continue
            gen = inst.generation
            lost_at = None
            try:
                ws, ready = await self.connect(inst, f"sub-{idx}")
            except Exception:
                self.count("subscriber_connect_failures")
                await asyncio.sleep(0.3)
                continue
            self.count("subscriber_connects")
            conn = ready["conn"]
            pending: Dict[Any, Dict[str, Any]] = {}  # request id -> {"topics", "t", "kind"}
            waiting: Dict[str, Any] = {}  # topic -> request id whose reply is awaited
            unsub_wait: Dict[Any, str] = {}  # unsubscribe id -> topic

            async def subscribe(ts: List[str]) -> None:
                nonlocal sub_id
                sub_id += 1
                msg: Dict[str, Any] = {"type": "subscribe", "topics": ts, "id": sub_id}
                rec = {t: {"epoch": pos[t][0], "offset": pos[t][1]} for t in ts if t in pos}
                if rec:
                    msg["recover"] = rec
                pending[sub_id] = {"topics": ts, "t": self.now()}
                for t in ts:
                    waiting[t] = sub_id
                await ws.send(json.dumps(msg))

            async def resubscribe(t: str, why: str) -> None:
                nonlocal sub_id
                sub_id += 1
                unsub_wait[sub_id] = t
                waiting[t] = ("unsub", sub_id)
                await ws.send(json.dumps({"type": "unsubscribe", "topics": [t], "id": sub_id}))

            retries: set = set()
            moving = False

            async def go_home() -> None:
                # after a failover, come back to the home instance once it is up again (a clean close,
                # then a reconnection that recovers every topic): the next kill finds subscribers there
                nonlocal moving
                await asyncio.sleep(random.uniform(15, 30))
                while not self.stopping:
                    if self.inst(home).up:
                        moving = True
                        self.count("subscriber_went_home")
                        await ws.close()
                        return
                    await asyncio.sleep(1.0)

            if inst.name != home:
                home_task = asyncio.create_task(go_home())
                retries.add(home_task)
                home_task.add_done_callback(retries.discard)

            async def retry(t: str) -> None:
                await asyncio.sleep(0.5)
                await resubscribe(t, "retry")

            try:
                await subscribe(topics)
                while not self.stopping:
                    raw = await ws.recv()
                    if isinstance(raw, bytes):
                        self.violation("unexpected binary frame", conn=conn)
                        continue
                    m = json.loads(raw)
                    typ = m.get("type")
                    if typ == "message":
                        t = m["topic"]
                        off = m["offset"]
                        if t in waiting:
                            self.count("ignored_before_reply")
                            continue
                        if off == 0:
                            self.count("local_only_deliveries")
                            if not self.in_window(self.now(), ("redis",)):
                                self.violation("offset 0 (local only) outside a Redis fault", topic=t, conn=conn)
                            continue
                        epoch, last = pos[t]
                        if off == last + 1:
                            pos[t] = (epoch, off)
                            self.count("deliveries")
                            self.deliveries_interval += 1
                            continue
                        # a gap, a step back or a duplicate: ask the engine with `recover`
                        now = self.now()
                        if off > last + 1:
                            self.count("healthy_gaps")
                            self.count("healthy_gap_offsets", off - last - 1)
                            self.healthy_gap_records.append({"t": now, "conn": conn, "gen": gen, "inst": inst.name,
                                                             "topic": t, "missing": off - last - 1,
                                                             "in_window": self.in_window(now)})
                        else:
                            self.count("healthy_steps_back")
                            self.healthy_gap_records.append({"t": now, "conn": conn, "gen": gen, "inst": inst.name,
                                                             "topic": t, "back": True, "last": last, "got": off,
                                                             "in_window": self.in_window(now)})
                        await resubscribe(t, "gap" if off > last else "back")
                    elif typ == "unsubscribed":
                        t = unsub_wait.pop(m.get("id"), None)
                        if t is not None:
                            await subscribe([t])
                    elif typ == "subscribed":
                        req = pending.pop(m.get("id"), None)
                        if req is None:
                            continue
                        positions = m.get("positions") or {}
                        recovered = m.get("recovered") or {}
                        errors = m.get("recovery_errors") or {}
                        now = self.now()
                        for t in req["topics"]:
                            if waiting.get(t) == m.get("id"):
                                del waiting[t]
                            p = positions.get(t)
                            if p is None:
                                # Redis did not answer the position (documented: an outage); ask again
                                reason = errors.get(t, "no position")
                                self.count("positions_unavailable")
                                if not self.in_window(now, ("redis",)):
                                    self.violation("subscribed reply without a position outside a Redis fault",
                                                   topic=t, reason=reason)
                                waiting[t] = ("retry",)
                                retry_task = asyncio.create_task(retry(t))
                                retries.add(retry_task)
                                retry_task.add_done_callback(retries.discard)
                                continue
                            if t in pos:
                                epoch, last = pos[t]
                                if recovered.get(t) is True:
                                    self.count("recovered_true")
                                    if p["epoch"] != epoch:
                                        self.violation("recovered true with another epoch", topic=t)
                                    # the step back that made us ask: same epoch, so it was a duplicate
                                    back = [r for r in self.healthy_gap_records[-20:]
                                            if r.get("back") and r["conn"] == conn and r["topic"] == t
                                            and r["gen"] == gen and not r.get("resolved")]
                                    for r in back:
                                        r["resolved"] = True
                                        self.violation("duplicate or out-of-order offset within one epoch",
                                                       topic=t, last=r["last"], got=r["got"], conn=conn)
                                else:
                                    reason = errors.get(t, "")
                                    self.count("resyncs")
                                    rec = {"t": now, "topic": t, "reason": reason, "inst": inst.name,
                                           "in_redis_window": self.in_window(now, ("redis",))}
                                    self.resyncs.append(rec)
                                    # documented: Redis restarted without its data (or did not answer);
                                    # without Redis, the history lives in memory and a killed server
                                    # comes back with a new epoch
                                    documented = ((reason.startswith("epoch changed") or reason.startswith("redis unavailable"))
                                                  and rec["in_redis_window"]) or \
                                        (not self.args.cluster and reason.startswith("epoch changed")
                                         and self.in_window(now, ("kill",)))
                                    if not documented:
                                        self.violation("recovery refused outside a documented case", **rec)
                                    for r in self.healthy_gap_records[-20:]:
                                        if r["conn"] == conn and r["topic"] == t and r["gen"] == gen:
                                            r["resolved"] = True
                                    pos[t] = (p["epoch"], p["offset"])
                            else:
                                pos[t] = (p["epoch"], p["offset"])
                        if lost_at is None and self.pending_kill_recovery and req.get("after_kill"):
                            pass
                        self.note_recovered(idx, now)
                    elif typ == "error":
                        self.violation("error reply to a subscriber", msg=m)
                    elif typ == "pong":
                        pass
            except ConnectionClosed as exc:
                if moving:
                    pass
                elif not inst.up or inst.generation != gen or self.stopping:
                    self.count("subscriber_lost_with_instance")
                    self.note_lost(idx)
                else:
                    self.violation("subscriber connection closed while its instance was up",
                                   instance=inst.name, code=getattr(exc.rcvd, "code", None), conn=conn)
            except OSError as exc:
                if inst.up and not self.stopping:
                    self.violation("subscriber socket error", error=repr(exc)[:200])
            finally:
                for rt in list(retries):
                    rt.cancel()
                await ws.close()

    def note_lost(self, idx: int) -> None:
        rec = self.pending_kill_recovery
        if rec is not None:
            rec["lost"].add(idx)

    def note_recovered(self, idx: int, now: float) -> None:
        rec = self.pending_kill_recovery
        if rec is not None and idx in rec["lost"]:
            rec["lost"].discard(idx)
            rec["recovered"] += 1
            rec["last_recovered"] = now

    # -- slow readers and silent clients (the bulk topic, priority low)

    async def slow_reader(self, idx: int) -> None:
        while not self.stopping:
            inst = self.pick("a" if idx % 2 == 0 else "b")
            if inst is None:
                await asyncio.sleep(0.3)
                continue
            gen = inst.generation
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", inst.port))
                ws, ready = await self.connect(inst, f"slow-{idx}", sock=sock, max_queue=2,
                                               compression=None)
            except Exception:
                sock.close()
                await asyncio.sleep(0.3)
                continue
            conn = ready["conn"]
            rec = {"inst": inst.name, "gen": gen, "conn": conn, "gaps": 0, "gap_offsets": 0,
                   "gap_offsets_outside": 0, "received": 0, "backs": 0, "closed_code": None}
            self.slow_records.append(rec)
            self.count("slow_connects")
            last = None
            try:
                await ws.send(json.dumps({"type": "subscribe", "topics": ["bulk"], "id": 1}))
                end = time.monotonic() + random.uniform(30, 60)
                while not self.stopping and time.monotonic() < end:
                    raw = await ws.recv()
                    m = json.loads(raw)
                    if m.get("type") == "subscribed":
                        p = (m.get("positions") or {}).get("bulk")
                        if p is None:  # Redis did not answer the position (an outage): ask again
                            if not self.in_window(self.now(), ("redis",)):
                                self.violation("slow reader: no position outside a Redis fault", reply=m)
                            await asyncio.sleep(0.5)
                            await ws.send(json.dumps({"type": "subscribe", "topics": ["bulk"], "id": 1}))
                            continue
                        if last is None:
                            last = p["offset"]
                        continue
                    if m.get("type") != "message" or last is None or m["offset"] == 0:
                        continue
                    off = m["offset"]
                    rec["received"] += 1
                    if off <= last:
                        rec["backs"] += 1
                        if not self.in_window(self.now(), ("redis",)):
                            self.violation("slow reader: offset went back outside a Redis fault",
                                           last=last, got=off, conn=conn)
                    elif off > last + 1:
                        rec["gaps"] += 1
                        rec["gap_offsets"] += off - last - 1
                        if not self.in_window(self.now()):
                            rec["gap_offsets_outside"] += off - last - 1
                    last = off
                    await asyncio.sleep(0.05)  # ~20 messages/s of 16 KB: half the rate bulk is published at
                await ws.close()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                rec["closed_code"] = code
                if code == 1008:
                    self.count("slow_closed_1008")
                    self.inst_count(inst, "slow_closed")
                elif code is None and inst.up and inst.generation == gen:
                    # closed without a close frame: the slow-consumer close could not queue one behind
                    # the full send queue; the server's slow_consumer_closes must count it (checked at the end)
                    self.count("slow_closed_abrupt")
                    self.inst_count(inst, "slow_closed")
                elif inst.up and inst.generation == gen and not self.stopping:
                    self.violation("slow reader closed unexpectedly", code=code, conn=conn)
            except (OSError, asyncio.TimeoutError) as exc:
                if inst.up and not self.stopping:
                    self.violation("slow reader socket error", error=repr(exc)[:200])
            finally:
                await ws.close()

    async def raw_upgrade(self, inst: Instance, sub: Optional[str], rcvbuf: Optional[int] = None,
                          tok: Optional[str] = None):
        """A WebSocket upgrade on a raw socket: (reader, writer, status, leftover bytes)."""
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", inst.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        key = base64.b64encode(os.urandom(16)).decode()
        tok = tok if tok is not None else (token(sub) if sub else "")
        req = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{inst.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               + (f"Authorization: Bearer {tok}\r\n" if tok else "") + "\r\n")
        writer.write(req.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split(b" ", 2)[1])
        return reader, writer, status

    @staticmethod
    def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = True,
              length: Optional[int] = None) -> bytes:
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        if n < 126:
            head = bytes([b0, (0x80 if mask else 0) | n])
        elif n < 65536:
            head = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack("!H", n)
        else:
            head = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack("!Q", n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    @staticmethod
    async def read_frame(reader: asyncio.StreamReader, timeout: float) -> bytes:
        """One unmasked server frame's payload (a text frame such as ready)."""
        h = await asyncio.wait_for(reader.readexactly(2), timeout)
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await reader.readexactly(8))[0]
        return await asyncio.wait_for(reader.readexactly(n), timeout)

    @staticmethod
    async def read_close(reader: asyncio.StreamReader, timeout: float) -> Optional[int]:
        """Read server frames until a close frame: its code (None if the socket ended without one)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            try:
                h = await asyncio.wait_for(reader.readexactly(2), left)
            except asyncio.IncompleteReadError:
                return None
            except ConnectionResetError:
                return None
            op = h[0] & 0x0F
            n = h[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(n)
            if op == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    async def silent_client(self) -> None:
        """Upgrade, subscribe to bulk, never read again (nor answer pings): the server must close it
        (idle timeout, or slow consumer) within a bound, and count it."""
        inst = self.pick()
        if inst is None:
            return
        gen = inst.generation
        try:
            reader, writer, status = await self.raw_upgrade(inst, "silent", rcvbuf=2048)
        except Exception:
            return
        try:
            if status != 101:
                self.violation("silent client: upgrade refused", status=status)
                return
            ready = json.loads(await self.read_frame(reader, 10))
            conn = int(ready["conn"])
            writer.transport.pause_reading()  # from now on nothing is read: the kernel buffer fills
            self.count("silent_clients")
            writer.write(self.frame(1, json.dumps({"type": "subscribe", "topics": ["bulk"], "id": 1}).encode()))
            t1 = time.monotonic()
            # idle_timeout 6 s (no pong ever comes) + a ping period 2 s + close_timeout 5 s + margin; the
            # client cannot see it (the server's FIN waits behind the data we never read): ask the app
            bound = 6 + 2 + 5 + 3
            closed = False
            while time.monotonic() - t1 < bound + 10 and not self.stopping and inst.up and inst.generation == gen:
                await asyncio.sleep(0.5)
                try:
                    code = (await asyncio.to_thread(inst.command, {"cmd": "closed", "conn": conn}))["code"]
                except RuntimeError:
                    break
                if code is not None:
                    closed = True
                    self.silent_codes[str(code)] = self.silent_codes.get(str(code), 0) + 1
                    break
            took = time.monotonic() - t1
            if not inst.up or inst.generation != gen or self.stopping:
                return
            if not closed or took > bound:
                self.violation("silent client not closed by the server within the bound", took_s=round(took, 1),
                               bound_s=bound)
            else:
                self.count("silent_closed")
                self.inst_count(inst, "silent_closed")
                self.silent_close_times.append(took)
        finally:
            writer.transport.abort()

    # -- churn, floods, bad frames, tokens

    async def churn_one(self, k: int) -> None:
        inst = self.pick()
        if inst is None:
            return
        gen = inst.generation
        kind = k % 10
        if kind == 9:  # a bad token: 401 before the upgrade
            try:
                ws = await ws_connect(self.url(inst), additional_headers={"Authorization": "Bearer " + token("bad", secret="x" * 40)},
                                      open_timeout=10)
                await ws.close()
                self.violation("bad token accepted")
            except InvalidStatus as exc:
                if exc.response.status_code == 401:
                    self.count("churn_401")
                elif exc.response.status_code == 429:
                    self.count("churn_429")
                else:
                    self.violation("bad token: unexpected status", status=exc.response.status_code)
            except Exception:
                pass
            return
        try:
            ws, ready = await self.connect(inst, f"churn-{k % 50}", compression=("deflate" if k % 3 == 0 else None))
        except Exception:
            if inst.up and inst.generation == gen and not self.in_window(self.now(), ("kill",)):
                self.count("churn_connect_failures")
            return
        self.count("churn_connects")
        try:
            topic = random.choice(TOPICS)
            msg: Dict[str, Any] = {"type": "subscribe", "topics": [topic], "id": 1}
            if kind in (1, 2):
                msg["history"] = 20
            if kind == 3:
                msg["recover"] = {topic: {"epoch": "stale-epoch", "offset": 1}}
            await ws.send(json.dumps(msg))
            got = 0
            end = time.monotonic() + random.uniform(0.2, 2.0)
            while time.monotonic() < end:
                try:
                    m = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic())))
                except asyncio.TimeoutError:
                    break
                if m.get("type") == "subscribed" and kind == 3:
                    if (m.get("recovered") or {}).get(topic) is not False:
                        self.violation("recover from a stale epoch answered true", reply=m)
                if m.get("type") == "message":
                    got += 1
            if kind % 2 == 0:
                await ws.close()
                self.count("churn_closes")
            else:
                ws.transport.abort()  # vanish without a close frame
                self.count("churn_aborts")
        except ConnectionClosed:
            if inst.up and inst.generation == gen and not self.stopping:
                self.violation("churn client closed by the server")
        except OSError:
            pass

    async def churn(self) -> None:
        k = 0
        running: set = set()
        while not self.stopping:
            k += 1
            t = asyncio.create_task(self.churn_one(k))
            running.add(t)
            t.add_done_callback(running.discard)
            await asyncio.sleep(1.0 / self.args.churn_rate)
        for t in list(running):
            t.cancel()

    async def flood(self) -> None:
        inst = self.pick()
        if inst is None:
            return
        gen = inst.generation
        try:
            ws, _ = await self.connect(inst, "flooder")
        except Exception:
            return
        self.count("floods")
        code = None
        try:
            for i in range(2000):
                await ws.send(f"flood:{i}")
            code = await asyncio.wait_for(self._wait_close(ws), 15)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
        except asyncio.TimeoutError:
            code = "timeout"
        finally:
            await ws.close()
        if inst.up and inst.generation == gen and not self.stopping:
            if code == 1008:
                self.count("flood_closed_1008")
                self.inst_count(inst, "flood_closed_1008")
            else:
                self.violation("flood not closed with 1008", code=code)

    @staticmethod
    async def _wait_close(ws) -> Optional[int]:
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def bad_frames(self, k: int) -> None:
        inst = self.pick()
        if inst is None:
            return
        gen = inst.generation
        cases = [
            ("oversized", self.frame(2, b"", length=1 << 20), 1009),
            ("oversized-message", self.frame(2, b"z" * 70000), 1009),
            ("reserved-opcode", self.frame(0xB, b"hi"), 1002),
            ("unmasked", self.frame(1, b"hello", mask=False), 1002),
            ("rsv-bits", self.frame(1, b"hello", rsv=2), 1002),
            ("invalid-utf8", self.frame(1, b"ok \xff\xfe"), 1007),
            ("continuation-first", self.frame(0, b"x"), 1002),
        ]
        name, data, want = cases[k % len(cases)]
        try:
            reader, writer, status = await self.raw_upgrade(inst, "badframes")
        except Exception:
            return
        try:
            if status != 101:
                if inst.up and inst.generation == gen:
                    self.violation("bad frames: upgrade refused", status=status)
                return
            writer.write(data)
            await writer.drain()
            code = await self.read_close(reader, 10)
        except (asyncio.TimeoutError, OSError) as exc:
            code = f"no close ({type(exc).__name__})"
        finally:
            writer.transport.abort()
        if not inst.up or inst.generation != gen or self.stopping:
            return
        if code == want:
            self.count(f"bad_frame_{want}")
            self.inst_count(inst, "bad_frames")
        elif name == "oversized-message" and (code is None or (isinstance(code, str) and "ConnectionReset" in code)):
            # the server closed (1009) before reading the rest of the frame: the kernel answers the
            # unread bytes with a reset, which may discard the close frame on our side
            self.count("bad_frame_1009_reset")
            self.inst_count(inst, "bad_frames")
        else:
            self.violation("bad frame: unexpected close", case=name, want=want, got=code)

    async def token_pair(self) -> None:
        inst = self.pick()
        if inst is None:
            return
        gen = inst.generation
        try:
            ws_exp, r1 = await self.connect(inst, "tok-expiring", exp_in=3)
        except Exception:
            return
        try:
            ws_ref, r2 = await self.connect(inst, "tok-refreshing", exp_in=3)
        except Exception:
            await ws_exp.close()
            return
        t_exp = r1.get("exp")
        if not isinstance(t_exp, int):
            self.violation("ready without exp for a token with exp", ready=r1)
        try:
            await asyncio.sleep(1.0)
            await ws_ref.send(json.dumps({"type": "refresh", "token": token("tok-refreshing", 60), "id": 7}))
            m = json.loads(await asyncio.wait_for(ws_ref.recv(), 10))
            if m.get("type") != "refreshed":
                self.violation("refresh not answered with refreshed", reply=m)
            code = await asyncio.wait_for(self._wait_close(ws_exp), 3 + LEEWAY + 8)
            expired_at = time.time()
            if code != 4001:
                if inst.up and inst.generation == gen:
                    self.violation("expired token not closed with 4001", code=code)
            else:
                self.count("token_expired_4001")
                self.inst_count(inst, "token_expired_4001")
                if t_exp and expired_at > t_exp + LEEWAY + 3:
                    self.violation("expired token closed late", late_s=round(expired_at - t_exp - LEEWAY, 1))
            # the refreshed one must still be open past the old expiry
            await asyncio.sleep(1.0)
            await ws_ref.send(json.dumps({"type": "ping", "id": 8}))
            m = json.loads(await asyncio.wait_for(ws_ref.recv(), 10))
            if m.get("type") == "pong":
                self.count("token_refreshed_alive")
        except ConnectionClosed as exc:
            if inst.up and inst.generation == gen and not self.stopping:
                self.violation("refreshed connection closed", code=exc.rcvd.code if exc.rcvd else None)
        except asyncio.TimeoutError:
            if inst.up and inst.generation == gen and not self.stopping:
                self.violation("token pair: timeout")
        finally:
            await ws_exp.close()
            await ws_ref.close()

    # -- echo through Python (inbound queue order and loss)

    async def echo(self, name: str) -> None:
        while not self.stopping:
            inst = self.inst(name)
            if not inst.up:
                await asyncio.sleep(0.2)
                continue
            gen = inst.generation
            try:
                ws, ready = await self.connect(inst, f"echo-{name}")
            except Exception:
                await asyncio.sleep(0.2)
                continue
            sent: Dict[int, float] = {}
            nxt = 0
            expect = 0

            async def reader():
                nonlocal expect
                while True:
                    raw = await ws.recv()
                    if not isinstance(raw, str) or not raw.startswith("echo:"):
                        continue
                    k = int(raw.split(":")[2])
                    if k != expect:
                        self.violation("echo out of order or lost", instance=name, expected=expect, got=k)
                        expect = k
                    lat = time.monotonic() - sent.pop(k, time.monotonic())
                    self.echo_lat_max = max(self.echo_lat_max, lat)
                    expect += 1
                    self.count("echoes")

            rt = asyncio.create_task(reader())
            try:
                while not self.stopping and not rt.done():
                    sent[nxt] = time.monotonic()
                    await ws.send(f"echo:{ready['conn']}:{nxt}")
                    nxt += 1
                    await asyncio.sleep(0.05)
                if rt.done():
                    rt.result()
                # let the last echoes come back
                t1 = time.monotonic()
                while sent and time.monotonic() - t1 < 10 and not rt.done():
                    await asyncio.sleep(0.05)
                if sent and inst.up and inst.generation == gen:
                    self.violation("echoes missing at the end", instance=name, missing=len(sent))
            except ConnectionClosed as exc:
                if inst.up and inst.generation == gen and not self.stopping:
                    self.violation("echo connection closed while its instance was up", instance=name,
                                   code=exc.rcvd.code if exc.rcvd else None)
                else:
                    self.count("echo_lost_with_instance", len(sent))
            finally:
                rt.cancel()
                await ws.close()

    # -- periodic abuse scheduler

    async def abuse(self) -> None:
        k = 0
        while not self.stopping:
            k += 1
            if k % 3 == 0:
                self.spawn(self.bad_frames(k // 3))
            if k % 8 == 0:
                self.spawn(self.silent_client())
            if k % 10 == 5:
                self.spawn(self.flood())
            if k % 12 == 2:
                self.spawn(self.token_pair())
            await asyncio.sleep(1.0)

    def spawn(self, coro) -> None:
        t = asyncio.create_task(coro)
        self.tasks.append(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task) -> None:
        if t in self.tasks:
            self.tasks.remove(t)
        if not t.cancelled() and t.exception() is not None and not self.stopping:
            exc = t.exception()
            self.violation("soak task failed", error=f"{type(exc).__name__}: {exc}"[:300])

    # -- faults

    async def fault_loop(self) -> None:
        a = self.args
        kinds = []
        if a.cluster:
            kinds = ["redis", "kill", "stall"]
        else:
            kinds = ["kill", "stall"]
        if a.faults:
            kinds = [k for k in kinds if k in a.faults.split(",")]
        i = 0
        next_at = a.first_fault
        while not self.stopping and kinds:
            if self.now() < next_at:
                await asyncio.sleep(0.2)
                continue
            if self.now() > a.duration - a.fault_tail:
                break
            kind = kinds[i % len(kinds)]
            i += 1
            try:
                if kind == "redis":
                    await self.fault_redis()
                elif kind == "kill":
                    await self.fault_kill()
                else:
                    await self.fault_stall()
            except Exception as exc:
                self.violation("fault injection failed", kind=kind, error=repr(exc)[:300])
            next_at += a.fault_every

    async def wait_redis_connected(self, timeout: float) -> Optional[float]:
        t1 = time.monotonic()
        while time.monotonic() - t1 < timeout:
            ok = True
            for inst in self.instances:
                s = await asyncio.to_thread(inst.stats)
                if not s or not s["stats"].get("redis_connected"):
                    ok = False
            if ok:
                return time.monotonic() - t1
            await asyncio.sleep(0.1)
        return None

    async def fault_redis(self) -> None:
        assert self.redis is not None
        start = self.fault_begin("redis")
        self.log("fault: redis-server SIGKILL")
        await asyncio.to_thread(self.redis.kill)
        await asyncio.sleep(self.args.redis_down)
        await asyncio.to_thread(self.redis.restart)
        t_up = self.now()
        back = await self.wait_redis_connected(30)
        if back is None:
            self.violation("instances did not reconnect to Redis within 30 s")
        self.fault_end("redis", grace=8.0)
        f = {"kind": "redis", "t": round(start, 1), "down_s": round(t_up - start, 2),
             "reconnected_s": None if back is None else round(back, 2), "probe_max_ms": self.probe_during()}
        self.faults.append(f)
        self.log(f"fault: redis back, instances reconnected {f['reconnected_s']} s after the restart")

    async def fault_kill(self) -> None:
        victim = self.inst("b") if self.args.cluster else self.inst("a")
        start = self.fault_begin("kill")
        self.pending_kill_recovery = {"lost": set(), "recovered": 0, "last_recovered": None}
        self.log(f"fault: instance {victim.name} SIGKILL")
        await asyncio.to_thread(victim.kill)
        await asyncio.sleep(self.args.kill_down)
        t_restart = time.monotonic()
        await asyncio.to_thread(victim.start)
        restart_s = time.monotonic() - t_restart
        # every subscriber that lost its connection must have recovered (reply received)
        t1 = time.monotonic()
        rec = self.pending_kill_recovery
        while rec["lost"] and time.monotonic() - t1 < 30:
            await asyncio.sleep(0.1)
        if rec["lost"]:
            self.violation("subscribers not recovered 30 s after an instance kill", left=len(rec["lost"]))
        rec_s = None if rec["last_recovered"] is None else round(rec["last_recovered"] - start, 2)
        self.pending_kill_recovery = None
        self.fault_end("kill", grace=5.0)
        f = {"kind": "kill", "instance": victim.name, "t": round(start, 1), "restart_s": round(restart_s, 2),
             "subscribers_reconnected": rec["recovered"], "all_recovered_after_s": rec_s,
             "probe_max_ms": self.probe_during()}
        self.faults.append(f)
        self.log(f"fault: {victim.name} restarted; {rec['recovered']} subscribers recovered, last {rec_s} s after the kill")

    async def fault_stall(self) -> None:
        inst = self.inst("a")
        start = self.fault_begin("stall")
        secs = self.args.stall
        self.log(f"fault: drain loop of {inst.name} stalled {secs} s")
        await asyncio.to_thread(inst.command, {"cmd": "stall", "seconds": secs})
        peak = 0
        t_end = time.monotonic() + secs
        while time.monotonic() < t_end:
            s = await asyncio.to_thread(inst.stats)
            if s:
                peak = max(peak, s["pending"])
            await asyncio.sleep(0.25)
        # the drain loop catches up: the inbound queue empties
        t1 = time.monotonic()
        caught = None
        max_pending = 0
        while time.monotonic() - t1 < 30:
            s = await asyncio.to_thread(inst.stats)
            if s:
                max_pending = max(max_pending, s["pending"])
                if s["app"]["stalls"] >= 1 and s["pending"] < 50:
                    caught = time.monotonic() - t1
                    break
            await asyncio.sleep(0.1)
        if caught is None:
            self.violation("drain loop did not catch up within 30 s after a stall")
        self.fault_end("stall", grace=3.0)
        self.faults.append({"kind": "stall", "instance": inst.name, "t": round(start, 1), "seconds": secs,
                            "inbound_queue_peak": peak,
                            "caught_up_s": None if caught is None else round(caught, 2), "probe_max_ms": self.probe_during()})

    # -- sampling

    async def sampler(self) -> None:
        last_del: Dict[str, int] = {}
        while not self.stopping:
            t = self.now()
            row_base = {"t": round(t, 2), "client_deliveries_per_s": self.deliveries_interval}
            self.deliveries_interval = 0
            for inst in self.instances:
                row = dict(row_base)
                row["instance"] = inst.name
                row["generation"] = inst.generation
                row["up"] = inst.up
                if inst.up:
                    row["rss_kb"] = proc_rss_kb(inst.pid)
                    row["fds"] = proc_fds(inst.pid)
                    s = await asyncio.to_thread(inst.stats)
                    if s:
                        st = s["stats"]
                        row["connections"] = st.get("connections_active")
                        row["inbound_queue"] = s["pending"]
                        row["send_queue_bytes"] = st.get("send_queue_bytes")
                        d = st.get("deliveries", 0)
                        key = f"{inst.name}:{inst.generation}"
                        row["server_deliveries_per_s"] = d - last_del.get(key, d)
                        last_del[key] = d
                        row["redis_connected"] = st.get("redis_connected")
                row["probe_rtt_max_ms"] = round(self.rtt_interval_max.get(inst.name, 0.0) * 1000, 2)
                self.rtt_interval_max[inst.name] = 0.0
                self.series.append(row)
            if self.redis is not None and self.redis.running and self.redis.proc is not None:
                self.series.append({"t": round(t, 2), "instance": "redis", "rss_kb": proc_rss_kb(self.redis.proc.pid),
                                    "fds": proc_fds(self.redis.proc.pid), "up": True})
            await asyncio.sleep(max(0.1, self.args.sample - (self.now() - t)))

    async def progress(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.args.progress)
            if self.stopping:
                break
            rows = [r for r in self.series[-6:] if r.get("instance") in ("a", "b") and r.get("rss_kb")]
            desc = ", ".join(f"{r['instance']}: rss {r['rss_kb'] // 1024} MB fds {r['fds']} conns {r.get('connections')}"
                             for r in rows[-len(self.instances):])
            print(f"[{self.now():8.1f}s] deliveries {self.c.get('deliveries', 0)}, churn {self.c.get('churn_connects', 0)}, "
                  f"violations {len(self.violations)}; {desc}", flush=True)

    # -- run

    async def run(self) -> int:
        a = self.args
        await asyncio.to_thread(self.start_servers)
        await asyncio.sleep(1.0)
        # baseline fds and RSS before any client
        for inst in self.instances:
            self.baseline[inst.name] = {"fds": proc_fds(inst.pid) or 0, "rss_kb": proc_rss_kb(inst.pid) or 0}
        self.t0 = time.monotonic()
        long_lived = [self.sampler(), self.progress(), self.churn(), self.abuse(), self.fault_loop()]
        for inst in self.instances:
            long_lived += [self.probe(inst.name), self.echo(inst.name)]
        for i in range(a.subscribers):
            long_lived.append(self.subscriber(i, self.instances[i % len(self.instances)].name))
        for i in range(a.slow):
            long_lived.append(self.slow_reader(i))
        main = [asyncio.create_task(c) for c in long_lived]
        for t in main:
            t.add_done_callback(self._task_done)
        try:
            while self.now() < a.duration:
                await asyncio.sleep(0.5)
                if a.fail_fast and self.violations:
                    break
        finally:
            self.stopping = True
            self.log("stopping clients")
            for t in list(self.tasks):
                t.cancel()
            await asyncio.sleep(0.5)
            for t in main:
                t.cancel()
            await asyncio.gather(*main, *self.tasks, return_exceptions=True)
        return await self.finish()

    async def finish(self) -> int:
        a = self.args
        # every instance's fds come back to its baseline once the clients are gone
        await asyncio.sleep(1.0)
        fd_end: Dict[str, Any] = {}
        for inst in self.instances:
            if not inst.up:
                continue
            base = self.baseline[inst.name]["fds"]
            t1 = time.monotonic()
            fds = proc_fds(inst.pid) or 0
            conns = (await asyncio.to_thread(inst.stats) or {}).get("stats", {}).get("connections_active")
            while (fds > base + a.fd_slack or conns) and time.monotonic() - t1 < 20:
                await asyncio.sleep(0.5)
                fds = proc_fds(inst.pid) or 0
                conns = (await asyncio.to_thread(inst.stats) or {}).get("stats", {}).get("connections_active")
            fd_end[inst.name] = {"baseline": base, "end": fds, "connections_end": conns,
                                 "settled_s": round(time.monotonic() - t1, 1)}
            if fds > base + a.fd_slack:
                self.violation("fds did not return to the baseline", instance=inst.name, baseline=base, end=fds)
            if conns:
                self.violation("connections still open after every client left", instance=inst.name, connections=conns)
        # final stats per instance (for the accounting)
        finals = {}
        for inst in self.instances:
            s = await asyncio.to_thread(inst.stats)
            if s:
                finals[inst.name] = s
        # slow readers: every gap outside fault windows covered by the engine's drop report for that conn
        await asyncio.sleep(0)
        slow_gap_outside = 0
        slow_drops = 0
        slow_uncovered = []
        slow_unverifiable = 0
        for r in self.slow_records:
            inst = self.inst(r["inst"])
            if r["gen"] != inst.generation:  # the instance was SIGKILLed: its drop reports died with it
                slow_unverifiable += r["gap_offsets_outside"]
                continue
            dropped = inst.dropped_by_conn.get((r["gen"], str(r["conn"])), 0)
            slow_drops += dropped
            slow_gap_outside += r["gap_offsets_outside"]
            if r["gap_offsets_outside"] > dropped:
                slow_uncovered.append({**r, "dropped_reported": dropped})
        for r in slow_uncovered:
            self.violation("slow reader gap not covered by the engine's drop count", **r)
        # healthy subscribers' gaps outside fault windows must be covered by drops for that conn
        healthy_outside = [r for r in self.healthy_gap_records if not r["in_window"] and not r.get("back")]
        healthy_outside = [r for r in healthy_outside if r["gen"] == self.inst(r["inst"]).generation]
        for r in healthy_outside:
            dropped = self.inst(r["inst"]).dropped_by_conn.get((r["gen"], str(r["conn"])), 0)
            if r["missing"] > dropped:
                self.violation("healthy subscriber gap outside a fault, not covered by drops", **r,
                               dropped_reported=dropped)
        # the abuse cases happened and the counters moved
        tot = lambda key: sum(int(s["stats"].get(key, 0) or 0) for s in finals.values())  # noqa: E731
        expect_pos = {"churn_connects": "connection churn", "deliveries": "deliveries",
                      "flood_closed_1008": "floods closed with 1008", "bad_frame_1009": "oversized frames closed with 1009",
                      "bad_frame_1002": "malformed frames closed with 1002", "bad_frame_1007": "invalid UTF-8 closed with 1007",
                      "token_expired_4001": "expired tokens closed with 4001", "token_refreshed_alive": "refreshed tokens kept open",
                      "silent_closed": "silent clients closed", "churn_401": "bad tokens refused with 401",
                      "slow_connects": "slow readers"}
        for key, what in expect_pos.items():
            if not self.c.get(key):
                self.violation(f"never exercised: {what}", counter=key)
        # the server's counters account for what the clients saw (instances not restarted since)
        for inst in self.instances:
            s = finals.get(inst.name)
            seen = self.per_inst.get((inst.name, inst.generation), {})
            if not s:
                continue
            st = s["stats"]
            checks = [("rate_limit_closes", seen.get("flood_closed_1008", 0)),
                      ("protocol_errors", seen.get("bad_frames", 0)),
                      ("idle_timeouts+slow_consumer_closes", seen.get("silent_closed", 0) + seen.get("slow_closed", 0))]
            for key, want in checks:
                have = sum(int(st.get(k, 0) or 0) for k in key.split("+"))
                if have < want:
                    self.violation("server counter below what the clients saw", instance=inst.name, counter=key,
                                   counter_value=have, clients_saw=want)
            if seen.get("flood_closed_1008") and not st.get("rate_limited"):
                self.violation("rate_limited counter did not move", instance=inst.name)
        # slopes over the second half of instance a's run (never killed)
        plateau = {}
        for name in [i.name for i in self.instances] + (["redis"] if self.redis else []):
            rows = [r for r in self.series if r.get("instance") == name and r.get("rss_kb")]
            if name != "redis":  # a killed instance: its last generation only
                g = max((r.get("generation", 0) for r in rows), default=0)
                rows = [r for r in rows if r.get("generation") == g]
            if len(rows) < 4:
                continue
            half = rows[len(rows) // 2:]
            ts = [r["t"] for r in half]
            plateau[name] = {
                "rss_kb_per_min": round(slope_per_min(ts, [r["rss_kb"] for r in half]), 1),
                "fds_per_min": round(slope_per_min(ts, [r["fds"] for r in half]), 3),
                "rss_mb_first": round(rows[0]["rss_kb"] / 1024, 1),
                "rss_mb_max": round(max(r["rss_kb"] for r in rows) / 1024, 1),
                "rss_mb_last": round(rows[-1]["rss_kb"] / 1024, 1),
                "fds_min": min(r["fds"] for r in rows), "fds_max": max(r["fds"] for r in rows),
                "window_s": round(ts[-1] - ts[0], 1),
            }
        pa = plateau.get("a")
        if pa and self.now() < a.min_slope_duration:
            pa["bounds_checked"] = False  # too short for a slope to mean anything (histories still filling)
        elif pa:
            pa["bounds_checked"] = True
            if pa["rss_kb_per_min"] > a.max_rss_slope:
                self.violation("RSS slope over the bound", instance="a", slope_kb_min=pa["rss_kb_per_min"],
                               bound=a.max_rss_slope)
            if pa["fds_per_min"] > a.max_fd_slope:
                self.violation("fd slope over the bound", instance="a", slope_fds_min=pa["fds_per_min"],
                               bound=a.max_fd_slope)
        rtt = {}
        for name, vals in self.rtts.items():
            rtt[name] = {"samples": len(vals), "max_ms": round(max(vals, default=0) * 1000, 2),
                         "p99_ms": round(pct(vals, 99) * 1000, 2), "p50_ms": round(pct(vals, 50) * 1000, 2)}
        resync_reasons: Dict[str, int] = {}
        for r in self.resyncs:
            key = r["reason"].split(":")[0] if r["reason"] else "(none)"
            resync_reasons[key] = resync_reasons.get(key, 0) + 1
        summary = {
            "duration_s": round(self.now(), 1),
            "mode": "cluster" if a.cluster else "single",
            "config": {k: v for k, v in vars(a).items()},
            "violations": self.violations,
            "faults": self.faults,
            "clients": dict(sorted(self.c.items())),
            "accounting": {
                "healthy_gaps": self.c.get("healthy_gaps", 0),
                "healthy_gap_offsets": self.c.get("healthy_gap_offsets", 0),
                "healthy_gaps_in_fault_windows": sum(1 for r in self.healthy_gap_records if r["in_window"] and not r.get("back")),
                "healthy_steps_back": self.c.get("healthy_steps_back", 0),
                "recovered_true": self.c.get("recovered_true", 0),
                "resyncs": len(self.resyncs), "resync_reasons": resync_reasons,
                "local_only_deliveries": self.c.get("local_only_deliveries", 0),
                "slow_readers": len(self.slow_records),
                "slow_gap_offsets_outside_faults": slow_gap_outside,
                "slow_drops_reported": slow_drops,
                "slow_gap_offsets_on_killed_instances": slow_unverifiable,
                "echo_lost_with_killed_instance": self.c.get("echo_lost_with_instance", 0),
                "echo_latency_max_s": round(self.echo_lat_max, 3),
            },
            "silent_close_s": {"n": len(self.silent_close_times), "codes": self.silent_codes,
                               "max": round(max(self.silent_close_times, default=0), 2)},
            "slow_readers": self.slow_records,
            "probe_rtt": rtt,
            "plateau": plateau,
            "fds_end": fd_end,
            "baseline": self.baseline,
            "server_stats": {n: {"stats": s["stats"], "app": s["app"]} for n, s in finals.items()},
        }
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1, default=str)
        with open(os.path.join(a.out, "series.json"), "w") as f:
            json.dump(self.series, f)
        cols = ["t", "instance", "generation", "up", "rss_kb", "fds", "connections", "inbound_queue",
                "send_queue_bytes", "server_deliveries_per_s", "client_deliveries_per_s", "probe_rtt_max_ms",
                "redis_connected"]
        with open(os.path.join(a.out, "series.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in self.series:
                w.writerow(r)
        self.print_summary(summary)
        return 1 if self.violations else 0

    def print_summary(self, s: Dict[str, Any]) -> None:
        acc = s["accounting"]
        print("\n==== soak summary")
        print(f"mode {s['mode']}, {s['duration_s']} s; output in {self.args.out}")
        print(f"deliveries checked: {self.c.get('deliveries', 0)} (healthy subscribers), echoes {self.c.get('echoes', 0)}, "
              f"churn connections {self.c.get('churn_connects', 0)} ({self.c.get('churn_closes', 0)} closed, "
              f"{self.c.get('churn_aborts', 0)} aborted, {self.c.get('churn_401', 0)} bad tokens 401)")
        print(f"abuse: floods 1008 {self.c.get('flood_closed_1008', 0)}, frames 1009/1002/1007 "
              f"{self.c.get('bad_frame_1009', 0)}/{self.c.get('bad_frame_1002', 0)}/{self.c.get('bad_frame_1007', 0)}, "
              f"tokens expired 4001 {self.c.get('token_expired_4001', 0)}, refreshed alive {self.c.get('token_refreshed_alive', 0)}, "
              f"silent closed {self.c.get('silent_closed', 0)} (max {s['silent_close_s']['max']} s), slow readers "
              f"{acc['slow_readers']} (closed 1008: {self.c.get('slow_closed_1008', 0)})")
        print(f"losses: healthy gaps {acc['healthy_gaps']} ({acc['healthy_gap_offsets']} offsets; "
              f"{acc['healthy_gaps_in_fault_windows']} in fault windows), recovered {acc['recovered_true']}, "
              f"resyncs {acc['resyncs']} {acc['resync_reasons']}, local-only {acc['local_only_deliveries']}, "
              f"slow-reader gaps outside faults {acc['slow_gap_offsets_outside_faults']} <= drops reported "
              f"{acc['slow_drops_reported']}, echoes lost with a killed instance {acc['echo_lost_with_killed_instance']} "
              f"(echo round trip through Python: max {acc['echo_latency_max_s']} s)")
        for f in s["faults"]:
            print(f"fault: {f}")
        for name, r in s["probe_rtt"].items():
            print(f"probe {name}: {r['samples']} pings, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms "
                  f"(bound {self.args.max_rtt * 1000:.0f} ms)")
        for name, p in s["plateau"].items():
            bounds = ""
            if name == "a":
                bounds = (f"; bounds {self.args.max_rss_slope:g} KB/min, {self.args.max_fd_slope:g} fds/min"
                          if p.get("bounds_checked") else
                          f"; bounds not checked (run shorter than {self.args.min_slope_duration:g} s)")
            print(f"plateau {name}: RSS {p['rss_mb_first']} -> {p['rss_mb_last']} MB (max {p['rss_mb_max']}), slope "
                  f"{p['rss_kb_per_min']} KB/min, fds {p['fds_min']}-{p['fds_max']}, slope {p['fds_per_min']}/min "
                  f"(second half, {p['window_s']} s){bounds}")
        for name, f in s["fds_end"].items():
            print(f"fds {name}: baseline {f['baseline']}, after the clients left {f['end']}")
        if self.violations:
            print(f"FAILED: {len(self.violations)} violation(s); first: {self.violations[0]}")
        else:
            print("OK: no violation")

    def shutdown(self) -> None:
        for inst in self.instances:
            try:
                inst.stop()
            except Exception:
                inst.kill()
        if self.redis is not None:
            self.redis.stop()


def probe_child(port: int) -> int:
    """``soak.py --probe-child PORT``: an engine ``ping`` every 100 ms on its own connection, blocking
    I/O in its own process; prints ``rtt SECONDS`` per pong and ``lost REASON`` when the connection
    ends (then reconnects). Exits when stdin closes (the soak ended)."""
    from websockets.sync.client import connect as sync_connect

    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    seq = 0
    headers = {"Authorization": f"Bearer {token('probe', 86400)}"}
    while True:
        try:
            ws = sync_connect(f"ws://127.0.0.1:{port}/", additional_headers=headers, open_timeout=5, max_size=None,
                              compression=None)
        except Exception:
            time.sleep(0.2)
            continue
        with ws:
            try:
                ws.recv(10)  # ready
                while True:
                    seq += 1
                    t1 = time.perf_counter()
                    ws.send(json.dumps({"type": "ping", "id": seq}))
                    while True:
                        m = json.loads(ws.recv(30))
                        if m.get("type") == "pong" and m.get("id") == seq:
                            break
                    print(f"rtt {time.perf_counter() - t1:.6f}", flush=True)
                    time.sleep(0.1)
            except Exception as exc:
                print(f"lost {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        time.sleep(0.2)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--probe-child":
        return probe_child(int(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See docs/reliability.md (Soak) for what is asserted and the figures.")
    ap.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    ap.add_argument("--cluster", action="store_true", help="two instances and a real redis-server")
    ap.add_argument("--ci", action="store_true",
                    help="the CI preset: --cluster, 60 s, one fault of each kind (first at 8 s, every 16 s)")
    ap.add_argument("--fault-every", type=float, default=180, help="seconds between faults (default 180)")
    ap.add_argument("--first-fault", type=float, default=60, help="time of the first fault (default 60)")
    ap.add_argument("--fault-tail", type=float, default=15, help="no fault starts in the last N seconds")
    ap.add_argument("--faults", default="", help="comma-separated subset of redis,kill,stall (default all)")
    ap.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis stays down")
    ap.add_argument("--kill-down", type=float, default=2.0, help="seconds a killed instance stays down")
    ap.add_argument("--stall", type=float, default=5.0, help="seconds the drain loop stalls")
    ap.add_argument("--rate", type=float, default=50, help="publications/s per soak:* topic (4 topics)")
    ap.add_argument("--bulk-rate", type=float, default=40, help="publications/s on the low-priority bulk topic")
    ap.add_argument("--bulk-size", type=int, default=16384, help="bytes of padding per bulk publication")
    ap.add_argument("--subscribers", type=int, default=16, help="healthy subscribers")
    ap.add_argument("--slow", type=int, default=4, help="slow readers")
    ap.add_argument("--churn-rate", type=float, default=5, help="short-lived connections per second")
    ap.add_argument("--max-rtt", type=float, default=1.0, help="bound of the probe's ping round trip, s")
    ap.add_argument("--max-rss-slope", type=float, default=1024,
                    help="bound of instance a's RSS slope over the second half, KB/min")
    ap.add_argument("--max-fd-slope", type=float, default=2.0, help="bound of instance a's fd slope, fds/min")
    ap.add_argument("--min-slope-duration", type=float, default=600,
                    help="the slope bounds are checked only for runs at least this long, s (default 600: a "
                         "shorter run sees buffers and histories filling up; its slopes are reported)")
    ap.add_argument("--fd-slack", type=int, default=2, help="fds above the baseline allowed after the clients left")
    ap.add_argument("--sample", type=float, default=1.0, help="sampling period, s")
    ap.add_argument("--progress", type=float, default=30, help="progress line every N s")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "tmp", "soak"), help="output directory")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first violation")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    if args.ci:
        args.cluster = True
        args.duration = 60
        args.first_fault = 8
        args.fault_every = 16
        args.fault_tail = 10
        args.progress = 20
    random.seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    soak = Soak(args)
    try:
        return asyncio.run(soak.run())
    finally:
        soak.shutdown()


if __name__ == "__main__":
    sys.exit(main())
