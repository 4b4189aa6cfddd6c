"""The HTTP publish API (``POST /api/publish`` with ``api_key``) over real sockets."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, Dict, Optional, Tuple

import pytest

import wavelane
from cluster import await_until, make_node, redis_server, topic_channel  # noqa: F401  (fixtures are used by name)
from conftest import open_client, recv_json, request, run

KEY = "k" * 16 + "0123456789abcdef"  # 32 bytes


def post(
    port: int,
    body: Any,
    key: Optional[str] = KEY,
    method: str = "POST",
    path: str = "/api/publish",
    headers: Optional[Dict[str, str]] = None,
) -> Tuple[int, Dict[str, str], Any]:
    """One request (http.client); ``body``: bytes as they are, anything else as JSON."""
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=raw, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data) if "json" in ctype else data
    finally:
        conn.close()


def raw_request(port: int, head: bytes) -> bytes:
    """Sends ``head`` (a request without its body) and returns the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_route_absent_without_api_key(make_server):
    server, _ = make_server()
    for method in ("POST", "GET"):
        status, _, _ = post(server.port, {"topic": "t", "data": 1}, method=method)
        assert status == 404


def test_short_api_key_is_a_config_error():
    with pytest.raises(wavelane.ConfigError) as err:
        wavelane.Server(port=0, api_key="x" * 31)
    assert "api_key" in str(err.value)


def test_publish_reaches_subscriber_with_offset(make_server):
    server, _ = make_server(api_key=KEY)

    async def scenario():
        ws, _ = await open_client(server)
        reply = await request(ws, {"type": "subscribe", "topics": ["room:1"], "id": 1})
        assert reply["type"] == "subscribed", reply
        assert server.publish("room:1", {"n": 0}) == 1  # Python's publish and the API share offsets
        assert (await recv_json(ws))["offset"] == 1
        status, headers, body = post(server.port, {"topic": "room:1", "data": {"text": "hi", "n": [1, 2]}})
        assert (status, body) == (200, {"offset": 2})
        assert headers["connection"] == "close"
        msg = await recv_json(ws)
        assert msg == {"type": "message", "topic": "room:1", "offset": 2, "data": {"text": "hi", "n": [1, 2]}}
        status, _, body = post(server.port, {"topic": "room:1", "data": "s", "priority": "high", "key": "state"})
        assert (status, body) == (200, {"offset": 3})
        msg = await recv_json(ws)
        assert (msg["offset"], msg["data"]) == (3, "s")
        await ws.close()

    run(scenario())


def test_bad_or_missing_key_is_401(make_server):
    server, _ = make_server(api_key=KEY)
    for key in (None, "wrong", KEY[:-1] + "X", KEY + KEY):
        status, headers, body = post(server.port, {"topic": "t", "data": 1}, key=key)
        assert status == 401, key
        assert headers.get("www-authenticate") == "Bearer"
    # Not published: the first real publication still gets offset 1.
    assert post(server.port, {"topic": "t", "data": 1})[2] == {"offset": 1}


def test_failed_keys_are_rate_limited(make_server):
    server, _ = make_server(api_key=KEY, max_failed_handshakes_per_ip_rate=0.01, max_failed_handshakes_per_ip_burst=3)
    statuses = [post(server.port, {"topic": "t", "data": 1}, key="bad")[0] for _ in range(5)]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429]
    status, headers, _ = post(server.port, {"topic": "t", "data": 1})  # even the right key, for now
    assert status == 429 and int(headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"data": 1}, 'missing "topic"'),
        ({"topic": 5, "data": 1}, '"topic" must be a string'),
        ({"topic": "room:*", "data": 1}, "topic"),
        ({"topic": "", "data": 1}, "topic"),
        ({"topic": "t"}, 'missing "data"'),
        ({"topic": "t", "data": 1, "priority": "urgent"}, '"priority" must be one of'),
        ({"topic": "t", "data": 1, "key": 3}, '"key" must be a string'),
        ({"topic": "t", "data": 1, "extra": 3}, 'unknown field "extra"'),
    ],
)
def test_bad_requests_are_400(make_server, body, reason):
    server, _ = make_server(api_key=KEY)
    status, _, answer = post(server.port, body)
    assert status == 400, answer
    assert reason in answer["error"], answer
    assert post(server.port, {"topic": "t", "data": 1})[2] == {"offset": 1}  # nothing was published


def test_body_over_max_message_size_is_413_without_reading_it(make_server):
    server, _ = make_server(api_key=KEY, max_message_size=1024)
    # Only the head is sent: the answer comes from Content-Length alone.
    answer = raw_request(
        server.port,
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"max_message_size" in answer
    # At the limit it is accepted.
    data = "x" * (1024 - len(json.dumps({"topic": "t", "data": ""})))
    body = json.dumps({"topic": "t", "data": data}).encode()
    assert len(body) == 1024
    assert post(server.port, body)[:3:2] == (200, {"offset": 1})


def test_expect_100_continue(make_server):
    server, _ = make_server(api_key=KEY)
    body = json.dumps({"topic": "t", "data": {"big": "y" * 2000}}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nExpect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = s.recv(1)
            assert chunk, interim
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b'{"offset":1}')


def test_length_required(make_server):
    server, _ = make_server(api_key=KEY)
    auth = b"Authorization: Bearer " + KEY.encode() + b"\r\n"
    chunked = raw_request(
        server.port,
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + auth
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 411"), chunked
    none = raw_request(server.port, b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
    assert none.startswith(b"HTTP/1.1 411"), none


def test_other_methods_are_405(make_server):
    server, _ = make_server(api_key=KEY)
    for method in ("GET", "PUT", "DELETE"):
        status, headers, _ = post(server.port, None, method=method)
        assert status == 405, method
        assert headers["allow"] == "POST"


def test_not_on_admin_listener(make_server):
    from cluster import free_port

    admin = free_port()
    server, _ = make_server(api_key=KEY, admin_port=admin)
    assert post(admin, {"topic": "t", "data": 1})[0] == 405  # the admin listener is GET/HEAD only
    assert post(server.port, {"topic": "t", "data": 1})[2] == {"offset": 1}


def test_publish_on_one_instance_reaches_another_through_redis(make_node, redis_server):  # noqa: F811
    a = make_node("a", redis_url=redis_server.url, api_key=KEY, client_topics=["*"])
    b = make_node("b", redis_url=redis_server.url, client_topics=["*"])

    async def scenario():
        ws, _ = await open_client(b)
        reply = await request(ws, {"type": "subscribe", "topics": ["news"], "id": 1})
        assert reply["type"] == "subscribed", reply
        # b's Redis subscription is made asynchronously: wait until Redis routes the topic to b.
        await await_until(lambda: redis_server.numsub(topic_channel("news")) >= 1, 5, what="b subscribed in Redis")
        for n in (1, 2):
            status, _, body = post(a.port, {"topic": "news", "data": {"n": n}})
            assert (status, body) == (200, {"offset": 0})  # Redis assigns the offset
            msg = await recv_json(ws)
            assert (msg["topic"], msg["offset"], msg["data"]) == ("news", n, {"n": n})
        await ws.close()

    run(scenario())
