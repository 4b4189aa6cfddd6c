"""RPC: a client's {"type":"rpc"} reaches Python as an ("rpc", conn, {...}) event; server.reply
answers it with the same id; malformed calls get bad_request; rate limits apply."""

from __future__ import annotations

import asyncio
import json

import pytest

from wavelane.client import Client, RPCError

from conftest import open_client, recv_json, request, run, url


def answer_rpcs(server):
    """A drain-thread handler: add(a, b) answers, anything else is an error."""

    def handler(event):
        kind, conn, data = event
        if kind != "rpc":
            return
        if data["method"] == "add":
            server.reply(conn, data["id"], data["params"]["a"] + data["params"]["b"])
        else:
            server.reply(conn, data["id"], error={"code": "no_such_method", "message": data["method"]})

    return handler


def test_rpc_event_and_reply_over_a_raw_socket(make_server):
    holder = {}
    server, events = make_server(handler=lambda e: answer_rpcs(holder["s"])(e))
    holder["s"] = server

    async def main():
        ws, _ = await open_client(server)
        reply = await request(ws, {"type": "rpc", "method": "add", "params": {"a": 1, "b": 2}, "id": 7})
        assert reply == {"type": "reply", "id": 7, "result": 3}
        reply = await request(ws, {"type": "rpc", "method": "nope", "id": "k"})
        assert reply == {"type": "reply", "id": "k", "error": {"code": "no_such_method", "message": "nope"}}
        kind, conn, data = events.of("rpc")[0]
        assert data == {"method": "add", "params": {"a": 1, "b": 2}, "id": 7}
        assert events.of("rpc")[1][2] == {"method": "nope", "params": None, "id": "k"}
        assert events.of("message") == []  # an rpc is not an application message
        await ws.close()

    run(main())


def test_malformed_rpc_is_refused_by_the_engine(make_server):
    server, events = make_server()

    async def main():
        ws, _ = await open_client(server)
        r = await request(ws, {"type": "rpc", "params": {}, "id": 1})
        assert (r["type"], r["code"], r["id"]) == ("error", "bad_request", 1)
        r = await request(ws, {"type": "rpc", "method": "add"})
        assert (r["type"], r["code"]) == ("error", "bad_request") and "id" in r["message"]
        await ws.close()
        await events.await_kind("disconnect")
        assert events.of("rpc") == []

    run(main())


def test_rpc_counts_against_the_rate_limit(make_server):
    server, events = make_server(rate_limit_messages=5, rate_limit_burst_messages=5, rate_limit_strikes=0)

    async def main():
        ws, _ = await open_client(server)
        for i in range(20):
            await ws.send(json.dumps({"type": "rpc", "method": "m", "id": i}))
        r = await recv_json(ws)
        assert (r["type"], r["code"]) == ("error", "rate_limited")
        await asyncio.sleep(0.3)
        assert len(events.of("rpc")) == 5
        await ws.close()

    run(main())


def test_reply_validates_its_arguments(server):
    server, _ = server
    with pytest.raises(TypeError):
        server.reply(1, 1, error="boom")
    with pytest.raises(ValueError):
        server.reply(1, 1, object())
    assert server.reply(424242, 1, "x") is False  # unknown connection


def test_python_client_rpc(make_server):
    holder = {}
    server, events = make_server(handler=lambda e: answer_rpcs(holder["s"])(e))
    holder["s"] = server

    async def main():
        async with Client(url(server)) as c:
            assert await c.rpc("add", {"a": 20, "b": 22}) == 42
            with pytest.raises(RPCError) as info:
                await c.rpc("nope")
            assert info.value.code == "no_such_method"
            with pytest.raises(asyncio.TimeoutError):  # never answered: the caller's timeout
                holder["s"] = None
                await c.rpc("add", {"a": 1, "b": 1}, timeout=0.3)

    def guarded(e):
        if holder["s"] is not None:
            answer_rpcs(holder["s"])(e)

    events.handler = guarded
    run(main())
