"""Packaging: the sdist is complete, the engine needs only glibc, `pip install .` tells what it does.

The sdist test builds the sdist itself (``python -m build --sdist --no-isolation``), unpacks it,
compares it with what git tracks, and runs ``swift package describe`` in it (bounded in time).
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "python" / "wavelane"
GLIBC_OWN = ("linux-vdso.so", "ld-linux-x86-64.so", "libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so")


def _needs_build_backend() -> None:
    try:
        import build  # noqa: F401
        import setuptools
    except ImportError as exc:
        pytest.skip(f"needs the `build` package ({exc}); .ci/run installs it")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"needs setuptools>=77 for the SPDX license field (have {setuptools.__version__}); .ci/run installs it")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """The unpacked sdist of this tree."""
    _needs_build_backend()
    out = tmp_path_factory.mktemp("sdist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tarballs = list(out.glob("wavelane-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    with tarfile.open(tarballs[0]) as tar:
        names = tar.getnames()
        assert not [n for n in names if n.endswith((".so", ".o")) or "/.build/" in n], names
        tar.extractall(out)
    (top,) = [p for p in out.iterdir() if p.is_dir()]
    return top


def _source_files() -> list:
    """The files the Swift package and the build use: what git tracks under Sources, Tests,
    benchmarks/micro and python/wavelane, or (no usable git, e.g. a worktree mounted elsewhere)
    every file there except build products."""
    dirs = ["Sources", "Tests", "benchmarks/micro", "python/wavelane"]
    if shutil.which("git"):
        proc = subprocess.run(["git", "ls-files", *dirs], cwd=ROOT, capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.split()
    files = []
    for d in dirs:
        for path in (ROOT / d).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in rel and not rel.endswith((".so", ".pyc", ".tmp")):
                files.append(rel)
    return files


def test_sdist_has_every_file_the_swift_package_and_the_build_need(sdist: Path) -> None:
    tracked = _source_files()
    assert "Package.swift" not in tracked and any(f.startswith("Tests/") for f in tracked), tracked
    missing = [f for f in tracked if not (sdist / f).is_file()]
    assert missing == []
    for f in ("Package.swift", "setup.py", "pyproject.toml", "LICENSE", "README.md", "PKG-INFO"):
        assert (sdist / f).is_file(), f
    meta = (sdist / "PKG-INFO").read_text()
    assert "License-Expression: MIT" in meta
    for extra in ("toml", "yaml", "fast"):
        assert f"Provides-Extra: {extra}" in meta
    assert 'Requires-Dist: orjson>=3.6; extra == "fast"' in meta
    assert 'Requires-Dist: PyYAML>=5.1; extra == "yaml"' in meta
    assert "Requires-Dist: tomli>=1.1; python_version < \"3.11\" and extra == \"toml\"" in meta


def test_swift_package_describe_works_in_the_unpacked_sdist(sdist: Path) -> None:
    if shutil.which("swift") is None:
        pytest.skip("needs the Swift toolchain")
    proc = subprocess.run(
        ["swift", "package", "--scratch-path", str(sdist / ".build"), "describe", "--type", "json"],
        cwd=sdist, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    desc = json.loads(proc.stdout[proc.stdout.index("{"):])
    targets = {t["name"]: t for t in desc["targets"]}
    for name in ("WavelaneProtocol", "WavelaneAuth", "WavelaneEngine", "WavelaneCABI", "wavelane-micro",
                 "WavelaneAuthTests", "WavelaneEngineTests", "WavelaneProtocolTests"):
        assert name in targets, sorted(targets)
        assert targets[name]["sources"], name


def test_engine_library_needs_only_glibc() -> None:
    """libwavelane.so links libcrypto, zlib and libstdc++ statically (the wheel's promise)."""
    lib = PKG / "libwavelane.so"
    if not lib.exists() or shutil.which("ldd") is None:
        pytest.skip("needs the in-place build (python/wavelane/libwavelane.so) and ldd")
    out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, timeout=30, check=True).stdout
    needed = [line.split()[0] for line in out.splitlines() if line.strip()]
    outside = [n for n in needed if not n.startswith(GLIBC_OWN) and not n.startswith("/lib64/ld-linux")]
    assert outside == [], out
    # Still a working engine: JWT (libcrypto) and permessage-deflate (zlib) are compiled in.
    syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, timeout=60).stdout
    assert "wl_server_create" in syms or "wl_" in syms
    assert " EVP_" not in syms and " inflate" not in syms, "static libcrypto/zlib symbols must stay hidden"


def _setup_module_runner(tmp_path: Path, fake_swift_lines: str) -> tuple:
    """A fake `swift` on PATH that prints build-like progress, and the code that calls
    setup.run_swift_build() (setup.py imported as a module: its setup() call is __main__-guarded)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    swift = bindir / "swift"
    swift.write_text(f"#!/bin/sh\nprintf '{fake_swift_lines}'\n")
    swift.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '')}", WAVELANE_STATIC_DEPS="0")
    env.pop("WAVELANE_BUILD_TTY", None)
    code = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('wl_setup', {str(ROOT / 'setup.py')!r});"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
        "m.run_swift_build()"
    )
    return env, code


def test_source_build_without_a_terminal_says_what_it_builds_and_how_to_see_it(tmp_path: Path) -> None:
    env, code = _setup_module_runner(tmp_path, "[1/2] Compiling fake\\n[2/2] Linking fake\\n")
    # No controlling terminal (new session) and stdout a pipe: what pip sees without -v.
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, start_new_session=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("wavelane: building the Swift engine") and "minutes" in lines[0], lines
    assert any("pip install -v" in line for line in lines), lines
    assert "[2/2] Linking fake" in proc.stdout  # the build's output is in the (captured) log


def test_source_build_under_a_terminal_streams_the_build_output_there(tmp_path: Path) -> None:
    env, code = _setup_module_runner(tmp_path, "[1/2] Compiling fake\\n[2/2] Linking fake\\n")
    log = tmp_path / "captured.log"
    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal; stdout/stderr go to a file, as under pip
        try:
            out = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.execve(sys.executable, [sys.executable, "-c", code], env)
        finally:
            os._exit(127)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child exited and the terminal closed
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, seen, log.read_text())
    terminal = seen.decode(errors="replace")
    assert "wavelane: building the Swift engine" in terminal and "minutes" in terminal, terminal
    assert "[2/2] Linking fake" in terminal, terminal  # streamed to the terminal
    assert "Swift build finished in" in terminal, terminal
    captured = log.read_text()
    assert captured.startswith("wavelane: building the Swift engine"), captured  # pip -v log: first line
    assert "[2/2] Linking fake" not in captured
