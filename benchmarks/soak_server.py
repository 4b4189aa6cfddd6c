"""One Wavelane instance for benchmarks/soak.py: a real ``wavelane.Server`` drained in Python.

Started by the soak as ``python soak_server.py CONFIG_JSON NAME PUBLISH_JSON``. It prints one JSON
line ``{"port", "pid", "node"}`` once it listens, then answers JSON command lines on stdin with
one JSON line each on stdout:

* ``{"cmd": "stats"}`` — ``server.stats()`` plus the application's own counters (``app``) and the
  outbound drops the engine reported per connection (``dropped_by_conn``, from ``dropped`` events);
* ``{"cmd": "closed", "conn": c}`` — the close code of connection ``c`` if it ended (the last 4096
  disconnects are kept), else ``None``;
* ``{"cmd": "stall", "seconds": s}`` — the drain loop sleeps ``s`` seconds (a stalled Python app);
* ``{"cmd": "stop"}`` — stops the server and exits.

The application (main thread, ``drain()``): text ``echo:...`` is sent back to its sender (the
soak's echo client checks order and loss through the inbound queue), ``flood:...`` is counted,
``dropped`` events are summed per connection. A publisher thread publishes at a steady rate (the
drain loop stalling does not stop it): JSON ``{"n", "src"}`` on the ``soak:*`` topics (priority
normal) and a padded payload on ``bulk`` (priority low, what slow consumers lose). The process
exits when its stdin closes (the soak died).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import wavelane  # noqa: E402

_out_lock = threading.Lock()


def emit(obj) -> None:
    line = json.dumps(obj, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class App:
    def __init__(self, server: wavelane.Server, name: str, publish: dict):
        self.server = server
        self.name = name
        self.publish_cfg = publish
        self.stop = threading.Event()
        self.stall_until = 0.0
        self.lock = threading.Lock()
        self.counts = {"connect": 0, "disconnect": 0, "echo": 0, "flood": 0, "other_messages": 0,
                       "refresh": 0, "dropped_events": 0, "dropped": 0, "cluster_events": 0,
                       "undelivered_events": 0, "stalls": 0, "stalled_seconds": 0.0,
                       "published": 0, "publish_zero": 0, "publish_errors": 0, "publish_max_s": 0.0}
        self.close_codes = {}
        self.dropped_by_conn = {}
        self.recent_closes = collections.OrderedDict()  # conn -> close code, the last 4096

    # -- drain loop (main thread)
    def run(self) -> None:
        server = self.server
        c = self.counts
        while not self.stop.is_set():
            if self.stall_until:
                left = self.stall_until - time.monotonic()
                if left > 0:
                    time.sleep(left)
                with self.lock:
                    c["stalls"] += 1
                    c["stalled_seconds"] += max(0.0, left)
                self.stall_until = 0.0
            events = server.drain(1024, 0.05)
            if not events:
                continue
            with self.lock:
                for kind, conn, data in events:
                    if kind == "message":
                        if isinstance(data, str) and data.startswith("echo:"):
                            c["echo"] += 1
                            server.send(conn, data)
                        elif isinstance(data, str) and data.startswith("flood:"):
                            c["flood"] += 1
                        else:
                            c["other_messages"] += 1
                    elif kind == "connect":
                        c["connect"] += 1
                    elif kind == "disconnect":
                        c["disconnect"] += 1
                        self.close_codes[str(data)] = self.close_codes.get(str(data), 0) + 1
                        self.recent_closes[conn] = data
                        if len(self.recent_closes) > 4096:
                            self.recent_closes.popitem(last=False)
                    elif kind == "dropped":
                        n = int(data.get("count", 0)) if isinstance(data, dict) else 0
                        c["dropped_events"] += 1
                        c["dropped"] += n
                        self.dropped_by_conn[str(conn)] = self.dropped_by_conn.get(str(conn), 0) + n
                    elif kind == "refresh":
                        c["refresh"] += 1
                    elif kind == "cluster":
                        c["cluster_events"] += 1
                        if isinstance(data, dict) and data.get("undelivered"):
                            c["undelivered_events"] += int(data["undelivered"])

    # -- publisher thread
    def publisher(self) -> None:
        cfg = self.publish_cfg
        topics = list(cfg.get("topics", []))
        rate = float(cfg.get("rate", 0))  # publications/s per topic from this instance
        bulk_rate = float(cfg.get("bulk_rate", 0))
        bulk_size = int(cfg.get("bulk_size", 1024))
        if not topics and not bulk_rate:
            return
        pad = "x" * bulk_size
        server = self.server
        c = self.counts
        t0 = time.monotonic()
        n = 0
        nb = 0
        tick = 0.01
        while not self.stop.is_set():
            now = time.monotonic() - t0
            due = int(now * rate) if rate else 0
            due_b = int(now * bulk_rate) if bulk_rate else 0
            # catch up at most one second's worth after a pause (publish waited for Redis)
            if rate and due - n > rate:
                n = due - int(rate)
            if bulk_rate and due_b - nb > bulk_rate:
                nb = due_b - int(bulk_rate)
            while n < due or nb < due_b:
                try:
                    if n < due:
                        for topic in topics:
                            t1 = time.monotonic()
                            r = server.publish(topic, {"n": n, "src": self.name})
                            dt = time.monotonic() - t1
                            with self.lock:
                                c["published"] += 1
                                c["publish_max_s"] = max(c["publish_max_s"], dt)
                                if r == 0:
                                    c["publish_zero"] += 1
                        n += 1
                    if nb < due_b:
                        server.publish("bulk", {"n": nb, "src": self.name, "pad": pad}, priority="low")
                        with self.lock:
                            c["published"] += 1
                        nb += 1
                except Exception:  # a publish error is counted, never fatal
                    with self.lock:
                        c["publish_errors"] += 1
                    n = max(n, due)
                    nb = max(nb, due_b)
            self.stop.wait(tick)

    # -- commands (their own thread)
    def commands(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                cmd = msg.get("cmd")
                if cmd == "stats":
                    with self.lock:
                        app = dict(self.counts)
                        app["close_codes"] = dict(self.close_codes)
                        by_conn = dict(self.dropped_by_conn)
                    stats = self.server.stats()
                    emit({"ok": True, "stats": stats, "app": app, "dropped_by_conn": by_conn,
                          "pending": self.server.pending()})
                elif cmd == "closed":  # the close code of a connection that ended recently, or None
                    with self.lock:
                        code = self.recent_closes.get(int(msg["conn"]))
                    emit({"ok": True, "code": code})
                elif cmd == "stall":
                    self.stall_until = time.monotonic() + float(msg["seconds"])
                    self.server.wake()
                    emit({"ok": True})
                elif cmd == "stop":
                    break
                else:
                    emit({"ok": False, "error": f"unknown command {cmd!r}"})
            except Exception as exc:
                emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        self.stop.set()
        self.server.wake()


def main() -> int:
    config = json.loads(sys.argv[1])
    name = sys.argv[2]
    publish = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 65536), hard), hard))
    except (ValueError, OSError, ImportError):
        pass
    server = None
    for attempt in range(50):  # the port may still be held a moment after a SIGKILLed predecessor
        try:
            server = wavelane.Server(**config)
            server.start()
            break
        except OSError:
            server = None
            time.sleep(0.1)
    if server is None:
        emit({"fatal": f"could not listen on port {config.get('port')}"})
        return 2
    if config.get("redis_url"):
        server.wait_for_redis(5.0)
    app = App(server, name, publish)
    emit({"port": server.port, "pid": os.getpid(), "node": server.node_id})
    threading.Thread(target=app.commands, name="commands", daemon=True).start()
    threading.Thread(target=app.publisher, name="publisher", daemon=True).start()
    try:
        app.run()
    finally:
        server.stop(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
