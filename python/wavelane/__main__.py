"""Command line: ``python -m wavelane demo|echo [--host H] [--port P]``.

* ``demo`` serves a small chat page at ``/`` (built on the browser client ``/wavelane.js``) and
  the WebSocket endpoint at ``/ws`` on the same port. A page logs in with an RPC
  (``login {"nick"}``): the server checks the nick and binds it to the connection, so every chat
  line carries the nick the server verified, not one the client claims. Pages subscribe to
  ``room:<name>`` themselves (with ``history`` to see the backlog) and send
  ``{"type":"chat","room":"lobby","text":"hi"}``, which the server publishes to the room; the
  server publishes live counters to ``stats:demo`` once a second, latest-state-wins (``key``).
* ``echo`` (no auth, any path) sends every message back to its sender exactly as received:
  text as text, binary as binary. Used by the Autobahn conformance suite.

Ctrl-C stops either cleanly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from typing import Any, Dict, List, Optional

from . import Server, StartError, __version__

MAX_TEXT = 2000
MAX_NICK = 32
MAX_ROOM = 64


def _chat_page() -> bytes:
    return resources.files("wavelane").joinpath("static/chat.html").read_bytes()  # type: ignore[attr-defined]


def make_demo_server(host: str = "127.0.0.1", port: int = 8765, redis_url: Optional[str] = None) -> Server:
    """The demo chat server (not started): page at ``/``, WebSocket at ``/ws``.

    Rooms keep their last 200 messages, so a reconnecting page gets what it missed, and show who
    is in them. With ``redis_url``, several demo servers (on other ports or machines) share rooms.
    """
    server = Server(
        host,
        port,
        ws_path="/ws",
        parse_json=True,
        max_message_size=64 * 1024,
        history_size=200,
        presence=True,
        redis_url=redis_url,
        # Deny by default: pages subscribe to rooms and the counters, nothing else (docs/security.md).
        client_topics=["room:*", "stats:*"],
    )
    server.add_route("/", _chat_page(), "text/html; charset=utf-8")
    return server


class DemoState:
    """What the demo's Python side knows: the verified nick of each connection, counters."""

    def __init__(self) -> None:
        self.nicks: Dict[int, str] = {}
        self.messages = 0
        self.last_stats = 0.0

    def login(self, conn: int, wanted: Any) -> str:
        nick = _clean(wanted, MAX_NICK) or "anon"
        taken = {n for c, n in self.nicks.items() if c != conn}
        base, i = nick, 2
        while nick in taken:  # nicks are unique among the connected pages
            suffix = f"-{i}"
            nick = base[: MAX_NICK - len(suffix)] + suffix
            i += 1
        self.nicks[conn] = nick
        return nick


def make_echo_server(host: str = "127.0.0.1", port: int = 9001) -> Server:
    """The echo server used for conformance testing (not started)."""
    big = 64 * 1024 * 1024
    return Server(
        host,
        port,
        ws_path=None,
        ready_message=False,
        control_messages=False,
        max_message_size=big,
        max_frame_size=big,
        max_send_queue=4 * big,
        idle_timeout=300,
    )


def _clean(value: Any, limit: int) -> Optional[str]:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] if value else None


def handle_demo_events(server: Server, events: List[Any], state: DemoState) -> None:
    """One batch of drained events: logins (RPC), chat lines published to their room."""
    for kind, conn, data in events:
        if kind == "disconnect":
            state.nicks.pop(conn, None)
        elif kind == "rpc":
            if data.get("method") == "login" and isinstance(data.get("params"), dict):
                nick = state.login(conn, data["params"].get("nick"))
                server.set_presence_info(conn, {"nick": nick})
                server.reply(conn, data["id"], {"nick": nick})
            else:
                server.reply(conn, data["id"], error={"code": "no_such_method", "message": str(data.get("method"))})
        elif kind == "message" and isinstance(data, dict) and data.get("type") == "chat":
            nick = state.nicks.get(conn)
            room = _clean(data.get("room"), MAX_ROOM)
            text = _clean(data.get("text"), MAX_TEXT)
            if nick is None:  # not logged in: nothing is published under a claimed name
                server.send(conn, json.dumps({"type": "notice", "text": "log in first"}))
                continue
            if room is None or text is None:
                continue
            state.messages += 1
            server.publish(
                f"room:{room}",
                {"type": "chat", "room": room, "nick": nick, "conn": str(conn), "text": text, "ts": time.time()},
            )
    now = time.monotonic()
    if now - state.last_stats >= 1.0:  # live counters, latest-state-wins for slow readers
        state.last_stats = now
        server.publish("stats:demo", {"online": len(state.nicks), "messages": state.messages,
                                      "time": time.time()}, key="stats", priority="low")


def run_demo(host: str, port: int, redis_url: Optional[str] = None) -> None:
    server = make_demo_server(host, port, redis_url)
    server.start()
    shared = f", rooms shared through {redis_url}" if redis_url else ""
    print(f"wavelane {__version__} chat demo: http://{host}:{server.port}/{shared}  (Ctrl-C to stop)", flush=True)
    state = DemoState()
    try:
        while True:
            handle_demo_events(server, server.drain(timeout=0.5), state)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("stopped", flush=True)


def run_echo(host: str, port: int) -> None:
    server = make_echo_server(host, port)
    server.start()
    print(f"wavelane {__version__} echo server: ws://{host}:{server.port}/  (Ctrl-C to stop)", flush=True)
    send = server.send
    try:
        while True:
            for kind, conn, data in server.drain(max_events=4096, timeout=1.0):
                if kind == "message":
                    send(conn, data)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("stopped", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wavelane", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"wavelane {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, default_port, help_text in (
        ("demo", 8765, "serve the chat demo page and its WebSocket endpoint"),
        ("echo", 9001, "echo every message back to its sender (conformance testing)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=default_port, help=f"port (default {default_port}; 0 = any)")
        if name == "demo":
            p.add_argument("--redis-url", default=None,
                           help="share rooms with other demo servers through this Redis (redis://host:port/db)")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            run_demo(args.host, args.port, args.redis_url)
        else:
            run_echo(args.host, args.port)
    except StartError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
