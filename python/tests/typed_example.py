"""A small application typed for ``mypy --strict`` (checked by test_typing.py)."""

from __future__ import annotations

import asyncio
from typing import Dict, List

import wavelane
from wavelane import ClusterData, ConnectData, Event, EventKind, Priority, RpcData


def priority_for(user: str | None) -> Priority:
    return "high" if user else "normal"


async def serve(server: wavelane.Server) -> None:
    users: Dict[int, str | None] = {}
    async for kind, conn, data in server.events():
        if kind == "connect":
            info: ConnectData = data
            users[conn] = info["user"]
            server.subscribe(conn, "news")
            server.send(conn, f"hello {info['user']} ({info['query']})", priority=priority_for(info["user"]))
        elif kind == "message":
            server.publish("news", data, priority="low", key="latest")
        elif kind == "rpc":
            call: RpcData = data
            server.reply(conn, call["id"], {"method": call["method"]})
        elif kind == "cluster":
            state: ClusterData = data
            print(state["redis"], state["undelivered"])
        elif kind == "disconnect":
            users.pop(conn, None)


async def one_batch(server: wavelane.Server) -> List[EventKind]:
    events: List[Event] = await server.drain_async(max_events=64)
    return [kind for kind, _, _ in events]


def main() -> None:
    server = wavelane.Server(port=0)
    with server:
        asyncio.run(asyncio.wait_for(serve(server), 0.1))
