#!/usr/bin/env python3
"""Profile one engine's server process under one scenario with `perf` (apt: linux-perf).

    python benchmarks/profile.py wavelane fanout [--secs 8] [--out DIR] [extra loadgen args]
    python benchmarks/profile.py wavelane inbound --secs 6 --drain-test   # drain-only
    python benchmarks/profile.py wavelane all --pin   # every scenario, pinned as run.py --pin does;
                                                     # docs/benchmarks.md shows the top symbols

Starts the server (benchmarks/servers/server_<engine>.py) in the bench venv (run
`benchmarks/run.py --smoke` once first so the venv and the staged Wavelane exist), attaches
`perf record -g` to it while benchmarks/loadgen.py drives the scenario, and prints the top
symbols (self time) plus the top call chains. perf.data and the reports go to --out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402

# long enough that the load outlasts the recording (--secs) on this machine
DEFAULT_ARGS = {
    "fanout": ["fanout", "--subs", "1000", "--count", "10000", "--size", "100"],
    "inbound": ["inbound", "--clients", "100", "--count", "30000", "--size", "100"],
    "rtt": ["rtt", "--count", "40000", "--size", "100"],
    "handshakes": ["handshakes", "--count", "30000", "--concurrency", "16"],
}


def demangle(text: str) -> str:
    """Swift symbols made readable (`swift demangle --simplified`), when the toolchain is there."""
    try:
        return subprocess.run(["swift", "demangle", "--simplified", "--compact"], input=text,
                              capture_output=True, text=True, timeout=60).stdout or text
    except (OSError, subprocess.SubprocessError):
        return text


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=bench.ENGINES)
    ap.add_argument("scenario", choices=sorted(DEFAULT_ARGS) + ["all"])
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--pin", action="store_true", help="server on core 0, load generator on core 1")
    ap.add_argument("--out", default=os.path.join(bench.RESULTS, "profile"))
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/wavelane-bench"))
    ap.add_argument("extra", nargs="*")
    a, unknown = ap.parse_known_args()
    a.extra = [x for x in a.extra + unknown if x != "--"]  # e.g. --drain-test, --count 5000
    if a.pin:
        bench.PIN["server"], bench.PIN["loadgen"] = {0}, {1}
    if a.scenario == "all":
        for sc in ("fanout", "inbound", "rtt", "handshakes"):
            a.scenario = sc
            profile(a)
        return 0
    return profile(a)


def profile(a) -> int:
    os.makedirs(a.out, exist_ok=True)
    py = bench.ensure_venv(a.cache)
    env = dict(os.environ)
    extra = bench.stage_wavelane(py, a.cache) if a.engine == "wavelane" else {}
    if "PYTHONPATH" in extra:
        env["PYTHONPATH"] = extra["PYTHONPATH"]
    srv = bench.Server(a.engine, py, env, a.out)
    data = os.path.join(a.out, "perf-%s-%s.data" % (a.engine, a.scenario))
    try:
        lg = subprocess.Popen([py, os.path.join(HERE, "loadgen.py"), *DEFAULT_ARGS[a.scenario], *a.extra,
                               "--port", str(srv.port), "--timeout", "120"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              preexec_fn=bench._affinity(bench.PIN["loadgen"]))
        if a.scenario in ("fanout", "inbound"):  # wait for the connections, then profile the load
            for line in lg.stdout:
                if line.startswith("PHASE"):
                    break
        else:
            time.sleep(0.5)
        subprocess.run(["perf", "record", "-F", "1999", "-g", "-p", str(srv.pid), "-o", data, "--",
                        "sleep", str(a.secs)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        out = lg.communicate(timeout=180)[0]
        print(out.strip().splitlines()[-1][:600] if out.strip() else "(loadgen: no output)")
    finally:
        srv.stop()
    flat = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol",
                           "--percent-limit", "0.7", "--stdio", "-g", "none"],
                          capture_output=True, text=True).stdout
    chains = subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "symbol",
                             "--percent-limit", "3", "--stdio", "-g", "none"],
                            capture_output=True, text=True).stdout
    for name, text in (("self", demangle(flat)), ("children", demangle(chains))):
        path = os.path.join(a.out, "perf-%s-%s-%s.txt" % (a.engine, a.scenario, name))
        with open(path, "w") as f:
            f.write(text)
        print("==== %s (%s)" % (name, path))
        print("\n".join(l for l in text.splitlines() if l and not l.startswith("#"))[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
