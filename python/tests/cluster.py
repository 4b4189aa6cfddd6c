"""Multi-process harness for cluster (Redis) tests and benchmarks.

* :class:`Resp` — a tiny RESP2 client on a raw socket (no dependency on the ``redis`` package):
  enough for PING, FLUSHALL, PUBSUB introspection and reading keys.
* :class:`RedisProcess` — a throw-away ``redis-server`` (Debian's ``/usr/bin/redis-server``) on a
  free loopback port, without persistence; ``kill()`` (SIGKILL) and ``restart()`` on the same port.
* :class:`Node` — one Wavelane instance in its own process (``cluster_node.py``), driven by JSON
  lines on stdin/stdout: ``node.call("publish", topic=..., data=...)``; the node's ``cluster``
  events (and, optionally, every event) are collected by a reader thread.
* pytest fixtures ``redis_server`` (a started Redis, always stopped) and ``make_node`` (a node
  factory; every node is stopped, or killed, at teardown). Import them into a test module.

Everything waits with a deadline; every process started here is ended at teardown and, as a last
resort, at interpreter exit. A node also exits by itself when its stdin closes (the test process
died).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

try:
    import pytest
except ImportError:  # used by the benchmarks too, which do not need pytest
    pytest = None  # type: ignore[assignment]

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_SCRIPT = os.path.join(HERE, "cluster_node.py")
REDIS_SERVER = os.environ.get("WAVELANE_REDIS_SERVER", "/usr/bin/redis-server")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        time.sleep(interval)


async def await_until(pred: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    """``wait_until`` for coroutines: ``pred`` is a plain (blocking, quick) function run in a thread."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(pred)
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------------------ RESP


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``)."""


class Resp:
    """A minimal blocking RESP2 client: ``Resp(port).command("PUBSUB", "NUMSUB", "ch")``.

    Bulk strings come back as ``str`` when they are UTF-8, else as ``bytes``; error replies raise
    :class:`RespError`. Not for subscriber mode.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 2.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Resp":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @staticmethod
    def encode(args: Sequence[Any]) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, (int, float)):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def command(self, *args: Any) -> Any:
        self.sock.sendall(self.encode(args))
        reply = self._read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            self._fill()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self.buf += chunk

    def _read(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data = bytes(self.buf[:n])
            del self.buf[: n + 2]
            try:
                return data.decode()
            except UnicodeDecodeError:
                return data
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            items = [self._read() for _ in range(n)]
            return items
        raise ConnectionError(f"unexpected RESP reply {line[:40]!r}")


# ------------------------------------------------------------------------------------ Redis


class RedisUnavailable(RuntimeError):
    """redis-server is not installed (the tests that need it are skipped)."""


_live_procs: "weakref.WeakSet[Any]" = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:  # last resort: a fixture's teardown did not run
    for p in list(_live_procs):
        try:
            p._hard_kill()
        except Exception:
            pass


class RedisProcess:
    """A disposable redis-server on 127.0.0.1 (no RDB, no AOF, its own temp dir).

    ``RedisProcess()`` picks a free port; ``RedisProcess(port=P)`` reserves nothing, so a node can
    be pointed at a Redis that does not run yet (``start()`` it later).
    """

    def __init__(self, port: Optional[int] = None, binary: str = REDIS_SERVER):
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise RedisUnavailable(f"{binary} not found (Debian: apt-get install redis-server)")
        self.binary = binary
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.dir = tempfile.mkdtemp(prefix="wavelane-redis-")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc: Optional[subprocess.Popen] = None
        self._conn: Optional[Resp] = None
        self.starts = 0
        _live_procs.add(self)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> "RedisProcess":
        if self.running:
            return self
        for attempt in range(5):
            self._spawn()
            try:
                self._wait_ready(timeout)
                self.starts += 1
                return self
            except _PortTaken:
                if self._fixed_port or attempt == 4:
                    raise RuntimeError(f"redis-server could not bind port {self.port}: {self.log_tail()}")
                self.port = free_port()
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self.dir,
                    "--daemonize", "no",
                    "--loglevel", "notice",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_tail()
                if "Address already in use" in tail or "Could not create server TCP" in tail:
                    raise _PortTaken()
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {tail}")
            if self.ping(0.2):
                return
            time.sleep(0.02)
        self._hard_kill()
        raise RuntimeError(f"redis-server did not answer PING within {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def ping(self, timeout: float = 1.0) -> bool:
        try:
            with Resp(self.port, timeout=timeout) as r:
                return r.command("PING") == "PONG"
        except (OSError, ConnectionError, RespError):
            return False

    def command(self, *args: Any) -> Any:
        """One command on a cached connection (reconnects once if it broke)."""
        for attempt in (0, 1):
            try:
                if self._conn is None:
                    self._conn = Resp(self.port)
                return self._conn.command(*args)
            except (OSError, ConnectionError):
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt:
                    raise

    def flushall(self) -> None:
        assert self.command("FLUSHALL") == "OK"

    # PUBSUB introspection (plain and sharded channels both counted)
    def channels(self, pattern: str = "*") -> List[str]:
        out = list(self.command("PUBSUB", "CHANNELS", pattern))
        try:
            out += self.command("PUBSUB", "SHARDCHANNELS", pattern)
        except RespError:
            pass
        return sorted(out)

    def numsub(self, channel: str) -> int:
        reply = self.command("PUBSUB", "NUMSUB", channel)
        n = int(reply[1])
        try:
            n += int(self.command("PUBSUB", "SHARDNUMSUB", channel)[1])
        except RespError:
            pass
        return n

    def numpat(self) -> int:
        return int(self.command("PUBSUB", "NUMPAT"))

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown, nothing saved)."""
        self._close_conn()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, timeout: float = 10.0) -> "RedisProcess":
        """Start again on the same port (after ``kill()``, or kills first)."""
        self.kill()
        self._fixed_port = True
        return self.start(timeout)

    def _hard_kill(self) -> None:
        self._close_conn()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        """End the process (SIGTERM, then SIGKILL) and remove its directory. Idempotent."""
        self._close_conn()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
        _live_procs.discard(self)


class _PortTaken(Exception):
    pass


def topic_channel(topic: str, prefix: str = "wavelane") -> str:
    """The Redis channel carrying ``topic``'s publications (mirrors ClusterNames.topicChannel)."""
    return f"{prefix}:t:{topic}"


def user_channel(user: str, prefix: str = "wavelane") -> str:
    return f"{prefix}:u:{user}"


def presence_channel(topic: str, prefix: str = "wavelane") -> str:
    return f"{prefix}:p:{topic}"


# ------------------------------------------------------------------------------------ nodes


class NodeError(RuntimeError):
    """A node command failed (the node's exception text is the message)."""


class NodeStartError(RuntimeError):
    """The node process did not come up (e.g. the engine refused the configuration)."""


class Node:
    """One Wavelane instance in a child process running ``cluster_node.py``.

    ``start(config)`` returns once the server listens (``.port``, ``.node_id``). ``call(cmd,
    **args)`` sends one JSON command and returns its ``result`` (raising :class:`NodeError` when
    the node reports an error); ``send()``/``result()`` split it for commands running in the
    background (``async_=True``). ``events`` holds the events the node forwarded (``cluster``
    always; every kind with ``all_events=True``) as dicts ``{"event", "conn", "data", "t"}``.
    """

    def __init__(self, name: str = "node"):
        self.name = name
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.node_id: Optional[str] = None
        self.info: Dict[str, Any] = {}
        self.config: Dict[str, Any] = {}
        self.events: List[Dict[str, Any]] = []
        self.replies: Dict[int, Dict[str, Any]] = {}
        self.cond = threading.Condition()
        self._next_id = 0
        self._write_lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None
        self._started: Optional[Dict[str, Any]] = None
        self._eof = False
        self._stderr_path: Optional[str] = None
        self.killed = False
        self._stop_sent = False

    # -- lifecycle

    def start(self, config: Optional[Dict[str, Any]] = None, *, all_events: bool = False, timeout: float = 20.0) -> "Node":
        config = dict(config or {})
        config.setdefault("threads", 1)
        self.config = config
        fd, self._stderr_path = tempfile.mkstemp(prefix=f"wavelane-{self.name}-", suffix=".stderr")
        os.close(fd)
        argv = [sys.executable, NODE_SCRIPT, json.dumps(config)]
        if all_events:
            argv.append("--all-events")
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, bufsize=0,
            )
        _live_procs.add(self)
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.name}-reader", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        with self.cond:
            while self._started is None and not self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
        if self._started is None or "fatal" in self._started:
            why = (self._started or {}).get("fatal") or f"no start line within {timeout}s"
            self.killed = True  # reported here; not a crash for the fixture to report again
            self._hard_kill()
            raise NodeStartError(f"{self.name}: {why}\n{self.stderr_text()}")
        self.info = self._started
        self.port = int(self._started["port"])
        self.node_id = self._started.get("node")
        return self

    def _read_loop(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            with self.cond:
                if "reply" in msg:
                    self.replies[msg["reply"]] = msg
                elif "event" in msg:
                    self.events.append(msg)
                elif self._started is None and ("port" in msg or "fatal" in msg):
                    self._started = msg
                self.cond.notify_all()
        with self.cond:
            self._eof = True
            self.cond.notify_all()

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll() if self.proc else None

    def stderr_text(self, n: int = 4000) -> str:
        if not self._stderr_path:
            return ""
        try:
            with open(self._stderr_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the instance crashes (no cleanup in Redis, nothing said to anyone)."""
        self.killed = True
        self._hard_kill()

    def _hard_kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is None:
            return
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(2)

    def request_stop(self) -> None:
        """Ask the node to stop without waiting (see :meth:`stop`); lets a test stop several at once."""
        if self.proc is not None and self.proc.poll() is None and not self._stop_sent:
            self._stop_sent = True
            try:
                self.send("stop")
            except (OSError, ValueError, NodeError):
                pass

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """Ask the node to stop (server.stop), wait for it, SIGKILL if it does not end. Idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.request_stop()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_pipes()
        _live_procs.discard(self)
        if self._stderr_path:
            try:
                os.unlink(self._stderr_path)
            except OSError:
                pass
            self._stderr_path = None
        return self.proc.returncode

    # -- commands

    def send(self, cmd: str, **args: Any) -> int:
        """Send a command; returns its id (see :meth:`result`). ``async_=True`` runs it in its own
        thread in the node, so other commands can be answered meanwhile."""
        if self.proc is None or self.proc.stdin is None:
            raise NodeError(f"{self.name}: not started")
        with self._write_lock:
            self._next_id += 1
            cid = self._next_id
            msg = {"id": cid, "cmd": cmd}
            if args.pop("async_", False):
                msg["async"] = True
            msg["args"] = args
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        return cid

    def result(self, cid: int, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while cid not in self.replies:
                left = deadline - time.monotonic()
                if self._eof:
                    raise NodeError(f"{self.name}: exited (rc={self.returncode}) before answering #{cid}\n{self.stderr_text()}")
                if left <= 0:
                    raise NodeError(f"{self.name}: no reply to #{cid} within {timeout}s")
                self.cond.wait(left)
            reply = self.replies.pop(cid)
        if not reply.get("ok"):
            raise NodeError(f"{self.name}: {reply.get('error')}")
        return reply.get("result")

    def call(self, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        return self.result(self.send(cmd, **args), timeout)

    async def acall(self, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        """:meth:`call` from a coroutine (runs in a thread: the event loop keeps reading sockets)."""
        return await asyncio.to_thread(self.call, cmd, timeout, **args)

    async def aresult(self, cid: int, timeout: float = 10.0) -> Any:
        return await asyncio.to_thread(self.result, cid, timeout)

    # -- events

    def events_of(self, kind: str) -> List[Dict[str, Any]]:
        with self.cond:
            return [e for e in self.events if e["event"] == kind]

    def cluster_events(self) -> List[Dict[str, Any]]:
        """The ``data`` of every ``("cluster", 0, data)`` event so far."""
        return [e["data"] for e in self.events_of("cluster")]

    def wait_event(self, pred: Callable[[Dict[str, Any]], bool], timeout: float = 5.0, start: int = 0) -> Dict[str, Any]:
        """The first forwarded event (index >= ``start``) matching ``pred``, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return self.events[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: no matching event within {timeout}s; last: {self.events[-5:]}")
                self.cond.wait(left)

    def wait_cluster(self, redis_state: str, timeout: float = 10.0, start: int = 0) -> Dict[str, Any]:
        """Wait for a cluster event with ``{"redis": redis_state}``; returns its data."""
        e = self.wait_event(
            lambda e: e["event"] == "cluster" and isinstance(e["data"], dict) and e["data"].get("redis") == redis_state,
            timeout, start,
        )
        return e["data"]

    async def await_cluster(self, redis_state: str, timeout: float = 10.0, start: int = 0) -> Dict[str, Any]:
        return await asyncio.to_thread(self.wait_cluster, redis_state, timeout, start)

    def event_count(self) -> int:
        with self.cond:
            return len(self.events)

    def __repr__(self) -> str:
        return f"<Node {self.name} port={self.port} pid={self.pid} alive={self.alive}>"


# ------------------------------------------------------------------------------------ fixtures

if pytest is not None:

    @pytest.fixture
    def redis_server() -> Iterable[RedisProcess]:
        """A started redis-server on a free port; stopped (whatever state it is in) at teardown."""
        try:
            proc = RedisProcess()
        except RedisUnavailable as exc:
            pytest.skip(str(exc))
        try:
            proc.start()
            yield proc
        finally:
            proc.stop()

    @pytest.fixture
    def make_redis() -> Iterable[Callable[..., RedisProcess]]:
        """Factory for Redis processes that are *not* started (``make_redis(port=None)``)."""
        made: List[RedisProcess] = []

        def factory(port: Optional[int] = None) -> RedisProcess:
            try:
                proc = RedisProcess(port)
            except RedisUnavailable as exc:
                pytest.skip(str(exc))
            made.append(proc)
            return proc

        try:
            yield factory
        finally:
            for proc in made:
                proc.stop()

    @pytest.fixture
    def make_node() -> Iterable[Callable[..., Node]]:
        """Factory: ``node = make_node("a", redis_url=..., history_size=...)`` starts a node process.

        Keyword ``all_events=True`` forwards every event, not just ``cluster`` ones. With a
        ``redis_url``, waits until the node reports Redis connected (``wait_redis=False``: not). At teardown
        every node is stopped (SIGKILL after 5 s) and must not have crashed on its own.
        """
        made: List[Node] = []

        def factory(name: str = "node", all_events: bool = False, wait_redis: bool = True, **config: Any) -> Node:
            node = Node(name)
            made.append(node)
            node.start(config, all_events=all_events)
            if wait_redis and config.get("redis_url"):
                # Publications go through Redis only once the node's subscriber is ready: before
                # that they are local-only (and counted), which these tests do not want.
                node.wait_event(
                    lambda e: e.get("event") == "cluster" and e["data"].get("redis") == "connected", timeout=10
                )
            return node

        try:
            yield factory
        finally:
            crashed = [
                f"{n.name} (rc={n.returncode}): {n.stderr_text(1500)}"
                for n in made
                if n.proc is not None and not n.killed and n.returncode not in (None, 0)
            ]
            for node in made:
                node.request_stop()  # all at once: each waits up to its close timeout
            for node in made:
                node.stop()
            if crashed:
                raise AssertionError("node process(es) died on their own: " + "; ".join(crashed))
