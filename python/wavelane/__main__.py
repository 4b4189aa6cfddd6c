"""Command line: ``python -m wavelane demo|echo|gentoken|check-config``.

* ``demo`` serves a small chat page at ``/`` (built on the browser client ``/wavelane.js``) and
  the WebSocket endpoint at ``/ws`` on the same port. A page logs in with an RPC
  (``login {"nick"}``): the server checks the nick and binds it to the connection, so every chat
  line carries the nick the server verified, not one the client claims. Pages subscribe to
  ``room:<name>`` themselves (with ``history`` to see the backlog) and send
  ``{"type":"chat","room":"lobby","text":"hi"}``, which the server publishes to the room; the
  server publishes live counters to ``stats:demo`` once a second, latest-state-wins (``key``).
* ``echo`` (no auth, any path) sends every message back to its sender exactly as received:
  text as text, binary as binary. Used by the Autobahn conformance suite.

* ``gentoken --secret S --sub alice [--exp 3600]`` prints an HS256 token the server accepts.
* ``check-config FILE`` validates a configuration file (and ``WAVELANE_*`` variables); exit 1
  naming the bad key.

SIGTERM or SIGINT (Ctrl-C) stop ``demo`` and ``echo`` gracefully (``drain_and_stop``): new
upgrades get 503, each client is closed with 1001 once its queued messages went out.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import signal
import sys
import time
from importlib import resources
from typing import Any, Dict, List, Optional

from . import ConfigError, Server, StartError, __version__

#: Seconds a graceful stop (SIGTERM / SIGINT) waits for clients before closing the rest.
DRAIN_TIMEOUT = 10.0


class _Terminate(Exception):
    """Raised in the main thread by the SIGTERM handler (like KeyboardInterrupt for SIGINT)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminate()


def _serve_until_signal(server: Server, loop: Any) -> None:
    """Run ``loop()`` until SIGTERM or SIGINT, then stop gracefully (clients get 1001)."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        loop()
    except (KeyboardInterrupt, _Terminate):
        pass
    finally:
        try:
            server.drain_and_stop(DRAIN_TIMEOUT)
        finally:
            signal.signal(signal.SIGTERM, previous)

MAX_TEXT = 2000
MAX_NICK = 32
MAX_ROOM = 64


def _chat_page() -> bytes:
    return resources.files("wavelane").joinpath("static/chat.html").read_bytes()  # type: ignore[attr-defined,unused-ignore]


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
                login = state.login(conn, data["params"].get("nick"))
                server.set_presence_info(conn, {"nick": login})
                server.reply(conn, data["id"], {"nick": login})
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

    def loop() -> None:
        while True:
            handle_demo_events(server, server.drain(timeout=0.5), state)

    _serve_until_signal(server, loop)
    print("stopped", flush=True)


def run_echo(host: str, port: int) -> None:
    server = make_echo_server(host, port)
    server.start()
    print(f"wavelane {__version__} echo server: ws://{host}:{server.port}/  (Ctrl-C to stop)", flush=True)
    send = server.send

    def loop() -> None:
        while True:
            for kind, conn, data in server.drain(max_events=4096, timeout=1.0):
                if kind == "message":
                    send(conn, data)

    _serve_until_signal(server, loop)
    print("stopped", flush=True)


def load_app(spec: str) -> Any:
    """``module:function`` (the module importable from the current directory or ``sys.path``)."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app must be module:function, not {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the current directory's modules
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec} is not callable")
    return target


def run_serve(config_path: Optional[str], app_spec: str, overrides: Dict[str, Any]) -> None:
    """Run a server from a config file (+ WAVELANE_* variables + overrides) whose events go to
    ``app(server, kind, conn, data)``: called on the drain thread for a plain function, awaited
    on an asyncio loop fed by ``server.events()`` for an ``async def``. An exception in the app is
    logged and the next event goes on. SIGTERM/SIGINT: ``drain_and_stop`` (clients get 1001,
    /health answers 503 meanwhile)."""
    import asyncio
    import inspect
    import logging

    from .config import load_config

    app = load_app(app_spec)
    server = Server(**load_config(config_path, **overrides))
    server.start()
    log = logging.getLogger("wavelane.serve")
    print(f"wavelane {__version__} serving ws://{server.config.get('host', '127.0.0.1')}:{server.port}/ "
          f"with {app_spec}  (Ctrl-C or SIGTERM to stop)", flush=True)

    if inspect.iscoroutinefunction(app):
        async def consume() -> None:
            async for kind, conn, data in server.events():
                try:
                    await app(server, kind, conn, data)
                except _Terminate:  # SIGTERM arrived while the app ran: stop, not an app failure
                    raise
                except Exception:
                    log.exception("the app failed on a %s event of connection %s", kind, conn)

        def loop() -> None:
            asyncio.run(consume())
    else:
        def loop() -> None:
            while True:
                for kind, conn, data in server.drain(timeout=0.5):
                    try:
                        app(server, kind, conn, data)
                    except _Terminate:
                        raise
                    except Exception:
                        log.exception("the app failed on a %s event of connection %s", kind, conn)

    _serve_until_signal(server, loop)
    print("stopped", flush=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_token(secret: str, sub: str, exp: Optional[float] = 3600, now: Optional[float] = None,
               claims: Optional[Dict[str, Any]] = None) -> str:
    """An HS256 JWT for ``sub`` signed with ``secret`` (what ``jwt_secret`` verifies), expiring
    ``exp`` seconds from now (``None``: no ``exp``)."""
    issued = int(time.time() if now is None else now)
    payload: Dict[str, Any] = {"sub": sub, "iat": issued}
    if exp is not None:
        payload["exp"] = issued + int(exp)
    payload.update(claims or {})
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    sig = hmac.new(secret.encode("utf-8"), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(sig)}"


def check_config(path: str) -> Dict[str, Any]:
    """Load ``path`` (plus ``WAVELANE_*`` variables) and validate it as the engine would, binding
    nothing. Raises :class:`ConfigError` naming the bad key."""
    from .config import load_config

    cfg = load_config(path)
    Server(**cfg)  # type and value checks (Python, then the engine); nothing is bound
    return cfg


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
    p = sub.add_parser("serve", help="run a server from a config file; its events go to an app function")
    p.add_argument("--config", default=None, help="config file (.toml, .yaml, .json; default: $WAVELANE_CONFIG)")
    p.add_argument("--app", required=True, help="module:function called as function(server, kind, conn, data)")
    p.add_argument("--host", default=None, help="overrides the config's host")
    p.add_argument("--port", type=int, default=None, help="overrides the config's port")
    p = sub.add_parser("gentoken", help="print an HS256 token the server accepts (for tests and tools)")
    p.add_argument("--secret", required=True, help="the server's jwt_secret")
    p.add_argument("--sub", required=True, help="the user (JWT sub claim)")
    p.add_argument("--exp", type=float, default=3600, help="seconds until it expires (default 3600; 0 = no exp)")
    p = sub.add_parser("check-config", help="validate a configuration file (.toml, .yaml, .json); exit 1 naming the bad key")
    p.add_argument("file")
    args = parser.parse_args(argv)
    if args.command == "gentoken":
        if args.exp < 0:
            parser.error("--exp must be >= 0")
        if len(args.secret.encode("utf-8")) < 32:
            print("warning: a secret shorter than 32 bytes can be brute-forced offline", file=sys.stderr)
        print(make_token(args.secret, args.sub, args.exp or None))
        return 0
    if args.command == "check-config":
        try:
            cfg = check_config(args.file)
        except ConfigError as exc:
            where = f" (key: {exc.key})" if exc.key else ""
            print(f"error: {exc}{where}", file=sys.stderr)
            return 1
        print(f"{args.file}: ok ({len(cfg)} settings)")
        return 0
    try:
        if args.command == "demo":
            run_demo(args.host, args.port, args.redis_url)
        elif args.command == "serve":
            overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
            try:
                run_serve(args.config, args.app, overrides)
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            except (ImportError, AttributeError, ValueError) as exc:
                print(f"error: cannot load the app {args.app}: {exc}", file=sys.stderr)
                return 1
        else:
            run_echo(args.host, args.port)
    except StartError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
