"""wavelane.Client against the real server: subscribe, reconnect + recover without gaps,
resync when recovery is impossible, offline queue, terminal closes, refused handshakes."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

import wavelane
from wavelane.client import Client, ClientError, ConnectionClosed, SubscribeError

from conftest import run, url

SECRET = "client-tests-secret-that-is-long-enough-32b"


def token(sub: str = "alice", **claims) -> str:
    return jwt.encode({"sub": sub, **claims}, SECRET, algorithm="HS256")


def start(make_server, **config):
    config.setdefault("jwt_secret", SECRET)
    return make_server(**config)


async def collect(client: Client, n: int, timeout: float = 10.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        out.append(await client.recv(timeout=max(0.01, deadline - time.monotonic())))
    return out


async def wait_until(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_subscribe_and_receive_in_order(make_server):
    server, events = start(make_server)

    async def main():
        async with Client(url(server), token=token()) as c:
            assert c.ready["user"] == "alice"
            await c.subscribe("room:1")
            for i in range(5):
                server.publish("room:1", {"i": i})
            got = await collect(c, 5)
            assert [m.kind for m in got] == ["message"] * 5
            assert [m.data["i"] for m in got] == list(range(5))
            assert [m.offset for m in got] == [1, 2, 3, 4, 5]
            assert c.position("room:1")["offset"] == 5

    run(main())


def test_reconnect_after_1012_recovers_every_missed_publication_once(make_server):
    server, events = start(make_server, history_size=100)

    async def main():
        async with Client(url(server), token=token()) as c:
            await c.subscribe("room:1")
            for i in range(3):
                server.publish("room:1", i)
            assert [m.offset for m in await collect(c, 3)] == [1, 2, 3]
            conn = (await events.await_kind("connect"))[1]
            server.close(conn, 1012, "restart")
            for i in range(3, 23):  # while the client is away (and while it comes back)
                server.publish("room:1", i)
            got = await collect(c, 20)
            assert [m.offset for m in got] == list(range(4, 24))
            assert [m.data for m in got] == list(range(3, 23))
            assert c.reconnects == 1
            with pytest.raises(asyncio.TimeoutError):
                await c.recv(timeout=0.3)  # nothing twice
            assert len(events.of("connect")) == 2

    run(main())


def test_recovery_impossible_is_reported_as_resync(make_server):
    server, events = start(make_server, history_size=5)

    async def main():
        async with Client(url(server), token=token(), min_backoff=0.5) as c:
            await c.subscribe("room:1")
            server.publish("room:1", "first")
            assert (await c.recv(timeout=5)).offset == 1
            conn = (await events.await_kind("connect"))[1]
            server.close(conn, 1001, "bye")
            for i in range(20):  # more than the history keeps, before the client is back
                server.publish("room:1", i)
            item = await c.recv(timeout=10)
            assert item.kind == "resync" and item.topic == "room:1", item
            assert c.position("room:1")["offset"] == 21  # continues from the current position
            server.publish("room:1", "after")
            m = await c.recv(timeout=5)
            assert (m.kind, m.offset, m.data) == ("message", 22, "after")

    run(main())


def test_sends_while_offline_are_queued_and_flushed_in_order(make_server):
    server, events = start(make_server)

    async def main():
        async with Client(url(server), token=token(), min_backoff=1.0, max_queue=3) as c:
            await c.send("one")
            first = await events.await_kind("message")
            assert first[2] == "one"
            server.close(first[1], 1001, "bye")
            await wait_until(lambda: c.state == "disconnected")
            await c.send("two")
            await c.send({"n": 3})
            await c.send(b"\x00four")
            with pytest.raises(ClientError):
                await c.send("five")  # the offline queue holds max_queue messages
            await wait_until(lambda: c.state == "connected", 10)
            msgs = await asyncio.to_thread(events.wait_count, lambda e: e[0] == "message", 4)
            assert [e[2] for e in msgs] == ["one", "two", '{"n": 3}', b"\x00four"]
            assert msgs[1][1] != first[1]  # on the new connection

    run(main())


def test_close_4003_is_terminal(make_server):
    server, events = start(make_server)

    async def main():
        c = await Client(url(server), token=token(), min_backoff=0.05).connect()
        conn = (await events.await_kind("connect"))[1]
        server.close(conn, 4003, "revoked")
        with pytest.raises(ConnectionClosed) as info:
            await c.recv(timeout=5)
        assert info.value.code == 4003 and info.value.reason == "revoked"
        assert c.state == "closed"
        await asyncio.sleep(0.3)
        assert len(events.of("connect")) == 1  # no reconnect
        assert [m async for m in c.messages()] == []
        await c.close()

    run(main())


def test_refused_handshake_raises(make_server):
    server, _ = start(make_server)

    async def main():
        with pytest.raises(ConnectionClosed) as info:
            await Client(url(server), token="not-a-jwt").connect()
        assert info.value.code == 401

    run(main())


def test_refused_subscription_raises_and_is_not_kept(make_server):
    server, _ = start(make_server)

    async def main():
        async with Client(url(server), token=token()) as c:
            with pytest.raises(SubscribeError) as info:
                await c.subscribe("bad\x01topic")
            assert info.value.code == "invalid_topic"
            assert c.position("bad\x01topic") is None

    run(main())


def test_binary_publications_and_direct_frames(make_server):
    server, events = start(make_server)

    async def main():
        async with Client(url(server), token=token()) as c:
            await c.subscribe("bin:1")
            server.publish("bin:1", b"\x01\x02")
            conn = (await events.await_kind("connect"))[1]
            server.send(conn, "hello")
            got = await collect(c, 2)
            assert (got[0].kind, got[0].topic, got[0].offset, got[0].data) == ("message", "bin:1", 1, b"\x01\x02")
            assert (got[1].kind, got[1].data) == ("direct", "hello")

    run(main())


def test_duplicate_offsets_are_dropped():
    async def main():
        c = wavelane.Client("ws://127.0.0.1:1/")  # the lazy top-level name
        c._subs["t"] = wavelane.client._Sub("t", epoch="e", offset=5)
        assert not c._accept("t", 5) and not c._accept("t", 3)
        assert c._accept("t", 6) and c.duplicates_dropped == 2
        assert c._accept("other", 1)  # not a subscription of ours: passed through

    run(main())


def test_token_is_refreshed_before_exp_and_the_connection_stays(make_server):
    server, events = start(make_server, jwt_leeway=0)
    lifetimes = iter([2, 60])

    async def get_token():
        return token(exp=int(time.time()) + next(lifetimes, 60))

    async def main():
        async with Client(url(server), token=await get_token(), get_token=get_token, refresh_margin=1) as c:
            first_exp = c.ready["exp"]
            await asyncio.sleep(max(0.0, first_exp - time.time()) + 1.5)  # past the first expiry
            assert c.state == "connected" and c.reconnects == 0
            await c.send("still here")
            assert (await events.await_kind("message"))[2] == "still here"
            assert events.of("refresh")[0][2]["claims"]["sub"] == "alice"
            assert len(events.of("connect")) == 1

    run(main())


def test_expired_token_without_refresh_reconnects_with_a_fresh_one(make_server):
    server, events = start(make_server, jwt_leeway=0, history_size=10)
    minted = []

    async def get_token():
        minted.append(time.time())
        return token(exp=int(time.time()) + 60)

    async def main():
        # A 1-second token whose refresh is scheduled too late (30 s after exp): the server
        # closes with 4001, and the client comes back with a token from get_token.
        async with Client(url(server), token=token(exp=int(time.time()) + 1), get_token=get_token,
                          refresh_margin=-30, min_backoff=0.05) as c:
            await c.subscribe("room:1")
            await wait_until(lambda: c.reconnects == 1, 10)
            await wait_until(lambda: c.state == "connected", 5)
            assert [e[2] for e in events.of("disconnect")] == [4001]
            server.publish("room:1", "after")
            m = await c.recv(timeout=5)
            assert (m.topic, m.data) == ("room:1", "after")
            assert minted  # the new connection used a fresh token

    run(main())
