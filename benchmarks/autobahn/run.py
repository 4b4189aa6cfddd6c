#!/usr/bin/env python3
"""Run Autobahn|Testsuite (RFC 6455 / RFC 7692 conformance) against Wavelane's echo server.

    python3 benchmarks/autobahn/run.py --cases ci

What it does, every step bounded in time:

1. finds ``wstest`` (``$WSTEST``, else ``<venv>/bin/wstest``, venv default
   ``~/.cache/autobahn-venv``) and installs it into the venv when missing (Autobahn|Testsuite
   is Python 2.7 code: needs pyenv's 2.7.18 and virtualenv 20.21.1);
2. starts ``python -m wavelane echo`` on a free loopback port (the in-tree build under
   ``python/``), unless ``--url`` points at a server that is already running;
3. writes the fuzzingclient spec (from ``fuzzingclient.template.json``) and runs
   ``wstest -m fuzzingclient`` with a time limit;
4. reads ``reports/index.json`` and prints a per-group summary, every case that is not OK
   (behavior / behaviorClose / close code) and, last, exactly one line::

       autobahn: N ok, N failed, N non-strict, N informational, N unimplemented of N

5. stops the server (also on errors and Ctrl-C).

Exit status: 0 = no FAILED case; 1 = a FAILED case (also UNIMPLEMENTED with
``--require-deflate``, closing-behaviour issues with ``--strict-close``), planned cases without a
result, or the server died during the run; 2 = could not run (no wstest, server did not start,
wstest produced no report).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TEMPLATE = os.path.join(HERE, "fuzzingclient.template.json")
DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "autobahn-venv")
AUTOBAHN_VERSION = "25.10.1"
VIRTUALENV_VERSION = "20.21.1"  # the last virtualenv that can create Python 2.7 environments
PY27_VERSION = "2.7.18"
VERDICTS = ("OK", "FAILED", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED")

# ------------------------------------------------------------------------------ case sets

DEFLATE_GROUPS = ["12.%d" % i for i in range(1, 6)] + ["13.%d" % i for i in range(1, 8)]
# In every 12.x / 13.x subgroup, cases 1-6 (16 B - 4 KiB... 8 KiB messages) and 11 (8 KiB in
# 256-byte fragments) are cheap; 7-10 and 12-18 (16 KiB - 128 KiB messages, 1000 each) make up
# ~95% of a full run.
CHEAP_DEFLATE = [f"{g}.{n}" for g in DEFLATE_GROUPS for n in (1, 2, 3, 4, 5, 6, 11)]

CASE_SETS: Dict[str, Tuple[List[str], str]] = {
    # name: (wstest case patterns, description)
    "quick": (["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"],
              "framing, pings, reserved bits/opcodes, fragmentation, UTF-8, close, "
              "auto-fragmentation: 247 cases, ~15 s"),
    "ci": (["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"] + CHEAP_DEFLATE,
           "quick + 9.* (limits/performance) + cases 1-6 and 11 of every 12.x/13.x "
           "permessage-deflate subgroup: 385 cases, ~1.5 min"),
    "all": (["*"], "every case: 517, ~10-14 min (12.*/13.* take most of it)"),
}
DEFAULT_TIMEOUTS = {"quick": 300, "ci": 600, "all": 3600}


def split_patterns(text: str) -> List[str]:
    return [p for p in re.split(r"[,\s]+", text) if p]


def resolve_cases(spec: str) -> Tuple[str, List[str]]:
    """``(set name or "custom", patterns)`` for --cases."""
    if spec in CASE_SETS:
        return spec, list(CASE_SETS[spec][0])
    pats = split_patterns(spec)
    for p in pats:
        # wstest: a pattern with "*" is a regex prefix match ("." literal, "*" = ".*");
        # without "*" it must be an exact case id (an unknown one crashes wstest).
        if not re.fullmatch(r"[0-9*]+(\.[0-9*]+)*", p):
            raise CannotRun(f"bad case pattern {p!r} (e.g. 1.*, 7.1.5, 12.1.1*)")
    if not pats:
        raise CannotRun("--cases is empty")
    return "custom", pats


def case_key(cid: str) -> List[int]:
    return [int(x) for x in cid.split(".")]


# ------------------------------------------------------------------------------ helpers


def log(msg: str) -> None:
    print(f"run.py: {msg}", flush=True)


class CannotRun(Exception):
    """Something outside the server under test failed: exit status 2."""


def run_bounded(cmd: Sequence[str], timeout: float, what: str, **kw) -> None:
    log(f"{what}: {' '.join(cmd)}")
    try:
        env = dict(os.environ, PIP_NO_PYTHON_VERSION_WARNING="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        r = subprocess.run(list(cmd), timeout=timeout, stdin=subprocess.DEVNULL, env=env, **kw)
    except subprocess.TimeoutExpired:
        raise CannotRun(f"{what} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise CannotRun(f"{what}: {exc}") from None
    if r.returncode != 0:
        raise CannotRun(f"{what} failed (exit {r.returncode})")


def find_python27() -> Optional[str]:
    """A Python 2.7 interpreter: pyenv's 2.7.x, else python2.7 on PATH."""
    cands: List[str] = []
    pyenv_root = os.environ.get("PYENV_ROOT")
    if shutil.which("pyenv"):
        try:
            pyenv_root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                                        timeout=30).stdout.strip() or pyenv_root
        except (OSError, subprocess.TimeoutExpired):
            pass
    for root in filter(None, [pyenv_root, os.path.expanduser("~/.pyenv")]):
        cands.append(os.path.join(root, "versions", PY27_VERSION, "bin", "python2.7"))
        vdir = os.path.join(root, "versions")
        if os.path.isdir(vdir):
            cands += [os.path.join(vdir, v, "bin", "python2.7")
                      for v in sorted(os.listdir(vdir), reverse=True) if v.startswith("2.7")]
    if shutil.which("python2.7"):
        cands.append(shutil.which("python2.7"))  # type: ignore[arg-type]
    for c in cands:
        if os.access(c, os.X_OK):
            try:
                r = subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == (2, 7)"],
                                   capture_output=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if r.returncode == 0:
                return c
    return None


def install_wstest(venv: str) -> str:
    """Create ``venv`` with autobahntestsuite; returns the wstest path. Raises CannotRun."""
    log(f"wstest not found: installing autobahntestsuite=={AUTOBAHN_VERSION} into {venv}")
    py27 = find_python27()
    if py27 is None and shutil.which("pyenv"):
        log(f"no Python 2.7 found: trying 'pyenv install -s {PY27_VERSION}' (needs a network)")
        try:
            run_bounded(["pyenv", "install", "-s", PY27_VERSION], 1200, "pyenv install")
        except CannotRun as exc:
            log(str(exc))
        py27 = find_python27()
    if py27 is None:
        raise CannotRun(
            "Autobahn|Testsuite needs Python 2.7 and none was found (tried pyenv's "
            f"versions/{PY27_VERSION}, python2.7 on PATH, 'pyenv install -s {PY27_VERSION}'). "
            f"Install one (e.g. pyenv install {PY27_VERSION}) or point WSTEST= at a wstest binary.")
    tool = venv.rstrip("/") + ".tool"
    quiet = ["-q", "--disable-pip-version-check"]
    if not os.path.exists(os.path.join(tool, "bin", "virtualenv")):
        run_bounded([sys.executable, "-m", "venv", tool], 300, "python3 -m venv")
        run_bounded([os.path.join(tool, "bin", "pip"), "install", *quiet,
                     f"virtualenv=={VIRTUALENV_VERSION}"], 600, "pip install virtualenv")
    run_bounded([os.path.join(tool, "bin", "virtualenv"), "-q", "-p", py27, venv], 600,
                "virtualenv (python 2.7)")
    run_bounded([os.path.join(venv, "bin", "pip"), "install", *quiet,
                 f"autobahntestsuite=={AUTOBAHN_VERSION}"], 900, "pip install autobahntestsuite")
    wstest = os.path.join(venv, "bin", "wstest")
    if not os.access(wstest, os.X_OK):
        raise CannotRun(f"installation finished but {wstest} is missing")
    return wstest


def find_wstest(venv: str, install: bool) -> str:
    env = os.environ.get("WSTEST")
    if env:
        if not os.access(env, os.X_OK):
            raise CannotRun(f"WSTEST={env} is not an executable")
        return env
    wstest = os.path.join(venv, "bin", "wstest")
    if os.access(wstest, os.X_OK):
        return wstest
    if not install:
        raise CannotRun(f"{wstest} not found (run without --no-install to install it)")
    return install_wstest(venv)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _default_sigint() -> None:
    """In the child: SIGINT back to SIG_DFL so that Python installs its KeyboardInterrupt handler
    (a shell starts background jobs with SIGINT ignored, and the child would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class EchoServer:
    """``python -m wavelane echo`` in its own process group, output to ``logfile``."""

    def __init__(self, python: str, host: str, logfile: str):
        self.python = python
        self.host = host
        self.logfile = logfile
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    def start(self, attempts: int = 3, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        pydir = os.path.join(ROOT, "python")
        env["PYTHONPATH"] = pydir + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        for attempt in range(1, attempts + 1):
            self.port = free_port(self.host)  # may be taken meanwhile: retried below
            cmd = [self.python, "-m", "wavelane", "echo", "--host", self.host, "--port", str(self.port)]
            log(f"starting the echo server: PYTHONPATH={pydir} {' '.join(cmd)}")
            with open(self.logfile, "wb" if attempt == 1 else "ab") as out:
                self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True, preexec_fn=_default_sigint)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if can_connect(self.host, self.port):
                    log(f"echo server (pid {self.proc.pid}) listening on {self.host}:{self.port}")
                    return
                time.sleep(0.1)
            rc = self.proc.poll()
            self.stop()
            log(f"echo server did not come up (attempt {attempt}, exit {rc}): {self.tail(5)}")
        raise CannotRun(f"the echo server did not start (log: {self.logfile})")

    def exited(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def tail(self, n: int) -> str:
        try:
            with open(self.logfile, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def stop(self) -> Optional[int]:
        """SIGINT (the echo command stops cleanly on Ctrl-C), then SIGTERM, then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is not None:
            return proc.returncode
        for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            kill_group(proc, sig)
            try:
                return proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return proc.poll()


def write_spec(outdir: str, agent: str, url: str, cases: List[str], exclude: List[str]) -> str:
    with open(TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    for key, value in (("OUTDIR", os.path.join(outdir, "reports")), ("AGENT", agent), ("URL", url),
                       ("CASES", cases), ("EXCLUDE", exclude)):
        text = text.replace(f'"@{key}@"', json.dumps(value))
    spec = json.loads(text)  # also checks the template stayed valid JSON
    spec.pop("_comment", None)
    path = os.path.join(outdir, "fuzzingclient.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    return path


def run_wstest(wstest: str, spec: str, outdir: str, timeout: float,
               server: Optional[EchoServer]) -> Tuple[int, List[str]]:
    """Run the fuzzing client; returns (exit status or 124 on timeout, planned case ids)."""
    logfile = os.path.join(outdir, "wstest.log")
    cmd = [wstest, "-m", "fuzzingclient", "-s", spec]
    log(f"{' '.join(cmd)}  (time limit {timeout:.0f} s; log {logfile})")
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=outdir, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    last_progress = t0
    rc: Optional[int] = None
    try:
        while True:
            try:
                rc = proc.wait(1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now - t0 > timeout:
                log(f"wstest still running after {timeout:.0f} s: stopping it (no report is written)")
                rc = 124
                break
            if server is not None and server.exited() is not None:
                # wstest would go on failing to connect case after case; it stops by itself at
                # the first refused connection, but give it a few seconds to write its report.
                log(f"the echo server exited (status {server.exited()}) during the run: {server.tail(5)}")
                try:
                    rc = proc.wait(30.0)
                except subprocess.TimeoutExpired:
                    rc = 124
                break
            if now - last_progress >= 30:
                last_progress = now
                done, last = progress(logfile)
                log(f"... {now - t0:.0f} s, {done} cases started, last {last}")
    finally:
        if proc.poll() is None:
            kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                kill_group(proc, signal.SIGKILL)
                proc.wait(5)
    log(f"wstest exit {rc} after {time.monotonic() - t0:.0f} s")
    planned: List[str] = []
    try:
        with open(logfile, encoding="utf-8", errors="replace") as f:
            m = re.search(r"^Cases = \[(.*)\]$", f.read(), re.M)
        if m:
            planned = re.findall(r"'([0-9.]+)'", m.group(1))
    except OSError:
        pass
    return int(rc if rc is not None else 1), planned


def progress(logfile: str) -> Tuple[int, str]:
    try:
        with open(logfile, encoding="utf-8", errors="replace") as f:
            ids = re.findall(r"Running test case ID (\S+)", f.read())
    except OSError:
        ids = []
    return len(ids), ids[-1] if ids else "-"


def compress_ids(ids: List[str]) -> str:
    """"12.1.1-12.1.6, 12.1.11, 12.2.1-..." (consecutive ids of one subgroup joined)."""
    out: List[str] = []
    run: List[str] = []

    def flush() -> None:
        if run:
            out.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")

    for cid in sorted(ids, key=case_key):
        if run:
            a, b = case_key(run[-1]), case_key(cid)
            if a[:-1] == b[:-1] and b[-1] == a[-1] + 1:
                run.append(cid)
                continue
            flush()
        run = [cid]
    flush()
    return ", ".join(out)


def case_detail(outdir: str, entry: dict) -> str:
    """The 'result' text of a case's own report (why wstest gave its verdict)."""
    try:
        with open(os.path.join(outdir, "reports", entry["reportfile"]), encoding="utf-8") as f:
            text = json.load(f).get("result", "")
    except (OSError, KeyError, ValueError):
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= 200 else text[:197] + "..."


def summarize(outdir: str, agent: str, planned: List[str], args: argparse.Namespace,
              wstest_rc: int, server_rc: Optional[int], elapsed: float) -> int:
    index = os.path.join(outdir, "reports", "index.json")
    cases: Dict[str, dict] = {}
    try:
        with open(index, encoding="utf-8") as f:
            cases = json.load(f).get(agent, {})
    except (OSError, ValueError) as exc:
        log(f"no report ({index}: {exc})")

    counts = {v: 0 for v in VERDICTS}
    groups: Dict[str, Dict[str, float]] = {}
    failed: List[str] = []
    listed: List[str] = []
    unimpl: List[str] = []
    closebad: List[str] = []
    for cid in sorted(cases, key=case_key):
        r = cases[cid]
        b, bc, code = r.get("behavior"), r.get("behaviorClose"), r.get("remoteCloseCode")
        verdict = b if b in VERDICTS else "FAILED"
        line = f"  {cid:<9} {str(b):<13} close {str(bc):<13} code {code}"
        if verdict == "UNIMPLEMENTED":
            unimpl.append(cid)
            if args.require_deflate:
                verdict = "FAILED"
        elif verdict != "FAILED" and bc not in ("OK", "INFORMATIONAL"):
            closebad.append(cid)
            if args.strict_close:
                verdict = "FAILED"
        if verdict == "FAILED":
            failed.append(cid)
            detail = case_detail(outdir, r)
            listed.append(line + (f"\n            {detail}" if detail else ""))
        elif verdict != "UNIMPLEMENTED" and (b != "OK" or bc not in ("OK", "INFORMATIONAL")):
            listed.append(line)
        counts[verdict] += 1
        g = groups.setdefault(cid.split(".")[0], {v: 0 for v in VERDICTS})
        g[verdict] = g.get(verdict, 0) + 1
        g["ms"] = g.get("ms", 0) + (r.get("duration") or 0)

    total = len(cases)
    print(f"\nAutobahn|Testsuite {AUTOBAHN_VERSION} fuzzingclient, cases: {args.cases}, "
          f"{total} results in {elapsed:.0f} s (reports: {os.path.join(outdir, 'reports')})")
    if groups:
        print("per group:          ok failed non-strict informational unimplemented    time")
        for g in sorted(groups, key=int):
            c = groups[g]
            print(f"  {g:>3}.* {sum(c[v] for v in VERDICTS):>4} cases {c['OK']:>5} {c['FAILED']:>6} "
                  f"{c['NON-STRICT']:>10} {c['INFORMATIONAL']:>13} {c['UNIMPLEMENTED']:>13} "
                  f"{c['ms'] / 1000:>6.1f}s")
    if listed:
        print("not OK (case, behavior, behaviorClose, the server's close code):")
        print("\n".join(listed))
    if unimpl:
        note = " [counted as FAILED: --require-deflate]" if args.require_deflate else \
            " (permessage-deflate not negotiated; not a failure without --require-deflate)"
        print(f"UNIMPLEMENTED {len(unimpl)} cases{note}: {compress_ids(unimpl)}")
    if closebad:
        note = " [counted as FAILED: --strict-close]" if args.strict_close else ""
        print(f"closing behaviour not OK{note}: {' '.join(closebad)}")
    if failed:
        print(f"FAILED: {' '.join(failed)}")

    bad = bool(failed)
    missing = [c for c in planned if c not in cases]
    if missing:
        print(f"MISSING: {len(missing)} of {len(planned)} planned cases have no result: "
              f"{compress_ids(missing)[:400]}")
        bad = True
    if server_rc is not None:
        print(f"the echo server exited with status {server_rc} before the end of the run")
        bad = True
    if wstest_rc != 0:
        print(f"wstest exited with status {wstest_rc}" + (" (time limit)" if wstest_rc == 124 else ""))
        bad = True

    summary = {
        "cases": args.cases, "total": total, "elapsed_s": round(elapsed, 1),
        "counts": counts, "failed": failed, "unimplemented": len(unimpl),
        "non_ok": {c: cases[c] for c in cases if cases[c].get("behavior") not in ("OK", "UNIMPLEMENTED")
                   or cases[c].get("behaviorClose") not in ("OK", "INFORMATIONAL", "UNIMPLEMENTED")},
        "missing": missing, "wstest_rc": wstest_rc, "server_rc": server_rc,
    }
    with open(os.path.join(outdir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)

    print(f"autobahn: {counts['OK']} ok, {counts['FAILED']} failed, {counts['NON-STRICT']} non-strict, "
          f"{counts['INFORMATIONAL']} informational, {counts['UNIMPLEMENTED']} unimplemented of {total}",
          flush=True)
    if total == 0:
        return 2
    return 1 if bad else 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmarks/autobahn/run.py",
        description="Autobahn|Testsuite conformance run against `python -m wavelane echo`.",
        epilog="case sets: " + "; ".join(f"{k}: {v[1]}" for k, v in CASE_SETS.items())
        + ". Patterns: comma/space separated; '*' is a wildcard and a pattern with '*' matches "
        "case ids that start like it ('12.1.1*' takes 12.1.1 and 12.1.10-18); without '*' a "
        "pattern is one exact case id.")
    p.add_argument("--cases", default="ci", help="quick | ci | all | patterns (default: ci)")
    p.add_argument("--exclude", action="append", default=[], help="case patterns to leave out")
    p.add_argument("--require-deflate", action="store_true",
                   help="count UNIMPLEMENTED (no permessage-deflate) as failure")
    p.add_argument("--strict-close", action="store_true",
                   help="count a non-OK closing behaviour as failure even if the case passed")
    p.add_argument("--timeout", type=float, default=None,
                   help="time limit for wstest in seconds (default: quick 300, ci 600, all 3600)")
    p.add_argument("--outdir", default=None, help="directory for the spec, logs and reports "
                   "(default: a new temporary directory, kept)")
    p.add_argument("--venv", default=os.environ.get("AUTOBAHN_VENV", DEFAULT_VENV),
                   help="the wstest virtualenv (default $AUTOBAHN_VENV or ~/.cache/autobahn-venv); "
                   "$WSTEST overrides")
    p.add_argument("--no-install", action="store_true", help="do not install wstest when missing")
    p.add_argument("--install-only", action="store_true", help="make sure wstest is installed, then exit")
    p.add_argument("--host", default="127.0.0.1", help="loopback address for the echo server")
    p.add_argument("--python", default=sys.executable, help="interpreter for the echo server")
    p.add_argument("--url", default=None, help="test this already running server instead "
                   "(loopback only) and start none")
    p.add_argument("--agent", default="wavelane", help="agent name in the reports")
    args = p.parse_args(argv)

    try:
        setname, cases = resolve_cases(args.cases)
        exclude = [x for e in args.exclude for x in split_patterns(e)]
        timeout = args.timeout or DEFAULT_TIMEOUTS.get(setname, 1800)
        wstest = find_wstest(args.venv, install=not args.no_install)
    except CannotRun as exc:
        log(f"cannot run: {exc}")
        print("autobahn: 0 ok, 0 failed, 0 non-strict, 0 informational, 0 unimplemented of 0 (not run)")
        return 2
    log(f"wstest: {wstest}")
    if args.install_only:
        return 0

    outdir = os.path.abspath(args.outdir) if args.outdir else tempfile.mkdtemp(prefix="wavelane-autobahn.")
    os.makedirs(os.path.join(outdir, "reports"), exist_ok=True)
    index = os.path.join(outdir, "reports", "index.json")
    if os.path.exists(index):
        os.unlink(index)  # never summarise a previous run's report

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C so that the server is stopped.
    def on_term(signum, frame):  # pragma: no cover - signal path
        raise KeyboardInterrupt
    old_term = signal.signal(signal.SIGTERM, on_term)

    server: Optional[EchoServer] = None
    t0 = time.monotonic()
    try:
        if args.url:
            url = args.url
            if not re.match(r"^ws://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)", url):
                log("--url must be a ws:// loopback address")
                return 2
        else:
            server = EchoServer(args.python, args.host, os.path.join(outdir, "server.log"))
            server.start()
            host = f"[{args.host}]" if ":" in args.host else args.host
            url = f"ws://{host}:{server.port}/"
        spec = write_spec(outdir, args.agent, url, cases, exclude)
        log(f"cases ({setname}): {', '.join(cases) if len(cases) <= 12 else ', '.join(cases[:12]) + ', ...'}"
            + (f" minus {', '.join(exclude)}" if exclude else ""))
        rc, planned = run_wstest(wstest, spec, outdir, timeout, server)
        server_rc = server.exited() if server is not None else None
        elapsed = time.monotonic() - t0
        if rc != 0 and not os.path.exists(index):
            log(f"wstest log tail: {' | '.join(open(os.path.join(outdir, 'wstest.log'), errors='replace').read().splitlines()[-5:])}")
        return summarize(outdir, args.agent, planned, args, rc, server_rc, elapsed)
    except CannotRun as exc:
        log(f"cannot run: {exc}")
        print("autobahn: 0 ok, 0 failed, 0 non-strict, 0 informational, 0 unimplemented of 0 (not run)")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        print("autobahn: 0 ok, 0 failed, 0 non-strict, 0 informational, 0 unimplemented of 0 (interrupted)")
        return 2
    finally:
        if server is not None:
            src = server.stop()
            if src not in (None, 0):
                log(f"echo server stop status {src}: {server.tail(3)}")
        signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
