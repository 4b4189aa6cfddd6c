"""The framework examples in docs/examples/, run for real: each app in its own process (uvicorn,
Django's runserver, a Celery worker) on loopback ports, a real ``wavelane.Client`` on the other end.

The frameworks are optional dependencies of these tests only. A missing one skips the test
locally; CI (``.ci/run``) sets ``WAVELANE_REQUIRE_EXAMPLES=1``, which turns that into a failure.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

import wavelane
from cluster import free_port, make_redis, redis_server, topic_channel  # noqa: F401  (fixtures by name)
from wavelane.client import Message, SubscribeError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "docs", "examples")
SECRET = "examples-test-secret-0123456789abcdef"


def require(*modules: str) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            msg = f"{name} is not installed ({exc}); pip install {name}"
            if os.environ.get("WAVELANE_REQUIRE_EXAMPLES") == "1":
                pytest.fail(msg)
            pytest.skip(msg)


def app_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python"), EXAMPLES, env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class App:
    """A subprocess with its output in a file (shown when a test fails); always killed at the end."""

    def __init__(self, args: List[str], env: Dict[str, str], cwd: str, tmp_path: Any, name: str):
        self.log_path = tmp_path / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                return None
        self.log.close()
        return self.proc.returncode


def wait_http(app: App, url: str, timeout: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert app.proc.poll() is None, f"app exited with {app.proc.returncode}:\n{app.output()}"
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout}s:\n{app.output()}")
            time.sleep(0.1)


def wait_port(app: App, port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        assert app.proc.poll() is None, f"app exited with {app.proc.returncode}:\n{app.output()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"port {port} not open within {timeout}s:\n{app.output()}")
            time.sleep(0.1)


async def recv_where(client: wavelane.Client, pred: Callable[[Message], bool], timeout: float = 10.0) -> Message:
    """The first item of the client's stream matching ``pred`` (skipping heartbeats and the like)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no matching message in time"
        msg = await client.recv(timeout=left)
        if pred(msg):
            return msg


def run(coro: Any, timeout: float) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ------------------------------------------------------------------------------------ FastAPI


def test_fastapi_app_publishes_over_http_and_consumes_client_messages(tmp_path):
    require("fastapi", "uvicorn", "httpx", "jwt")
    import httpx

    http_port, ws_port = free_port(), free_port()
    app = App([sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(http_port)],
              app_env(WAVELANE_PORT=str(ws_port), WAVELANE_JWT_SECRET=SECRET), EXAMPLES, tmp_path, "uvicorn")
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_http(app, f"{base}/stats")

        async def main() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:
                minted = (await http.post("/token/alice")).json()
                assert minted["url"] == f"ws://127.0.0.1:{ws_port}/"
                async with wavelane.Client(minted["url"], token=minted["token"], reconnect=False) as client:
                    assert client.ready is not None
                    await client.subscribe("news:sport")
                    with pytest.raises(SubscribeError):  # client_topics: deny by default
                        await client.subscribe("admin:audit")

                    r = await http.post("/publish/news:sport", json={"score": [2, 1]})
                    assert r.status_code == 200 and r.json() == {"offset": 1}
                    msg = await recv_where(client, lambda m: m.kind == "message")
                    assert (msg.topic, msg.data, msg.offset) == ("news:sport", {"score": [2, 1]}, 1)

                    await client.send({"hello": "app"})
                    echo = await recv_where(client, lambda m: m.kind == "direct" and isinstance(m.data, dict)
                                            and m.data.get("type") == "echo")
                    assert echo.data["data"] == {"hello": "app"}
                    stats = (await http.get("/stats")).json()
                    assert stats["messages"] == 1 and stats["connected"] == 1

                # a token signed with another secret is refused before the upgrade
                bad = (await http.post("/token/mallory")).json()["token"][:-2] + "xx"
                with pytest.raises(wavelane.client.ConnectionClosed):
                    async with wavelane.Client(minted["url"], token=bad, reconnect=False):
                        pass

        run(main(), 25)
        code = app.stop(signal.SIGTERM, 20)
        # uvicorn re-raises SIGTERM after a clean shutdown (exit -15); either way the lifespan ran to its end
        assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in app.output(), app.output()  # lifespan shutdown: drain_and_stop, consumer ends
    finally:
        app.stop(signal.SIGKILL, 5)


async def wait_numsub(redis: Any, topic: str, timeout: float = 10.0) -> None:
    """Until a server's Redis subscription to ``topic`` is live (a publication before it is not
    for that server: Redis pub/sub keeps nothing for absent subscribers)."""
    deadline = time.monotonic() + timeout
    while redis.numsub(topic_channel(topic)) < 1:
        assert time.monotonic() < deadline, f"no server subscribed to {topic}'s channel"
        await asyncio.sleep(0.02)


def test_fastapi_app_under_two_uvicorn_workers_is_one_server_through_redis(tmp_path, redis_server):
    """``uvicorn --workers 2``: each worker's lifespan starts a server on the same port (reuse_port);
    with redis_url a POST handled by either worker reaches the clients of both."""
    require("fastapi", "uvicorn", "httpx", "jwt")
    import httpx

    http_port, ws_port = free_port(), free_port()
    app = App([sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(http_port),
               "--workers", "2"],
              app_env(WAVELANE_PORT=str(ws_port), WAVELANE_JWT_SECRET=SECRET, WAVELANE_REDIS_URL=redis_server.url),
              EXAMPLES, tmp_path, "uvicorn-workers")
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_http(app, f"{base}/stats")
        http_nodes = set()
        deadline = time.monotonic() + 15
        while len(http_nodes) < 2:  # both workers' lifespans ran (a new TCP connection per request)
            assert time.monotonic() < deadline, f"one worker only: {http_nodes}\n{app.output()}"
            http_nodes.add(httpx.get(f"{base}/stats", timeout=2).json()["node"])
            time.sleep(0.05)

        async def main() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:
                minted = (await http.post("/token/carol")).json()
                clients = []
                try:
                    for _ in range(12):
                        c = wavelane.Client(minted["url"], token=minted["token"], reconnect=False)
                        await c.connect()
                        clients.append(c)
                        await c.subscribe("news:workers")
                    ws_nodes = set()
                    for c in clients:
                        await c.send("which")
                        echo = await recv_where(c, lambda m: m.kind == "direct" and isinstance(m.data, dict)
                                                and m.data.get("type") == "echo")
                        ws_nodes.add(echo.data["node"])
                    assert ws_nodes == http_nodes, (ws_nodes, http_nodes)  # clients on both workers
                    deadline = time.monotonic() + 10
                    while redis_server.numsub(topic_channel("news:workers")) < 2:
                        assert time.monotonic() < deadline, "a worker never subscribed to the topic"
                        await asyncio.sleep(0.02)
                    for i in range(1, 6):  # each POST on a new HTTP connection: either worker handles it
                        r = httpx.post(f"{base}/publish/news:workers", json={"n": i}, timeout=5)
                        assert r.status_code == 200 and r.json() == {"offset": 0}  # Redis assigns offsets
                    for c in clients:
                        got = []
                        while len(got) < 5:
                            m = await recv_where(c, lambda m: m.kind == "message")
                            got.append((m.offset, m.data["n"]))
                        assert got == [(i, i) for i in range(1, 6)]  # every one, once, in order
                finally:
                    for c in clients:
                        await c.close()

        run(main(), 25)
    finally:
        app.stop(signal.SIGTERM, 10)
        app.stop(signal.SIGKILL, 5)


# ------------------------------------------------------------------------------------ Django

DJANGO = os.path.join(EXAMPLES, "django_example")


def test_django_views_mint_tokens_and_publish_through_redis_to_runwavelane(tmp_path, redis_server):
    require("django", "httpx", "jwt")
    import httpx

    http_port, ws_port = free_port(), free_port()
    env = app_env(WAVELANE_PORT=str(ws_port), WAVELANE_JWT_SECRET=SECRET, WAVELANE_REDIS_URL=redis_server.url,
                  DJANGO_SETTINGS_MODULE="settings")
    ws = App([sys.executable, "manage.py", "runwavelane"], env, DJANGO, tmp_path, "runwavelane")
    web = App([sys.executable, "manage.py", "runserver", f"127.0.0.1:{http_port}", "--noreload"],
              env, DJANGO, tmp_path, "runserver")
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_port(ws, ws_port)
        wait_http(web, f"{base}/token/probe")

        async def main() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=10.0) as http:
                minted = (await http.get("/token/alice")).json()
                assert minted["url"] == f"ws://127.0.0.1:{ws_port}/"
                async with wavelane.Client(minted["url"], token=minted["token"], reconnect=False) as client:
                    assert client.ready is not None
                    await client.subscribe("news:django")
                    await wait_numsub(redis_server, "news:django")
                    # the view's Publisher is another process than runwavelane: only Redis links them
                    r = await http.post("/publish/news:django", json={"headline": "hi"})
                    assert r.status_code == 200, r.text
                    msg = await recv_where(client, lambda m: m.kind == "message")
                    assert (msg.topic, msg.data, msg.offset) == ("news:django", {"headline": "hi"}, 1)
                    r = await http.post("/publish/news:django", json={"headline": "again"})
                    msg = await recv_where(client, lambda m: m.kind == "message")
                    assert (msg.data, msg.offset) == ({"headline": "again"}, 2)  # the same Publisher, next offset

                    await client.send({"ping": 1})  # the management command's loop echoes
                    echo = await recv_where(client, lambda m: m.kind == "direct" and isinstance(m.data, dict)
                                            and m.data.get("type") == "echo")
                    assert echo.data["data"] == {"ping": 1}
                    assert (await http.post("/publish/news:django", content=b"not json")).status_code == 400

        run(main(), 25)
        assert ws.stop(signal.SIGTERM, 10) == 0, ws.output()  # drain_and_stop, then a clean exit
        assert "wavelane stopped" in ws.output()
    finally:
        ws.stop(signal.SIGKILL, 5)
        web.stop(signal.SIGKILL, 5)


# ------------------------------------------------------------------------------------ Celery


def test_celery_worker_task_publishes_to_a_servers_client(tmp_path, redis_server):
    require("celery", "redis", "jwt")
    import jwt

    broker = f"{redis_server.url}/1"
    env = app_env(CELERY_BROKER_URL=broker, WAVELANE_REDIS_URL=redis_server.url)
    # a real worker: prefork pool, so the task's Publisher is created in a forked child
    worker = App([sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool=prefork",
                  "--concurrency=1", "--loglevel=info", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                 env, EXAMPLES, tmp_path, "celery")
    server = wavelane.Server(port=0, threads=2, jwt_secret=SECRET, redis_url=redis_server.url,
                             client_topics=["news:*"])
    server.start()
    old_broker = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = broker
    sys.path.insert(0, EXAMPLES)
    try:
        sys.modules.pop("celery_tasks", None)
        celery_tasks = importlib.import_module("celery_tasks")  # the caller's side: only sends to the broker
        assert server.wait_for_redis(10)

        async def main() -> None:
            drainer = asyncio.ensure_future(_consume(server))
            token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
            try:
                async with wavelane.Client(f"ws://127.0.0.1:{server.port}/", token=token, reconnect=False) as client:
                    await client.subscribe("news:celery")
                    await wait_numsub(redis_server, "news:celery")
                    await asyncio.to_thread(celery_tasks.notify.delay, "news:celery", {"job": 1})
                    await asyncio.to_thread(celery_tasks.notify_user.delay, "bob", "done")
                    msg = await recv_where(client, lambda m: m.kind == "message", timeout=20)
                    assert (msg.topic, msg.data, msg.offset) == ("news:celery", {"job": 1}, 1)
                    direct = await recv_where(client, lambda m: m.kind == "direct" and m.data == "done", timeout=10)
                    assert direct.data == "done"
            finally:
                drainer.cancel()

        try:
            run(main(), 28)
        finally:
            celery_tasks.app.close()  # the caller's broker connections
        assert "celery_tasks.notify" in worker.output() and "succeeded" in worker.output(), worker.output()
    finally:
        sys.path.remove(EXAMPLES)
        sys.modules.pop("celery_tasks", None)
        if old_broker is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = old_broker
        server.stop(1.0)
        worker.stop(signal.SIGTERM, 10)
        worker.stop(signal.SIGKILL, 5)


async def _consume(server: wavelane.Server) -> None:
    """The test server's application side (events are only taken, nothing to answer)."""
    async for _ in server.events():
        pass
