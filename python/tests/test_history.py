"""History, positions, recovery and presence on a single instance (in memory, no Redis).

The multi-instance versions (history and presence in Redis) are in test_cluster.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import wavelane

from conftest import open_client, recv_json, request, run


async def messages(ws, n, timeout=5.0):
    out = []
    for _ in range(n):
        m = await recv_json(ws, timeout)
        assert m["type"] == "message", m
        out.append(m)
    return out


def test_positions_and_recovery_after_a_disconnect(make_server):
    srv, _ = make_server(history_size=1000)

    async def main():
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["chat", "room:*"], "id": 1})
        # Positions for exact topics only; a fresh topic is at offset 0.
        assert set(reply["positions"]) == {"chat"}
        epoch = reply["positions"]["chat"]["epoch"]
        assert reply["positions"]["chat"]["offset"] == 0
        for i in range(1, 11):
            assert srv.publish("chat", {"i": i}) == i
        seen = await messages(ws, 10)
        assert [m["offset"] for m in seen] == list(range(1, 11))
        await ws.close()
        # Offline while 500 are published.
        for i in range(11, 511):
            srv.publish("chat", {"i": i})
        ws, _ = await open_client(srv)
        reply = await request(
            ws, {"type": "subscribe", "topics": ["chat"], "id": 2, "recover": {"chat": {"epoch": epoch, "offset": 10}}}
        )
        assert reply["recovered"] == {"chat": True}, reply
        assert reply["positions"]["chat"] == {"epoch": epoch, "offset": 510}
        missed = await messages(ws, 500)
        assert [m["offset"] for m in missed] == list(range(11, 511))
        assert [m["data"]["i"] for m in missed] == list(range(11, 511))
        srv.publish("chat", "live")
        live = await recv_json(ws)
        assert live["offset"] == 511 and live["data"] == "live"
        await ws.close()

    run(main())


def test_recovery_while_publishing_has_no_gap_and_no_duplicate(make_server):
    srv, _ = make_server(history_size=20000)
    stop = threading.Event()
    published = [0]

    def publisher():  # about 5,000 per second, so each recovery races a live stream
        while not stop.is_set() and published[0] < 20000:
            for _ in range(5):
                published[0] += 1
                srv.publish("feed", published[0])
            stop.wait(0.001)

    async def main():
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["feed"], "id": 1})
        epoch = reply["positions"]["feed"]["epoch"]
        await ws.close()
        t = threading.Thread(target=publisher)
        t.start()
        try:
            await asyncio.sleep(0.05)
            # Several recoveries from different points while the stream keeps going.
            for attempt in range(3):
                while published[0] < 500 * (attempt + 1):
                    await asyncio.sleep(0.005)
                since = published[0] - 200
                ws, _ = await open_client(srv)
                await ws.send(
                    json.dumps({"type": "subscribe", "topics": ["feed"], "id": 9,
                                "recover": {"feed": {"epoch": epoch, "offset": since}}})
                )
                reply = await recv_json(ws)
                assert reply["type"] == "subscribed" and reply["recovered"] == {"feed": True}, reply
                expect = since + 1
                # past the position in the reply (however far a loaded machine let the publisher
                # run meanwhile): recovered messages, then live ones take over
                target = max(since + 1000, reply["positions"]["feed"]["offset"] + 200)
                while expect <= target:
                    m = await recv_json(ws)
                    assert m["type"] == "message"
                    assert m["offset"] == expect, (m["offset"], expect)
                    assert m["data"] == expect
                    expect += 1
                await ws.close()
        finally:
            stop.set()
            t.join()

    run(main(), timeout=60)


def test_recovery_refusals(make_server):
    srv, _ = make_server(history_size=100)

    async def main():
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["t"], "id": 1})
        epoch = reply["positions"]["t"]["epoch"]
        for i in range(300):
            srv.publish("t", i)
        await messages(ws, 300)
        cases = [
            ({"epoch": epoch, "offset": 150}, "history no longer reaches back"),
            ({"epoch": "other", "offset": 150}, "epoch changed"),
            ({"epoch": epoch, "offset": 9999}, "ahead of the stream"),
        ]
        for i, (pos, why) in enumerate(cases):
            reply = await request(ws, {"type": "subscribe", "topics": ["t"], "id": 10 + i, "recover": {"t": pos}})
            assert reply["recovered"] == {"t": False}, reply
            assert why in reply["recovery_errors"]["t"], reply
            # The position tells the client where to continue after a resync.
            assert reply["positions"]["t"] == {"epoch": epoch, "offset": 300}
        # Up to date: recovered, nothing to send; the next live one follows.
        reply = await request(ws, {"type": "subscribe", "topics": ["t"], "id": 20, "recover": {"t": {"epoch": epoch, "offset": 300}}})
        assert reply["recovered"] == {"t": True}
        srv.publish("t", "next")
        assert (await recv_json(ws))["offset"] == 301
        # A glob cannot be recovered; a recover naming a topic not subscribed is a bad request.
        reply = await request(ws, {"type": "subscribe", "topics": ["x:*"], "id": 21, "recover": {"x:*": {"epoch": epoch, "offset": 1}}})
        assert reply["recovered"] == {"x:*": False} and "glob" in reply["recovery_errors"]["x:*"]
        reply = await request(ws, {"type": "subscribe", "topics": ["a"], "id": 22, "recover": {"b": {"epoch": epoch, "offset": 1}}})
        assert reply["type"] == "error" and reply["code"] == "bad_request" and reply["id"] == 22
        await ws.close()

    run(main())


def test_without_history_recovery_is_refused_and_replies_are_plain(server):
    srv, _ = server

    async def main():
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["t"], "id": 1, "recover": {"t": {"epoch": "e", "offset": 1}}})
        assert reply["recovered"] == {"t": False} and reply["recovery_errors"] == {"t": "history is off on this server"}
        reply = await request(ws, {"type": "subscribe", "topics": ["u"], "id": 2})
        assert reply == {"type": "subscribed", "topics": ["u"], "id": 2}
        await ws.close()

    run(main())


def test_in_memory_history_is_bounded(make_server):
    srv, _ = make_server(history_size=1000, history_max_bytes=64 * 1024)
    payload = "x" * 1000
    for i in range(500):
        srv.publish(f"topic:{i % 7}", payload)
    assert 0 < srv.stats()["history_bytes"] <= 64 * 1024


def test_config_errors_name_the_key():
    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(history_size=-1)
    assert e.value.key == "history_size"
    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(history_max_bytes=10)
    assert e.value.key == "history_max_bytes"
    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(presence_ttl=0.5)
    assert e.value.key == "presence_ttl"
    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(redis_url="http://x")
    assert e.value.key == "redis_url"
    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(redis_prefix="a b")
    assert e.value.key == "redis_prefix"


def test_presence_on_one_instance(make_server):
    srv, events = make_server(presence=True)

    async def main():
        alice, ready_a = await open_client(srv)
        conn_a = int(ready_a["conn"])
        reply = await request(alice, {"type": "subscribe", "topics": ["room"], "id": 1, "presence": True})
        assert reply["type"] == "subscribed"
        own = await recv_json(alice)
        assert own["type"] == "join" and own["member"]["conn"] == str(conn_a) and own["member"]["info"] is None
        assert own["member"]["node"] == srv.node_id
        # Info set later updates the membership (no second join).
        assert srv.set_presence_info(conn_a, {"name": "Alice"}) is True
        for _ in range(100):
            if srv.presence("room")[0]["info"] == {"name": "Alice"}:
                break
            await asyncio.sleep(0.01)
        assert srv.presence("room") == [{"user": None, "conn": str(conn_a), "node": srv.node_id, "info": {"name": "Alice"}}]
        assert srv.set_presence_info(999999, {}) is False

        bob, ready_b = await open_client(srv)
        await request(bob, {"type": "subscribe", "topics": ["room"], "id": 1})
        join = await recv_json(alice)
        assert join == {"type": "join", "topic": "room", "member": {
            "user": None, "conn": ready_b["conn"], "node": own["member"]["node"], "info": None}}

        reply = await request(alice, {"type": "presence", "topic": "room", "id": 7})
        assert reply["type"] == "presence" and reply["id"] == 7
        assert sorted(m["conn"] for m in reply["members"]) == sorted([ready_a["conn"], ready_b["conn"]])
        assert sorted(m["conn"] for m in srv.presence("room")) == sorted([ready_a["conn"], ready_b["conn"]])

        # Only for topics one is subscribed to.
        reply = await request(bob, {"type": "presence", "topic": "elsewhere", "id": 8})
        assert reply["type"] == "error" and reply["code"] == "not_subscribed"

        await bob.close()
        leave = await recv_json(alice)
        assert leave["type"] == "leave" and leave["member"]["conn"] == ready_b["conn"]
        assert [m["conn"] for m in srv.presence("room")] == [ready_a["conn"]]
        # Unsubscribing leaves too.
        await request(alice, {"type": "unsubscribe", "topics": ["room"], "id": 9})
        assert srv.presence("room") == []
        await alice.close()

    run(main())


def test_presence_members_per_topic_are_capped(make_server):
    """Beyond max_presence_members a new member is refused (told, counted), the subscription stands."""
    srv, _ = make_server(presence=True, max_presence_members=2)

    async def main():
        peers = [await open_client(srv) for _ in range(3)]
        for i, (ws, _) in enumerate(peers[:2]):
            assert (await request(ws, {"type": "subscribe", "topics": ["room"], "id": i}))["type"] == "subscribed"
        third, ready3 = peers[2]
        reply = await request(third, {"type": "subscribe", "topics": ["room", "other"], "id": 3})
        assert reply["type"] == "subscribed", reply
        refused = await recv_json(third)
        assert refused["type"] == "error" and refused["code"] == "presence_full" and refused["topic"] == "room", refused
        assert "max_presence_members" in refused["message"]
        assert sorted(m["conn"] for m in srv.presence("room")) == sorted(r["conn"] for _, r in peers[:2])
        assert [m["conn"] for m in srv.presence("other")] == [ready3["conn"]]  # another topic: its own count
        assert srv.stats()["presence_refused"] == 1
        # Still subscribed: publications arrive.
        srv.publish("room", "hi")
        assert (await recv_json(third))["data"] == "hi"
        # A place frees up: the next join is accepted.
        await peers[0][0].close()
        for _ in range(100):
            if len(srv.presence("room")) == 1:
                break
            await asyncio.sleep(0.01)
        late, ready_late = await open_client(srv)
        assert (await request(late, {"type": "subscribe", "topics": ["room"], "id": 4}))["type"] == "subscribed"
        assert ready_late["conn"] in [m["conn"] for m in srv.presence("room")]
        assert srv.stats()["presence_refused"] == 1
        for ws, _ in peers[1:] + [(late, None)]:
            await ws.close()

    run(main())


def test_presence_off(server):
    srv, _ = server

    async def main():
        ws, _ = await open_client(srv)
        await request(ws, {"type": "subscribe", "topics": ["room"], "id": 1})
        reply = await request(ws, {"type": "presence", "topic": "room", "id": 2})
        assert reply["type"] == "error" and reply["code"] == "presence_off"
        await ws.close()

    run(main())
    with pytest.raises(RuntimeError, match="presence is off"):
        srv.presence("room")
    with pytest.raises(ValueError, match="info"):
        srv.set_presence_info(1, {"x": "y" * 5000})


def test_recovery_through_an_approved_subscription(make_server):
    def approve(event):
        kind, conn, data = event
        if kind == "subscribe_request":
            srv.allow(conn, data)

    srv, _ = make_server(approve, history_size=100, subscribe_approval=True, client_topics=[])

    async def main():
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["t"], "id": 1})
        epoch = reply["positions"]["t"]["epoch"]
        for i in range(5):
            srv.publish("t", i)
        assert [m["offset"] for m in await messages(ws, 5)] == [1, 2, 3, 4, 5]
        await ws.close()
        srv.publish("t", 5)
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["t"], "id": 2, "recover": {"t": {"epoch": epoch, "offset": 3}}})
        assert reply["id"] == 2 and reply["recovered"] == {"t": True}, reply
        assert [m["offset"] for m in await messages(ws, 3)] == [4, 5, 6]
        await ws.close()

    run(main())


def test_positions_of_unpublished_topics_create_no_state(make_server):
    """5,000 subscribe/unsubscribe (and recover) of topics never published leave no offsets entry;
    a subscriber from before the first publication still recovers it (same epoch)."""
    srv, _ = make_server(history_size=100)

    async def main():
        ws, _ = await open_client(srv)
        for r in range(50):
            topics = [f"never:{r}:{i}" for i in range(100)]
            reply = await request(ws, {"type": "subscribe", "topics": topics, "id": r})
            assert all(reply["positions"][t]["offset"] == 0 for t in topics), reply
            epoch = reply["positions"][topics[0]]["epoch"]
            recover = {t: {"epoch": epoch, "offset": 0} for t in topics}
            reply = await request(ws, {"type": "subscribe", "topics": topics, "id": r, "recover": recover})
            assert reply["recovered"] == {t: True for t in topics}, reply
            assert (await request(ws, {"type": "unsubscribe", "topics": topics, "id": r}))["type"] == "unsubscribed"
        assert srv.stats()["topics_with_offsets"] == 0
        reply = await request(ws, {"type": "subscribe", "topics": ["late"], "id": 100})
        before = reply["positions"]["late"]
        assert srv.stats()["topics_with_offsets"] == 0
        await ws.close()
        for i in range(3):
            srv.publish("late", i)
        assert srv.stats()["topics_with_offsets"] == 1
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["late"], "id": 1, "recover": {"late": before}})
        assert reply["recovered"] == {"late": True}, reply
        assert reply["positions"]["late"] == {"epoch": before["epoch"], "offset": 3}
        assert [m["offset"] for m in await messages(ws, 3)] == [1, 2, 3]
        await ws.close()

    run(main())


def test_subscribe_with_history_sends_the_backlog_then_live_without_gap(make_server):
    """`history: N` on subscribe: the last <= N retained publications of each exact topic follow
    `subscribed`, in order, then the live ones; no gap, no duplicate, even while publishing."""
    server, _ = make_server(history_size=100)
    for i in range(30):
        server.publish("room:1", {"i": i})

    async def main():
        ws, _ = await open_client(server)
        reply = await request(ws, {"type": "subscribe", "topics": ["room:1", "room:2"], "history": 10, "id": 1})
        assert reply["type"] == "subscribed" and reply["positions"]["room:1"]["offset"] == 30
        assert "recovered" not in reply  # a backlog is not a recovery
        got = [await recv_json(ws) for _ in range(10)]
        assert [m["offset"] for m in got] == list(range(21, 31))
        assert [m["data"]["i"] for m in got] == list(range(20, 30))
        server.publish("room:1", "live")
        server.publish("room:2", "first of room 2")  # an empty topic: no backlog, live only
        live = [await recv_json(ws) for _ in range(2)]
        assert [(m["topic"], m["offset"]) for m in live] == [("room:1", 31), ("room:2", 1)]
        # asking for more than exists gives what exists; history: 0 gives none
        ws2, _ = await open_client(server)
        await request(ws2, {"type": "subscribe", "topics": ["room:2"], "history": 500, "id": 1})
        assert (await recv_json(ws2))["offset"] == 1
        r = await request(ws2, {"type": "subscribe", "topics": ["room:1"], "history": -1, "id": 2})
        assert (r["type"], r["code"]) == ("error", "bad_request")
        await ws.close()
        await ws2.close()

    run(main())


def test_history_backlog_while_publishing_is_contiguous(make_server):
    server, _ = make_server(history_size=1000)
    stop = threading.Event()

    def publisher():
        i = 0
        while not stop.is_set() and i < 20000:
            server.publish("busy", i)
            i += 1
            if i % 200 == 0:
                time.sleep(0.001)

    for i in range(100):
        server.publish("busy", -1)
    t = threading.Thread(target=publisher)
    t.start()
    try:
        async def main():
            ws, _ = await open_client(server)
            reply = await request(ws, {"type": "subscribe", "topics": ["busy"], "history": 50, "id": 1})
            top = reply["positions"]["busy"]["offset"]
            got = [(await recv_json(ws))["offset"] for _ in range(300)]
            assert got == list(range(top - 49, top - 49 + 300)), got[:60]
            await ws.close()

        run(main())
    finally:
        stop.set()
        t.join()


def test_python_client_history_option(make_server):
    from wavelane.client import Client

    from conftest import url

    server, _ = make_server(history_size=100)
    for i in range(5):
        server.publish("room:9", i)

    async def main():
        async with Client(url(server)) as c:
            await c.subscribe("room:9", history=3)
            got = [await c.recv(timeout=5) for _ in range(3)]
            assert [(m.offset, m.data) for m in got] == [(3, 2), (4, 3), (5, 4)]

    run(main())
