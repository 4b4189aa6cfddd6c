"""The public :class:`Server` class: a thin, typed layer over :mod:`wavelane._native`."""

from __future__ import annotations

import asyncio
import atexit
import collections
import json
import logging
import os
import threading
import weakref
from typing import Any, AsyncIterator, Deque, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from . import _native
from ._json import _dumps, _topics_json
from ._logging import _forward_logs, logger
from ._schema import CONFIG_DEFAULTS, check_types
from ._types import (
    PRIORITIES,
    ClusterData,
    ConnectData,
    DroppedData,
    Event,
    EventKind,
    Payload,
    Priority,
    RefreshData,
    RpcData,
    SubscribeRequestData,
    _priority,
    _PAYLOAD_BINARY,
    _PAYLOAD_JSON,
    _PAYLOAD_TEXT,
)
from .config import load_config
from .errors import StartError, config_error_from_engine

__all__ = [
    "Server", "Event", "EventKind", "Priority", "CONFIG_DEFAULTS", "PRIORITIES",
    "ConnectData", "SubscribeRequestData", "DroppedData", "ClusterData", "RefreshData", "RpcData",
]

# Servers that are running: stopped at interpreter exit so that native threads end before the
# interpreter is torn down.
_running: "weakref.WeakSet[Server]" = weakref.WeakSet()
_running_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _running_lock:
        servers = list(_running)
    for server in servers:
        try:
            server.stop(timeout=1.0)
        except Exception:  # pragma: no cover - best effort at exit
            pass


def _client_js() -> bytes:
    from importlib import resources

    return resources.files("wavelane").joinpath("static/wavelane.js").read_bytes()  # type: ignore[attr-defined,unused-ignore]


def _c_int(code: int) -> int:
    """``code`` as the C ABI's int: one it refuses (-1) when it does not fit, so that the engine's
    message reports it."""
    return code if -(1 << 31) <= code < (1 << 31) else -1


class Server:
    """A Wavelane WebSocket server.

    The native engine (SwiftNIO event loops) accepts connections, authenticates them (JWT),
    answers control messages and fans publications out; Python receives events with
    :meth:`drain` and acts with :meth:`publish`, :meth:`send`, :meth:`subscribe`...

    ``Server(...)`` validates the configuration immediately (raising :class:`ConfigError`) but
    binds nothing until :meth:`start`. Use it as a context manager to start and stop it::

        with wavelane.Server(port=8765, jwt_secret="s3cret") as server:
            while True:
                for kind, conn, data in server.drain():
                    if kind == "message":
                        server.send(conn, data)

    Configuration keys not listed as parameters are passed as keyword arguments (see
    ``docs/python-api.md`` and :data:`CONFIG_DEFAULTS`). Parameters left at ``None`` use the
    engine's default; keys where ``None`` is meaningful (``ws_path``, ``jwt_cookie``,
    ``jwt_query_param``) are sent as given.

    Threading: call :meth:`drain` from one thread at a time. Every other method is thread-safe.
    Start servers after ``fork()``, never before (native threads do not survive a fork).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        jwt_secret: Optional[str] = None,
        jwt_previous_secret: Optional[str] = None,
        jwt_public_key: Optional[str] = None,
        jwt_algorithms: Optional[List[str]] = None,
        jwt_issuer: Optional[str] = None,
        jwt_audience: Optional[str] = None,
        threads: Optional[int] = None,
        parse_json: bool = False,
        client_js: bool = True,
        **config: Any,
    ) -> None:
        cfg: Dict[str, Any] = {"host": host, "port": port}
        for key, value in (
            ("jwt_secret", jwt_secret),
            ("jwt_previous_secret", jwt_previous_secret),
            ("jwt_public_key", jwt_public_key),
            ("jwt_algorithms", jwt_algorithms),
            ("jwt_issuer", jwt_issuer),
            ("jwt_audience", jwt_audience),
            ("threads", threads),
        ):
            if value is not None:
                cfg[key] = list(value) if key == "jwt_algorithms" and isinstance(value, tuple) else value
        cfg.update(config)
        if not isinstance(parse_json, bool):
            raise TypeError(f"parse_json must be a bool, not {type(parse_json).__name__}")
        if not isinstance(client_js, bool):
            raise TypeError(f"client_js must be a bool, not {type(client_js).__name__}")
        check_types(cfg)
        try:
            self._engine = _native.Engine(json.dumps(cfg))
        except ValueError as exc:
            raise config_error_from_engine(str(exc)) from None
        self._config = cfg
        self._parse_json = parse_json
        if client_js:  # the browser client, a public static file (docs/clients.md)
            self._engine.add_route("/wavelane.js", "text/javascript; charset=utf-8", _client_js())
        self._running = False
        self._lock = threading.Lock()
        # Events taken from the engine by events() but not yet yielded (its consumer was cancelled
        # or stopped iterating between two events): handed out first by the next drain.
        self._held: Deque[Event] = collections.deque()
        self._wake_async = False  # set by wake(): a waiting drain_async() returns

    @classmethod
    def from_config(
        cls,
        path: Optional[Union[str, "os.PathLike[str]"]] = None,
        *,
        env: Optional[Mapping[str, str]] = None,
        **overrides: Any,
    ) -> "Server":
        """A server configured from a file, then ``WAVELANE_*`` environment variables, then
        keyword arguments (later sources win). See :mod:`wavelane.config`."""
        return cls(**load_config(path, env=env, **overrides))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "Server":
        """Bind and start serving; returns at once (native threads serve).

        Raises :class:`StartError` when the server cannot start (e.g. the port is in use).
        Starting a running server does nothing. A stopped server can be started again.
        """
        with self._lock:
            if self._running:
                return self
            try:
                self._engine.start()
            except OSError as exc:
                _forward_logs(self._engine)
                raise StartError(str(exc)) from None
            _forward_logs(self._engine)
            self._running = True
        with _running_lock:
            _running.add(self)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every client with 1001 (going away), stop accepting and join native threads.

        Waits at most ``timeout`` seconds for close handshakes. Idempotent. Wakes a thread
        blocked in :meth:`drain`; events still queued can be drained afterwards.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
        with self._lock:
            self._running = False
            self._engine.stop(float(timeout))
            _forward_logs(self._engine)
        with _running_lock:
            _running.discard(self)

    def drain_and_stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown: new upgrades are refused with HTTP 503, each client is closed with
        1001 once the messages queued for it went out, and after at most ``timeout`` seconds (or
        as soon as every client is gone) the server stops as with :meth:`stop`."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
        with self._lock:
            if self._running:
                self._engine.drain_and_stop(float(timeout))
            self._running = False
        # A coroutine in drain_async()/events() may have been woken by the engine's stop before
        # _running turned False, found nothing and gone back to waiting: wake it to see the stop.
        self._engine.wake()
        with _running_lock:
            _running.discard(self)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def port(self) -> int:
        """The bound port while running (useful with ``port=0``), else the configured port."""
        if self._running:
            bound = self._engine.port
            if bound:
                return bound
        return int(self._config.get("port", 8765))

    @property
    def config(self) -> Dict[str, Any]:
        """A copy of the configuration given to the engine (engine defaults not included)."""
        return dict(self._config)

    def add_route(
        self, path: str, body: Union[str, bytes], content_type: str = "text/html; charset=utf-8"
    ) -> None:
        """Serve ``body`` at ``GET path`` over plain HTTP on the same port. Call before start()."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("path must be a str starting with '/'")
        if isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        self._engine.add_route(path, content_type, body)

    # -- events ----------------------------------------------------------------------------

    def drain(self, max_events: int = 1024, timeout: float = 0.05) -> List[Event]:
        """Take up to ``max_events`` inbound events, waiting at most ``timeout`` seconds.

        Returns a list of ``(kind, conn, data)`` tuples, in arrival order per connection:

        * ``("connect", conn, {"user", "addr", "claims", "path", "subprotocol"})``
        * ``("message", conn, str | bytes)`` — a text message (with ``parse_json=True``, text that
          starts with ``{`` or ``[`` and parses is given as the decoded JSON value; text that does
          not, for any reason, e.g. nesting too deep for ``json.loads``, stays a ``str``: one
          client's message never costs the rest of the batch) or a binary one
        * ``("disconnect", conn, close_code: int)`` — 1006 when the peer vanished
        * ``("subscribe_request", conn, {"topics": [...], "patterns": [...], "id": ...})`` — with
          ``subscribe_approval=True``, a client request that is not all inside the client's own
          ``user:<sub>`` space and ``client_topics`` (exact topics and glob patterns apart);
          answer with :meth:`allow` or :meth:`deny`
        * ``("dropped", conn, {"count", "bytes", "priority": {name: n}})`` — outbound messages
          for a slow client were dropped (reported at most about once per second per client)
        * ``("refresh", conn, {"claims": {...}})`` — the client sent ``{"type": "refresh", "token": ..}``
          with a valid token for the same user; its connection now expires at the new ``exp``
        * ``("cluster", 0, {"redis": "connected" | "disconnected", "reason", "undelivered"})`` —
          with ``redis_url``: the Redis link went up or down, or (at most every 0.5 s)
          ``undelivered`` publications could not go through Redis since the previous report
        * ``("rpc", conn, {"method": str, "params": ..., "id": ...})`` — a client's remote
          procedure call; answer with :meth:`reply` (an unanswered call is the client's timeout)

        The GIL is released while waiting; Ctrl-C raises :class:`KeyboardInterrupt` within
        about 100 ms. Returns ``[]`` at once when the server is stopped and nothing is queued,
        and early when :meth:`wake` is called. Call from one thread at a time.
        """
        if self._held:
            return self._take_held(max_events)
        events = self._engine.drain(max_events, timeout, self._parse_json)
        if self._engine.log_pending():
            _forward_logs(self._engine)
        return events

    def _take_held(self, max_events: int) -> List[Event]:
        held = self._held
        n = min(max_events, len(held))
        return [held.popleft() for _ in range(n)]

    def fileno(self) -> int:
        """A file descriptor that is readable while inbound events wait (an eventfd on Linux).

        Any event loop can watch it (``select``, ``selectors``, asyncio's ``loop.add_reader``);
        :meth:`drain` clears it once the queue is empty. It also becomes readable when the server
        stops and after :meth:`wake`. Never read, write or close it; it stays valid for the
        server's lifetime (also across stop/start). :meth:`drain_async` and :meth:`events` are
        built on it.
        """
        return self._engine.fileno()

    async def drain_async(self, max_events: int = 1024) -> List[Event]:
        """Await inbound events without a thread: like :meth:`drain`, but the waiting is done by
        the running asyncio loop watching :meth:`fileno`.

        Returns a non-empty list of ``(kind, conn, data)`` as soon as events wait, or ``[]`` once
        the server is stopped and nothing is queued (also after :meth:`wake`). Cancelling it
        returns at once and loses nothing: events are only taken from the engine when they are
        returned. One consumer at a time (``drain``, ``drain_async`` or ``events``).
        """
        if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events <= 0:
            raise ValueError("max_events must be a positive int")
        if self._held:
            return self._take_held(max_events)
        self._wake_async = False
        loop = asyncio.get_running_loop()
        fd = self._engine.fileno()
        while True:
            events = self.drain(max_events, 0)
            if events or not self._running:
                return events
            waiter = loop.create_future()

            def ready(w: "asyncio.Future[None]" = waiter) -> None:
                if not w.done():
                    w.set_result(None)

            loop.add_reader(fd, ready)
            try:
                await waiter
            finally:
                loop.remove_reader(fd)
            if self._wake_async:
                self._wake_async = False
                return self.drain(max_events, 0)

    async def events(self, max_events: int = 1024) -> AsyncIterator[Event]:
        """``async for kind, conn, data in server.events():`` — every inbound event, in arrival
        order per connection, until the server is stopped and its queue is empty.

        Built on :meth:`drain_async` (no thread). If the consumer is cancelled, or leaves the loop,
        in the middle of a batch, the events of that batch not yet yielded are kept and come first
        from the next ``events()``, :meth:`drain_async` or :meth:`drain`. One consumer at a time.
        """
        held = self._held
        while True:
            if not held:
                batch = await self.drain_async(max_events)
                if not batch:
                    if not self._running:
                        return
                    continue
                held.extend(batch)
            while held:
                yield held.popleft()

    def wake(self) -> None:
        """Make a thread waiting in :meth:`drain`, or a coroutine in :meth:`drain_async`, return
        (an empty list) promptly."""
        self._wake_async = True
        self._engine.wake()

    def pending(self) -> int:
        """Number of inbound events waiting to be drained."""
        return self._engine.pending()

    # -- outbound --------------------------------------------------------------------------

    def publish(self, topic: str, data: Any, *, priority: Priority = "normal", key: Optional[str] = None) -> int:
        """Publish ``data`` to every subscriber of ``topic``; returns the topic offset (>= 1).

        With ``redis_url`` the publication goes through Redis to the subscribers of every
        instance; Redis assigns the offset, and ``0`` is returned. When Redis falls behind, this
        call waits (GIL released, at most 2 s) for room among the publications in flight.

        ``str`` goes out as a JSON string, ``bytes``/``bytearray``/``memoryview`` as a binary
        hot-lane frame, anything else is serialized to JSON once (``ValueError`` if it cannot
        be). Raises ``ValueError`` for a topic the engine refuses (empty, too long).

        ``priority`` (see :data:`PRIORITIES`) decides what a slow subscriber loses first.
        ``key`` makes it latest-state-wins: while a subscriber's queue still holds an older
        publication with the same key, the new one replaces it instead of queueing behind it.
        """
        p = PRIORITIES["normal"] if priority == "normal" else _priority(priority)
        t = type(data)
        if t is str:
            return self._engine.publish(topic, data, _PAYLOAD_TEXT, p, key)
        if t is bytes or t is bytearray:
            return self._engine.publish(topic, data, _PAYLOAD_BINARY, p, key)
        if t is memoryview:
            return self._engine.publish(topic, data.tobytes(), _PAYLOAD_BINARY, p, key)
        return self._engine.publish(topic, _dumps(data, "data"), _PAYLOAD_JSON, p, key)

    def reply(self, conn: int, id: Any, result: Any = None, *, error: Optional[Mapping[str, Any]] = None) -> bool:
        """Answer a client's ``rpc`` event: ``{"type":"reply","id":id,"result":result}``, or with
        ``error={"code": str, "message": str, ...}`` ``{"type":"reply","id":id,"error":{...}}``.

        ``id`` is the event's ``data["id"]``. Returns ``False`` if the connection is gone. Raises
        ``ValueError`` if ``result`` (or ``error``) cannot be serialized, ``TypeError`` if
        ``error`` is not a mapping with a str ``code``.
        """
        if error is not None:
            if not isinstance(error, Mapping) or not isinstance(error.get("code"), str):
                raise TypeError("error must be a mapping with a str 'code' (and usually a 'message')")
            body = {"type": "reply", "id": id, "error": dict(error)}
        else:
            body = {"type": "reply", "id": id, "result": result}
        return self.send(conn, _dumps(body, "result" if error is None else "error"), priority="high")

    def send(
        self,
        conn: int,
        data: Payload,
        *,
        priority: Priority = "normal",
        key: Optional[str] = None,
        node: Optional[str] = None,
    ) -> bool:
        """Send one frame to one connection exactly as given (str: text, bytes: binary).

        Returns ``True`` if the frame was queued, ``False`` if the connection is unknown or
        already closed (not an error: clients come and go). ``priority`` and ``key`` as in
        :meth:`publish`.

        With ``redis_url``, ``node`` (a presence member's ``"node"``, another instance's
        :attr:`node_id`) sends to that instance's connection ``conn`` through Redis; ``True``
        then means it was handed to Redis.
        """
        if type(data) is memoryview:
            data = data.tobytes()
        p = PRIORITIES["normal"] if priority == "normal" else _priority(priority)
        if node is None:
            return self._engine.send(conn, data, p, key)
        return self._engine.send(conn, data, p, key, node)

    def send_user(self, user: str, data: Payload, *, priority: Priority = "normal", key: Optional[str] = None) -> int:
        """Send one frame to every connection of ``user`` (the JWT ``sub``); returns how many.

        With ``redis_url`` it also reaches the user's connections on the other instances; the
        count is this instance's connections.
        """
        if type(data) is memoryview:
            data = data.tobytes()
        p = PRIORITIES["normal"] if priority == "normal" else _priority(priority)
        return self._engine.send_user(user, data, p, key)

    def wait_for_redis(self, timeout: float = 5.0) -> bool:
        """With ``redis_url``: wait until publications go through Redis (both connections up and
        every subscription confirmed), at most ``timeout`` seconds; returns whether they do.
        Until then publications reach this instance's subscribers only (and are counted as
        undelivered). Without ``redis_url``: ``False`` at once."""
        if not self._config.get("redis_url") or not self.running:
            return False
        import time

        deadline = time.monotonic() + timeout
        while True:
            if json.loads(self._engine.stats()).get("redis_connected") == 1:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    @property
    def node_id(self) -> str:
        """This instance's id, as in presence members' ``"node"`` (random per start; ``""`` while
        stopped)."""
        return self._engine.node()

    def presence(self, topic: str, timeout: float = 2.0) -> List[Dict[str, Any]]:
        """Who is subscribed to ``topic`` on every instance (needs ``presence=True``).

        Returns ``[{"user", "conn", "node", "info"}, ...]``. Blocks (GIL released) for one Redis
        round trip; raises ``RuntimeError`` when presence is off or Redis does not answer within
        ``timeout`` seconds.
        """
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        return self._engine.presence(topic, max(1, int(timeout * 1000)))

    def set_presence_info(self, conn: int, info: Any) -> bool:
        """Set the ``info`` shown for a connection in presence (a small JSON-able value, at most
        4 KiB serialized); updates the topics it is already in. False if conn is unknown."""
        return self._engine.set_presence_info(conn, _dumps(info, "info"))

    def subscribe(self, conn: int, topics: Union[str, Iterable[str]]) -> bool:
        """Subscribe a connection server-side (glob patterns allowed). False if conn is unknown.

        Not restricted by ``client_topics`` or the glob limits: the application decides."""
        return self._engine.subscribe(conn, _topics_json(topics), None)

    def unsubscribe(self, conn: int, topics: Union[str, Iterable[str]]) -> bool:
        """Unsubscribe a connection server-side. False if conn is unknown."""
        return self._engine.unsubscribe(conn, _topics_json(topics), None)

    def allow(self, conn: int, request: Mapping[str, Any]) -> bool:
        """Grant a ``subscribe_request``: subscribe and acknowledge with the request's id."""
        topics, ack = self._request_parts(request)
        return self._engine.subscribe(conn, topics, ack)

    def deny(
        self,
        conn: int,
        request: Mapping[str, Any],
        reason: Optional[str] = None,
        code: Optional[str] = None,
    ) -> bool:
        """Refuse a ``subscribe_request``: the client gets an ``error`` message with its id.

        ``code`` and ``reason`` default to the engine's ``"forbidden"`` and ``"subscription
        denied"``."""
        _, ack = self._request_parts(request)
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        if code is not None and (not isinstance(code, str) or not code):
            raise TypeError("code must be a non-empty str")
        return self._engine.deny(conn, code, reason, ack)

    @staticmethod
    def _request_parts(request: Mapping[str, Any]) -> Tuple[str, str]:
        if not isinstance(request, Mapping) or "topics" not in request:
            raise TypeError("request must be the data dict of a 'subscribe_request' event")
        topics = list(json.loads(_topics_json(request["topics"], "request['topics']")))
        topics += json.loads(_topics_json(request.get("patterns", ()), "request['patterns']"))
        return json.dumps(topics, ensure_ascii=False), _dumps(
            request.get("id"), "request['id']"
        )

    def close(self, conn: int, code: int = 1000, reason: str = "") -> bool:
        """Close one connection with ``code``: 1000, 1001, 1003, 1007, 1008, 1009, 1011, 1012
        (service restart: clients reconnect at once), 1013 (try again later) or 3000-4999.

        Returns ``False`` if the connection is unknown or already closed; raises ``ValueError``
        on a bad code or a reason longer than 123 bytes (the engine's rule and message).
        """
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"code must be an int, not {type(code).__name__}")
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        return self._engine.close(conn, _c_int(code), reason)

    def disconnect_user(self, user: str, code: int = 4003, reason: str = "disconnected") -> int:
        """Close every connection of ``user`` (the JWT ``sub``) with ``code`` — revocation, logout.

        With ``redis_url`` the user's connections on every instance are closed; the count returned
        is this instance's. Raises ``ValueError`` on a bad code (the codes of :meth:`close`) or a
        reason longer than 123 bytes (the engine's rule and message).
        """
        if not isinstance(user, str):
            raise TypeError(f"user must be a str, not {type(user).__name__}")
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"code must be an int, not {type(code).__name__}")
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        return self._engine.disconnect_user(user, _c_int(code), reason)

    def stats(self) -> Dict[str, Any]:
        """Engine counters (connections, messages, bytes, queue depths...) as a dict."""
        stats: Dict[str, Any] = json.loads(self._engine.stats())
        return stats

    def __repr__(self) -> str:
        state = f"running on {self._config.get('host')}:{self.port}" if self._running else "stopped"
        return f"<wavelane.Server {state}>"
