"""One Wavelane instance driven over stdin/stdout, for the cluster tests and benchmarks.

    python cluster_node.py '<config json>' [--all-events]

Creates ``wavelane.Server(**config, port=0)``, starts it and prints one JSON line
``{"port": N, "node": <instance id or null>, "pid": P}`` (or ``{"fatal": "..."}`` and exit 2 when
the server cannot be created or started). Then:

* the main thread drains events; ``cluster`` events (every kind with ``--all-events``) are
  printed as ``{"event": kind, "conn": c, "data": d, "t": monotonic}``; connections are tracked
  by user (``connect`` events) for the user-addressed commands;
* a thread reads commands, one JSON line each: ``{"id": n, "cmd": "...", "args": {...}}``, and
  answers each with ``{"reply": n, "ok": true, "result": ...}`` or ``{"reply": n, "ok": false,
  "error": "..."}``. With ``"async": true`` the command runs in its own thread (its reply comes
  when it is done; other commands are answered meanwhile).

Commands: ``ping``; ``publish {topic, data, priority?, key?}``; ``publish_many {topic, count,
start=0, rate=0, size=0, label=null}`` (data ``{"i": start+k, "src": label}``, or a string of
``size`` bytes when size > 0; ``rate`` > 0 paces to that many per second); ``send {conn, data, node?}``;
``send_user {user, data}``; ``subscribe {conn|user, topics}``; ``conns`` ({user: [conn...]});
``presence {topic, timeout=2.0}``; ``set_presence_info {conn|user, info, wait=2.0}``; ``stats``;
``health`` ({"status": http status, "body": parsed JSON}); ``stop``.

Data given as ``{"$bytes": "<base64>"}`` is sent as bytes. The node stops when its stdin closes.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))

import wavelane  # noqa: E402

_out_lock = threading.Lock()


def _default(o):
    if isinstance(o, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(o)).decode()}
    return repr(o)


def emit(obj) -> None:
    line = json.dumps(obj, default=_default, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def from_wire(data):
    if isinstance(data, dict) and set(data) == {"$bytes"}:
        return base64.b64decode(data["$bytes"])
    return data


class NodeApp:
    def __init__(self, server: wavelane.Server, all_events: bool):
        self.server = server
        self.all_events = all_events
        self.users = {}  # user -> set of conns
        self.conn_user = {}
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.stop_reply = None

    # -- events (main thread)

    def run(self) -> None:
        server = self.server
        while not self.stopping.is_set():
            events = server.drain(1024, 0.05)
            if not events:
                continue
            now = time.monotonic()
            with self.cond:
                for kind, conn, data in events:
                    if kind == "connect":
                        user = data.get("user") if isinstance(data, dict) else None
                        self.conn_user[conn] = user
                        self.users.setdefault(user, set()).add(conn)
                    elif kind == "disconnect":
                        user = self.conn_user.pop(conn, None)
                        conns = self.users.get(user)
                        if conns is not None:
                            conns.discard(conn)
                            if not conns:
                                del self.users[user]
                self.cond.notify_all()
            for kind, conn, data in events:
                if self.all_events or kind == "cluster":
                    emit({"event": kind, "conn": conn, "data": data, "t": now})

    def conns_of(self, user, wait: float = 2.0):
        deadline = time.monotonic() + wait
        with self.cond:
            while not self.users.get(user):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LookupError(f"no connection of user {user!r}")
                self.cond.wait(left)
            return sorted(self.users[user])

    # -- commands (command thread, or their own thread when async)

    def read_commands(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                emit({"reply": None, "ok": False, "error": f"bad command line {line[:80]!r}"})
                continue
            if msg.get("cmd") == "stop":
                self.stop_reply = msg.get("id")
                self.stopping.set()
                self.server.wake()
                return
            if msg.get("async"):
                threading.Thread(target=self.execute, args=(msg,), daemon=True).start()
            else:
                self.execute(msg)
        # stdin closed: the test process is gone (or done with us)
        self.stopping.set()
        self.server.wake()

    def execute(self, msg) -> None:
        cid = msg.get("id")
        try:
            result = getattr(self, "cmd_" + str(msg.get("cmd")))(**(msg.get("args") or {}))
            emit({"reply": cid, "ok": True, "result": result})
        except Exception as exc:  # reported to the test, which decides
            emit({"reply": cid, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=3)})

    def cmd_ping(self):
        return "pong"

    def cmd_publish(self, topic, data, priority="normal", key=None):
        return self.server.publish(topic, from_wire(data), priority=priority, key=key)

    def cmd_publish_many(self, topic, count, start=0, rate=0, size=0, label=None):
        server = self.server
        payload = ("p" * size) if size else None
        t0 = time.perf_counter()
        nonzero = 0
        first = None
        batch = max(1, int(rate) // 100) if rate else 0
        for k in range(count):
            r = server.publish(topic, payload if payload is not None else {"i": start + k, "src": label})
            if first is None:
                first = r
            if r:
                nonzero += 1
            if batch and k % batch == batch - 1:
                ahead = (k + 1) / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        return {"count": count, "seconds": time.perf_counter() - t0, "first": first, "nonzero": nonzero,
                "t_end": time.monotonic()}

    def cmd_send(self, conn, data, node=None):
        return self.server.send(int(conn), from_wire(data), node=node)

    def cmd_send_user(self, user, data):
        return self.server.send_user(user, from_wire(data))

    def cmd_disconnect_user(self, user, code=4003, reason="disconnected"):
        return self.server.disconnect_user(user, code=code, reason=reason)

    def _targets(self, conn=None, user=None, wait=2.0):
        if conn is not None:
            return [int(conn)]
        return self.conns_of(user, wait)

    def cmd_subscribe(self, topics, conn=None, user=None):
        return [self.server.subscribe(c, topics) for c in self._targets(conn, user)]

    def cmd_conns(self):
        with self.cond:
            return {str(u): sorted(c) for u, c in self.users.items()}

    def cmd_presence(self, topic, timeout=2.0):
        return self.server.presence(topic, timeout=timeout)

    def cmd_set_presence_info(self, info, conn=None, user=None, wait=2.0):
        return [self.server.set_presence_info(c, info) for c in self._targets(conn, user, wait)]

    def cmd_stats(self):
        return self.server.stats()

    def cmd_health(self):
        c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        try:
            c.request("GET", "/health")
            r = c.getresponse()
            body = r.read()
        finally:
            c.close()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode(errors="replace")
        return {"status": r.status, "body": parsed}


def instance_id(server):
    """The instance id, wherever this engine version exposes it (None if nowhere)."""
    for attr in ("node_id", "instance_id", "node"):
        v = getattr(server, attr, None)
        if isinstance(v, str) and v:
            return v
    try:
        stats = server.stats()
        for key in ("node", "node_id", "instance_id", "instance"):
            if isinstance(stats.get(key), str):
                return stats[key]
    except Exception:
        pass
    try:
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        c.request("GET", "/health")
        body = json.loads(c.getresponse().read())
        c.close()
        for key in ("node", "node_id", "instance_id", "instance"):
            if isinstance(body.get(key), str):
                return body[key]
    except Exception:
        pass
    return None


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    all_events = "--all-events" in sys.argv[1:]
    config = json.loads(args[0]) if args else {}
    config["port"] = 0
    config.setdefault("client_topics", ["*"])  # the tests subscribe freely (deny by default otherwise)
    try:
        server = wavelane.Server(**config)
        server.start()
    except Exception as exc:
        emit({"fatal": f"{type(exc).__name__}: {exc}"})
        return 2
    app = NodeApp(server, all_events)
    emit({"port": server.port, "node": instance_id(server), "pid": os.getpid()})
    threading.Thread(target=app.read_commands, name="commands", daemon=True).start()
    try:
        app.run()
    finally:
        server.stop(0.5)
        if app.stop_reply is not None:
            emit({"reply": app.stop_reply, "ok": True, "result": "stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
