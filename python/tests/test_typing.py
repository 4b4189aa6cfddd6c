"""Static types: event kinds and priorities are Literals, payloads TypedDicts (mypy --strict)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import wavelane

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(wavelane.__file__)))


def test_typed_example_passes_mypy_strict_and_typos_fail_it(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")
    with open(os.path.join(HERE, "typed_example.py"), encoding="utf-8") as f:
        example = f.read()
    ok = tmp_path / "example_ok.py"
    ok.write_text(example)
    kind_typo = tmp_path / "example_kind_typo.py"
    kind_typo.write_text(example.replace('if kind == "connect":', 'if kind == "conect":'))
    priority_typo = tmp_path / "example_priority_typo.py"
    priority_typo.write_text(example.replace('priority="low"', 'priority="urgent"'))
    assert kind_typo.read_text() != example and priority_typo.read_text() != example

    env = dict(os.environ, MYPYPATH=PYTHON_DIR)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes",
         "--cache-dir", str(tmp_path / "cache"), str(ok), str(kind_typo), str(priority_typo)],
        cwd=PYTHON_DIR, env=env, capture_output=True, text=True, timeout=240,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert done.returncode == 1, done.stdout + done.stderr
    # the correct example and the package itself are clean under --strict
    assert not [e for e in errors if "example_ok.py" in e or "wavelane" in e.split(":")[0]], errors
    kind_errors = [e for e in errors if "example_kind_typo.py" in e]
    assert len(kind_errors) == 1 and "[comparison-overlap]" in kind_errors[0] and "conect" in kind_errors[0], errors
    priority_errors = [e for e in errors if "example_priority_typo.py" in e]
    assert len(priority_errors) == 1 and "[arg-type]" in priority_errors[0] and "urgent" in priority_errors[0], errors


def test_literal_types_match_the_runtime_tables():
    from typing import get_args

    assert set(get_args(wavelane.Priority)) == set(wavelane.PRIORITIES)
    assert set(get_args(wavelane.EventKind)) == {
        "connect", "message", "disconnect", "subscribe_request", "dropped", "cluster", "refresh", "rpc"
    }
    assert set(wavelane.ConnectData.__annotations__) == {
        "user", "addr", "claims", "path", "subprotocol", "query", "headers"
    }
