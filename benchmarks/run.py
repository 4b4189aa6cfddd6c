#!/usr/bin/env python3
"""Wavelane benchmarks against wse-server, socketify, picows and websockets — one command.

    python benchmarks/run.py --smoke    # <= 60 s, Wavelane only, tiny; exits 1 if the harness
                                        # breaks or any delivery is lost (CI runs this)
    python benchmarks/run.py --quick    # ~2-3 min, every engine, 1 repetition
    python benchmarks/run.py --full     # the issue's parameters, 3 repetitions (~15-25 min)

Options: --engines wavelane,wse,socketify,picows,websockets  --reps N  --scenarios fanout,inbound,...
         --pin (server process on core 0 only, load generator on core 1: every engine is measured
         on exactly one core and the load generator never competes with it)
         --build (swift build the engine first)  --no-report  --cache DIR
         --wavelane-path DIR (the directory holding an importable wavelane/ package to use
         instead of the repo's)

It needs only a Python 3 to start: it creates its own venv under ~/.cache/wavelane-bench
(override with WAVELANE_BENCH_CACHE) on CPython 3.12 (wse-server needs >= 3.12; found on PATH,
under pyenv, or given as WAVELANE_BENCH_PYTHON) and pip-installs the pinned peers there. Every
engine's server runs in that same interpreter, each in its own process started and stopped
here (benchmarks/servers/server_<engine>.py); the load generator (benchmarks/loadgen.py) is a
separate process, the same for every engine. Server RSS, CPU and fds are read from /proc.

Results: benchmarks/results/latest.json (+ a timestamped copy; --smoke writes smoke.json) and,
for --quick/--full, docs/benchmarks.md with plots in docs/img/ (benchmarks/report.py).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SERVERS = os.path.join(HERE, "servers")
RESULTS = os.path.join(HERE, "results")

REQUIREMENTS = [
    "wse-server==2.5.1",
    "picows==2.3.1",
    "websockets==17.4",
    "socketify==0.0.31",  # needs Debian's libuv1 at run time
    "uvloop==0.23.0",
    "PyJWT==2.15.1",
    "orjson==3.13.0",
    "matplotlib==3.11.2",
]
# what --smoke (Wavelane only, no plots) needs
SMOKE_REQUIREMENTS = [r for r in REQUIREMENTS if r.split("==")[0] in ("picows", "uvloop", "PyJWT", "orjson")]
ENGINES = ["wavelane", "wse", "socketify", "picows", "websockets"]
PYTHON_APP_ENGINES = ("picows", "websockets")
PYTHON_APP_FANOUT_COUNT = 1000
SCENARIOS = ["fanout", "inbound", "rtt", "handshakes", "idle"]

PARAMS = {
    "smoke": dict(reps=1, fanout_subs=50, fanout_count=200, inbound_clients=10,
                  inbound_count=200, rtt_count=300, hs_count=100, hs_concurrency=16,
                  idle_steps=[200]),
    "quick": dict(reps=1, fanout_subs=1000, fanout_count=400, inbound_clients=100,
                  inbound_count=2000, rtt_count=5000, hs_count=2000, hs_concurrency=16,
                  idle_steps=[1000, 5000]),
    # full: one uncounted warm-up repetition per engine and scenario (below);
    # inbound and rtt: 1 M events and 20,000 trips per repetition (0.4 s and 5,000 were too short
    # to be steady on this machine: the first repetition's warm-up moved the median; the drain
    # test needs all of one repetition's events to fit the servers' 1,048,576-event queues)
    "full": dict(reps=3, warmup=1, fanout_subs=1000, fanout_count=10000, inbound_clients=100,
                 inbound_count=10000, rtt_count=20000, hs_count=5000, hs_concurrency=16,
                 idle_steps=[1000, 5000, 10000]),
}

# The bar (issue #12): pinned, medians of >= 3 repetitions, same run. Each row: (what, scenario,
# metric, peer (None: an absolute value), op, bar, scale applied to the value before comparing).
BAR = {
    "fanout_cpu_wse": ("Fan-out server CPU per delivery vs wse-server", "fanout", "cpu_us_per_delivery", "wse", "<=", 0.5),
    "fanout_cpu_socketify": ("Fan-out server CPU per delivery vs socketify", "fanout", "cpu_us_per_delivery", "socketify", "<=", 1.0),
    "fanout_rate": ("Fan-out deliveries/s vs wse-server", "fanout", "rate", "wse", ">=", 1.5),
    "inbound_cpu": ("Inbound server CPU per event vs wse-server", "inbound", "cpu_us_per_event", "wse", "<=", 0.6),
    "inbound_rate": ("Inbound events/s vs wse-server", "inbound", "rate", "wse", ">=", 1.5),
    "handshake_cpu": ("Server CPU per handshake vs wse-server", "handshakes", "cpu_us_per_handshake", "wse", "<=", 0.5),
    "handshake_rate": ("Handshakes/s vs wse-server", "handshakes", "rate", "wse", ">=", 1.5),
    "rtt_p99": ("Round-trip p99 vs wse-server", "rtt", "p99_us", "wse", "<=", 0.8),
    "fanout_peak_rss_mb": ("Server peak RSS during fan-out (MB, absolute)", "fanout", "server_peak_rss_mb", None, "<=", 100.0),
    "idle_rss_kb": ("Idle RSS per connection (KB, absolute)", "idle", "rss_kb_per_conn", None, "<=", 4.0),
    "fds_per_conn": ("File descriptors per idle connection (absolute)", "idle", "fds_per_conn", None, "<=", 1.01),
}
# The bar's fan-out memory row is set for 1,000 subscribers x 10,000 publications (--full); other
# modes report the figure but do not judge it.
BAR_FULL_ONLY = {"fanout_peak_rss_mb"}


class HarnessError(RuntimeError):
    pass


def log(msg: str) -> None:
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ------------------------------------------------------------------ environment

def find_python312() -> str:
    cands = [os.environ.get("WAVELANE_BENCH_PYTHON"), shutil.which("python3.12")]
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10).stdout.strip()
        cands += sorted(glob.glob(os.path.join(root, "versions", "3.1[2-9]*", "bin", "python3.1[2-9]")))
    except (OSError, subprocess.SubprocessError):
        pass
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3.1[2-9]")))
    for c in cands:
        if c and os.path.exists(c):
            r = subprocess.run([c, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                               capture_output=True, text=True)
            if r.stdout.strip() == "True":
                return c
    raise HarnessError("no CPython >= 3.12 found (wse-server needs it): set WAVELANE_BENCH_PYTHON")


def ensure_venv(cache: str, requirements=None) -> str:
    """The bench venv (CPython >= 3.12) with `requirements` installed (all of them by default)."""
    requirements = list(requirements or REQUIREMENTS)
    venv = os.path.join(cache, "venv-py312")
    py = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".bench-requirements")
    have = set(open(marker).read().split()) if os.path.exists(py) and os.path.exists(marker) else set()
    missing = [r for r in requirements if r not in have]
    if not missing:
        return py
    if not os.path.exists(py):
        base = find_python312()
        log("creating venv %s with %s" % (venv, base))
        subprocess.run([base, "-m", "venv", venv], check=True)
    log("installing %s" % " ".join(missing))
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *missing],
                   check=True)
    with open(marker, "w") as f:
        f.write("\n".join(sorted(have | set(missing))))
    return py


def swift_build() -> None:
    if subprocess.run(["pgrep", "-f", "swift-build"], capture_output=True).returncode == 0:
        raise HarnessError("another swift build is running; retry later or drop --build")
    log("swift build -c release --product wavelane")
    subprocess.run(["swift", "build", "-c", "release", "--product", "wavelane", "-Xswiftc",
                    "-static-stdlib", "-Xlinker", "-z", "-Xlinker", "nodelete"], cwd=REPO, check=True)


def build_id(path: str) -> str:
    try:
        out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():
        if "Build ID" in line:
            return line.split(":", 1)[1].strip()
    return ""


def stage_wavelane(py: str, cache: str) -> dict:
    """Make `import wavelane` work in the venv; returns extra env (PYTHONPATH) for the server.

    With an in-place build (python/wavelane/_native*.so) the package is copied to <cache>/stage
    with the library built alongside it (python/wavelane/libwavelane.so; .build/release's copy
    when it is the same build, since that one keeps its symbols for profiles). The staged package
    must import; otherwise the repository is pip-installed into the venv.
    """
    pkg = os.path.join(REPO, "python", "wavelane")
    pylib = os.path.join(pkg, "libwavelane.so")
    blib = os.path.join(REPO, ".build", "release", "libwavelane.so")
    candidates = []
    if os.path.exists(pylib):
        if os.path.exists(blib) and build_id(blib) and build_id(blib) == build_id(pylib):
            candidates.append(blib)
        candidates.append(pylib)
    if os.path.exists(blib) and blib not in candidates:
        candidates.append(blib)
    if glob.glob(os.path.join(pkg, "_native*.so")):
        stage = os.path.join(cache, "stage")
        for lib in candidates:
            shutil.rmtree(stage, ignore_errors=True)
            shutil.copytree(pkg, os.path.join(stage, "wavelane"))
            shutil.copy2(lib, os.path.join(stage, "wavelane", "libwavelane.so"))
            env = dict(os.environ, PYTHONPATH=stage)
            check = subprocess.run([py, "-c", "import wavelane; wavelane.engine_version()"],
                                   env=env, capture_output=True, text=True, cwd=cache)
            if check.returncode == 0:
                log("wavelane staged from %s (+ %s)" % (pkg, os.path.relpath(lib, REPO)))
                return {"PYTHONPATH": stage, "_lib": lib}
            log("staged wavelane with %s does not import: %s" % (
                os.path.relpath(lib, REPO), check.stderr.strip().splitlines()[-1:]))
    # no usable in-place build: install the package into the venv (setup.py builds the extension)
    lib = blib if os.path.exists(blib) else None
    env = dict(os.environ)
    if lib:
        env["WAVELANE_SKIP_SWIFT_BUILD"] = "1"
        env["WAVELANE_LIB"] = lib
    log("pip install %s into the bench venv" % REPO)
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--force-reinstall", "--no-deps", REPO], env=env, check=True)
    return {"_lib": lib or "(built by setup.py)"}


def machine_info(py: str, env: dict) -> dict:
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu_model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    versions = sh([py, "-c", (
        "import json, importlib.metadata as m, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        "for p in ['wse-server','socketify','picows','websockets','uvloop','PyJWT','orjson','matplotlib']:\n"
        "    try: out[p] = m.version(p)\n"
        "    except Exception: out[p] = None\n"
        "try:\n"
        "    import wavelane; out['wavelane'] = wavelane.__version__; out['wavelane_engine'] = wavelane.engine_version()\n"
        "except Exception as e: out['wavelane'] = 'unavailable: %r' % e\n"
        "print(json.dumps(out))")])
    try:
        versions = json.loads(versions)
    except ValueError:
        versions = {"error": versions}
    rev = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", REPO, "status", "--porcelain", "--", "Sources", "python", "Package.swift"])
    return {
        "cores": os.cpu_count(), "cpu_model": cpu_model, "mem_gib": round(mem_kb / 1048576, 1),
        "kernel": platform.release(), "os": platform.platform(),
        "loadavg_start": list(os.getloadavg()), "versions": versions,
        "git": rev + (" (+ uncommitted changes in Sources/python)" if dirty else ""),
        "swift": sh(["swift", "--version"]).splitlines()[0] if shutil.which("swift") else "",
    }


# ------------------------------------------------------------------ processes

def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _reader(stream, q):
    for line in iter(stream.readline, ""):
        q.put(line)
    q.put(None)


CLK = os.sysconf("SC_CLK_TCK")


# --pin: the server on SERVER_CORES, the load generator on LOADGEN_CORES (set in main()).
PIN = {"server": None, "loadgen": None}


def _affinity(cores):
    if cores is None:
        return None
    return lambda: os.sched_setaffinity(0, cores)


class Server:
    def __init__(self, engine: str, py: str, env: dict, logdir: str):
        # A port picked free can be taken (or still refused, e.g. by uWS's bind without
        # SO_REUSEADDR) when the server binds it: try a fresh port, at most three times.
        for attempt in range(3):
            try:
                self._start(engine, py, env, logdir)
                return
            except HarnessError:
                if attempt == 2:
                    raise
                log("%s server did not start on port %d; retrying on a fresh port" % (engine, self.port))
                time.sleep(1.0)

    def _start(self, engine: str, py: str, env: dict, logdir: str):
        self.engine = engine
        self.port = free_port()
        self.log = open(os.path.join(logdir, "server-%s.log" % engine), "a")
        self.proc = subprocess.Popen([py, os.path.join(SERVERS, "server_%s.py" % engine),
                                      "--port", str(self.port)], cwd=SERVERS, env=env,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     preexec_fn=_affinity(PIN["server"]))
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(self.proc.stdout, self.q), daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line and line.startswith("LISTENING"):
                break
            if line is None or time.monotonic() > deadline:
                self.stop()
                raise HarnessError("%s server did not start (see %s)" % (engine, self.log.name))
        self.pid = self.proc.pid

    def cpu(self) -> float:
        """CPU seconds of the whole process. /proc/PID/stat's utime+stime count clock ticks (10 ms),
        which quantised short runs (every engine showed 5.0 or 4.8 µs per event); the scheduler's
        on-CPU nanoseconds per thread (/proc/PID/task/*/schedstat) do not. Threads that ended are
        counted through stat's total (ticks) and the live threads' schedstat sum, whichever is larger
        minus the live threads' own ticks, so no thread's time is lost."""
        f = open("/proc/%d/stat" % self.pid).read().rsplit(")", 1)[1].split()
        ticks_total = (int(f[11]) + int(f[12])) / CLK
        ns, live_ticks = 0, 0.0
        for tid in os.listdir("/proc/%d/task" % self.pid):
            try:
                ns += int(open("/proc/%d/task/%s/schedstat" % (self.pid, tid)).read().split()[0])
                t = open("/proc/%d/task/%s/stat" % (self.pid, tid)).read().rsplit(")", 1)[1].split()
                live_ticks += (int(t[11]) + int(t[12])) / CLK
            except (OSError, IndexError, ValueError):
                pass  # the thread ended meanwhile
        if ns == 0:
            return ticks_total
        return ns / 1e9 + max(0.0, ticks_total - live_ticks)

    def sys_user_ticks(self) -> tuple:
        """(system, user) CPU seconds of the whole process in clock ticks (10 ms): coarse, but over a
        phase of 0.4 s or more good enough for the kernel's share of the server's CPU."""
        f = open("/proc/%d/stat" % self.pid).read().rsplit(")", 1)[1].split()
        return int(f[12]) / CLK, int(f[11]) / CLK

    def status(self, key: str) -> int:
        for line in open("/proc/%d/status" % self.pid):
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def rss_kb(self) -> int:
        return self.status("VmRSS")

    def fds(self) -> int:
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def threads(self) -> int:
        return self.status("Threads")

    def snapshot(self) -> dict:
        sys_s, user_s = self.sys_user_ticks()
        return {"t": time.perf_counter(), "cpu": self.cpu(), "rss_kb": self.rss_kb(),
                "fds": self.fds(), "threads": self.threads(), "sys": sys_s, "user": user_s}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def loadgen(py: str, env: dict, server: Server, args: list, timeout: float,
            on_step=None) -> tuple:
    cmd = [py, os.path.join(HERE, "loadgen.py"), *map(str, args), "--port", str(server.port),
           "--timeout", str(timeout)]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, cwd=HERE, preexec_fn=_affinity(PIN["loadgen"]))
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(p.stdout, q), daemon=True).start()
    errq: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(p.stderr, errq), daemon=True).start()
    phases, result, steps = {}, None, []
    deadline = time.monotonic() + timeout + 90
    try:
        while True:
            try:
                line = q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise HarnessError("loadgen %s timed out" % args[0])
            if line is None:
                break
            if line.startswith("PHASE "):
                phases[line.split()[1]] = server.snapshot()
            elif line.startswith('{"step"'):
                st = json.loads(line)
                if on_step:
                    st.update(on_step(st))
                steps.append(st)
                p.stdin.write("next\n")
                p.stdin.flush()
            elif line.startswith('{"result"'):
                result = json.loads(line)["result"]
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode != 0 or result is None:
        err = []
        while not errq.empty():
            x = errq.get()
            if x:
                err.append(x)
        raise HarnessError("loadgen %s failed (rc=%s): %s" % (args[0], p.returncode, "".join(err)[-1500:]))
    return result, phases, steps


# ------------------------------------------------------------------ scenarios

def sys_share(s0: dict, s1: dict):
    """The kernel's share of the server's CPU between two snapshots (None when too few ticks)."""
    sys_s, user_s = s1["sys"] - s0["sys"], s1["user"] - s0["user"]
    return sys_s / (sys_s + user_s) if sys_s + user_s >= 0.1 else None


def sc_fanout(ctx, srv, rep):
    P = ctx["params"]
    base = srv.snapshot()
    # The Python-app baselines deliver 20-40k/s: 10 M deliveries would take minutes per repetition,
    # so they publish at most PYTHON_APP_FANOUT_COUNT messages (per delivery figures are unchanged).
    count = P["fanout_count"]
    if srv.engine in PYTHON_APP_ENGINES:
        count = min(count, PYTHON_APP_FANOUT_COUNT)
    r, ph, _ = loadgen(ctx["py"], ctx["env"], srv, ["fanout", "--subs", P["fanout_subs"], "--count",
                       count, "--size", 100, "--topic", "bench%d" % rep], ctx["timeout"])
    r["fanout_count"] = count
    s0, s1 = ph.get("publish_start"), ph.get("publish_end")
    if s0 and s1:
        cpu = s1["cpu"] - s0["cpu"]
        r["server_cpu"] = cpu
        r["server_cpu_util"] = cpu / max(1e-9, s1["t"] - s0["t"])
        r["cpu_us_per_delivery"] = cpu / max(1, r["delivered"]) * 1e6
        r["server_sys_share"] = sys_share(s0, s1)
        if rep <= 0:  # the first on this server (-1: the warm-up); later ones start while the
            # previous clients may still be closing
            r["fds_per_conn"] = (s0["fds"] - base["fds"]) / (P["fanout_subs"] + 1)
        r["server_rss_kb"] = s1["rss_kb"]
        r["server_threads"] = s0["threads"]
    # the server is fresh per scenario: its high-water mark is the peak over this scenario so far
    r["server_peak_rss_kb"] = srv.status("VmHWM")
    r["server_peak_rss_mb"] = r["server_peak_rss_kb"] / 1024
    return r


def sc_inbound(ctx, srv, rep):
    P = ctx["params"]
    args = ["inbound", "--clients", P["inbound_clients"], "--count", P["inbound_count"], "--size", 100]
    r, ph, _ = loadgen(ctx["py"], ctx["env"], srv, args, ctx["timeout"])
    s0, s1 = ph.get("send_start"), ph.get("send_end")
    if s0 and s1:
        r["server_cpu"] = s1["cpu"] - s0["cpu"]
        r["server_cpu_util"] = r["server_cpu"] / max(1e-9, s1["t"] - s0["t"])
        r["cpu_us_per_event"] = r["server_cpu"] / max(1, r.get("expected") or 1) * 1e6
        r["server_sys_share"] = sys_share(s0, s1)
    if srv.engine in ("wavelane", "wse"):  # engines with a queue: drain-only speed
        d, _, _ = loadgen(ctx["py"], ctx["env"], srv, args + ["--drain-test"], ctx["timeout"])
        r["drain_only"] = d.get("drain")
        if r["drain_only"]:
            r["drain_rate"] = r["drain_only"].get("rate")
    return r


def sc_rtt(ctx, srv, rep):
    r, _, _ = loadgen(ctx["py"], ctx["env"], srv, ["rtt", "--count", ctx["params"]["rtt_count"],
                                                   "--size", 100], ctx["timeout"])
    return r


def sc_handshakes(ctx, srv, rep):
    P = ctx["params"]
    r, ph, _ = loadgen(ctx["py"], ctx["env"], srv, ["handshakes", "--count", P["hs_count"],
                       "--concurrency", P["hs_concurrency"]], ctx["timeout"])
    s0, s1 = ph.get("hs_start"), ph.get("hs_end")
    if s0 and s1:
        r["server_cpu"] = s1["cpu"] - s0["cpu"]
        r["server_cpu_util"] = r["server_cpu"] / max(1e-9, s1["t"] - s0["t"])
        r["cpu_us_per_handshake"] = r["server_cpu"] / max(1, P["hs_count"] - (r.get("errors") or 0)) * 1e6
        r["server_sys_share"] = sys_share(s0, s1)
    return r


def sc_idle(ctx, srv, rep):
    time.sleep(1.0)
    base = srv.snapshot()

    def on_step(st):
        time.sleep(1.5)  # let the server settle
        s = srv.snapshot()
        n = max(1, st["open"])
        return {"rss_kb": s["rss_kb"], "fds": s["fds"], "threads": s["threads"],
                "rss_kb_per_conn": (s["rss_kb"] - base["rss_kb"]) / n,
                "fds_per_conn": (s["fds"] - base["fds"]) / n}

    steps = ",".join(str(x) for x in ctx["params"]["idle_steps"])
    r, _, st = loadgen(ctx["py"], ctx["env"], srv, ["idle", "--steps", steps], ctx["timeout"],
                       on_step=on_step)
    r["base_rss_kb"] = base["rss_kb"]
    r["base_fds"] = base["fds"]
    r["steps"] = st
    last = st[-1] if st else {}
    r["rss_kb_per_conn"] = last.get("rss_kb_per_conn")
    r["fds_per_conn"] = last.get("fds_per_conn")
    r["failed"] = sum(s["step"] - s["open"] for s in st)
    return r


RUNNERS = {"fanout": sc_fanout, "inbound": sc_inbound, "rtt": sc_rtt, "handshakes": sc_handshakes,
           "idle": sc_idle}
# key metrics summarised as median / min / max over repetitions
METRICS = {
    "fanout": ["rate", "cpu_us_per_delivery", "fds_per_conn", "server_cpu_util", "client_cpu_util",
               "lost", "secs", "server_peak_rss_mb", "server_sys_share"],
    "inbound": ["rate", "send_rate", "server_rate", "drain_rate", "cpu_us_per_event", "server_cpu_util",
                "client_cpu_util", "lost", "server_sys_share"],
    "rtt": ["p50_us", "p99_us", "max_us", "client_cpu_util"],
    "handshakes": ["rate", "p50_us", "p99_us", "errors", "cpu_us_per_handshake", "server_cpu_util",
                   "client_cpu_util", "server_sys_share"],
    "idle": ["rss_kb_per_conn", "fds_per_conn", "failed"],
}


def summarise(runs, keys):
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    return out


def med(results, sc, engine, key):
    try:
        return results["scenarios"][sc][engine]["summary"][key]["median"]
    except (KeyError, TypeError):
        return None


def ratios(results) -> dict:
    """Issue #12's bar, row by row: the value (Wavelane's median, or its ratio to the peer's median),
    the bar, whether it is met, and for a missed row by how much (value / bar)."""
    out = {}
    for name, (desc, sc, key, peer, op, bar) in BAR.items():
        a = med(results, sc, "wavelane", key)
        b = med(results, sc, peer, key) if peer else None
        val = (a / b) if (peer and a is not None and b) else (a if not peer else None)
        judged = not (name in BAR_FULL_ONLY and results.get("mode") != "full")
        ok = None if (val is None or not judged) else (val >= bar if op == ">=" else val <= bar)
        out[name] = {"what": desc, "scenario": sc, "metric": key, "peer": peer, "wavelane": a,
                     "peer_value": b, "ratio": val, "op": op, "bar": bar, "pass": ok,
                     "off_by": None if (ok is None or ok) else val / bar}
    # server CPU per unit of work against both peers (the table under the bar)
    for name, sc, key in (("cpu_per_delivery", "fanout", "cpu_us_per_delivery"),
                          ("cpu_per_event", "inbound", "cpu_us_per_event"),
                          ("cpu_per_handshake", "handshakes", "cpu_us_per_handshake")):
        a = med(results, sc, "wavelane", key)
        row = {"what": "server CPU us (%s), Wavelane / peer" % key, "wavelane": a}
        for peer in ("wse", "socketify"):
            b = med(results, sc, peer, key)
            row[peer] = b
            row["ratio_" + peer] = (a / b) if (a is not None and b) else None
        out[name] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--smoke", action="store_true")
    g.add_argument("--quick", action="store_true")
    g.add_argument("--full", action="store_true")
    ap.add_argument("--engines", default=None)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--build", action="store_true", help="swift build the engine first")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--pin", action="store_true",
                    help="server on one core, load generator on another (needs >= 2 cores)")
    ap.add_argument("--wavelane-path", default=os.environ.get("WAVELANE_BENCH_PYTHONPATH"),
                    help="directory holding an importable wavelane package to use instead of the "
                         "repository's (e.g. a copy of an older build, for A/B comparisons)")
    ap.add_argument("--cache", default=os.environ.get("WAVELANE_BENCH_CACHE",
                                                      os.path.expanduser("~/.cache/wavelane-bench")))
    a = ap.parse_args()
    mode = "smoke" if a.smoke else "full" if a.full else "quick"
    params = dict(PARAMS[mode])
    if a.reps:
        params["reps"] = a.reps
    engines = a.engines.split(",") if a.engines else (["wavelane"] if mode == "smoke" else ENGINES)
    scenarios = [s for s in a.scenarios.split(",") if s]
    for e in engines:
        if e not in ENGINES:
            ap.error("unknown engine %r" % e)
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error("unknown scenario %r" % s)

    if a.pin:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            ap.error("--pin needs at least 2 usable cores")
        PIN["server"], PIN["loadgen"] = {cores[0]}, set(cores[1:])

    if "socketify" in engines and not glob.glob("/usr/lib/*/libuv.so.1") + glob.glob("/usr/lib/libuv.so.1"):
        ap.error("socketify needs libuv at run time: apt-get install libuv1 (or leave socketify out "
                 "with --engines)")

    t_start = time.time()
    os.makedirs(a.cache, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    logdir = os.path.join(a.cache, "logs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(logdir, exist_ok=True)
    try:
        if a.build:
            swift_build()
        needs_all = mode != "smoke" or any(e != "wavelane" for e in engines)
        py = ensure_venv(a.cache, REQUIREMENTS if needs_all else SMOKE_REQUIREMENTS)
        if a.wavelane_path:
            where = os.path.abspath(a.wavelane_path)
            if not os.path.isdir(os.path.join(where, "wavelane")):
                # The package directory itself on PYTHONPATH would put its modules at top level
                # (its _json.py shadows the standard library's _json): ask for the one above it.
                raise HarnessError("--wavelane-path %s: no wavelane/ package in it (give the directory "
                                   "that contains wavelane/, not the package itself)" % where)
            extra = {"PYTHONPATH": where, "_lib": os.path.join(where, "wavelane", "libwavelane.so")}
        else:
            extra = stage_wavelane(py, a.cache) if "wavelane" in engines else {}
    except (HarnessError, subprocess.CalledProcessError, OSError) as exc:
        log("setup failed: %s" % exc)
        return 1
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    if "PYTHONPATH" in extra:
        env["PYTHONPATH"] = extra["PYTHONPATH"]
    else:
        env.pop("PYTHONPATH", None)
    ctx = {"py": py, "env": env, "params": params,
           "timeout": 60.0 if mode == "smoke" else 240.0}
    meta = machine_info(py, env)
    meta["wavelane_lib"] = extra.get("_lib")
    results = {"mode": mode, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t_start)),
               "command": "python benchmarks/run.py --%s" % mode + (
                   " --engines %s" % a.engines if a.engines else "") + (
                   " --reps %d" % a.reps if a.reps else "") + (" --pin" if a.pin else ""),
               "pinned": {"server": sorted(PIN["server"]), "loadgen": sorted(PIN["loadgen"])} if a.pin else None,
               "params": params, "engines": engines, "machine": meta, "scenarios": {},
               "errors": []}
    log("mode=%s engines=%s scenarios=%s reps=%d logs=%s" % (mode, ",".join(engines),
        ",".join(scenarios), params["reps"], logdir))

    for sc in scenarios:
        results["scenarios"][sc] = {}
        for engine in engines:
            runs = []
            warmups = []
            srv = None
            try:
                srv = Server(engine, py, env, logdir)
                # A warm-up repetition first, not counted (kept in the results as "warmup"): a
                # fresh server's first repetition pays its warm-up (wse-server's first fan-out
                # repetition ran at 2-3x its later CPU per delivery), which would move the median.
                for _ in range(params.get("warmup", 0) if sc != "idle" else 0):
                    t0 = time.time()
                    warm = RUNNERS[sc](ctx, srv, -1)
                    warmups.append(warm)
                    log("%-10s %-8s warm-up: %s (%.1fs, not counted)" % (sc, engine, brief(sc, warm), time.time() - t0))
                for rep in range(params["reps"] if sc != "idle" else 1):
                    t0 = time.time()
                    r = RUNNERS[sc](ctx, srv, rep)
                    if rep == 0 and warmups and "fds_per_conn" in warmups[0]:
                        r["fds_per_conn"] = warmups[0]["fds_per_conn"]  # measured on the fresh server
                    runs.append(r)
                    log("%-10s %-8s rep %d: %s (%.1fs)" % (sc, engine, rep + 1, brief(sc, r),
                                                          time.time() - t0))
                if srv.proc.poll() is not None:
                    raise HarnessError("%s server died (see %s)" % (engine, srv.log.name))
            except (HarnessError, OSError, ValueError, KeyError) as exc:
                msg = "%s/%s: %s" % (sc, engine, exc)
                log("ERROR " + msg)
                results["errors"].append(msg)
            finally:
                if srv is not None:
                    srv.stop()
            results["scenarios"][sc][engine] = {"runs": runs, "summary": summarise(runs, METRICS[sc])}
            if warmups:
                results["scenarios"][sc][engine]["warmup"] = warmups
            time.sleep(0.5)

    meta["loadavg_end"] = list(os.getloadavg())
    results["duration_s"] = round(time.time() - t_start, 1)
    if "wse" in engines and "wavelane" in engines:
        results["ratios"] = ratios(results)
    lost = []
    for sc, per in results["scenarios"].items():
        for engine, d in per.items():
            for r in d["runs"]:
                if engine == "wavelane" and (r.get("lost") or r.get("errors") or r.get("failed")):
                    lost.append("%s/%s lost=%s errors=%s" % (sc, engine, r.get("lost"), r.get("errors")))
                dr = r.get("drain_only")
                if engine == "wavelane" and isinstance(dr, dict) and dr.get("events") is not None and \
                        dr["events"] < r.get("expected", 0):
                    lost.append("%s/%s drain-only got %s of %s" % (sc, engine, dr["events"], r["expected"]))
    results["losses"] = lost

    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t_start))
    if mode == "smoke":
        paths = [os.path.join(RESULTS, "smoke.json")]
    else:
        paths = [os.path.join(RESULTS, "latest.json"), os.path.join(RESULTS, "%s-%s.json" % (stamp, mode))]
    for p in paths:
        with open(p, "w") as f:
            json.dump(results, f, indent=1, sort_keys=False)
    log("results: %s (%.0f s)" % (", ".join(os.path.relpath(p, REPO) for p in paths), results["duration_s"]))
    if mode != "smoke" and not a.no_report:
        rc = subprocess.run([py, os.path.join(HERE, "report.py"), paths[0]], env=env).returncode
        if rc != 0:
            results["errors"].append("report.py failed")
    for line in lost:
        log("LOSS " + line)
    if results["errors"] or lost:
        log("FAILED: %d errors, %d losses" % (len(results["errors"]), len(lost)))
        return 1
    return 0


def brief(sc, r) -> str:
    f = lambda v, fmt="%.0f": (fmt % v) if isinstance(v, (int, float)) else "-"  # noqa: E731
    if sc == "fanout":
        return "%s deliveries/s, lost %s, %s us CPU/delivery, client CPU %s" % (
            f(r.get("rate")), r.get("lost"), f(r.get("cpu_us_per_delivery"), "%.2f"),
            f(r.get("client_cpu_util"), "%.2f"))
    if sc == "inbound":
        return "%s events/s (server %s), drain-only %s/s, lost %s" % (
            f(r.get("rate")), f(r.get("server_rate")), f(r.get("drain_rate")), r.get("lost"))
    if sc == "rtt":
        return "p50 %s us, p99 %s us, max %s us" % (f(r.get("p50_us")), f(r.get("p99_us")), f(r.get("max_us")))
    if sc == "handshakes":
        return "%s conn/s, p99 %s us, errors %s" % (f(r.get("rate")), f(r.get("p99_us")), r.get("errors"))
    if sc == "idle":
        return "; ".join("%d conns: %.1f KB/conn, %.2f fd/conn" % (s["step"], s.get("rss_kb_per_conn", 0),
                         s.get("fds_per_conn", 0)) for s in r.get("steps", []))
    return ""


if __name__ == "__main__":
    sys.exit(main())
