"""Wavelane inside a FastAPI app: one process serves HTTP (uvicorn) and WebSockets (Wavelane).

Run:  WAVELANE_JWT_SECRET=$(openssl rand -hex 32) WAVELANE_PORT=8765 \
          uvicorn fastapi_app:app --port 8000

* The lifespan starts a ``wavelane.Server`` on ``WAVELANE_PORT`` (its own port: the engine speaks
  WebSocket natively, uvicorn never sees those connections) and an asyncio task that consumes
  ``server.events()`` — no thread. On shutdown the server drains gracefully (clients get 1001).
* ``POST /token/{user}`` mints an HS256 token for ``user`` (pyjwt). A real app would mint it for the
  user its own session authenticated — never for whoever asks; it is open here to keep the
  example short.
* ``POST /publish/{topic}`` publishes the JSON body to ``topic`` (with ``WAVELANE_REDIS_URL``: to
  the subscribers of every worker and instance).
* Every client message is counted (``GET /stats``) and echoed to its sender as
  ``{"type": "echo", "data": ..., "node": <this server's node_id>}``.

Clients may subscribe to ``news:*`` and ``room:*`` themselves (``client_topics``) and to their own
``user:<sub>:…`` space; everything else is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any, AsyncIterator, Dict

import jwt
from fastapi import Body, FastAPI, HTTPException

import wavelane

JWT_SECRET = os.environ.get("WAVELANE_JWT_SECRET", "")
WS_PORT = int(os.environ.get("WAVELANE_PORT", "8765"))
WS_HOST = os.environ.get("WAVELANE_HOST", "127.0.0.1")
REDIS_URL = os.environ.get("WAVELANE_REDIS_URL") or None  # set it to run several workers / instances
TOKEN_TTL = 3600

state: Dict[str, Any] = {"messages": 0, "connected": 0}


async def consume(server: wavelane.Server) -> None:
    """The application's side of the engine: every event, in order per connection."""
    async for kind, conn, data in server.events():
        if kind == "connect":
            state["connected"] += 1
        elif kind == "disconnect":
            state["connected"] -= 1
        elif kind == "message":
            state["messages"] += 1
            server.send(conn, json.dumps({"type": "echo", "data": data, "node": server.node_id}))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if len(JWT_SECRET.encode()) < 32:
        raise RuntimeError("set WAVELANE_JWT_SECRET (at least 32 bytes)")
    # with redis_url, every uvicorn worker (`--workers N`) starts its own server on the shared port
    # (reuse_port, after the fork) and they behave as one; see docs/deployment.md
    server = wavelane.Server(host=WS_HOST, port=WS_PORT, jwt_secret=JWT_SECRET, parse_json=True,
                             client_topics=["news:*", "room:*"],
                             redis_url=REDIS_URL, reuse_port=REDIS_URL is not None)
    server.start()
    consumer = asyncio.create_task(consume(server))
    app.state.wavelane = server
    try:
        yield
    finally:
        # graceful: 503 to new upgrades, 1001 to each client once its queue went out
        await asyncio.to_thread(server.drain_and_stop, 5.0)
        await consumer  # events() ends once the server is stopped and its queue is empty


app = FastAPI(lifespan=lifespan)


@app.post("/token/{user}")
def mint_token(user: str) -> Dict[str, str]:
    now = int(time.time())
    token = jwt.encode({"sub": user, "iat": now, "exp": now + TOKEN_TTL}, JWT_SECRET, algorithm="HS256")
    return {"token": token, "url": f"ws://{WS_HOST}:{WS_PORT}/"}


@app.post("/publish/{topic}")
def publish(topic: str, payload: Any = Body(...)) -> Dict[str, int]:
    server: wavelane.Server = app.state.wavelane
    try:
        offset = server.publish(topic, payload)
    except ValueError as exc:  # e.g. a topic longer than max_topic_length
        raise HTTPException(status_code=400, detail=str(exc))
    return {"offset": offset}


@app.get("/stats")
def stats() -> Dict[str, Any]:
    server: wavelane.Server = app.state.wavelane
    return {"messages": state["messages"], "connected": state["connected"], "node": server.node_id,
            "engine": server.stats()}
