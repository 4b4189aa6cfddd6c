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
from wavelane.__main__ import DemoState, handle_demo_events, main, make_demo_server
from conftest import Collector, http_get, open_client, recv, recv_json, request, run

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(wavelane.__file__)))


@pytest.fixture
def demo():
    """A started demo server whose events go through the demo's own handler, as in `run_demo`."""
    srv = make_demo_server(port=0)
    srv.start()
    state = DemoState()
    events = Collector(srv, handler=lambda e: handle_demo_events(srv, [e], state))
    try:
        yield srv
    finally:
        events.close()
        srv.stop()


def test_demo_page_served_at_root(demo):
    status, headers, body = http_get(demo.port, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"<html" in body and b'from "/wavelane.js"' in body
    status, headers, body = http_get(demo.port, "/wavelane.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert b"export class Wavelane" in body


async def _login(ws, nick, id=100):
    reply = await request(ws, {"type": "rpc", "method": "login", "params": {"nick": nick}, "id": id})
    assert reply["type"] == "reply" and reply["id"] == id, reply
    return reply["result"]["nick"]


def test_demo_relays_chat_with_the_nick_the_server_verified(demo):
    srv = demo

    async def main_():
        ann, ann_ready = await open_client(srv, "/ws")
        bob, _ = await open_client(srv, "/ws")
        eve, _ = await open_client(srv, "/ws")
        assert await _login(ann, "ann") == "ann"
        assert await _login(bob, "bob") == "bob"
        assert await _login(eve, "ann") == "ann-2"  # nicks are unique: eve cannot pose as ann
        for ws in (ann, bob):
            reply = await request(ws, {"type": "subscribe", "topics": ["room:lobby"], "id": 1})
            assert reply["type"] == "subscribed"
        # a claimed nick in the message is ignored: the line carries the verified one
        await ann.send(json.dumps({"type": "chat", "room": "lobby", "nick": "bob", "text": "hi"}))
        for ws in (ann, bob):
            msg = await recv_json(ws)
            assert msg["topic"] == "room:lobby"
            assert (msg["data"]["nick"], msg["data"]["conn"], msg["data"]["text"]) == ("ann", ann_ready["conn"], "hi")
        # not logged in: nothing is published
        carl, _ = await open_client(srv, "/ws")
        await carl.send(json.dumps({"type": "chat", "room": "lobby", "text": "anonymous"}))
        assert (await recv_json(carl))["type"] == "notice"
        with pytest.raises(asyncio.TimeoutError):
            await recv_json(bob, timeout=0.3)
        for ws in (ann, bob, eve, carl):
            await ws.close()

    run(main_())


def test_demo_publishes_live_counters_latest_state_wins(demo):
    srv = demo

    async def main_():
        ws, _ = await open_client(srv, "/ws")
        reply = await request(ws, {"type": "subscribe", "topics": ["stats:demo"], "id": 1})
        assert reply["type"] == "subscribed"
        # counters go out at most once a second, after an event: make events (logins) until they come
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        stats, n = [], 1
        while not stats and loop.time() < deadline:
            n += 1
            await ws.send(json.dumps({"type": "rpc", "method": "login", "params": {"nick": "ann"}, "id": n}))
            try:
                while not stats:
                    m = await recv_json(ws, timeout=0.6)
                    # (a publication computed before this connection counted may come first)
                    if m.get("topic") == "stats:demo" and m["data"]["online"] == 1:
                        stats.append(m)
            except asyncio.TimeoutError:
                pass
        assert stats and stats[0]["data"]["online"] == 1, stats
        await ws.close()

    run(main_())


def test_demo_rooms_show_who_is_here_and_recover_after_a_reconnect(demo):
    srv = demo

    async def main_():
        ann, ready = await open_client(srv, "/ws")
        await _login(ann, "ann")
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
        await _login(bob, "bob")
        await request(bob, {"type": "subscribe", "topics": ["room:lobby"], "id": 1})
        for text in ("one", "two"):
            await bob.send(json.dumps({"type": "chat", "room": "lobby", "text": text}))
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


SYNC_APP = '''
import json
def handle(server, kind, conn, data):
    if kind == "message":
        if data == "boom":
            raise RuntimeError("an app bug")  # logged; the server goes on
        server.send(conn, json.dumps({"echo": data, "kind": kind}))
'''

ASYNC_APP = '''
import asyncio, json
async def handle(server, kind, conn, data):
    if kind == "message":
        if data == "boom":
            raise RuntimeError("an app bug")
        await asyncio.sleep(0)
        server.send(conn, json.dumps({"echo": data, "async": True}))
'''


@pytest.mark.parametrize("source, marker", [(SYNC_APP, "kind"), (ASYNC_APP, "async")])
def test_serve_runs_an_app_from_a_config_file_and_drains_on_sigterm(tmp_path, source, marker):
    (tmp_path / "myapp.py").write_text(source)
    (tmp_path / "wavelane.json").write_text(json.dumps({"port": 0, "ws_path": "/ws", "client_topics": ["room:*"]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVELANE_")}
    env["PYTHONPATH"] = PYTHON_DIR
    proc = subprocess.Popen([sys.executable, "-m", "wavelane", "serve", "--config", "wavelane.json",
                             "--app", "myapp:handle"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r":(\d+)/", line)
        assert m and "myapp:handle" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(m.group(1))
        from websockets.asyncio.client import connect

        async def main_():
            async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as ws:
                assert json.loads(await recv(ws))["type"] == "ready"
                await ws.send("boom")
                await ws.send("hi")
                reply = json.loads(await recv(ws))
                assert reply["echo"] == "hi" and marker in reply
                proc.send_signal(signal.SIGTERM)
                from websockets.exceptions import ConnectionClosed

                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                return ws.close_code

        assert run(main_()) == 1001
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "stopped" in out
        assert "an app bug" in err  # the app's exception was logged, not fatal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_bad_app_or_config(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"portt": 1}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVELANE_")}
    env["PYTHONPATH"] = PYTHON_DIR
    for args, needle in ((["--app", "nosuchmodule:f"], "cannot load the app"),
                         (["--app", "nocolon"], "module:function"),
                         (["--config", "bad.json", "--app", "json:dumps"], "portt")):
        r = subprocess.run([sys.executable, "-m", "wavelane", "serve", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and needle in r.stderr, (args, r.stderr)
