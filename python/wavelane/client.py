"""``wavelane.Client``: an asyncio client for a Wavelane server, on ``websockets``.

It keeps a subscription alive across connection losses: it reconnects by itself (exponential
backoff with jitter, at once after a 1012/1013 close), resubscribes every topic with ``recover``
positions, drops duplicates by offset, and says when recovery was impossible so the application
can resync. It refreshes its token before ``exp`` when given ``get_token``, and queues (bounded)
what is sent while offline::

    async with wavelane.Client("ws://127.0.0.1:8765/", token=jwt) as client:
        await client.subscribe("room:1")
        async for msg in client.messages():
            if msg.kind == "resync":          # recovery impossible: reload the state
                ...
            else:                             # "message" (a topic publication) or "direct"
                print(msg.topic, msg.offset, msg.data)

Needs the ``websockets`` package (``pip install wavelane[client]``). docs/clients.md has the
whole API and the reconnect rules.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Deque, Dict, List, Optional, Union

from .errors import ClientError, ConnectionClosed, RPCError, SubscribeError

__all__ = ["Client", "Message", "ClientError", "ConnectionClosed", "SubscribeError", "RPCError"]

TokenSource = Callable[[], Awaitable[str]]

# Close codes after which reconnecting cannot help: the server or the application ended this
# client on purpose (4000-4999 is the application's range: 4003 = disconnect_user), except 4001
# (token expired), after which a fresh token from ``get_token`` is tried.
_TERMINAL_CLOSE = {1002, 1003, 1007, 1008, 1009}
_RECONNECT_AT_ONCE = {1012, 1013}
_TOKEN_EXPIRED = 4001


@dataclass
class Message:
    """One item of :meth:`Client.messages`.

    ``kind`` is ``"message"`` (a topic publication: ``topic``, ``offset``, ``data``),
    ``"direct"`` (a frame sent with ``send``/``send_user``: ``data`` only) or ``"resync"`` (the
    client reconnected but could not recover ``topic``'s missed publications; ``data`` is the
    server's reason: reload the state from its source)."""

    kind: str
    topic: Optional[str]
    data: Any
    offset: Optional[int] = None


@dataclass
class _Sub:
    topic: str
    epoch: Optional[str] = None
    offset: int = 0          # the last offset delivered to the application (0 = none yet)
    presence: bool = False
    history: Optional[int] = None


@dataclass
class _Pending:
    future: "asyncio.Future[Any]"
    kind: str
    topics: List[str] = field(default_factory=list)


def _decode_binary(frame: bytes) -> Optional[Message]:
    """A topic publication on the binary lane (version 1, kind 1), or None."""
    if len(frame) < 12 or frame[0] != 1 or frame[1] != 1:
        return None
    (n,) = struct.unpack_from(">H", frame, 2)
    if len(frame) < 4 + n + 8:
        return None
    try:
        topic = frame[4:4 + n].decode("utf-8")
    except UnicodeDecodeError:
        return None
    (offset,) = struct.unpack_from(">Q", frame, 4 + n)
    return Message("message", topic, frame[12 + n:], offset)


class Client:
    """An asyncio client; see the module docstring. All methods must be called from the event
    loop the client was opened in.

    ``url``: ``ws://`` or ``wss://``. ``token``: a JWT sent as ``Authorization: Bearer``;
    ``get_token``: an async function returning a fresh one (called before each reconnect after
    a ``4001``/401 and ahead of ``exp`` to refresh the live connection). ``reconnect``: reconnect
    after a connection loss (default True). ``min_backoff``/``max_backoff``: seconds (the delay
    doubles per failed attempt, capped, times a random factor in [0.5, 1]). ``max_queue``:
    messages :meth:`send` may hold while offline (then :class:`ClientError`). ``refresh_margin``:
    refresh this many seconds before ``exp``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: Optional[str] = None,
        get_token: Optional[TokenSource] = None,
        reconnect: bool = True,
        min_backoff: float = 0.2,
        max_backoff: float = 10.0,
        max_queue: int = 1000,
        max_buffered: int = 10000,
        open_timeout: float = 10.0,
        request_timeout: float = 10.0,
        refresh_margin: float = 10.0,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        self.url = url
        self.token = token
        self.get_token = get_token
        self.reconnect = reconnect
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.max_queue = max_queue
        self.open_timeout = open_timeout
        self.request_timeout = request_timeout
        self.refresh_margin = refresh_margin
        self.headers = dict(headers or {})
        self.ready: Optional[Dict[str, Any]] = None
        self.state = "disconnected"   # "connecting" | "connected" | "disconnected" | "closed"
        self.reconnects = 0
        self.duplicates_dropped = 0
        self._subs: Dict[str, _Sub] = {}
        self._pending: Dict[int, _Pending] = {}
        self._ids = 0
        self._ws: Any = None
        self._inbox: "asyncio.Queue[Union[Message, ConnectionClosed]]" = asyncio.Queue(max_buffered)
        self._outbox: Deque[Union[str, bytes]] = collections.deque()
        self._connected = asyncio.Event()
        self._runner: "Optional[asyncio.Task[Any]]" = None
        self._refresher: "Optional[asyncio.Task[Any]]" = None
        self._closed: Optional[ConnectionClosed] = None
        self._first: "Optional[asyncio.Future[None]]" = None

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> "Client":
        """Open the first connection (raises :class:`ConnectionClosed` if the server refuses
        it); later losses are handled in the background."""
        if self._runner is not None:
            raise ClientError("already connected")
        self._first = asyncio.get_running_loop().create_future()
        self._runner = asyncio.ensure_future(self._run())
        await self._first
        return self

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        if self._closed is None:
            self._finish(ConnectionClosed(1000, "closed by the client"))
        ws = self._ws
        if ws is not None:
            try:
                await ws.close()
            except Exception:
                pass
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except (asyncio.CancelledError, Exception):
                pass

    # ------------------------------------------------------------------ API

    async def subscribe(self, topic: str, *, presence: bool = False, history: Optional[int] = None) -> None:
        """Subscribe to ``topic`` (an exact topic or a glob) and wait for the server's answer;
        raises :class:`SubscribeError` if refused. The subscription survives reconnects.
        ``history``: ask for the last N retained publications first (servers that support it)."""
        sub = _Sub(topic, presence=presence, history=history)
        msg: Dict[str, Any] = {"type": "subscribe", "topics": [topic]}
        if presence:
            msg["presence"] = True
        if history:
            msg["history"] = history
        await self._wait_connected()
        self._subs[topic] = sub
        try:
            await self._request(msg, "subscribe", [topic])
        except BaseException:
            self._subs.pop(topic, None)
            raise

    async def unsubscribe(self, topic: str) -> None:
        """Unsubscribe from ``topic`` (also stops it being resubscribed after a reconnect)."""
        if self._subs.pop(topic, None) is None:
            return
        if self.state == "connected":
            await self._request({"type": "unsubscribe", "topics": [topic]}, "unsubscribe", [topic])

    async def rpc(self, method: str, params: Any = None, *, timeout: Optional[float] = None) -> Any:
        """Call ``method`` on the server's application and return its ``result``; raises
        :class:`RPCError` when it answered with an error, :class:`asyncio.TimeoutError` when it
        did not answer in ``timeout`` seconds (default ``request_timeout``), and
        :class:`ConnectionClosed` when the connection was lost first (a call is not retried:
        it may have run)."""
        await self._wait_connected()
        msg: Dict[str, Any] = {"type": "rpc", "method": method}
        if params is not None:
            msg["params"] = params
        reply = await self._request(msg, "rpc", [], timeout)
        if isinstance(reply.get("error"), dict):
            raise RPCError(reply["error"])
        return reply.get("result")

    async def send(self, data: Union[str, bytes, Any]) -> None:
        """Send an application message: ``str`` as a text frame, ``bytes`` as binary, anything
        else as JSON. While offline it is queued (at most ``max_queue`` messages)."""
        frame: Union[str, bytes] = data if isinstance(data, (str, bytes)) else json.dumps(data)
        if self._closed is not None:
            raise self._closed
        if self.state == "connected" and not self._outbox:
            try:
                await self._ws.send(frame)
                return
            except Exception:
                pass  # lost meanwhile: queue it for the next connection
        if len(self._outbox) >= self.max_queue:
            raise ClientError(f"offline send queue is full ({self.max_queue} messages)")
        self._outbox.append(frame)

    async def recv(self, timeout: Optional[float] = None) -> Message:
        """The next :class:`Message` (raises :class:`ConnectionClosed` once the client is closed
        and everything before was read, :class:`asyncio.TimeoutError` after ``timeout``)."""
        item = await asyncio.wait_for(self._inbox.get(), timeout)
        if isinstance(item, ConnectionClosed):
            self._inbox.put_nowait(item)  # every later reader sees it too
            raise item
        return item

    async def messages(self) -> "AsyncIterator[Message]":
        """``async for msg in client.messages():`` until the client is closed."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed:
                return

    def position(self, topic: str) -> Optional[Dict[str, Any]]:
        """``{"epoch", "offset"}`` of the last publication of ``topic`` delivered, or None. The
        epoch is None on a server without history (``history_size=0``): then a reconnect cannot
        recover, and resubscribes from the current position."""
        sub = self._subs.get(topic)
        if sub is None or (sub.epoch is None and sub.offset == 0):
            return None
        return {"epoch": sub.epoch, "offset": sub.offset}

    # ------------------------------------------------------------------ internals

    async def _wait_connected(self) -> None:
        if self._closed is not None:
            raise self._closed
        if self.state != "connected":
            waiter = asyncio.ensure_future(self._connected.wait())
            waited: "set[asyncio.Future[Any]]" = {waiter} if self._runner is None else {waiter, self._runner}
            done, _ = await asyncio.wait(waited, timeout=self.request_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if self._closed is not None:
                raise self._closed
            if not done:
                raise asyncio.TimeoutError("not connected")

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def _request(self, msg: Dict[str, Any], kind: str, topics: List[str],
                       timeout: Optional[float] = None) -> Any:
        rid = self._next_id()
        msg["id"] = rid
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(fut, kind, topics)
        try:
            await self._ws.send(json.dumps(msg))
            return await asyncio.wait_for(asyncio.shield(fut), timeout or self.request_timeout)
        finally:
            self._pending.pop(rid, None)

    def _finish(self, exc: ConnectionClosed) -> None:
        self._closed = exc
        self.state = "closed"
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(exc)
        self._pending.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(exc)
        try:
            self._inbox.put_nowait(exc)
        except asyncio.QueueFull:
            self._inbox.get_nowait()
            self._inbox.put_nowait(exc)

    def _deliver(self, msg: Message) -> None:
        # Publications go through _put (the reader waits for room, so the server's TCP
        # backpressure holds the sender); this is for the rare notices raised outside the reader.
        try:
            self._inbox.put_nowait(msg)
        except asyncio.QueueFull:
            asyncio.ensure_future(self._inbox.put(msg))

    async def _open(self) -> Any:
        from websockets.asyncio.client import connect

        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        return await connect(self.url, additional_headers=headers, open_timeout=self.open_timeout,
                             max_size=None, ping_interval=None)

    async def _run(self) -> None:
        attempt = 0
        need_token = False
        while self._closed is None:
            self.state = "connecting"
            try:
                if need_token and self.get_token is not None:
                    self.token = await self.get_token()
                need_token = False
                ws = await self._open()
            except Exception as exc:  # refused handshake, connection refused, timeout
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status in (401, 403) and self.get_token is not None and attempt == 0:
                    need_token = True
                elif status in (400, 401, 403, 404, 405, 426) or (self._first is not None and not self._first.done()):
                    # the server refused us (or the very first attempt failed): tell the caller
                    self._finish(ConnectionClosed(status, str(exc)))
                    return
                attempt += 1
                await self._backoff(attempt)
                continue
            self._ws = ws
            code, reason = await self._serve(ws)
            self._ws = None
            self._connected.clear()
            if self._refresher is not None:
                self._refresher.cancel()
            if self._closed is not None:
                return
            for rid, p in list(self._pending.items()):
                if p.future.done():
                    continue
                if p.kind == "subscribe":
                    # the topic stays in the set: the next connection subscribes it with the others
                    p.future.set_result({})
                else:
                    p.future.set_exception(ConnectionClosed(code, reason or "connection lost"))
            terminal = code in _TERMINAL_CLOSE or (code is not None and 4000 <= code <= 4999 and code != _TOKEN_EXPIRED)
            if not self.reconnect or terminal or (code == _TOKEN_EXPIRED and self.get_token is None):
                self._finish(ConnectionClosed(code, reason or "connection lost"))
                return
            need_token = code == _TOKEN_EXPIRED
            self.state = "disconnected"
            self.reconnects += 1
            attempt = 0 if code in _RECONNECT_AT_ONCE else 1
            if attempt:
                await self._backoff(attempt)

    async def _backoff(self, attempt: int) -> None:
        delay = min(self.max_backoff, self.min_backoff * (2 ** min(attempt - 1, 16)))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _serve(self, ws: Any) -> Any:
        """One connection: read ready, resubscribe with recover, flush the offline queue, then
        read until it ends. Returns (close code, reason)."""
        from websockets.exceptions import ConnectionClosed as WSClosed

        try:
            ready = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
            if not isinstance(ready, dict) or ready.get("type") != "ready":
                await ws.close(1002, "expected ready")
                return 1002, "expected ready"
            self.ready = ready
            reader = asyncio.ensure_future(self._read(ws))
            try:
                await self._resubscribe()
                while self._outbox:
                    await ws.send(self._outbox[0])
                    self._outbox.popleft()
                self.state = "connected"
                self._connected.set()
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)
                self._schedule_refresh(ready.get("exp"))
            except (ClientError, asyncio.TimeoutError):
                pass  # the reader sees the loss; a refused resubscription was reported already
            await reader
        except WSClosed:
            pass
        except asyncio.TimeoutError:
            await ws.close(1002, "no ready")
        code = ws.close_code
        if code is not None and code != 1006:
            return code, ws.close_reason or ""
        return 1006, "connection lost"

    async def _resubscribe(self) -> None:
        if not self._subs:
            return
        subs = list(self._subs.values())
        recover = {s.topic: {"epoch": s.epoch, "offset": s.offset} for s in subs if s.epoch is not None}
        msg: Dict[str, Any] = {"type": "subscribe", "topics": [s.topic for s in subs]}
        if recover:
            msg["recover"] = recover
        if any(s.presence for s in subs):
            msg["presence"] = True
        try:
            await self._request(msg, "subscribe", [s.topic for s in subs])
        except SubscribeError as exc:
            for s in subs:
                self._deliver(Message("resync", s.topic, f"resubscribe refused: {exc}"))

    def _schedule_refresh(self, exp: Any) -> None:
        if not isinstance(exp, (int, float)) or self.get_token is None:
            return
        delay = max(0.0, exp - time.time() - self.refresh_margin)
        self._refresher = asyncio.ensure_future(self._refresh_later(delay))

    async def _refresh_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            token = await self.get_token()  # type: ignore[misc]
            reply = await self._request({"type": "refresh", "token": token}, "refresh", [])
        except Exception:
            return  # the server closes with 4001 at exp; we reconnect with a fresh token
        self.token = token
        self._schedule_refresh(reply.get("exp"))

    async def _read(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed as WSClosed

        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    msg = _decode_binary(frame)
                    if msg is None:
                        await self._put(Message("direct", None, frame))
                    elif msg.topic is not None and self._accept(msg.topic, msg.offset):
                        await self._put(msg)
                    continue
                try:
                    obj = json.loads(frame)
                except ValueError:
                    obj = None
                if not isinstance(obj, dict):
                    await self._put(Message("direct", None, frame))
                    continue
                kind = obj.get("type")
                if kind == "message" and isinstance(obj.get("topic"), str):
                    if self._accept(obj["topic"], obj.get("offset")):
                        await self._put(Message("message", obj["topic"], obj.get("data"), obj.get("offset")))
                elif kind in ("subscribed", "unsubscribed", "refreshed", "error", "pong", "presence", "reply") \
                        and obj.get("id") in self._pending:
                    self._answer(obj)
                elif kind in ("join", "leave"):
                    await self._put(Message(kind, obj.get("topic"), obj.get("member")))
                else:
                    await self._put(Message("direct", None, obj))
        except WSClosed:
            pass

    async def _put(self, msg: Message) -> None:
        await self._inbox.put(msg)

    def _accept(self, topic: str, offset: Any) -> bool:
        """Drop a publication already delivered (same stream, offset not newer)."""
        sub = self._subs.get(topic)
        if sub is None or not isinstance(offset, int) or offset <= 0:
            return True
        if offset <= sub.offset:
            self.duplicates_dropped += 1
            return False
        sub.offset = offset
        return True

    def _answer(self, obj: Dict[str, Any]) -> None:
        p = self._pending.get(obj["id"])
        if p is None or p.future.done():
            return
        if obj.get("type") == "error":
            code = str(obj.get("code"))
            p.future.set_exception(SubscribeError(code, str(obj.get("message", ""))) if p.kind in (
                "subscribe", "unsubscribe") else ClientError(f"{code}: {obj.get('message', '')}"))
            return
        if obj.get("type") == "subscribed":
            positions = obj.get("positions") or {}
            recovered = obj.get("recovered") or {}
            errors = obj.get("recovery_errors") or {}
            for topic in p.topics:
                sub = self._subs.get(topic)
                if sub is None:
                    continue
                pos = positions.get(topic)
                if recovered.get(topic) is False:
                    self._deliver(Message("resync", topic, errors.get(topic, "recovery impossible")))
                if recovered.get(topic) is not True and isinstance(pos, dict):
                    # a fresh subscription, or a failed recovery: continue from the current position
                    # (a first subscription with `history` gets the backlog before it: accept that)
                    offset = int(pos.get("offset") or 0)
                    if sub.epoch is None and sub.history:
                        offset = max(0, offset - sub.history)
                    sub.epoch, sub.offset = pos.get("epoch"), offset
        p.future.set_result(obj)
