"""The low-level extension, configuration errors, signals and interpreter exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import wavelane
from wavelane import _native

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(wavelane.__file__)))


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_versions():
    assert wavelane.__version__ == "0.1.0"
    assert isinstance(_native.version(), str) and _native.version()
    assert wavelane.engine_version() == _native.version()
    assert _native.ABI_VERSION == 5  # wavelane.h v5: err buffers everywhere, one string-return pattern


def test_extension_is_abi3():
    assert _native.__file__.endswith(".abi3.so")


def test_engine_bad_json_raises_value_error():
    with pytest.raises(ValueError):
        _native.Engine("{not json")
    with pytest.raises(TypeError):
        _native.Engine(b"{}")  # type: ignore[arg-type]


def test_engine_lifecycle_and_drain_timeout():
    eng = _native.Engine(json.dumps({"port": 0}))
    assert eng.port == 0
    eng.start()
    try:
        assert eng.port > 0
        t0 = time.monotonic()
        assert eng.drain(16, 0.25, False) == []
        elapsed = time.monotonic() - t0
        assert 0.2 <= elapsed < 1.5
        assert eng.pending() == 0
        assert json.loads(eng.stats())
        with pytest.raises(ValueError):
            eng.drain(0, 0.0, False)
    finally:
        eng.stop(1.0)
    eng.close_engine()
    assert eng.closed
    eng.close_engine()  # idempotent
    with pytest.raises(RuntimeError):
        eng.publish("t", "x", _native.PAYLOAD_TEXT)


def test_close_engine_while_another_thread_drains():
    eng = _native.Engine(json.dumps({"port": 0}))
    eng.start()
    out = []
    t = threading.Thread(target=lambda: out.append(eng.drain(16, 10.0, False)))
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    eng.close_engine()
    t.join(5)
    assert not t.is_alive() and out == [[]]
    assert time.monotonic() - t0 < 3


def test_wake_interrupts_drain():
    eng = _native.Engine(json.dumps({"port": 0}))
    eng.start()
    try:
        threading.Timer(0.2, eng.wake).start()
        t0 = time.monotonic()
        assert eng.drain(16, 10.0, False) == []
        assert time.monotonic() - t0 < 2
    finally:
        eng.close_engine()


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"port": "8765"}, "port"),
        ({"port": 70000}, "port"),
        ({"threads": -1}, "threads"),
        ({"ping_interval": "soon"}, "ping_interval"),
        ({"jwt_header": 1}, "jwt_header"),
        ({"jwt_algorithms": "HS256"}, "jwt_algorithms"),
        ({"ws_path": 5}, "ws_path"),
        ({"bogus_key": 1}, "bogus_key"),
        ({"jwt_algorithms": ["XX999"], "jwt_secret": "s"}, "jwt_algorithms"),
        ({"max_message_size": 0}, "max_message_size"),
    ],
)
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(wavelane.ConfigError) as info:
        wavelane.Server(**kwargs)
    assert isinstance(info.value, ValueError)
    assert key in str(info.value)
    assert info.value.key == key


def test_exception_hierarchy():
    assert issubclass(wavelane.ConfigError, wavelane.WavelaneError)
    assert issubclass(wavelane.ConfigError, ValueError)
    assert issubclass(wavelane.StartError, wavelane.WavelaneError)
    assert issubclass(wavelane.StartError, OSError)


def test_ctrl_c_during_drain_raises_keyboard_interrupt():
    script = textwrap.dedent(
        """
        import sys, wavelane
        srv = wavelane.Server(port=0)
        srv.start()
        print("ready", flush=True)
        while True:
            srv.drain(timeout=30)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # well inside drain
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 3
        assert proc.returncode != 0
        assert "KeyboardInterrupt" in err
    finally:
        proc.kill()
        proc.wait()


def test_interpreter_exit_with_running_server_does_not_hang():
    script = textwrap.dedent(
        """
        import socket, threading, wavelane
        srv = wavelane.Server(port=0)
        srv.start()
        # a client connected and a daemon drain thread blocked in drain
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
        s.recv(1024)
        threading.Thread(target=lambda: srv.drain(timeout=60), daemon=True).start()
        print("bye", flush=True)
        """
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "bye"
    assert time.monotonic() - t0 < 10


def test_interpreter_exit_without_stop_and_unreferenced_server():
    script = "import wavelane\nwavelane.Server(port=0).start()\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True, timeout=20
    )
    assert proc.returncode == 0, proc.stderr


def test_every_failing_call_reports_the_engines_message():
    """wavelane.h v5: each C function that can fail fills an error buffer; the binding raises with it."""
    eng = _native.Engine(json.dumps({"port": 0}))
    try:
        with pytest.raises(ValueError, match=r"^path: "):
            eng.add_route("no-slash", "text/plain", b"")
        with pytest.raises(ValueError, match=r"^id: not valid JSON"):
            eng.deny(1, None, None, "{")
        with pytest.raises(ValueError, match=r"^code: 999 is not a close code an application may send"):
            eng.close(1, 999, "")
        with pytest.raises(ValueError, match=r"^reason: longer than 123 bytes"):
            eng.close(1, 1000, "x" * 124)
        with pytest.raises(ValueError, match=r"^priority: must be 0 \(critical\)"):
            eng.send(1, "x", 9, None)
        assert eng.deny(12345, None, None, None) is False  # defaults are the engine's; unknown conn
        assert eng.close(12345, 1013, "later") is False
    finally:
        eng.close_engine()


def test_strings_come_back_through_one_pattern():
    eng = _native.Engine(json.dumps({"port": 0, "log_level": "debug"}))
    try:
        assert eng.node() == ""  # not running
        assert "connections_active" in json.loads(eng.stats())
        eng.start()
        assert eng.node() != ""
        records = [json.loads(line) for line in eng.logs().splitlines()]
        assert any(r["message"] == "listening" for r in records), records
        again = [json.loads(line) for line in eng.logs().splitlines()]
        assert not any(r["message"] == "listening" for r in again)  # taken once
        assert json.loads(_native.config_schema())[0]["key"] == "host"
        assert _native.version()
    finally:
        eng.stop(1.0)
        eng.close_engine()
