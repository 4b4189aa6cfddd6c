"""Multi-instance mode through Redis: several Wavelane processes sharing one redis-server.

Each instance runs in its own process (``cluster_node.py``, driven by ``cluster.Node``); clients
are real WebSocket connections from this process; Redis is a throw-away ``redis-server`` per
test (``cluster.RedisProcess``), inspected with a raw RESP client (PUBSUB introspection).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

import wavelane
from cluster import (  # noqa: F401  (fixtures are used by name)
    Node,
    RedisProcess,
    await_until,
    make_node,
    make_redis,
    redis_server,
    topic_channel,
    user_channel,
)
from conftest import http_get, open_client, run

SECRET = "cluster-test-secret-0123456789abcdef"


def token(sub: str) -> str:
    return jwt.encode({"sub": sub}, SECRET, algorithm="HS256")


def cfg(redis: RedisProcess, **extra: Any) -> Dict[str, Any]:
    """A node configuration joined to ``redis`` (clients authenticate with ``token()``)."""
    return {"redis_url": redis.url, "jwt_secret": SECRET, **extra}


def _decode(frame: Any) -> Any:
    """Text frames that are JSON (everything the engine sends) decoded; other frames as they are."""
    if isinstance(frame, str):
        try:
            return json.loads(frame)
        except ValueError:
            return frame
    return frame


class Peer:
    """A WebSocket client of one node. Frames that are not what a call waits for are kept, in
    order, for the next reader (``frame()``); ``others`` collects non-``message`` frames seen
    while reading messages (join/leave/errors), so tests can assert on them."""

    def __init__(self, ws, ready: Dict[str, Any], name: str):
        self.ws = ws
        self.ready = ready
        self.conn = ready["conn"]
        self.name = name
        self.pending: collections.deque = collections.deque()
        self.others: List[Any] = []

    @classmethod
    async def open(cls, node: Node, user: Optional[str] = None) -> "Peer":
        user = user or "u-" + uuid.uuid4().hex[:8]
        ws, ready = await open_client(node, f"/?token={token(user)}")
        return cls(ws, ready, f"{user}@{node.name}")

    async def frame(self, timeout: float = 5.0) -> Any:
        if self.pending:
            return self.pending.popleft()
        return _decode(await asyncio.wait_for(self.ws.recv(), timeout))

    async def send(self, msg: Dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def ask(self, msg: Dict[str, Any], timeout: float = 5.0) -> Dict[str, Any]:
        """Send a control message carrying an ``id``; return the reply with that id (frames that
        arrive meanwhile are kept for later readers)."""
        assert "id" in msg
        await self.send(msg)
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: no reply to {msg} within {timeout}s; got {skipped[-5:]}")
                f = _decode(await asyncio.wait_for(self.ws.recv(), left))
                if isinstance(f, dict) and f.get("id") == msg["id"] and f.get("type") not in ("message", "join", "leave"):
                    return f
                skipped.append(f)
        finally:
            self.pending.extend(skipped)

    async def subscribe(self, topics: List[str], id_: Any = 1, **extra: Any) -> Dict[str, Any]:
        reply = await self.ask({"type": "subscribe", "topics": topics, "id": id_, **extra})
        assert reply.get("type") == "subscribed" and reply.get("topics") == topics, reply
        return reply

    async def _collect(self, enough: Callable[[List[Dict[str, Any]]], bool], timeout: float, what: str) -> List[Dict[str, Any]]:
        """Topic messages until ``enough(messages)``; other frames go to ``others``."""
        deadline = time.monotonic() + timeout
        out: List[Dict[str, Any]] = []
        while not enough(out):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: {what} within {timeout}s; got {len(out)}, last {out[-3:]}")
            try:
                f = await self.frame(left)
            except asyncio.TimeoutError:
                continue
            if isinstance(f, dict) and f.get("type") == "message":
                out.append(f)
            else:
                self.others.append(f)
        return out

    async def messages(self, n: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """The next ``n`` topic messages (within ``timeout`` s overall)."""
        return await self._collect(lambda out: len(out) >= n, timeout, f"fewer than {n} messages")

    async def until(self, pred: Callable[[Dict[str, Any]], bool], timeout: float = 10.0) -> List[Dict[str, Any]]:
        """Messages up to and including the first one matching ``pred``."""
        return await self._collect(lambda out: bool(out) and pred(out[-1]), timeout, "no matching message")

    async def frames_of(self, ftype: str, pred: Callable[[Dict[str, Any]], bool], timeout: float = 5.0) -> Dict[str, Any]:
        """The next frame of type ``ftype`` matching ``pred`` (other frames are kept in ``others``)."""
        for i, f in enumerate(list(self.others)):
            if isinstance(f, dict) and f.get("type") == ftype and pred(f):
                del self.others[i]
                return f
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {ftype} frame within {timeout}s; others {self.others[-5:]}")
            f = await self.frame(left)
            if isinstance(f, dict) and f.get("type") == ftype and pred(f):
                return f
            self.others.append(f)

    async def silent(self, seconds: float = 0.3) -> None:
        """Assert that no topic message arrives for ``seconds`` (catches late duplicates)."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                f = await self.frame(left)
            except asyncio.TimeoutError:
                return
            assert not (isinstance(f, dict) and f.get("type") == "message"), f"{self.name}: unexpected {f}"
            self.others.append(f)

    async def close(self) -> None:
        await self.ws.close()


async def routed(redis: RedisProcess, channel: str, n: int, timeout: float = 5.0) -> None:
    """Wait until ``n`` Redis connections (one per instance) subscribe to ``channel``."""
    await await_until(lambda: redis.numsub(channel) >= n, timeout, what=f"{n} Redis subscribers on {channel}")


def offsets(msgs: List[Dict[str, Any]]) -> List[int]:
    return [m["offset"] for m in msgs]


# ------------------------------------------------------------------------------ harness only
# (these two pass without the engine's cluster mode)


def test_harness_redis_process(redis_server):
    r = redis_server
    assert r.ping() and r.url == f"redis://127.0.0.1:{r.port}"
    assert r.command("SET", "k", "v") == "OK" and r.command("GET", "k") == "v"
    assert r.channels() == [] and r.numpat() == 0 and r.numsub("nothing") == 0
    r.kill()
    assert not r.ping(0.3) and not r.running
    r.restart()
    assert r.ping() and r.command("GET", "k") is None  # no persistence: a restart loses everything
    r.command("SET", "k", "v")
    r.flushall()
    assert r.command("DBSIZE") == 0


def test_harness_node_without_redis(make_node):
    node = make_node("solo", all_events=True, jwt_secret=SECRET)
    assert node.alive and node.port

    async def main():
        p = await Peer.open(node, "alice")
        await p.subscribe(["t"])
        assert await node.acall("publish", topic="t", data="one") == 1
        res = await node.acall("publish_many", topic="t", count=100, label="x")
        assert res["count"] == 100 and res["first"] == 2
        msgs = await p.messages(101)
        assert offsets(msgs) == list(range(1, 102))
        assert [m["data"]["i"] for m in msgs[1:]] == list(range(100))
        assert await node.acall("conns") == {"alice": [int(p.conn)]}
        assert await node.acall("send_user", user="alice", data="direct") == 1
        assert await p.frame() == "direct"
        health = await node.acall("health")
        assert health["status"] == 200 and health["body"]["status"] == "ok"
        assert (await node.acall("stats"))["publications"] == 101
        assert node.events_of("connect") and node.events_of("connect")[0]["data"]["user"] == "alice"
        node.kill()
        with pytest.raises((ConnectionClosed, asyncio.TimeoutError)):
            await p.frame(5)
        assert not node.alive

    run(main())


# ------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "config, key",
    [
        ({"redis_url": "http://127.0.0.1:6379"}, "redis_url"),
        ({"redis_url": 6379}, "redis_url"),
        ({"redis_url": "redis://127.0.0.1:1", "redis_prefix": "a b"}, "redis_prefix"),
        ({"redis_url": "redis://127.0.0.1:1", "redis_prefix": ""}, "redis_prefix"),
        ({"redis_url": "redis://127.0.0.1:1", "history_size": -1}, "history_size"),
        ({"redis_url": "redis://127.0.0.1:1", "presence": True, "presence_ttl": 0}, "presence_ttl"),
    ],
)
def test_cluster_config_errors_name_the_key(config, key):
    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(port=0, **config)
    assert e.value.key == key


def test_cluster_config_accepted_without_contacting_redis():
    # valid: nothing is contacted before start()
    wavelane.Server(port=0, redis_url="redis://:pw@127.0.0.1:1/2", redis_prefix="app.v1:x-y_z", history_size=10,
                    history_ttl=60, presence=True, presence_ttl=5)
    wavelane.Server(port=0, redis_url="redis://user:pw@localhost")
    wavelane.Server(port=0, redis_url=None)


# ------------------------------------------------------------------------------ delivery


def test_publish_reaches_clients_on_every_instance(redis_server, make_node):
    a = make_node("a", **cfg(redis_server))
    b = make_node("b", **cfg(redis_server))

    async def main():
        pa, pb = await Peer.open(a), await Peer.open(b)
        await pa.subscribe(["chat"])
        await pb.subscribe(["chat"])
        await routed(redis_server, topic_channel("chat"), 2)
        assert await a.acall("publish", topic="chat", data="hello") == 0  # offset assigned by Redis
        for p in (pa, pb):
            assert await p.messages(1) == [{"type": "message", "topic": "chat", "offset": 1, "data": "hello"}]
        assert await b.acall("publish", topic="chat", data={"n": 2}) == 0
        for p in (pa, pb):
            assert await p.messages(1) == [{"type": "message", "topic": "chat", "offset": 2, "data": {"n": 2}}]
        await pa.silent()
        await pb.silent()
        # history is off: no positions, and a recovery is refused (the subscription still holds)
        pc = await Peer.open(b)
        reply = await pc.subscribe(["chat"], recover={"chat": {"epoch": "x", "offset": 1}})
        assert "positions" not in reply and reply["recovered"] == {"chat": False}, reply
        assert reply["recovery_errors"]["chat"], reply
        for node in (a, b):
            st = await node.acall("stats")
            assert st["redis_connected"] == 1
            assert st["redis_received"] >= 2 and st["redis_undelivered"] == 0 and st["redis_missed"] == 0
            status, _, body = http_get(node.port, "/health")
            health = json.loads(body)
            assert status == 200 and health["status"] == "ok" and health["redis"] == "connected", health
            assert await node.await_cluster("connected", 1)  # told at start
        assert (await a.acall("stats"))["redis_published"] >= 1
        assert (await b.acall("stats"))["redis_published"] >= 1

    run(main())


def test_exactly_once_in_order_across_three_instances(redis_server, make_node):
    """2,000 publications from A; subscribers on A, B, C, exact, glob, and both at once."""
    a, b, c = (make_node(n, **cfg(redis_server)) for n in "abc")
    n_msgs = 2000

    async def main():
        subs = {
            "a_exact": (a, ["feed"]),
            "b_exact": (b, ["feed"]),
            "b_both": (b, ["feed", "fee?"]),
            "c_glob": (c, ["fe*"]),
            "c_both": (c, ["feed", "f*d"]),
        }
        peers = {}
        for name, (node, topics) in subs.items():
            peers[name] = await Peer.open(node, name)
            await peers[name].subscribe(topics)
        await routed(redis_server, topic_channel("feed"), 3)
        await await_until(lambda: redis_server.numpat() >= 3, 5, what="3 Redis patterns")
        readers = {name: asyncio.create_task(p.messages(n_msgs, timeout=40)) for name, p in peers.items()}
        res = await a.acall("publish_many", topic="feed", count=n_msgs, label="a", timeout=30)
        assert res["nonzero"] == 0, res  # cluster mode: publish() returns 0
        for name, task in readers.items():
            msgs = await task
            assert offsets(msgs) == list(range(1, n_msgs + 1)), name
            assert [m["data"]["i"] for m in msgs] == list(range(n_msgs)), name
            assert all(m["topic"] == "feed" for m in msgs)
        for p in peers.values():
            await p.silent(0.3)
            assert p.others == []
        for node in (a, b, c):
            st = await node.acall("stats")
            assert st["redis_missed"] == 0 and st["redis_undelivered"] == 0, st

    run(main(), timeout=60)


def test_a_burst_faster_than_redis_is_slowed_down_not_lost(redis_server, make_node):
    """100,000 publications as fast as Python can make them: publish() waits for room when Redis
    falls behind (bounded in-flight commands), so every one arrives, in order."""
    a, b = make_node("a", **cfg(redis_server)), make_node("b", **cfg(redis_server))
    n_msgs = 100_000

    async def main():
        p = await Peer.open(b, "burst")
        await p.subscribe(["burst"])
        await routed(redis_server, topic_channel("burst"), 1)
        reader = asyncio.create_task(p.messages(n_msgs, timeout=60))
        await a.acall("publish_many", topic="burst", count=n_msgs, label="a", timeout=60)
        msgs = await reader
        assert offsets(msgs) == list(range(1, n_msgs + 1))
        st = await a.acall("stats")
        assert st["redis_undelivered"] == 0 and st["redis_published"] == n_msgs, st

    run(main(), timeout=90)


def test_two_publishers_one_topic_share_the_offset_order(redis_server, make_node):
    a, b, c = (make_node(n, **cfg(redis_server)) for n in "abc")
    per_node = 500

    async def main():
        peers = [await Peer.open(node) for node in (a, b, c)]
        for p in peers:
            await p.subscribe(["duo"])
        await routed(redis_server, topic_channel("duo"), 3)
        readers = [asyncio.create_task(p.messages(2 * per_node, timeout=30)) for p in peers]
        ids = [a.send("publish_many", topic="duo", count=per_node, label="A", async_=True),
               b.send("publish_many", topic="duo", count=per_node, label="B", async_=True)]
        await a.aresult(ids[0], 20)
        await b.aresult(ids[1], 20)
        seqs = []
        for p, task in zip(peers, readers):
            msgs = await task
            assert offsets(msgs) == list(range(1, 2 * per_node + 1)), p.name
            for src in "AB":
                assert [m["data"]["i"] for m in msgs if m["data"]["src"] == src] == list(range(per_node)), (p.name, src)
            seqs.append([(m["data"]["src"], m["data"]["i"]) for m in msgs])
            await p.silent(0.2)
        assert seqs[0] == seqs[1] == seqs[2]  # one order for everybody

    run(main(), timeout=60)


def test_send_user_reaches_the_user_on_every_instance(redis_server, make_node):
    a = make_node("a", **cfg(redis_server))
    b = make_node("b", **cfg(redis_server))

    async def main():
        alice = [await Peer.open(a, "alice"), await Peer.open(a, "alice"), await Peer.open(b, "alice")]
        bob = await Peer.open(b, "bob")
        await routed(redis_server, user_channel("alice"), 2)
        assert await b.acall("send_user", user="alice", data="hi") == 1  # local connections only
        for p in alice:
            assert await p.frame() == "hi"
        assert await a.acall("send_user", user="alice", data={"$bytes": "AAE="}) == 2
        for p in alice:
            assert await p.frame() == b"\x00\x01"
        assert await a.acall("send_user", user="nobody", data="x") == 0
        # nothing twice, nothing for bob
        for p in alice + [bob]:
            with pytest.raises(asyncio.TimeoutError):
                await p.frame(0.3)

    run(main())


def test_disconnect_user_closes_the_user_on_every_instance(redis_server, make_node):
    """disconnect_user (revocation, logout) closes the user's connections on every instance, with
    the given code and reason; other users stay; the count is this instance's."""
    a = make_node("a", **cfg(redis_server))
    b = make_node("b", **cfg(redis_server))

    async def main():
        alice = [await Peer.open(a, "alice"), await Peer.open(b, "alice"), await Peer.open(b, "alice")]
        bob = [await Peer.open(a, "bob"), await Peer.open(b, "bob")]
        await routed(redis_server, user_channel("alice"), 2)
        assert await a.acall("disconnect_user", user="alice", code=4003, reason="revoked") == 1
        for p in alice:
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await p.frame(5)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4003, "revoked"), p.name
        for p in bob:
            assert await p.ask({"type": "ping", "id": "alive"}) == {"type": "pong", "id": "alive"}
        assert await b.acall("disconnect_user", user="alice") == 0  # nobody left
        for p in bob:
            await p.close()

    run(main())


def test_send_to_a_connection_on_another_instance(redis_server, make_node):
    """send(conn, data, node=...) reaches a connection of another instance, exactly as given."""
    a = make_node("a", **cfg(redis_server))
    b = make_node("b", **cfg(redis_server))

    async def main():
        assert a.node_id and b.node_id and a.node_id != b.node_id
        target = await Peer.open(b, "target")
        assert await a.acall("send", conn=target.conn, data="hello from a", node=b.node_id) is True
        assert await target.frame() == "hello from a"
        blob = bytes(range(256))
        assert await a.acall("send", conn=target.conn, data={"$bytes": base64.b64encode(blob).decode()}, node=b.node_id)
        assert await target.frame() == blob
        # The node's own id is an ordinary local send.
        local = await Peer.open(a, "local")
        assert await a.acall("send", conn=local.conn, data="here", node=a.node_id) is True
        assert await local.frame() == "here"
        # An unknown connection over there: handed to Redis, dropped there, nothing breaks.
        assert await a.acall("send", conn=999_999, data="nobody", node=b.node_id) is True
        assert await a.acall("send", conn=target.conn, data="still fine", node=b.node_id) is True
        assert await target.frame() == "still fine"
        # Only the target's instance subscribes to its own channel, and every instance has one.
        assert sorted(x for x in redis_server.channels() if ":n:" in x) == sorted(
            f"wavelane:n:{n.node_id}" for n in (a, b))

    run(main())


def test_instances_subscribe_in_redis_only_to_what_they_need(redis_server, make_node):
    prefix = "apptest"
    a = make_node("a", **cfg(redis_server, redis_prefix=prefix))
    b = make_node("b", **cfg(redis_server, redis_prefix=prefix))
    ch = lambda topic: topic_channel(topic, prefix)  # noqa: E731
    r = redis_server

    async def main():
        await asyncio.sleep(0.2)
        assert [x for x in r.channels() if ":t:" in x] == []
        base_patterns = r.numpat()
        a1, a2, b1 = await Peer.open(a), await Peer.open(a), await Peer.open(b)
        await a1.subscribe(["only-a", "shared"])
        await a2.subscribe(["only-a"])
        await b1.subscribe(["shared"])
        await routed(r, ch("shared"), 2)
        await routed(r, ch("only-a"), 1)
        await asyncio.sleep(0.2)
        assert r.numsub(ch("only-a")) == 1  # one Redis subscription for A's two clients, none for B
        assert r.numsub(ch("shared")) == 2
        await b.acall("publish", topic="only-a", data="via redis")  # proves that the one is A's
        assert [m["data"] for m in await a1.messages(1)] == ["via redis"]
        assert [m["data"] for m in await a2.messages(1)] == ["via redis"]
        await a.acall("publish", topic="nobody-listens", data="x")
        await asyncio.sleep(0.1)
        assert ch("nobody-listens") not in r.channels()
        assert all(x.startswith(prefix + ":") for x in r.channels()), r.channels()
        # globs become patterns, refcounted the same way
        await b1.subscribe(["g:*"], id_=2)
        await await_until(lambda: r.numpat() == base_patterns + 1, 5, what="one more pattern")
        reply = await b1.ask({"type": "unsubscribe", "topics": ["g:*"], "id": 3})
        assert reply["type"] == "unsubscribed"
        await await_until(lambda: r.numpat() == base_patterns, 5, what="pattern released")
        # the last local subscriber leaving releases the channel
        await a1.ask({"type": "unsubscribe", "topics": ["only-a"], "id": 4})
        await asyncio.sleep(0.2)
        assert r.numsub(ch("only-a")) == 1  # a2 still there
        await a2.close()
        await await_until(lambda: ch("only-a") not in r.channels(), 5, what="only-a released")
        await b1.close()
        await await_until(lambda: r.numsub(ch("shared")) == 1, 5, what="B released shared")
        await a1.close()
        await await_until(lambda: [x for x in r.channels() if ":t:" in x] == [], 5, what="no topic channel left")

    run(main())


# ------------------------------------------------------------------------------ Redis failures


def test_redis_down_at_start_then_up(make_redis, make_node):
    redis = make_redis()  # not started: nothing listens on its port yet
    a = make_node("a", wait_redis=False, **cfg(redis))
    b = make_node("b", wait_redis=False, **cfg(redis))

    async def main():
        ev = await a.await_cluster("disconnected", 5)
        assert set(ev) >= {"redis", "reason", "undelivered"} and isinstance(ev["reason"], str), ev
        status, _, body = http_get(a.port, "/health")
        health = json.loads(body)
        assert status == 200 and health["status"] == "degraded", health
        assert health["redis"].startswith("disconnected"), health
        assert (await a.acall("stats"))["redis_connected"] == 0
        # local traffic is served, publications reach local subscribers with offset 0
        pa, pb = await Peer.open(a), await Peer.open(b)
        await pa.subscribe(["room"])
        await pb.subscribe(["room"])
        n_events = a.event_count()
        for i in range(3):
            await a.acall("publish", topic="room", data=i)
        assert [(m["offset"], m["data"]) for m in await pa.messages(3)] == [(0, 0), (0, 1), (0, 2)]
        with pytest.raises(asyncio.TimeoutError):
            await pb.frame(0.3)  # B cannot hear A without Redis
        assert (await a.acall("stats"))["redis_undelivered"] >= 3
        undelivered = await asyncio.to_thread(
            a.wait_event,
            lambda e: e["event"] == "cluster" and isinstance(e["data"], dict) and e["data"].get("undelivered", 0) > 0,
            3, n_events)
        assert undelivered["data"]["redis"] == "disconnected"
        # Redis comes up: both connect and restore their subscriptions
        n_a, n_b = a.event_count(), b.event_count()
        redis.start()
        await a.await_cluster("connected", 10, n_a)
        await b.await_cluster("connected", 10, n_b)
        await routed(redis, topic_channel("room"), 2)
        status, _, body = http_get(a.port, "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert (await a.acall("stats"))["redis_connected"] == 1
        await a.acall("publish", topic="room", data="now")
        for p in (pa, pb):
            assert [(m["offset"], m["data"]) for m in await p.messages(1)] == [(1, "now")]

    run(main())


def _ranges(xs: List[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    out, run_start, prev = [], None, None
    for x in sorted(xs):
        if run_start is None:
            run_start = prev = x
        elif x == prev + 1:
            prev = x
        else:
            out.append(f"{run_start}-{prev}" if prev != run_start else str(run_start))
            run_start = prev = x
    if run_start is not None:
        out.append(f"{run_start}-{prev}" if prev != run_start else str(run_start))
    return ", ".join(out)


async def _drain_messages(peer: Peer, quiet: float = 0.5, limit: float = 10.0) -> List[Dict[str, Any]]:
    """Every message that arrives until ``quiet`` s pass without one (at most ``limit`` s)."""
    out: List[Dict[str, Any]] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            f = await peer.frame(quiet)
        except asyncio.TimeoutError:
            break
        if isinstance(f, dict) and f.get("type") == "message":
            out.append(f)
        else:
            peer.others.append(f)
    return out


def test_redis_killed_and_restarted_during_a_publish_stream(redis_server, make_node):
    redis = redis_server
    a = make_node("a", **cfg(redis))
    b = make_node("b", **cfg(redis))
    count, rate = 600, 200  # 3 s of publications from A; Redis dies at ~0.8 s, is back at ~1.6 s

    async def main():
        pa, pb = await Peer.open(a), await Peer.open(b)
        await pa.subscribe(["live"])
        await pb.subscribe(["live"])
        await routed(redis, topic_channel("live"), 2)
        mark, mark_b = a.event_count(), b.event_count()
        cid = a.send("publish_many", topic="live", count=count, rate=rate, label="a", async_=True)
        await asyncio.sleep(0.8)
        redis.kill()
        await asyncio.sleep(0.8)
        redis.restart()
        await a.aresult(cid, 20)
        # everything published is on its way: read until the streams go quiet
        got_a, got_b = await asyncio.gather(_drain_messages(pa, 1.0, 15), _drain_messages(pb, 1.0, 15))
        # the outage was reported: disconnected, undelivered counts, connected again
        await a.await_cluster("disconnected", 5, mark)
        await a.await_cluster("connected", 10, mark)
        await b.await_cluster("connected", 10, mark_b)
        ev = [e["data"] for e in a.events[mark:] if e["event"] == "cluster"]
        assert any(e.get("undelivered", 0) > 0 for e in ev), ev
        assert (await a.acall("stats"))["redis_undelivered"] > 0
        # nobody crashed; publications flow again both ways
        assert a.alive and b.alive
        assert await a.acall("ping") == "pong" and await b.acall("ping") == "pong"
        await routed(redis, topic_channel("live"), 2, timeout=10)
        await a.acall("publish", topic="live", data="after-a")
        await b.acall("publish", topic="live", data="after-b")
        for p in (pa, pb):
            assert [m["data"] for m in await p.messages(2)] == ["after-a", "after-b"]
        status, _, body = http_get(a.port, "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        # B saw what went through Redis: no duplicate, in order
        ib = [m["data"]["i"] for m in got_b]
        assert ib == sorted(set(ib)) and all(m["offset"] > 0 for m in got_b), ib[:20]
        # A's own subscriber: in order, no duplicate; through Redis before the kill and after the
        # restart, locally with offset 0 while Redis was down. docs/delivery.md allows one kind of
        # loss here: a publication in flight on the command connection when it dropped (not
        # delivered locally, counted as undelivered). Every other loss must be counted too
        # (redis_missed), so: lost <= (undelivered - delivered locally with offset 0) + missed.
        ia = [m["data"]["i"] for m in got_a]
        assert ia == sorted(set(ia)), "duplicates or reordering on A's local subscriber"
        zero = sum(1 for m in got_a if m["offset"] == 0)
        assert zero > 0 and any(m["offset"] > 0 for m in got_a)
        st = await a.acall("stats")
        missing = sorted(set(range(count)) - set(ia))
        in_flight = st["redis_undelivered"] - zero
        first_zero = next(m["data"]["i"] for m in got_a if m["offset"] == 0)
        around = [(m["data"]["i"], m["offset"]) for m in got_a
                  if any(abs(m["data"]["i"] - x) <= 2 for x in (missing[:1] + missing[-1:]))]
        # One more kind is allowed, and only at the moment of the kill: Redis numbered and
        # acknowledged a publication, then died before writing it to the subscribers. Nobody can
        # count that; clients learn it from the new epoch (offsets restart after the restart).
        # Such losses are the last publications before the first local (offset 0) one, and few.
        unexplained = len(missing) - in_flight - st["redis_missed"]
        if unexplained > 0:
            tail = [i for i in missing if i < first_zero]
            assert tail and tail == list(range(first_zero - len(tail), first_zero)) and len(tail) <= 20, (
                f"losses not at the kill: {_ranges(missing)}; first offset-0 one is i={first_zero}")
            unexplained -= len(tail)
        assert unexplained <= 0, (
            f"A's local subscriber lost {len(missing)} publications ({_ranges(missing)}; first offset-0 one "
            f"is i={first_zero}; (i, offset) around: {around}) but only {in_flight} were counted as in flight "
            f"(redis_undelivered {st['redis_undelivered']} - {zero} delivered locally) and redis_missed is "
            f"{st['redis_missed']}; cluster events: {ev}")

    run(main(), timeout=60)


# ------------------------------------------------------------------------------ history


async def _read_k(node_sub: Node, node_pub: Node, topic: str, warm: int, k: int):
    """Publish ``warm`` messages from node_pub, subscribe a client on node_sub (positions),
    publish ``k`` more, read them. Returns (peer, epoch, last offset)."""
    if warm:
        await node_pub.acall("publish_many", topic=topic, count=warm, label="warm")
    watcher = await Peer.open(node_pub)  # sees every offset: tells when Redis has numbered them
    await watcher.subscribe([topic])
    p = await Peer.open(node_sub, "reader")
    # With history on, `subscribed` must mean "routed": the next message is positions.offset + 1
    # (no routed() wait here on purpose).
    reply = await p.subscribe([topic])
    pos = reply["positions"][topic]
    assert isinstance(pos["epoch"], str) and pos["epoch"], reply
    assert pos["offset"] == warm, reply
    await node_pub.acall("publish_many", topic=topic, count=k, start=0, label="first")
    msgs = await p.messages(k)
    assert offsets(msgs) == list(range(warm + 1, warm + k + 1))
    await p.close()
    return watcher, pos["epoch"], warm + k


def test_history_recovery_after_reconnect(redis_server, make_node):
    a = make_node("a", **cfg(redis_server, history_size=1000))
    b = make_node("b", **cfg(redis_server, history_size=1000))
    topic, missed = "hist", 500

    async def main():
        watcher, epoch, k = await _read_k(a, b, topic, warm=5, k=20)
        await b.acall("publish_many", topic=topic, count=missed, label="missed")
        p = await Peer.open(a, "reader")
        reply = await p.subscribe([topic], id_=2, recover={topic: {"epoch": epoch, "offset": k}})
        assert reply["recovered"] == {topic: True}, reply
        assert "recovery_errors" not in reply or not reply["recovery_errors"].get(topic), reply
        msgs = await p.messages(missed)
        assert offsets(msgs) == list(range(k + 1, k + missed + 1))
        assert [(m["data"]["src"], m["data"]["i"]) for m in msgs] == [("missed", i) for i in range(missed)]
        await b.acall("publish", topic=topic, data="live")
        assert [(m["offset"], m["data"]) for m in await p.messages(1)] == [(k + missed + 1, "live")]
        await p.silent()
        assert p.others == []

    run(main(), timeout=60)


def test_history_recovery_from_a_fresh_topic_position(redis_server, make_node):
    """The position given for a topic nobody published to yet is a valid recovery point."""
    a = make_node("a", **cfg(redis_server, history_size=100))
    b = make_node("b", **cfg(redis_server, history_size=100))

    async def main():
        p = await Peer.open(a, "reader")
        reply = await p.subscribe(["fresh"])
        pos = reply["positions"]["fresh"]
        assert pos["offset"] == 0 and isinstance(pos["epoch"], str), reply
        await routed(redis_server, topic_channel("fresh"), 1)
        await b.acall("publish_many", topic="fresh", count=10, label="x")
        assert offsets(await p.messages(10)) == list(range(1, 11))
        await p.close()
        await b.acall("publish_many", topic="fresh", count=10, start=10, label="x")
        p = await Peer.open(a, "reader")
        reply = await p.subscribe(["fresh"], recover={"fresh": {"epoch": pos["epoch"], "offset": 10}})
        assert reply["recovered"] == {"fresh": True}, reply
        msgs = await p.messages(10)
        assert offsets(msgs) == list(range(11, 21)) and [m["data"]["i"] for m in msgs] == list(range(10, 20))
        await p.silent()

    run(main())


def test_subscribing_to_unpublished_topics_creates_no_redis_keys(redis_server, make_node):
    """Positions and recoveries of topics nobody published to read Redis and write nothing."""
    a = make_node("a", **cfg(redis_server, history_size=100))

    async def main():
        p = await Peer.open(a, "reader")
        keys = sorted(redis_server.command("KEYS", "*"))
        size = redis_server.command("DBSIZE")
        for r in range(5):
            topics = [f"never:{r}:{i}" for i in range(100)]
            reply = await p.subscribe(topics, id_=r)
            assert all(reply["positions"][t]["offset"] == 0 for t in topics), reply
            recover = {t: reply["positions"][t] for t in topics}
            reply = await p.subscribe(topics, id_=r, recover=recover)
            assert reply["recovered"] == {t: True for t in topics}, reply
            assert (await p.ask({"type": "unsubscribe", "topics": topics, "id": r}))["type"] == "unsubscribed"
        assert redis_server.command("DBSIZE") == size
        assert sorted(redis_server.command("KEYS", "*")) == keys
        await a.acall("publish", topic="never:0:0", data="x")  # a publication does make the stream
        # (publish returns once the script is queued for Redis, not once Redis ran it)
        deadline = time.monotonic() + 5
        while redis_server.command("DBSIZE") == size and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert redis_server.command("DBSIZE") > size
        await p.close()

    run(main())


def test_history_recovery_impossible_when_history_too_short(redis_server, make_node):
    a = make_node("a", **cfg(redis_server, history_size=100))
    b = make_node("b", **cfg(redis_server, history_size=100))
    topic, missed = "short", 500

    async def main():
        watcher, epoch, k = await _read_k(a, b, topic, warm=5, k=20)
        await b.acall("publish_many", topic=topic, count=missed, label="missed")
        await watcher.until(lambda m: m["offset"] == k + missed, 20)  # all numbered by Redis
        p = await Peer.open(a, "reader")
        reply = await p.subscribe([topic], recover={topic: {"epoch": epoch, "offset": k}})
        assert reply["recovered"] == {topic: False}, reply
        reason = reply["recovery_errors"][topic]
        assert isinstance(reason, str) and "no longer reaches back" in reason, reply
        assert reply["positions"][topic] == {"epoch": epoch, "offset": k + missed}, reply
        # an offset the stream never reached is refused too
        q = await Peer.open(a, "reader")
        reply = await q.subscribe([topic], recover={topic: {"epoch": epoch, "offset": k + missed + 100}})
        assert reply["recovered"] == {topic: False} and "ahead" in reply["recovery_errors"][topic], reply
        # still subscribed: nothing replayed, live messages flow
        await b.acall("publish", topic=topic, data="live")
        assert [(m["offset"], m["data"]) for m in await p.messages(1)] == [(k + missed + 1, "live")]

    run(main(), timeout=60)


def test_history_recovery_impossible_after_epoch_change(redis_server, make_node):
    a = make_node("a", **cfg(redis_server, history_size=1000))
    b = make_node("b", **cfg(redis_server, history_size=1000))
    topic = "epoch"

    async def main():
        watcher, epoch, k = await _read_k(a, b, topic, warm=5, k=20)
        redis_server.flushall()  # Redis lost every key: offsets restart, a new epoch
        await b.acall("publish_many", topic=topic, count=10, label="after")
        await watcher.until(lambda m: m["data"] == {"i": 9, "src": "after"}, 10)
        p = await Peer.open(a, "reader")
        reply = await p.subscribe([topic], recover={topic: {"epoch": epoch, "offset": k}})
        assert reply["recovered"] == {topic: False}, reply
        assert reply["recovery_errors"][topic].startswith("epoch changed"), reply
        new = reply["positions"][topic]
        assert new["epoch"] != epoch and new["offset"] == 10, reply
        await b.acall("publish", topic=topic, data="live")
        assert [(m["offset"], m["data"]) for m in await p.messages(1)] == [(11, "live")]
        # a recovery from the new position works
        await p.close()
        await b.acall("publish", topic=topic, data="missed")
        p = await Peer.open(a, "reader")
        reply = await p.subscribe([topic], recover={topic: {"epoch": new["epoch"], "offset": 11}})
        assert reply["recovered"] == {topic: True}, reply
        assert [(m["offset"], m["data"]) for m in await p.messages(1)] == [(12, "missed")]

    run(main())


def test_history_expires_after_history_ttl(redis_server, make_node):
    a = make_node("a", **cfg(redis_server, history_size=100, history_ttl=1))
    b = make_node("b", **cfg(redis_server, history_size=100, history_ttl=1))
    topic = "ttl"

    async def main():
        watcher, epoch, k = await _read_k(a, b, topic, warm=2, k=3)
        await asyncio.sleep(2.2)  # > history_ttl since the last publication: history, offset, epoch gone
        p = await Peer.open(a, "reader")
        reply = await p.subscribe([topic], recover={topic: {"epoch": epoch, "offset": k}})
        assert reply["recovered"] == {topic: False}, reply
        assert reply["recovery_errors"][topic].startswith("epoch changed"), reply
        assert reply["positions"][topic]["offset"] == 0 and reply["positions"][topic]["epoch"] != epoch, reply
        await b.acall("publish", topic=topic, data="again")
        assert [(m["offset"], m["data"]) for m in await p.messages(1)] == [(1, "again")]

    run(main())


def test_history_recovery_racing_a_live_stream(redis_server, make_node):
    """B publishes continuously while the client recovers on A: contiguous offsets, no dup."""
    a = make_node("a", **cfg(redis_server, history_size=3000))
    b = make_node("b", **cfg(redis_server, history_size=3000))
    topic, count, rate = "race", 1500, 600

    async def main():
        p = await Peer.open(a, "reader")
        await b.acall("publish_many", topic=topic, count=5, label="warm")
        reply = await p.subscribe([topic])
        epoch, base = reply["positions"][topic]["epoch"], reply["positions"][topic]["offset"]
        assert base == 5, reply
        cid = b.send("publish_many", topic=topic, count=count, rate=rate, label="s", async_=True)
        first = await p.messages(100, timeout=10)
        assert offsets(first) == list(range(base + 1, base + 101))
        k = first[-1]["offset"]
        await p.close()
        await asyncio.sleep(0.4)  # ~240 publications missed
        p = await Peer.open(a, "reader")
        reply = await p.subscribe([topic], recover={topic: {"epoch": epoch, "offset": k}})
        assert reply["recovered"] == {topic: True}, reply
        reader = asyncio.create_task(p.until(lambda m: m["data"] == "end", 30))
        res = await b.aresult(cid, 20)
        assert res["count"] == count
        await b.acall("publish", topic=topic, data="end")
        msgs = await reader
        end = base + count + 1
        assert offsets(msgs) == list(range(k + 1, end + 1)), _first_gap(offsets(msgs), k + 1)
        assert [m["data"]["i"] for m in msgs[:-1]] == list(range(k - base, count))
        await p.silent()

    run(main(), timeout=60)


def _first_gap(got: List[int], start: int) -> str:
    for i, o in enumerate(got):
        if o != start + i:
            return f"at index {i}: expected {start + i}, got {o} (around {got[max(0, i - 3):i + 3]}); {len(got)} messages"
    return f"{len(got)} messages, expected more/less"


# ------------------------------------------------------------------------------ presence


def test_presence_members_capped_across_instances(redis_server, make_node):
    """max_presence_members counts every instance's members (in Redis): a join beyond it is refused."""
    a = make_node("a", **cfg(redis_server, presence=True, max_presence_members=2))
    b = make_node("b", **cfg(redis_server, presence=True, max_presence_members=2))
    topic = "capped"

    async def main():
        alice = await Peer.open(a, "alice")
        await alice.subscribe([topic])
        bob = await Peer.open(b, "bob")
        await bob.subscribe([topic])
        await await_until(lambda: len(a.call("presence", topic=topic)) == 2, 5, 0.05, "two members")
        carol = await Peer.open(a, "carol")
        await carol.subscribe([topic])
        refused = await carol.frames_of("error", lambda f: f.get("code") == "presence_full")
        assert refused["topic"] == topic, refused
        assert sorted(m["user"] for m in await b.acall("presence", topic=topic)) == ["alice", "bob"]
        assert redis_server.command("HLEN", f"wavelane:pr:{topic}") == 2
        assert (await a.acall("stats"))["presence_refused"] == 1
        await bob.close()
        await await_until(lambda: len(a.call("presence", topic=topic)) == 1, 5, 0.05, "bob left")
        dave = await Peer.open(b, "dave")
        await dave.subscribe([topic])
        await await_until(lambda: sorted(m["user"] for m in a.call("presence", topic=topic)) == ["alice", "dave"], 5, 0.05,
                          "dave joined")

    run(main(), timeout=60)


def test_presence_across_instances(redis_server, make_node):
    a = make_node("a", **cfg(redis_server, presence=True, presence_ttl=2))
    b = make_node("b", **cfg(redis_server, presence=True, presence_ttl=2))
    topic = "room"

    def who(members):
        return sorted((m["user"], m["conn"]) for m in members)

    async def main():
        alice = await Peer.open(a, "alice")
        await alice.subscribe([topic], presence=True)
        bob = await Peer.open(b, "bob")
        await bob.subscribe([topic], presence=True)
        dave = await Peer.open(a, "dave")  # a member who does not ask for join/leave events
        await dave.subscribe([topic])
        for user, peer in (("bob", bob), ("dave", dave)):
            join = await alice.frames_of("join", lambda f, u=user: f["member"]["user"] == u)
            assert join["topic"] == topic and join["member"]["conn"] == peer.conn, join
        expected = sorted([("alice", alice.conn), ("bob", bob.conn), ("dave", dave.conn)])
        reply = await alice.ask({"type": "presence", "topic": topic, "id": 5})
        assert reply["type"] == "presence" and reply["topic"] == topic, reply
        assert who(reply["members"]) == expected, reply
        nodes = {m["user"]: m["node"] for m in reply["members"]}
        assert nodes["alice"] == nodes["dave"] != nodes["bob"], nodes
        if a.node_id and b.node_id:
            assert (nodes["alice"], nodes["bob"]) == (a.node_id, b.node_id)
        for node in (a, b):
            assert who(await node.acall("presence", topic=topic)) == expected
        # info set on B shows everywhere
        assert await b.acall("set_presence_info", user="bob", info={"status": "busy"}) == [True]

        def bob_info():
            members = a.call("presence", topic=topic)
            return [m.get("info") for m in members if m["user"] == "bob"] == [{"status": "busy"}]

        await await_until(bob_info, 5, 0.1, "bob's info on A")
        # leaving
        await bob.close()
        leave = await alice.frames_of("leave", lambda f: f["member"]["user"] == "bob")
        assert leave["topic"] == topic and leave["member"]["conn"] == bob.conn
        assert who(await a.acall("presence", topic=topic)) == sorted([("alice", alice.conn), ("dave", dave.conn)])
        # dave never got presence events
        await dave.silent(0.2)
        assert not [f for f in dave.others if isinstance(f, dict) and f.get("type") in ("join", "leave")], dave.others
        # a crashed instance's members vanish within presence_ttl
        carol = await Peer.open(b, "carol")
        await carol.subscribe([topic])
        await alice.frames_of("join", lambda f: f["member"]["user"] == "carol")
        b.kill()
        t0 = time.monotonic()
        await await_until(lambda: "carol" not in [m["user"] for m in a.call("presence", topic=topic)], 6, 0.1,
                          "carol gone after B crashed")
        assert time.monotonic() - t0 <= 2 + 1.5, "members of a crashed instance outlived presence_ttl"
        leave = await alice.frames_of("leave", lambda f: f["member"]["user"] == "carol", timeout=3)
        assert leave["member"]["conn"] == carol.conn
        assert who(await a.acall("presence", topic=topic)) == sorted([("alice", alice.conn), ("dave", dave.conn)])

    run(main(), timeout=60)


def test_wait_for_redis_in_process(redis_server, make_redis):
    """Server.wait_for_redis: True once publications go through Redis; False when it is down."""
    up = wavelane.Server(port=0, redis_url=redis_server.url)
    down = wavelane.Server(port=0, redis_url=make_redis().url)  # nothing listens there
    alone = wavelane.Server(port=0)
    for s in (up, down, alone):
        s.start()
    try:
        assert up.wait_for_redis(10) is True
        assert up.stats()["redis_connected"] == 1
        assert down.wait_for_redis(0.3) is False
        assert alone.wait_for_redis(0.3) is False
        assert len(up.node_id) == 16 and up.node_id != down.node_id
        with pytest.raises(ValueError, match="node"):
            alone.send(1, "x", node="some-other-instance")
        # /metrics says the same, in valid Prometheus text.
        parser = pytest.importorskip("prometheus_client.parser")
        for srv, want in ((up, 1.0), (down, 0.0)):
            status, _, body = http_get(srv.port, "/metrics")
            families = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
            assert status == 200 and families["wavelane_redis_connected"].samples[0].value == want
            assert "wavelane_redis_undelivered" in families  # counters drop the _total suffix here
        status, _, body = http_get(down.port, "/health")
        health = json.loads(body)
        assert status == 200 and health["status"] == "degraded" and health["redis"].startswith("disconnected"), health
    finally:
        for s in (up, down, alone):
            s.stop(1.0)


def test_look_alike_topics_stay_apart_through_redis(redis_server, make_node):
    """Identity is bytes in Redis mode too: NFC and NFD spellings of a topic held on one
    instance are two Redis subscriptions, and each reaches only its own subscriber."""
    nfc, nfd = "room:caf\u00e9", "room:cafe\u0301"
    a = make_node("a", **cfg(redis_server))
    b = make_node("b", **cfg(redis_server))

    async def main():
        p_nfc, p_nfd = await Peer.open(a), await Peer.open(a)
        await p_nfc.subscribe([nfc])
        await p_nfd.subscribe([nfd])
        await routed(redis_server, topic_channel(nfc), 1)
        await routed(redis_server, topic_channel(nfd), 1)
        await b.acall("publish", topic=nfd, data="nfd")
        assert [(m["topic"], m["data"]) for m in await p_nfd.messages(1)] == [(nfd, "nfd")]
        await b.acall("publish", topic=nfc, data="nfc")
        assert [(m["topic"], m["data"]) for m in await p_nfc.messages(1)] == [(nfc, "nfc")]
        await p_nfc.silent()
        await p_nfd.silent()

    run(main())


def test_subscribe_with_history_through_redis(redis_server, make_node):
    """The backlog (`history: N`) through Redis: the last N of another instance's publications,
    then live ones, contiguous."""
    a = make_node("a", **cfg(redis_server, history_size=100))
    b = make_node("b", **cfg(redis_server, history_size=100))

    async def main():
        await b.acall("publish_many", topic="back", count=40, label="old")
        p = await Peer.open(a, "reader")
        reply = await p.subscribe(["back"], history=15)
        assert reply["positions"]["back"]["offset"] == 40 and "recovered" not in reply, reply
        msgs = await p.messages(15)
        assert offsets(msgs) == list(range(26, 41))
        assert [m["data"]["i"] for m in msgs] == list(range(25, 40))
        await b.acall("publish", topic="back", data="live")
        assert [(m["offset"], m["data"]) for m in await p.messages(1)] == [(41, "live")]
        await p.silent()
        assert p.others == []

    run(main(), timeout=60)
