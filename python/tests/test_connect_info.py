"""The connect event's request details: ``query`` (without the token) and ``connect_headers``."""

from __future__ import annotations

import jwt
import pytest

import wavelane
from conftest import open_client, run

SECRET = "connect-info-secret-0123456789abcdef"


def test_query_without_token_and_named_headers(make_server):
    srv, events = make_server(jwt_secret=SECRET, connect_headers=["user-agent", "x-request-id", "x-absent"])
    token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")

    async def main():
        ws, ready = await open_client(
            srv,
            f"/feed?room=a&token={token}&room=b%20c&flag",
            additional_headers={"X-Request-Id": "req-42", "X-Secret": "not-asked-for"},
            user_agent_header="wavelane-test/1",
        )
        _, _, data = await events.await_kind("connect", int(ready["conn"]))
        assert data["user"] == "alice"
        assert data["query"] == "room=a&room=b%20c&flag"  # as sent, minus the token parameter
        assert token not in str(data)
        assert data["headers"] == {"user-agent": "wavelane-test/1", "x-request-id": "req-42"}
        await ws.close()

    run(main())


def test_header_values_are_capped_and_default_is_no_headers(make_server):
    srv, events = make_server(connect_headers=["x-big"])
    plain, plain_events = make_server()

    async def main():
        ws, ready = await open_client(srv, "/", additional_headers={"X-Big": "v" * 3000})
        _, _, data = await events.await_kind("connect", int(ready["conn"]))
        value = data["headers"]["x-big"]
        assert value == "v" * 1024  # capped
        assert data["query"] == ""
        await ws.close()

        ws, ready = await open_client(plain, "/?a=1", additional_headers={"X-Big": "v"},
                                      user_agent_header="ua")
        _, _, data = await plain_events.await_kind("connect", int(ready["conn"]))
        assert data["headers"] == {}  # nothing unless named in connect_headers
        assert data["query"] == "a=1"
        await ws.close()

    run(main())


@pytest.mark.parametrize(
    "value, message",
    [
        (["User-Agent"], "connect_headers: \"User-Agent\" is not a lower-case header name"),
        (["bad header"], "connect_headers"),
        ("user-agent", "connect_headers: must be a list of str"),
        ([f"x-{i}" for i in range(33)], "connect_headers: at most 32"),
    ],
)
def test_connect_headers_validation_names_the_key(value, message):
    with pytest.raises(wavelane.ConfigError) as info:
        wavelane.Server(port=0, connect_headers=value)
    assert info.value.key == "connect_headers"
    assert str(info.value).startswith(message)
