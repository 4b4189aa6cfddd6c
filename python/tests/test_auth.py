"""JWT authentication: accepted sources and algorithms, rejections with HTTP 401 before upgrade."""

from __future__ import annotations

import time
from typing import Any, Dict

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.exceptions import InvalidStatus

from conftest import es_low_s, es_with_s, open_client, raw_upgrade, run, url
from websockets.asyncio.client import connect

SECRET = "test-secret-that-is-long-enough-for-hs512-0123456789abcdef-0123456789"


def token(key: Any = SECRET, alg: str = "HS256", **claims: Any) -> str:
    payload: Dict[str, Any] = {"sub": "alice", "exp": int(time.time()) + 300}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    encoded = jwt.encode(payload, key, algorithm=alg)
    # PyJWT does not normalize ECDSA's S; the engine refuses high-S signatures by default.
    return es_low_s(encoded) if alg.startswith("ES") else encoded


async def expect_401(srv, path="/", **kwargs):
    with pytest.raises(InvalidStatus) as info:
        ws = await connect(url(srv, path), open_timeout=5, **kwargs)
        await ws.close()
    assert info.value.response.status_code == 401


@pytest.fixture
def rsa_keys():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pub.decode()


@pytest.fixture
def ec_keys():
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pub.decode()


def test_bearer_header_accepted(make_server):
    srv, events = make_server(jwt_secret=SECRET)

    async def main():
        tok = token(role="admin")
        ws, ready = await open_client(srv, additional_headers={"Authorization": f"Bearer {tok}"})
        assert ready["user"] == "alice"
        _, _, data = await events.await_kind("connect", int(ready["conn"]))
        assert data["user"] == "alice"
        assert data["claims"]["sub"] == "alice" and data["claims"]["role"] == "admin"
        await ws.close()

    run(main())


APP = "https://app.example"


def test_cookie_accepted(make_server):
    srv, _ = make_server(jwt_secret=SECRET, allowed_origins=[APP])

    async def main():
        ws, ready = await open_client(
            srv, additional_headers={"Cookie": f"theme=dark; token={token(sub='bob')}"}, origin=APP
        )
        assert ready["user"] == "bob"
        await ws.close()

    run(main())


def test_custom_cookie_name(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_cookie="session", allowed_origins=[APP])

    async def main():
        ws, ready = await open_client(srv, additional_headers={"Cookie": f"session={token(sub='cat')}"}, origin=APP)
        assert ready["user"] == "cat"
        await ws.close()
        await expect_401(srv, additional_headers={"Cookie": f"token={token()}"}, origin=APP)

    run(main())


def test_query_param_accepted(make_server):
    srv, _ = make_server(jwt_secret=SECRET)

    async def main():
        ws, ready = await open_client(srv, f"/?token={token(sub='carol')}")
        assert ready["user"] == "carol"
        await ws.close()

    run(main())


def test_disabled_query_param_is_ignored(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_query_param=None)
    run(expect_401(srv, f"/?token={token()}"))


def test_disabled_cookie_is_ignored(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_cookie=None, allowed_origins=[APP])
    run(expect_401(srv, additional_headers={"Cookie": f"token={token()}"}, origin=APP))


def test_disabled_bearer_header_is_ignored(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_header=False)
    run(expect_401(srv, additional_headers={"Authorization": f"Bearer {token()}"}))


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms(make_server, alg):
    srv, _ = make_server(jwt_secret=SECRET, jwt_algorithms=["HS256", "HS384", "HS512"])

    async def main():
        ws, ready = await open_client(srv, f"/?token={token(alg=alg, sub=alg)}")
        assert ready["user"] == alg
        await ws.close()

    run(main())


def test_algorithm_not_allowed_is_rejected(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_algorithms=["HS256"])
    run(expect_401(srv, f"/?token={token(alg='HS512')}"))


def test_rs256(make_server, rsa_keys):
    key, pub = rsa_keys
    srv, _ = make_server(jwt_public_key=pub, jwt_algorithms=["RS256"])

    async def main():
        ws, ready = await open_client(srv, f"/?token={token(key, 'RS256', sub='rsa-user')}")
        assert ready["user"] == "rsa-user"
        await ws.close()
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        await expect_401(srv, f"/?token={token(other, 'RS256')}")

    run(main())


def test_es256(make_server, ec_keys):
    key, pub = ec_keys
    srv, _ = make_server(jwt_public_key=pub, jwt_algorithms=["ES256"])

    async def main():
        ws, ready = await open_client(srv, f"/?token={token(key, 'ES256', sub='ec-user')}")
        assert ready["user"] == "ec-user"
        await ws.close()
        other = ec.generate_private_key(ec.SECP256R1())
        await expect_401(srv, f"/?token={token(other, 'ES256')}")

    run(main())


def test_es256_high_s_twin_is_refused_by_default(make_server, ec_keys):
    """(r, n - s) verifies as well as (r, s): the second spelling of a valid token is refused
    unless jwt_reject_high_s=False."""
    key, pub = ec_keys
    raw = jwt.encode({"sub": "ec-user", "exp": int(time.time()) + 300}, key, algorithm="ES256")
    low, high = es_with_s(raw, low=True), es_with_s(raw, low=False)
    assert low != high
    strict, _ = make_server(jwt_public_key=pub, jwt_algorithms=["ES256"])
    lenient, _ = make_server(jwt_public_key=pub, jwt_algorithms=["ES256"], jwt_reject_high_s=False)

    async def main():
        ws, ready = await open_client(strict, f"/?token={low}")
        assert ready["user"] == "ec-user"
        await ws.close()
        await expect_401(strict, f"/?token={high}")
        for tok in (low, high):
            ws, ready = await open_client(lenient, f"/?token={tok}")
            assert ready["user"] == "ec-user"
            await ws.close()

    run(main())


def test_es384_high_s_twin_is_refused(make_server):
    key = ec.generate_private_key(ec.SECP384R1())
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    raw = jwt.encode({"sub": "p384"}, key, algorithm="ES384")
    srv, _ = make_server(jwt_public_key=pub)

    async def main():
        ws, ready = await open_client(srv, f"/?token={es_with_s(raw, low=True)}")
        assert ready["user"] == "p384"
        await ws.close()
        await expect_401(srv, f"/?token={es_with_s(raw, low=False)}")

    run(main())


def test_previous_secret_accepted_during_rotation(make_server):
    srv, _ = make_server(jwt_secret="new-" + SECRET, jwt_previous_secret=SECRET)

    async def main():
        ws, ready = await open_client(srv, f"/?token={token(SECRET, sub='old')}")
        assert ready["user"] == "old"
        await ws.close()
        ws, ready = await open_client(srv, f"/?token={token('new-' + SECRET, sub='new')}")
        assert ready["user"] == "new"
        await ws.close()
        await expect_401(srv, f"/?token={token('unrelated-' + SECRET)}")

    run(main())


def test_issuer_and_audience(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_issuer="auth.example", jwt_audience="wavelane")

    async def main():
        ws, ready = await open_client(srv, f"/?token={token(iss='auth.example', aud='wavelane')}")
        assert ready["user"] == "alice"
        await ws.close()
        await expect_401(srv, f"/?token={token(iss='evil.example', aud='wavelane')}")
        await expect_401(srv, f"/?token={token(iss='auth.example', aud='other')}")
        await expect_401(srv, f"/?token={token(aud='wavelane')}")  # iss missing

    run(main())


@pytest.mark.parametrize(
    "case",
    ["bad_signature", "expired", "not_yet_valid", "alg_none", "garbage", "missing"],
)
def test_rejected_tokens_get_401(make_server, case):
    srv, events = make_server(jwt_secret=SECRET)
    now = int(time.time())
    tok = {
        "bad_signature": lambda: token("wrong-" + SECRET),
        "expired": lambda: token(exp=now - 60),
        "not_yet_valid": lambda: token(nbf=now + 600),
        "alg_none": lambda: jwt.encode({"sub": "mallory", "exp": now + 300}, None, algorithm="none"),
        "garbage": lambda: "not.a.jwt",
        "missing": lambda: None,
    }[case]()
    headers = {} if tok is None else {"Authorization": f"Bearer {tok}"}
    run(expect_401(srv, additional_headers=headers))
    assert events.of("connect") == []


def test_expired_within_leeway_is_accepted(make_server):
    srv, _ = make_server(jwt_secret=SECRET, jwt_leeway=30)

    async def main():
        ws, ready = await open_client(srv, f"/?token={token(exp=int(time.time()) - 10)}")
        assert ready["user"] == "alice"
        await ws.close()

    run(main())


def test_401_happens_before_upgrade_raw_socket(make_server):
    srv, _ = make_server(jwt_secret=SECRET)
    sock, status, _ = raw_upgrade(srv.port, headers=[("Authorization", f"Bearer {token('nope-' + SECRET)}")])
    sock.close()
    assert status.startswith("HTTP/1.1 401"), status
    sock, status, _ = raw_upgrade(srv.port, headers=[("Authorization", f"Bearer {token()}")])
    sock.close()
    assert status.startswith("HTTP/1.1 101"), status
