"""Smoke test of an installed wavelane wheel (run by .ci/run in fresh venvs; not collected by pytest).

Needs only the installed ``wavelane`` and ``websockets`` (the real client): starts a server with
``jwt_secret`` on a loopback ephemeral port, connects a client with an HS256 JWT (made here with
hmac, no PyJWT), subscribes it from Python on ``connect``, publishes, checks the client receives
the publication, checks Python drains the client's message, and stops. Bounded in time.

Prints one line: ``wheel smoke ok: python X.Y.Z, import N ms, round trip N ms, libwavelane from PATH``.
Exit status 0 on success; any failure raises (non-zero).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time

T0 = time.perf_counter()
import wavelane  # noqa: E402

IMPORT_MS = (time.perf_counter() - T0) * 1000.0

from websockets.sync.client import connect  # noqa: E402

SECRET = "wheel-smoke-secret-0123456789abcdef"
TOPIC = "smoke:news"
DEADLINE_S = 20.0


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def hs256(claims: dict) -> str:
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def check_extras(tmp: str) -> str:
    """With WAVELANE_SMOKE_EXTRAS=1 (installed as wavelane[toml,yaml,fast]): the optional imports
    config.py and _json.py look for are there and used."""
    from wavelane import _json

    assert _json._orjson is not None, "[fast] installed but orjson not used"
    toml_path = os.path.join(tmp, "wavelane.toml")
    with open(toml_path, "w") as f:
        f.write("[wavelane]\nmax_message_size = 4096\n")
    yaml_path = os.path.join(tmp, "wavelane.yaml")
    with open(yaml_path, "w") as f:
        f.write("max_message_size: 8192\n")
    assert wavelane.load_config(toml_path, env={})["max_message_size"] == 4096
    assert wavelane.load_config(yaml_path, env={})["max_message_size"] == 8192
    return ", extras toml+yaml+fast ok"


def main() -> None:
    # The engine must come from the installed wheel, not from a source tree.
    pkg_dir = os.path.dirname(os.path.abspath(wavelane.__file__))
    lib = os.path.join(pkg_dir, "libwavelane.so")
    libs_dir = os.path.join(os.path.dirname(pkg_dir), "wavelane.libs")
    assert "site-packages" in pkg_dir, pkg_dir
    assert os.path.exists(lib) or os.path.isdir(libs_dir), f"no libwavelane in {pkg_dir}"

    extras = check_extras(os.getcwd()) if os.environ.get("WAVELANE_SMOKE_EXTRAS") == "1" else ""
    token = hs256({"sub": "smoke-user", "exp": int(time.time()) + 300})
    client_result: dict = {}

    server = wavelane.Server(host="127.0.0.1", port=0, jwt_secret=SECRET, threads=1)
    server.start()
    try:
        def client() -> None:
            try:
                with connect(
                    f"ws://127.0.0.1:{server.port}/",
                    additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=5,
                ) as ws:
                    ready = json.loads(ws.recv(timeout=5))
                    assert ready["type"] == "ready" and ready["user"] == "smoke-user", ready
                    client_result["ready"] = ready
                    ws.send("hello from the client")
                    while True:
                        msg = json.loads(ws.recv(timeout=10))
                        if msg.get("type") == "message":
                            client_result["publication"] = msg
                            return
            except BaseException as exc:  # reported by the main thread
                client_result["error"] = repr(exc)

        t_start = time.perf_counter()
        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        drained_message = None
        conn = None
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and (drained_message is None or thread.is_alive()):
            for kind, c, data in server.drain(max_events=64, timeout=0.05):
                if kind == "connect":
                    assert data["user"] == "smoke-user", data
                    conn = c
                    assert server.subscribe(c, TOPIC) is True
                elif kind == "message":
                    assert c == conn, (c, conn)
                    drained_message = data
                    # Subscribed at connect; the client is waiting for this publication.
                    server.publish(TOPIC, {"echo": data})
            if "error" in client_result:
                break
        thread.join(5)
        elapsed_ms = (time.perf_counter() - t_start) * 1000.0
        assert "error" not in client_result, client_result["error"]
        assert drained_message == "hello from the client", drained_message
        pub = client_result.get("publication")
        assert pub is not None, f"the client got no publication within {DEADLINE_S}s"
        assert pub["topic"] == TOPIC and pub["data"] == {"echo": "hello from the client"}, pub
    finally:
        server.stop(2.0)
    print(
        f"wheel smoke ok: python {sys.version.split()[0]}, import {IMPORT_MS:.0f} ms, "
        f"round trip {elapsed_ms:.0f} ms, engine {wavelane.engine_version()}{extras}, from {pkg_dir}"
    )


if __name__ == "__main__":
    main()
