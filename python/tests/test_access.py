"""Topic access is deny by default (issue 10, item 1) and glob subscriptions are bounded (item 2).

A client's own ``subscribe`` is granted only inside its ``user:<sub>`` space and the
``client_topics`` patterns; everything else is refused with ``forbidden`` (nothing of the request
is subscribed) or, with ``subscribe_approval=True``, handed to Python with exact topics and
patterns apart. Every server here passes ``client_topics`` explicitly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict

import jwt

from conftest import open_client, recv_json, request, run

SECRET = "access-test-secret-0123456789abcdef-0123456789abcdef"


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")


async def client(srv, sub: str = None):
    headers = {"Authorization": f"Bearer {token(sub)}"} if sub is not None else {}
    return await open_client(srv, additional_headers=headers)


async def expect_silence(ws, seconds: float = 0.3) -> None:
    try:
        frame = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected frame: {frame!r}")


def test_eve_cannot_reach_outside_her_space(make_server):
    srv, _ = make_server(jwt_secret=SECRET, client_topics=[])

    async def main():
        eve, _ = await client(srv, "eve")
        bob, _ = await client(srv, "bob")
        assert (await request(bob, {"type": "subscribe", "topics": ["user:bob:inbox"], "id": 1}))["type"] == "subscribed"
        for i, topic in enumerate(["*", "user:bob:*", "user:bob:inbox", "user:eve*", "user:*", "room:1"]):
            reply = await request(eve, {"type": "subscribe", "topics": [topic], "id": 10 + i})
            assert reply["type"] == "error" and reply["code"] == "forbidden" and reply["id"] == 10 + i, (topic, reply)
        srv.publish("user:bob:inbox", {"secret": "for bob only"})
        srv.publish("user:evex", "not eve's either")
        msg = await recv_json(bob)
        assert (msg["topic"], msg["data"]) == ("user:bob:inbox", {"secret": "for bob only"})
        await expect_silence(eve)
        await eve.close()
        await bob.close()

    run(main())


def test_own_space_is_granted(make_server):
    srv, _ = make_server(jwt_secret=SECRET, client_topics=[])

    async def main():
        eve, _ = await client(srv, "eve")
        reply = await request(eve, {"type": "subscribe", "topics": ["user:eve:inbox", "user:eve:*", "user:eve"], "id": 1})
        assert reply == {"type": "subscribed", "topics": ["user:eve:inbox", "user:eve:*", "user:eve"], "id": 1}
        srv.publish("user:eve:alerts", "a")
        assert (await recv_json(eve))["topic"] == "user:eve:alerts"
        srv.publish("user:eve", "b")
        assert (await recv_json(eve))["topic"] == "user:eve"
        await eve.close()

    run(main())


def test_a_request_is_refused_whole(make_server):
    srv, _ = make_server(jwt_secret=SECRET, client_topics=[])

    async def main():
        eve, _ = await client(srv, "eve")
        reply = await request(eve, {"type": "subscribe", "topics": ["user:eve:inbox", "user:bob:inbox"], "id": 3})
        assert reply["code"] == "forbidden" and "user:bob:inbox" in reply["message"]
        srv.publish("user:eve:inbox", "mine, but the request was refused")
        await expect_silence(eve)
        await eve.close()

    run(main())


def test_anonymous_clients_have_no_own_space(make_server):
    srv, _ = make_server(client_topics=[])

    async def main():
        ws, ready = await client(srv)
        assert ready.get("user") is None
        for i, topic in enumerate(["user::inbox", "user:", "user:None:x", "user:*"]):
            reply = await request(ws, {"type": "subscribe", "topics": [topic], "id": i})
            assert reply["code"] == "forbidden", (topic, reply)
        await ws.close()

    run(main())


def test_client_topics_patterns(make_server):
    srv, _ = make_server(jwt_secret=SECRET, client_topics=["room:*"])

    async def main():
        eve, _ = await client(srv, "eve")
        reply = await request(eve, {"type": "subscribe", "topics": ["room:1", "room:*", "room:2:*"], "id": 1})
        assert reply["type"] == "subscribed", reply
        for topic in ["*", "roo*", "r?om:1", "lobby"]:
            reply = await request(eve, {"type": "subscribe", "topics": [topic], "id": 2})
            assert reply["code"] == "forbidden", (topic, reply)
        srv.publish("room:9", "hi")
        assert (await recv_json(eve))["data"] == "hi"
        await eve.close()

    run(main())


def test_default_is_deny(make_server):
    # No client_topics given: the engine default ([]) applies, not the test suite's ["*"].
    import wavelane

    assert wavelane.CONFIG_DEFAULTS["client_topics"] == []
    srv = wavelane.Server(port=0, threads=1)
    srv.start()
    try:
        async def main():
            ws, _ = await open_client(srv)
            reply = await request(ws, {"type": "subscribe", "topics": ["news"], "id": 1})
            assert reply["code"] == "forbidden"
            await ws.close()

        run(main())
    finally:
        srv.stop(1.0)


def test_approval_gets_topics_and_patterns_apart(make_server):
    seen = []

    def approve(event):
        kind, conn, data = event
        if kind == "subscribe_request":
            seen.append(data)
            srv.allow(conn, data)

    srv, events = make_server(approve, jwt_secret=SECRET, subscribe_approval=True, client_topics=["room:*"])

    async def main():
        eve, ready = await client(srv, "eve")
        # Inside her space and client_topics: granted without asking Python.
        reply = await request(eve, {"type": "subscribe", "topics": ["user:eve:x", "room:1"], "id": 1})
        assert reply["type"] == "subscribed"
        reply = await request(eve, {"type": "subscribe", "topics": ["news", "feed:*", "room:2"], "id": 2})
        assert reply["type"] == "subscribed" and reply["id"] == 2
        assert sorted(reply["topics"]) == ["feed:*", "news", "room:2"]
        assert seen == [{"topics": ["news", "room:2"], "patterns": ["feed:*"], "id": 2}]
        srv.publish("feed:a", "via the approved glob")
        assert (await recv_json(eve))["data"] == "via the approved glob"
        await eve.close()

    run(main())


def test_server_side_subscribe_is_unrestricted(make_server):
    srv, events = make_server(jwt_secret=SECRET, client_topics=[], max_globs_per_connection=1)

    async def main():
        eve, ready = await client(srv, "eve")
        conn = int(ready["conn"])
        assert srv.subscribe(conn, ["*", "user:bob:*", "a:*"])
        await asyncio.sleep(0.2)
        srv.publish("user:bob:inbox", "granted by the application")
        assert (await recv_json(eve))["data"] == "granted by the application"
        await eve.close()

    run(main())


def test_glob_limit_per_connection(make_server):
    srv, _ = make_server(client_topics=["*"], max_globs_per_connection=2)

    async def main():
        ws, _ = await client(srv)
        assert (await request(ws, {"type": "subscribe", "topics": ["a:*", "b:*", "exact"], "id": 1}))["type"] == "subscribed"
        reply = await request(ws, {"type": "subscribe", "topics": ["c:*"], "id": 2})
        assert reply["type"] == "error" and reply["code"] == "too_many_subscriptions" and "glob" in reply["message"]
        assert (await request(ws, {"type": "unsubscribe", "topics": ["a:*"], "id": 3}))["type"] == "unsubscribed"
        assert (await request(ws, {"type": "subscribe", "topics": ["c:*"], "id": 4}))["type"] == "subscribed"
        await ws.close()

    run(main())


def test_glob_limit_per_server(make_server):
    srv, _ = make_server(client_topics=["*"], max_globs=3)

    async def main():
        a, _ = await client(srv)
        b, _ = await client(srv)
        assert (await request(a, {"type": "subscribe", "topics": ["a:*", "b:*"], "id": 1}))["type"] == "subscribed"
        # The same pattern again costs nothing; a third distinct one fits, a fourth does not.
        assert (await request(b, {"type": "subscribe", "topics": ["a:*", "c:*"], "id": 2}))["type"] == "subscribed"
        reply = await request(b, {"type": "subscribe", "topics": ["d:*"], "id": 3})
        assert reply["code"] == "too_many_subscriptions" and "server" in reply["message"], reply
        await a.close()  # gives back b:* (a:* is still b's)
        await asyncio.sleep(0.3)
        assert (await request(b, {"type": "subscribe", "topics": ["d:*"], "id": 4}))["type"] == "subscribed"
        await b.close()

    run(main())


def test_demo_server_allows_its_rooms():
    from wavelane.__main__ import make_demo_server

    srv = make_demo_server(port=0)
    srv.start()
    try:
        async def main():
            ws, _ = await open_client(srv, "/ws")
            assert (await request(ws, {"type": "subscribe", "topics": ["room:lobby"], "id": 1}))["type"] == "subscribed"
            assert (await request(ws, {"type": "subscribe", "topics": ["*"], "id": 2}))["code"] == "forbidden"
            await ws.close()

        run(main())
    finally:
        srv.stop(1.0)


def test_recover_and_presence_follow_the_same_rule(make_server):
    srv, _ = make_server(jwt_secret=SECRET, client_topics=[], history_size=10, presence=True)

    async def main():
        bob, _ = await client(srv, "bob")
        assert (await request(bob, {"type": "subscribe", "topics": ["user:bob:inbox"], "id": 1}))["type"] == "subscribed"
        srv.publish("user:bob:inbox", "old secret")
        await recv_json(bob)
        eve, _ = await client(srv, "eve")
        reply = await request(eve, {"type": "subscribe", "topics": ["user:bob:inbox"], "id": 2,
                                    "recover": {"user:bob:inbox": {"epoch": "x", "offset": 0}}})
        assert reply["code"] == "forbidden"
        reply = await request(eve, {"type": "presence", "topic": "user:bob:inbox", "id": 3})
        assert reply["type"] == "error" and reply["code"] == "not_subscribed"
        await expect_silence(eve)
        await eve.close()
        await bob.close()

    run(main())
