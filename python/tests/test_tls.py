"""TLS (wss): a self-signed certificate made at test time, a real TLS WebSocket client."""

from __future__ import annotations

import datetime
import json
import ssl
import time
from pathlib import Path
from typing import Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

import wavelane

from conftest import recv_json, run


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_pair(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Tuple[Path, Path]:
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _certificate(subject: str, issuer_name: str, public_key, signing_key, *, ca: bool, san: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path):
    """A CA, a server certificate signed by it, and a client certificate signed by it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("wavelane test CA", "wavelane test CA", ca_key.public_key(), ca_key, ca=True, san=False)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate("localhost", "wavelane test CA", server_key.public_key(), ca_key, ca=False, san=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _certificate("client", "wavelane test CA", client_key.public_key(), ca_key, ca=False, san=False)
    ca_path, _ = _write_pair(tmp_path, "ca", ca_cert, ca_key)
    server_paths = _write_pair(tmp_path, "server", server_cert, server_key)
    client_paths = _write_pair(tmp_path, "client", client_cert, client_key)
    return {"ca": ca_path, "server": server_paths, "client": client_paths}


def _client_context(pki, with_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    if with_client_cert:
        ctx.load_cert_chain(str(pki["client"][0]), str(pki["client"][1]))
    return ctx


def test_wss_round_trip(make_server, pki):
    cert, key = pki["server"]
    server, events = make_server(tls_cert=str(cert), tls_key=str(key))

    async def scenario():
        async with connect(f"wss://localhost:{server.port}/", ssl=_client_context(pki), open_timeout=5) as ws:
            ready = await recv_json(ws)
            assert ready["type"] == "ready"
            await ws.send("over tls")
            kind, conn, data = await events.await_for(lambda e: e[0] == "message")
            assert (kind, data) == ("message", "over tls")
            assert conn == int(ready["conn"])
            assert server.send(conn, "back")
            assert await ws.recv() == "back"

    run(scenario())


def test_plain_client_cannot_talk_to_tls_server(make_server, pki):
    cert, key = pki["server"]
    server, _ = make_server(tls_cert=str(cert), tls_key=str(key))

    async def scenario():
        with pytest.raises(Exception):
            async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=3):
                pass

    run(scenario())


def test_client_certificate_required_with_client_ca(make_server, pki):
    cert, key = pki["server"]
    server, events = make_server(tls_cert=str(cert), tls_key=str(key), tls_client_ca=str(pki["ca"]))

    async def without_cert():
        with pytest.raises(Exception):
            async with connect(f"wss://localhost:{server.port}/", ssl=_client_context(pki), open_timeout=3) as ws:
                await ws.recv()

    async def with_cert():
        ctx = _client_context(pki, with_client_cert=True)
        async with connect(f"wss://localhost:{server.port}/", ssl=ctx, open_timeout=5) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"

    run(without_cert())
    run(with_cert())
    # The connect event may still be on its way to the collector (lifecycle events wake Python
    # within Shard.lifecycleWakeDelay): wait for it, then check the refused handshake made none.
    events.wait_kind("connect")
    time.sleep(0.1)
    assert len(events.of("connect")) == 1


def test_bad_tls_paths_name_the_key(tmp_path, pki):
    cert, key = pki["server"]
    with pytest.raises(wavelane.ConfigError, match="tls_cert"):
        wavelane.Server(port=0, tls_cert=str(tmp_path / "missing.crt"), tls_key=str(key))
    with pytest.raises(wavelane.ConfigError, match="tls_key"):
        wavelane.Server(port=0, tls_cert=str(cert), tls_key=str(tmp_path / "missing.key"))
    with pytest.raises(wavelane.ConfigError, match="tls_key"):
        wavelane.Server(port=0, tls_cert=str(cert))
