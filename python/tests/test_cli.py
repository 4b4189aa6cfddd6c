"""python -m wavelane demo / echo."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time


import pytest
import wavelane
from wavelane.__main__ import handle_demo_events, main, make_demo_server
from conftest import Collector, http_get, open_client, recv, recv_json, request, run

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(wavelane.__file__)))


@pytest.fixture
def demo():
    """A started demo server whose events go through the demo's own handler, as in `run_demo`."""
    srv = make_demo_server(port=0)
    srv.start()
    nicks = {}
    events = Collector(srv, handler=lambda e: handle_demo_events(srv, [e], nicks))
    try:
        yield srv
    finally:
        events.close()
        srv.stop()


def test_demo_page_served_at_root(demo):
    status, headers, body = http_get(demo.port, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"<html" in body and b"WebSocket" in body


def test_demo_relays_chat_to_room(demo):
    srv = demo

    async def main_():
        ann, _ = await open_client(srv, "/ws")
        bob, _ = await open_client(srv, "/ws")
        for ws in (ann, bob):
            reply = await request(ws, {"type": "subscribe", "topics": ["room:lobby"], "id": 1})
            assert reply["type"] == "subscribed"
        await ann.send(json.dumps({"type": "chat", "room": "lobby", "nick": "ann", "text": "hi"}))
        for ws in (ann, bob):
            msg = await recv_json(ws)
            assert msg["topic"] == "room:lobby"
            assert msg["data"]["nick"] == "ann" and msg["data"]["text"] == "hi"
        await ann.close()
        await bob.close()

    run(main_())


def test_demo_rooms_show_who_is_here_and_recover_after_a_reconnect(demo):
    srv = demo

    async def main_():
        ann, ready = await open_client(srv, "/ws")
        await ann.send(json.dumps({"type": "hello", "nick": "ann"}))
        reply = await request(ann, {"type": "subscribe", "topics": ["room:lobby"], "id": 1, "presence": True})
        position = reply["positions"]["room:lobby"]
        for _ in range(50):  # the hello goes through Python: wait for its info to show
            members = srv.presence("room:lobby")
            if members and members[0]["info"] == {"nick": "ann"}:
                break
            await asyncio.sleep(0.02)
        assert members == [{"user": None, "conn": ready["conn"], "node": srv.node_id, "info": {"nick": "ann"}}]
        await ann.close()
        bob, _ = await open_client(srv, "/ws")
        await request(bob, {"type": "subscribe", "topics": ["room:lobby"], "id": 1})
        for text in ("one", "two"):
            await bob.send(json.dumps({"type": "chat", "room": "lobby", "nick": "bob", "text": text}))
        assert [(await recv_json(bob))["data"]["text"] for _ in range(2)] == ["one", "two"]
        ann, _ = await open_client(srv, "/ws")
        reply = await request(ann, {"type": "subscribe", "topics": ["room:lobby"], "id": 2,
                                    "recover": {"room:lobby": position}})
        assert reply["recovered"] == {"room:lobby": True}
        assert [(await recv_json(ann))["data"]["text"] for _ in range(2)] == ["one", "two"]
        await ann.close()
        await bob.close()

    run(main_())


def _spawn(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wavelane", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r":(\d+)/", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, int(m.group(1))


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_echo_command_echoes_exactly():
    proc, port = _spawn("echo", "--host", "127.0.0.1", "--port", "0")
    try:
        from websockets.asyncio.client import connect

        async def main_():
            async with connect(f"ws://127.0.0.1:{port}/", max_size=None, open_timeout=5) as ws:
                # A pure echo: no ready message, control-looking JSON is echoed too.
                for m in ['{"type":"ping","id":1}', "hello", b"\x00\x01binary", "", "é" * 1000, b"x" * 200_000]:
                    await ws.send(m)
                    assert await recv(ws) == m

        run(main_())
    finally:
        _stop(proc)


def test_demo_command_prints_url_and_stops_on_ctrl_c():
    proc, port = _spawn("demo", "--port", "0")
    try:
        status, _, body = http_get(port, "/")
        assert status == 200 and b"Wavelane chat" in body
    finally:
        _stop(proc)


def test_cli_reports_port_in_use(capsys):
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        assert main(["echo", "--port", str(blocker.getsockname()[1])]) == 1
        assert "cannot start" in capsys.readouterr().err
    finally:
        blocker.close()


@pytest.mark.parametrize("command, path", [("demo", "/ws"), ("echo", "/")])
def test_sigterm_closes_clients_with_1001_not_1006(command, path):
    proc, port = _spawn(command, "--host", "127.0.0.1", "--port", "0")
    try:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async def main_():
            async with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=5) as ws:
                await ws.send("hello")
                await asyncio.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1001, ws.close_code

        run(main_())
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        proc.kill()
        proc.wait(5)


def _cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVELANE_")}
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "wavelane", *args], env=env, capture_output=True,
                          text=True, timeout=30)


def test_gentoken_prints_a_token_the_server_accepts():
    secret = "gentoken-secret-0123456789abcdef0123"
    done = _cli("gentoken", "--secret", secret, "--sub", "alice", "--exp", "120")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    import jwt as pyjwt

    claims = pyjwt.decode(token, secret, algorithms=["HS256"])
    assert claims["sub"] == "alice" and 110 <= claims["exp"] - time.time() <= 121
    srv = wavelane.Server(port=0, jwt_secret=secret).start()
    other = wavelane.Server(port=0, jwt_secret="another-secret-0123456789abcdef012").start()
    try:
        async def main_():
            ws, ready = await open_client(srv, f"/?token={token}")
            assert ready["user"] == "alice"
            await ws.close()
            from websockets.exceptions import InvalidStatus
            with pytest.raises(InvalidStatus) as info:
                await open_client(other, f"/?token={token}")
            assert info.value.response.status_code == 401

        run(main_())
    finally:
        srv.stop(1.0)
        other.stop(1.0)
    short = _cli("gentoken", "--secret", "short", "--sub", "bob")
    assert short.returncode == 0 and "warning" in short.stderr


def test_check_config_exits_1_naming_the_bad_key(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"port": 9000, "jwt_secret": "x" * 40, "reuse_port": True}))
    done = _cli("check-config", str(good))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout
    for content, key in (
        ({"port": 9000, "max_mesage_size": 10}, "max_mesage_size"),  # unknown key
        ({"port": "9000"}, "port"),  # bad type (Python check)
        ({"max_message_size": 1}, "max_message_size"),  # bad value (engine check)
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(content))
        done = _cli("check-config", str(bad))
        assert done.returncode == 1, (content, done.stdout, done.stderr)
        assert key in done.stderr and f"key: {key}" in done.stderr, done.stderr
    done = _cli("check-config", str(tmp_path / "missing.toml"))
    assert done.returncode == 1 and "cannot read" in done.stderr
