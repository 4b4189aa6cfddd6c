"""Topics: client and server subscriptions, globs, fan-out, ordering, binary hot lane, approval."""

from __future__ import annotations

import asyncio
import struct

import pytest

from conftest import open_client, recv, recv_json, request, run


async def subscribed(ws, topics, id_=1):
    reply = await request(ws, {"type": "subscribe", "topics": topics, "id": id_})
    assert reply == {"type": "subscribed", "topics": topics, "id": id_}, reply


def parse_binary(frame: bytes):
    assert frame[0] == 0x01 and frame[1] == 0x01, frame[:2]
    (tlen,) = struct.unpack(">H", frame[2:4])
    topic = frame[4 : 4 + tlen].decode()
    (offset,) = struct.unpack(">Q", frame[4 + tlen : 12 + tlen])
    return topic, offset, frame[12 + tlen :]


def test_subscribe_and_unsubscribe_acks(server):
    srv, _ = server

    async def main():
        ws, _ = await open_client(srv)
        await subscribed(ws, ["news", "sports"], 1)
        assert srv.publish("news", "headline") == 1
        assert await recv_json(ws) == {"type": "message", "topic": "news", "offset": 1, "data": "headline"}
        reply = await request(ws, {"type": "unsubscribe", "topics": ["news"], "id": 2})
        assert reply == {"type": "unsubscribed", "topics": ["news"], "id": 2}
        srv.publish("news", "not for you")
        srv.publish("sports", "goal")
        msg = await recv_json(ws)
        assert msg["topic"] == "sports" and msg["data"] == "goal"
        await ws.close()

    run(main())


def test_subscribe_errors(make_server):
    srv, _ = make_server(max_topic_length=16, max_subscriptions=2)

    async def main():
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["x" * 17], "id": 3})
        assert reply["type"] == "error" and reply["id"] == 3
        assert isinstance(reply["code"], str) and reply["code"]
        assert isinstance(reply["message"], str)
        reply = await request(ws, {"type": "subscribe", "topics": ["a", "b", "c"], "id": 4})
        assert reply["type"] == "error" and reply["id"] == 4
        reply = await request(ws, {"type": "subscribe", "topics": "not-a-list", "id": 5})
        assert reply["type"] == "error" and reply["id"] == 5
        # still usable afterwards
        assert await request(ws, {"type": "ping", "id": 6}) == {"type": "pong", "id": 6}
        await ws.close()

    run(main())


def test_client_subscriptions_disabled(make_server):
    srv, _ = make_server(client_subscriptions=False)

    async def main():
        ws, _ = await open_client(srv)
        reply = await request(ws, {"type": "subscribe", "topics": ["t"], "id": 9})
        assert reply["type"] == "error" and reply["id"] == 9
        await ws.close()

    run(main())


def test_publish_payload_kinds(server):
    srv, _ = server

    async def main():
        ws, _ = await open_client(srv)
        await subscribed(ws, ["kinds"])
        assert srv.publish("kinds", "text") == 1
        assert srv.publish("kinds", {"a": [1, 2, None], "b": "é"}) == 2
        assert srv.publish("kinds", [1, 2]) == 3
        assert srv.publish("kinds", 42) == 4
        assert srv.publish("kinds", None) == 5
        assert srv.publish("kinds", '{"looks":"json"}') == 6
        datas = [(await recv_json(ws))["data"] for _ in range(6)]
        assert datas == ["text", {"a": [1, 2, None], "b": "é"}, [1, 2], 42, None, '{"looks":"json"}']
        await ws.close()

    run(main())


def test_publish_rejects_non_serializable(server):
    srv, _ = server
    with pytest.raises(ValueError, match="data"):
        srv.publish("t", object())
    with pytest.raises(TypeError, match="topic"):
        srv.publish(123, "x")  # type: ignore[arg-type]


def test_binary_hot_lane_frame_layout(server):
    srv, _ = server
    payload = bytes(range(256)) * 3

    async def main():
        ws, _ = await open_client(srv)
        await subscribed(ws, ["bin:é"])
        assert srv.publish("bin:é", payload) == 1
        assert srv.publish("bin:é", bytearray(b"ba")) == 2
        assert srv.publish("bin:é", memoryview(b"mv")) == 3
        frames = [await recv(ws) for _ in range(3)]
        assert all(isinstance(f, bytes) for f in frames)
        parsed = [parse_binary(f) for f in frames]
        assert parsed == [("bin:é", 1, payload), ("bin:é", 2, b"ba"), ("bin:é", 3, b"mv")]
        topic_len = len("bin:é".encode())
        assert struct.unpack(">H", frames[0][2:4]) == (topic_len,)
        await ws.close()

    run(main())


def test_wildcard_subscriptions(server):
    srv, _ = server

    async def main():
        ws, _ = await open_client(srv)
        await subscribed(ws, ["user:*:events", "room:?", "done"])
        srv.publish("user:42:events", "a")
        srv.publish("user:42:other", "no")
        srv.publish("user:a:b:events", "b")  # '*' spans ':' too
        srv.publish("room:x", "c")
        srv.publish("room:xy", "no")
        srv.publish("done", "end")
        got = []
        while True:
            msg = await recv_json(ws)
            got.append((msg["topic"], msg["data"]))
            if msg["topic"] == "done":
                break
        assert got == [("user:42:events", "a"), ("user:a:b:events", "b"), ("room:x", "c"), ("done", "end")]
        await ws.close()

    run(main())


def test_fan_out_to_200_connections_keeps_order(make_server):
    srv, _ = make_server()
    n_clients, n_msgs = 200, 100

    async def main():
        clients = await asyncio.gather(*(open_client(srv) for _ in range(n_clients)))
        await asyncio.gather(*(subscribed(ws, ["fan"]) for ws, _ in clients))
        offsets = [srv.publish("fan", {"i": i}) for i in range(n_msgs)]
        assert offsets == list(range(1, n_msgs + 1))

        async def collect(ws):
            return [await recv_json(ws, 20) for _ in range(n_msgs)]

        results = await asyncio.gather(*(collect(ws) for ws, _ in clients))
        for msgs in results:
            assert [m["offset"] for m in msgs] == list(range(1, n_msgs + 1))
            assert [m["data"]["i"] for m in msgs] == list(range(n_msgs))
        await asyncio.gather(*(ws.close() for ws, _ in clients))

    run(main(), timeout=90)


def test_offsets_are_per_topic(server):
    srv, _ = server
    assert [srv.publish("a", "x") for _ in range(3)] == [1, 2, 3]
    assert srv.publish("b", "x") == 1
    assert srv.publish("a", b"bin") == 4


def test_send_user_reaches_every_connection_of_user(make_server):
    import jwt

    secret = "k" * 32
    srv, events = make_server(jwt_secret=secret)

    def tok(sub):
        return jwt.encode({"sub": sub}, secret, algorithm="HS256")

    async def main():
        alice = [await open_client(srv, f"/?token={tok('alice')}") for _ in range(3)]
        bob, bob_ready = await open_client(srv, f"/?token={tok('bob')}")
        for _, ready in alice:
            await events.await_kind("connect", int(ready["conn"]))
        assert srv.send_user("alice", "for alice") == 3
        assert srv.send_user("alice", b"\x00bin") == 3
        assert srv.send_user("nobody", "x") == 0
        for ws, _ in alice:
            assert await recv(ws) == "for alice"
            assert await recv(ws) == b"\x00bin"
        assert srv.send(int(bob_ready["conn"]), "only bob") is True
        assert await recv(bob) == "only bob"  # bob got nothing from send_user
        for ws, _ in alice + [(bob, None)]:
            await ws.close()

    run(main())


def test_server_side_subscribe_and_unsubscribe(server):
    srv, events = server

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        assert srv.subscribe(conn, ["alerts", "metrics:*"]) is True
        srv.publish("alerts", "a1")
        srv.publish("metrics:cpu", "m1")
        assert (await recv_json(ws))["data"] == "a1"
        assert (await recv_json(ws))["data"] == "m1"
        assert srv.unsubscribe(conn, "alerts") is True
        srv.publish("alerts", "a2")
        srv.publish("metrics:mem", "m2")
        msg = await recv_json(ws)
        assert (msg["topic"], msg["data"]) == ("metrics:mem", "m2")
        assert srv.subscribe(99999999, "x") is False
        with pytest.raises(TypeError, match="topics"):
            srv.subscribe(conn, [1, 2])  # type: ignore[list-item]
        await ws.close()

    run(main())


def test_subscribe_approval_allow_and_deny(make_server):
    def approve(event):
        kind, conn, data = event
        if kind == "subscribe_request":
            if all(t.startswith("public:") for t in data["topics"]):
                srv.allow(conn, data)
            else:
                srv.deny(conn, data, reason="private topic")

    srv, events = make_server(subscribe_approval=True, handler=approve, client_topics=[])

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        reply = await request(ws, {"type": "subscribe", "topics": ["public:news"], "id": 7})
        assert reply == {"type": "subscribed", "topics": ["public:news"], "id": 7}
        _, c, data = await events.await_kind("subscribe_request", conn)
        assert data == {"topics": ["public:news"], "patterns": [], "id": 7}
        reply = await request(ws, {"type": "subscribe", "topics": ["secret"], "id": 8})
        assert reply["type"] == "error" and reply["id"] == 8
        assert reply["code"] == "forbidden" and reply["message"] == "private topic"
        srv.publish("secret", "hidden")
        srv.publish("public:news", "visible")
        msg = await recv_json(ws)
        assert (msg["topic"], msg["data"]) == ("public:news", "visible")
        await ws.close()

    run(main())
