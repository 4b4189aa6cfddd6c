"""Identity is bytes (issue 10, item 5): topics and users that merely look alike (NFC vs NFD)
are different names over real sockets."""

from __future__ import annotations

import asyncio
import time

import jwt

from conftest import open_client, recv_json, request, run

SECRET = "identity-test-secret-0123456789abcdef-0123456789abcdef"
NFC_TOPIC, NFD_TOPIC = "room:caf\u00e9", "room:cafe\u0301"


async def silent(ws, seconds: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    return False


def test_nfd_subscriber_does_not_get_nfc_publications(make_server):
    srv, _ = make_server(client_topics=["room:*"])

    async def main():
        nfd, _ = await open_client(srv)
        nfc, _ = await open_client(srv)
        assert (await request(nfd, {"type": "subscribe", "topics": [NFD_TOPIC], "id": 1}))["type"] == "subscribed"
        assert (await request(nfc, {"type": "subscribe", "topics": [NFC_TOPIC], "id": 1}))["type"] == "subscribed"
        srv.publish(NFC_TOPIC, "nfc")
        msg = await recv_json(nfc)
        assert (msg["topic"], msg["data"]) == (NFC_TOPIC, "nfc")
        assert await silent(nfd)
        srv.publish(NFD_TOPIC, "nfd")
        msg = await recv_json(nfd)
        assert (msg["topic"], msg["data"]) == (NFD_TOPIC, "nfd")
        assert await silent(nfc)
        await nfd.close()
        await nfc.close()

    run(main())


def test_send_user_compares_bytes(make_server):
    srv, _ = make_server(jwt_secret=SECRET)

    async def main():
        tok = jwt.encode({"sub": "Jose\u0301", "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")
        ws, ready = await open_client(srv, additional_headers={"Authorization": f"Bearer {tok}"})
        assert ready["user"] == "Jose\u0301"
        assert srv.send_user("Jos\u00e9", "not for you") == 0
        assert await silent(ws)
        assert srv.send_user("Jose\u0301", "for you") == 1
        assert await asyncio.wait_for(ws.recv(), 5) == "for you"
        await ws.close()

    run(main())
