"""Shared fixtures: real servers on ephemeral loopback ports, a background drainer, clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import pytest

import wavelane
from websockets.asyncio.client import ClientConnection, connect

Event = Tuple[str, int, Any]


class Collector:
    """Drains a server from a background thread and records every event.

    ``handler`` (optional) is called on the drain thread for each event, before it is recorded.
    """

    def __init__(self, server: wavelane.Server, handler: Optional[Callable[[Event], None]] = None):
        self.server = server
        self.handler = handler
        self.events: List[Event] = []
        self.cond = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="wavelane-drain", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            events = self.server.drain(1024, 0.05)
            if not events:
                if not self.server.running:
                    time.sleep(0.01)
                continue
            if self.handler is not None:
                for e in events:
                    self.handler(e)
            with self.cond:
                self.events.extend(events)
                self.cond.notify_all()

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        """The first recorded event matching ``pred`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for e in self.events[seen:]:
                    if pred(e):
                        return e
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event within {timeout}s; got {self.events[-10:]}")
                self.cond.wait(left)

    def wait_kind(self, kind: str, conn: Optional[int] = None, timeout: float = 5.0) -> Event:
        return self.wait_for(lambda e: e[0] == kind and (conn is None or e[1] == conn), timeout)

    def wait_count(self, pred: Callable[[Event], bool], n: int, timeout: float = 10.0) -> List[Event]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                matched = [e for e in self.events if pred(e)]
                if len(matched) >= n:
                    return matched
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(matched)}/{n} matching events within {timeout}s")
                self.cond.wait(left)

    def of(self, kind: str, conn: Optional[int] = None) -> List[Event]:
        with self.cond:
            return [e for e in self.events if e[0] == kind and (conn is None or e[1] == conn)]

    async def await_kind(self, kind: str, conn: Optional[int] = None, timeout: float = 5.0) -> Event:
        return await asyncio.to_thread(self.wait_kind, kind, conn, timeout)

    async def await_for(self, pred: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        return await asyncio.to_thread(self.wait_for, pred, timeout)

    def close(self) -> None:
        self._stop = True
        self.server.wake()
        self.thread.join(5)


@pytest.fixture
def make_server() -> Iterable[Callable[..., Tuple[wavelane.Server, Collector]]]:
    """Factory: ``server, events = make_server(**config)`` starts a server on port 0."""
    made: List[Tuple[wavelane.Server, Collector]] = []

    def factory(handler: Optional[Callable[[Event], None]] = None, **config: Any):
        config.setdefault("port", 0)
        config.setdefault("threads", 2)
        # Deny by default (client_topics=[]) would refuse the free subscriptions most tests make;
        # tests of topic access (test_access.py) and approval pass their own client_topics.
        config.setdefault("client_topics", ["*"])
        server = wavelane.Server(**config)
        server.start()
        collector = Collector(server, handler)
        made.append((server, collector))
        return server, collector

    yield factory
    for server, collector in made:
        collector.close()
        server.stop(1.0)


@pytest.fixture
def server(make_server):
    return make_server()


def run(coro, timeout: float = 30.0):
    """Run a coroutine to completion, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def url(server: wavelane.Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def open_client(
    server: wavelane.Server, path: str = "/", **kwargs: Any
) -> Tuple[ClientConnection, Dict[str, Any]]:
    """Connect, read the ``ready`` message; returns (websocket, ready)."""
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("max_size", None)
    ws = await connect(url(server, path), **kwargs)
    ready = await recv_json(ws)
    assert ready["type"] == "ready", ready
    return ws, ready


async def recv(ws: ClientConnection, timeout: float = 5.0):
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    frame = await recv(ws, timeout)
    assert isinstance(frame, str), frame
    return json.loads(frame)


async def request(ws: ClientConnection, msg: Dict[str, Any], timeout: float = 5.0) -> Any:
    await ws.send(json.dumps(msg))
    return await recv_json(ws, timeout)


def upgrade(
    port: int,
    headers: Iterable[Tuple[str, str]] = (),
    path: str = "/",
    timeout: float = 5.0,
    rcvbuf: Optional[int] = None,
) -> Tuple[socket.socket, int, Dict[str, str], bytes]:
    """Hand-made WebSocket upgrade on a raw socket.

    Returns (socket, status code, response headers with lower-case names, bytes after the
    headers). ``rcvbuf`` sets SO_RCVBUF before connecting (a small TCP window: a slow reader).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ] + [f"{k}: {v}" for k, v in headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed: Dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    parts = status_line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return sock, status, parsed, rest


def raw_upgrade(
    port: int, path: str = "/", headers: Iterable[Tuple[str, str]] = (), timeout: float = 5.0
) -> Tuple[socket.socket, str, bytes]:
    """Hand-made WebSocket upgrade on a raw socket: (socket, status line, bytes after headers)."""
    sock, status, _, rest = upgrade(port, headers, path, timeout)
    return sock, f"HTTP/1.1 {status} " + ("Switching Protocols" if status == 101 else ""), rest


def http_get(port: int, path: str = "/", timeout: float = 5.0) -> Tuple[int, Dict[str, str], bytes]:
    """Minimal HTTP/1.1 GET (Connection: close): (status, headers, body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# ES256 / ES384 signatures: PyJWT (cryptography, OpenSSL) does not normalize S, so about half of
# the tokens it mints are high-S, which the engine refuses by default (jwt_reject_high_s). Tests
# that mint ES tokens pass them through es_low_s (clients using PyJWT must do the same).
_EC_ORDER = {
    32: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,  # P-256
    48: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973,  # P-384
}


def es_with_s(token: str, low: bool) -> str:
    """The same ES256/ES384 token with its signature's ``s`` in the low (s <= n/2) or the high
    (n - s) form; both verify mathematically."""
    header, payload, sig_b64 = token.split(".")
    sig = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    half = len(sig) // 2
    n = _EC_ORDER[half]
    s = int.from_bytes(sig[half:], "big")
    if (s > n // 2) == low:
        s = n - s
    new = sig[:half] + s.to_bytes(half, "big")
    return f"{header}.{payload}." + base64.urlsafe_b64encode(new).rstrip(b"=").decode()


def es_low_s(token: str) -> str:
    """``token`` with a low-S signature (what the engine accepts by default)."""
    return es_with_s(token, low=True)
