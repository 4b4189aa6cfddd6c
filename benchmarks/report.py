#!/usr/bin/env python3
"""Write docs/benchmarks.md and the plots in docs/img/ from a results JSON (run.py calls this).

    python benchmarks/report.py [benchmarks/results/latest.json]

Needs matplotlib for the plots (the bench venv has it); without it, only the Markdown is written.
"""

from __future__ import annotations

import json
import re
import time
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DOC = os.path.join(REPO, "docs", "benchmarks.md")
IMG = os.path.join(REPO, "docs", "img")
MICRO = os.path.join(HERE, "results", "micro.txt")
sys.path.insert(0, HERE)
from run import ratios as bench_ratios  # noqa: E402  (one bar, defined in run.py)

PROFILES = os.path.join(HERE, "results", "profile")
NOTES = os.path.join(HERE, "results", "notes.md")  # hand-written analysis (profiles), optional

NAMES = {"wavelane": "Wavelane", "wse": "wse-server 2.5.1", "socketify": "socketify 0.0.31 (uWS core)",
         "picows": "picows (Python app)",
         "websockets": "websockets (Python app)"}
COLORS = {"wavelane": "#1f77b4", "wse": "#d62728", "socketify": "#ff7f0e", "picows": "#2ca02c",
          "websockets": "#9467bd"}


def summ(res, sc, eng, key):
    try:
        d = res["scenarios"][sc][eng]
    except (KeyError, TypeError):
        return None
    if key in d.get("summary", {}):
        return d["summary"][key]
    vals = sorted(r[key] for r in d.get("runs", []) if isinstance(r.get(key), (int, float)))
    if not vals:
        return None
    import statistics

    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1]}


def fmt(v, nd=0):
    if v is None:
        return "–"
    if isinstance(v, float) and nd == 0:
        return "{:,.0f}".format(v)
    return ("{:,.%df}" % nd).format(v)


def cell(res, sc, eng, key, nd=0):
    s = summ(res, sc, eng, key)
    if not s:
        return "–"
    if s["min"] == s["max"]:
        return fmt(s["median"], nd)
    return "%s (%s–%s)" % (fmt(s["median"], nd), fmt(s["min"], nd), fmt(s["max"], nd))


def plots(res) -> list:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(IMG, exist_ok=True)
    engines = res["engines"]
    made = []

    def bars(name, title, ylabel, sc, key, log=False):
        meds, lo, hi, labels, colors = [], [], [], [], []
        for e in engines:
            s = summ(res, sc, e, key)
            if not s:
                continue
            meds.append(s["median"])
            lo.append(s["median"] - s["min"])
            hi.append(s["max"] - s["median"])
            labels.append(NAMES[e].split(" (")[0])
            colors.append(COLORS[e])
        if not meds:
            return
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        ax.bar(labels, meds, yerr=[lo, hi], color=colors, capsize=4)
        for i, v in enumerate(meds):
            ax.text(i, v, fmt(v, 0 if v >= 100 else 1), ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = os.path.join(IMG, "bench-%s.png" % name)
        fig.savefig(path)
        plt.close(fig)
        made.append(path)

    bars("fanout", "Fan-out: deliveries/s (1,000 subscribers, 100 B)", "deliveries/s", "fanout", "rate")
    bars("fanout-cpu", "Server CPU per delivery (fan-out)", "µs CPU / delivery", "fanout",
         "cpu_us_per_delivery")
    bars("inbound", "Inbound: events/s reaching Python (100 clients)", "events/s", "inbound", "rate")
    bars("handshakes", "Handshakes/s (connect + JWT + ready + close)", "connections/s",
         "handshakes", "rate")

    # round trip: grouped p50/p99
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    width = 0.38
    xs = []
    for i, e in enumerate(engines):
        p50, p99 = summ(res, "rtt", e, "p50_us"), summ(res, "rtt", e, "p99_us")
        if not p50 or not p99:
            continue
        xs.append((i, NAMES[e].split(" (")[0]))
        ax.bar(i - width / 2, p50["median"], width, color=COLORS[e], alpha=0.55,
               label="p50" if i == 0 else None)
        ax.bar(i + width / 2, p99["median"], width, color=COLORS[e], label="p99" if i == 0 else None)
        ax.text(i - width / 2, p50["median"], fmt(p50["median"]), ha="center", va="bottom", fontsize=7)
        ax.text(i + width / 2, p99["median"], fmt(p99["median"]), ha="center", va="bottom", fontsize=7)
    ax.set_xticks([x for x, _ in xs], [n for _, n in xs])
    ax.set_ylabel("µs")
    ax.set_title("Round trip client → Python → client: p50 (light) / p99 (dark)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(IMG, "bench-rtt.png")
    fig.savefig(path)
    plt.close(fig)
    made.append(path)

    # idle memory per connection at each step
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for e in engines:
        try:
            steps = res["scenarios"]["idle"][e]["runs"][0]["steps"]
        except (KeyError, IndexError):
            continue
        ax.plot([s["step"] for s in steps], [s.get("rss_kb_per_conn") for s in steps], "o-",
                color=COLORS[e], label=NAMES[e].split(" (")[0])
    ax.axhline(20, color="gray", ls="--", lw=1)
    ax.text(ax.get_xlim()[0], 20, " bar: 20 KB", va="bottom", fontsize=8, color="gray")
    ax.set_xlabel("idle authenticated connections")
    ax.set_ylabel("server RSS KB / connection")
    ax.set_title("Idle memory per connection", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(IMG, "bench-idle.png")
    fig.savefig(path)
    plt.close(fig)
    made.append(path)
    return made


PEER_NAMES = {"wse": "wse-server", "socketify": "socketify"}


def bar_rows(w, res, rat, heading=True) -> None:
    """Issue #12's bar: one row per target; a missed row says by how much (value / bar)."""
    rows = [(k, r) for k, r in rat.items() if "metric" in r]
    if not rows:
        return
    if heading:
        w("## The bar (issue #12; %s, medians of %d%s, same run)\n" % (
            "pinned" if res.get("pinned") else "NOT pinned — the bar is set on a pinned run",
            res["params"]["reps"],
            " after %d uncounted warm-up repetition(s)" % res["params"]["warmup"] if res["params"].get("warmup") else ""))
    w("| target | Wavelane | peer | ratio / value | bar | met? | off by |\n|---|---:|---:|---:|---:|:---:|---:|")
    for _, r in rows:
        absolute = r["peer"] is None
        nd = 2 if r["metric"] in ("fds_per_conn", "cpu_us_per_delivery") else (1 if absolute else 0)
        if r["metric"].startswith("cpu_us"):
            nd = 3 if r["metric"] == "cpu_us_per_delivery" else 1
        peer = "–" if absolute else "%s %s" % (PEER_NAMES.get(r["peer"], r["peer"]), fmt(r["peer_value"], nd))
        w("| %s | %s | %s | %s | %s %s | %s | %s |" % (
            r["what"], fmt(r["wavelane"], nd), peer,
            fmt(r["ratio"], 2) + ("" if absolute else "×"), r["op"], r["bar"],
            {True: "yes", False: "**no**", None: "– (not judged in this mode)" if r["ratio"] is not None else "–"}[r["pass"]],
            off_by(r)))
    w("")


def off_by(r) -> str:
    """How far a missed row is from its bar."""
    if not r.get("off_by"):
        return ""
    if r["op"] == ">=":
        return "reaches %.0f%% of the bar" % (100 * r["off_by"])
    return "%.2f× over the bar" % r["off_by"]


def profiles(w) -> None:
    """Where Wavelane's server time goes now: the top symbols (self time) of a `perf record` of the
    server process per scenario (benchmarks/profile.py; files in results/profile/)."""
    found = []
    for sc in ("fanout", "inbound", "rtt", "handshakes"):
        path = os.path.join(PROFILES, "perf-wavelane-%s-self.txt" % sc)
        if os.path.exists(path):
            found.append((sc, path))
    if not found:
        return
    w("## Where the time goes (profiles)\n")
    w("`python benchmarks/profile.py wavelane SCENARIO` — `perf record -g` (1,999 Hz) of the server "
      "process alone while the load generator drives the scenario; self time by shared object and "
      "symbol, the top rows (full reports, with call chains, in `benchmarks/results/profile/`).\n")
    for sc, path in found:
        rows = []
        for line in open(path):
            line = line.rstrip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) == 3 and parts[0].endswith("%"):
                sym = re.sub(r"(\s+-)+\s*$", "", parts[2]).replace("[.] ", "").replace("[k] ", "(kernel) ")
                rows.append((parts[0], parts[1], sym))
            if len(rows) >= 12:
                break
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(path)))
        w("### %s (profiled %s UTC)\n" % (sc, stamp))
        w("| self | object | symbol |\n|---:|---|---|")
        for pct, dso, sym in rows:
            sym = sym.strip()
            if len(sym) > 110:
                sym = sym[:107] + "..."
            w("| %s | %s | `%s` |" % (pct, dso, sym.replace("|", "\\|")))
        w("")


def main() -> int:
    args = [x for x in sys.argv[1:] if not x.startswith("--extra=")]
    extras = [x.split("=", 1)[1] for x in sys.argv[1:] if x.startswith("--extra=")]
    src = args[0] if args else os.path.join(HERE, "results", "latest.json")
    res = json.load(open(src))
    made = plots(res)
    engines = res["engines"]
    m = res["machine"]
    P = res["params"]
    v = m.get("versions", {})
    L = []
    w = L.append
    w("# Benchmarks\n")
    w("Wavelane against **wse-server 2.5.1** (Rust/tokio under PyO3, drain mode), **socketify "
      "0.0.31** (uWebSockets' C++ core, native pub/sub, one thread), and two Python-native "
      "baselines running the same application: **picows** (Cython WebSocket on asyncio/uvloop) "
      "and **websockets** (pure Python, asyncio/uvloop). All are measured in the same run, on the "
      "same machine, by the same load generator.\n")
    w("_This file is generated by `benchmarks/report.py` from `%s`; do not edit it by hand._\n"
      % os.path.relpath(src, REPO))
    w("## Reproduce\n")
    w("```sh\n%s\n```\n" % res.get("command", "python benchmarks/run.py --full"))
    w("`--quick` (1.5–4 min, 1 repetition, fan-out shortened to 400 messages), `--full` (the issue's parameters, 3 repetitions after one uncounted warm-up; the Python-app baselines publish at most 1,000 messages in fan-out), `--pin` (the server process on one core, the load generator on the other), "
      "`--smoke` (≤ 60 s, Wavelane only; CI). The harness creates its own venv under "
      "`~/.cache/wavelane-bench/` on CPython 3.12 and installs the pinned peers; see "
      "`benchmarks/README.md`.\n")
    w("## This run\n")
    w("| | |\n|---|---|")
    w("| mode | `%s`, %d repetition(s) per scenario (median, min–max)%s |" % (
        res["mode"], P["reps"], ", after %d uncounted warm-up repetition(s) on the same server" % P["warmup"] if P.get("warmup") else ""))
    w("| started | %s, took %s s |" % (res.get("started"), res.get("duration_s")))
    w("| machine | %s cores (%s), %s GiB RAM, Linux %s |" % (m.get("cores"), m.get("cpu_model"),
                                                            m.get("mem_gib"), m.get("kernel")))
    w("| load average | %s at start, %s at end (1/5/15 min) |" % (
        " / ".join("%.2f" % x for x in m.get("loadavg_start", [])),
        " / ".join("%.2f" % x for x in m.get("loadavg_end", []))))
    w("| Python | CPython %s for every server and for the load generator |" % v.get("python"))
    w("| Wavelane | %s (engine %s), git %s, `%s` |" % (v.get("wavelane"), v.get("wavelane_engine"),
                                                      m.get("git"), os.path.relpath(str(m.get("wavelane_lib")), REPO)
                                                      if m.get("wavelane_lib") else "?"))
    w("| peers | wse-server %s, socketify %s, picows %s, websockets %s, uvloop %s, PyJWT %s |" % (
        v.get("wse-server"), v.get("socketify"), v.get("picows"), v.get("websockets"), v.get("uvloop"),
        v.get("PyJWT")))
    w("| Swift | %s |" % m.get("swift"))
    w("")
    if res.get("errors"):
        w("**Errors in this run:** " + "; ".join(res["errors"]) + "\n")
    if res.get("losses"):
        w("**Losses in this run:** " + "; ".join(res["losses"]) + "\n")

    rat = res.get("ratios")
    if res.get("scenarios"):
        rat = bench_ratios(res)  # the bar of run.py, applied to this run's medians
    if rat:
        bar_rows(w, res, rat)
        cpu_rows = [(k, r) for k, r in rat.items() if k.startswith("cpu_per_")]
        if cpu_rows:
            w("## Server CPU per unit of work (µs; lower is better)%s\n" % (
                " — pinned: server on core(s) %s, load generator on %s" % (
                    res["pinned"]["server"], res["pinned"]["loadgen"]) if res.get("pinned") else ""))
            w("| unit | Wavelane | wse-server | socketify | Wavelane / wse-server | Wavelane / socketify |\n"
              "|---|---:|---:|---:|---:|---:|")
            for key, r in cpu_rows:
                w("| %s | %s | %s | %s | %s | %s |" % (
                    key.replace("cpu_per_", ""), fmt(r["wavelane"], 2), fmt(r.get("wse"), 2),
                    fmt(r.get("socketify"), 2), fmt(r.get("ratio_wse"), 2), fmt(r.get("ratio_socketify"), 2)))
            w("")

    for path in extras:  # other runs (e.g. unpinned beside a pinned one): their bar
        ex = json.load(open(path))
        exr = bench_ratios(ex) if ex.get("scenarios") else (ex.get("ratios") or {})
        if not exr or not all("metric" in r for r in exr.values() if not r.get("what", "").startswith("server CPU")):
            continue
        w("### The bar in another run: `%s`\n" % ex.get("command"))
        w("From `%s` (%s, %d repetitions, %s; load average %s at start).\n" % (
            os.path.relpath(path, REPO), ex.get("started"), ex["params"]["reps"],
            "pinned" if ex.get("pinned") else "not pinned",
            " / ".join("%.2f" % x for x in ex["machine"].get("loadavg_start", []))))
        bar_rows(w, ex, exr, heading=False)

    def table(title, sc, cols, intro=""):
        w("## %s\n" % title)
        if intro:
            w(intro + "\n")
        w("| engine | " + " | ".join(c[0] for c in cols) + " |")
        w("|---|" + "---:|" * len(cols))
        for e in engines:
            w("| %s | " % NAMES[e] + " | ".join(cell(res, sc, e, c[1], c[2]) for c in cols) + " |")
        w("")

    table("1. Fan-out", "fanout", [("deliveries/s", "rate", 0), ("lost", "lost", 0),
                                   ("server CPU µs / delivery", "cpu_us_per_delivery", 3),
                                   ("server CPU (cores)", "server_cpu_util", 2),
                                   ("load generator CPU (cores)", "client_cpu_util", 2),
                                   ("kernel share of server CPU", "server_sys_share", 2),
                                   ("fds / connection", "fds_per_conn", 2),
                                   ("server peak RSS MB", "server_peak_rss_mb", 0)],
          "%d subscribers on one topic; the server's Python publishes %s messages of 100 B "
          "(%s deliveries per repetition). Deliveries/s = deliveries counted at the clients / time "
          "from the publish command to the last delivery. Wavelane publishes a `str` (the engine "
          "builds the envelope once); the other apps build the byte-identical envelope "
          "`{\"type\":\"message\",\"topic\":..,\"offset\":n,\"data\":\"..\"}` in Python and fan it "
          "out (`broadcast_local`, a loop over picows transports, `websockets.broadcast`). "
          "Lost = deliveries that never arrived (checked per client by exact byte total and last "
          "offset). Server peak RSS: the server's `VmHWM` after the scenario (the process is "
          "fresh per scenario). The Python-app baselines (picows, websockets) publish at most "
          "1,000 messages (their per-delivery figures do not depend on it; 10 M deliveries at "
          "20–40 k/s would take minutes per repetition)." % (P["fanout_subs"], "{:,}".format(P["fanout_count"]),
                        "{:,}".format(P["fanout_subs"] * P["fanout_count"])))
    if any(os.path.basename(p) == "bench-fanout.png" for p in made):
        w("![fan-out](img/bench-fanout.png) ![cpu per delivery](img/bench-fanout-cpu.png)\n")
    table("2. Inbound", "inbound", [("events/s end to end", "rate", 0),
                                    ("load generator sent/s", "send_rate", 0),
                                    ("events/s in the app loop", "server_rate", 0),
                                    ("drain-only events/s (pre-filled queue)", "drain_rate", 0),
                                    ("lost", "lost", 0), ("server CPU (cores)", "server_cpu_util", 2),
                                    ("kernel share of server CPU", "server_sys_share", 2),
                                    ("load generator CPU (cores)", "client_cpu_util", 2)],
          "%d clients × %s messages of 100 B sent as fast as possible (each write carries 16 "
          "pre-built masked frames, so the load generator is not the bound). *End to end*: messages / "
          "time from the first send until the app has counted them all. *In the app loop*: count / "
          "time between the first and the last message the Python loop saw. *Drain-only*: the app "
          "stops draining until the engine's queue holds all %s events, then times draining them "
          "(engines with a queue only: `drain()` / `drain_inbound()`). When *end to end* equals "
          "*load generator sent/s*, the server kept up with the sender and the figure is a floor "
          "for the engine, not its limit; the drain-only column then shows the engine side." % (
              P["inbound_clients"], "{:,}".format(P["inbound_count"]),
              "{:,}".format(P["inbound_clients"] * P["inbound_count"])))
    if made:
        w("![inbound](img/bench-inbound.png)\n")
    table("3. Round trip", "rtt", [("p50 µs", "p50_us", 0), ("p99 µs", "p99_us", 0),
                                   ("max µs", "max_us", 0)],
          "One client sends 100 B, the server's Python sends it back (`send(conn, data)`), the "
          "client waits for it before the next: %s trips after 200 warm-up trips. Latency "
          "includes the client's own asyncio overhead (the same for every engine)." %
          "{:,}".format(P["rtt_count"]))
    if made:
        w("![round trip](img/bench-rtt.png)\n")
    table("4. Handshakes", "handshakes", [("connections/s", "rate", 0), ("p50 µs", "p50_us", 0),
                                          ("p99 µs", "p99_us", 0), ("errors", "errors", 0),
                                          ("server CPU (cores)", "server_cpu_util", 2),
                                          ("kernel share of server CPU", "server_sys_share", 2),
                                          ("load generator CPU (cores)", "client_cpu_util", 2)],
          "%s × (TCP connect + HTTP upgrade with `Authorization: Bearer <HS256 JWT>` verified by "
          "the server + the server's first JSON frame + close), %d at a time, from a minimal raw "
          "client (a pre-built upgrade request; picows' client was the bound). Latency: connect "
          "start → first frame received." % ("{:,}".format(P["hs_count"]), P["hs_concurrency"]))
    if made:
        w("![handshakes](img/bench-handshakes.png)\n")

    w("## 5. Idle memory\n")
    w("Authenticated idle connections opened from client addresses spread over 127.0.0.x; server "
      "RSS (from `/proc/PID/status`) and open fds (`/proc/PID/fd`) after 1.5 s of settling, minus "
      "the fresh server's baseline, divided by the connections.\n")
    steps = P["idle_steps"]
    w("| engine | baseline RSS MB | " + " | ".join("KB/conn @ %s" % "{:,}".format(s) for s in steps)
      + " | fds/conn @ %s |" % "{:,}".format(steps[-1]))
    w("|---|---:|" + "---:|" * (len(steps) + 1))
    for e in engines:
        try:
            run = res["scenarios"]["idle"][e]["runs"][0]
        except (KeyError, IndexError):
            w("| %s | – |" % NAMES[e] + " – |" * (len(steps) + 1))
            continue
        by = {s["step"]: s for s in run["steps"]}
        row = [fmt(run["base_rss_kb"] / 1024, 1)]
        for s in steps:
            st = by.get(s)
            row.append(fmt(st.get("rss_kb_per_conn"), 1) + ("" if st and st["open"] == s else
                       " (%s open)" % (st["open"] if st else 0)) if st else "–")
        last = by.get(steps[-1])
        row.append(fmt(last.get("fds_per_conn"), 2) if last else "–")
        w("| %s | " % NAMES[e] + " | ".join(row) + " |")
    w("")
    if made:
        w("![idle memory](img/bench-idle.png)\n")

    w("## 6. CPU per delivery, file descriptors\n")
    w("Server process CPU seconds (on-CPU time of all threads from the scheduler, "
      "`/proc/PID/task/*/schedstat`, in ns; `/proc/PID/stat`'s 10 ms ticks quantised short runs) during the "
      "fan-out phase divided by the deliveries; fds per connection counted during fan-out and at "
      "the largest idle step. *Kernel share of server CPU* (tables 1, 2 and 4): the server's "
      "system time over its system plus user time in the same phase (`/proc/PID/stat`'s `stime` "
      "and `utime`; 10 ms ticks, so ±0.02 over a phase of half a second): what the kernel's "
      "network stack and system calls cost, which no engine's code removes and which sets a floor "
      "under its CPU per unit of work.\n")
    w("| engine | server CPU µs / delivery | fds / conn (fan-out) | fds / conn (idle) | server threads |")
    w("|---|---:|---:|---:|---:|")
    for e in engines:
        thr = None
        try:
            thr = res["scenarios"]["fanout"][e]["runs"][0].get("server_threads")
        except (KeyError, IndexError):
            pass
        w("| %s | %s | %s | %s | %s |" % (NAMES[e], cell(res, "fanout", e, "cpu_us_per_delivery", 3),
                                          cell(res, "fanout", e, "fds_per_conn", 2),
                                          cell(res, "idle", e, "fds_per_conn", 2), fmt(thr)))
    w("")

    profiles(w)

    if os.path.exists(NOTES):
        w(open(NOTES).read().strip() + "\n")

    if os.path.exists(MICRO):
        w("## Swift microbenchmarks (hot paths)\n")
        w("`benchmarks/micro/` (plain release-mode executable, `swift run -c release "
          "wavelane-micro`); last output, from `benchmarks/results/micro.txt`:\n")
        w("```\n%s\n```\n" % open(MICRO).read().strip())

    w("## Method and caveats\n")
    w("- Every engine runs in its own process (`benchmarks/servers/server_<engine>.py`), started "
      "fresh for each scenario by `benchmarks/run.py`, with the same application: JWT (HS256) "
      "checked at the handshake (natively by Wavelane and wse-server, with PyJWT by the picows "
      "and websockets apps), a JSON ready frame first, `subscribe` handling, topic fan-out, echo, "
      "and an inbound counter. Wavelane and wse-server are driven from one Python thread looping "
      "on `drain()` / `drain_inbound()`; picows and websockets run on uvloop.\n"
      "- The load generator (`benchmarks/loadgen.py`) is one separate process on uvloop: picows "
      "clients for inbound (writing pre-built frames 16 at a time), round trip and idle; a raw "
      "asyncio client with a pre-built upgrade request for handshakes; for fan-out, minimal raw WebSocket "
      "receivers that parse the handshake and control frames and then count publication bytes "
      "(every engine sends byte-identical envelopes, so an exact byte total plus the last offset "
      "in each stream proves nothing was lost), reading into one preallocated buffer "
      "(`asyncio.BufferedProtocol`: a new `bytes` object per 100-250 KB read had made page faults a "
      "third of the client's CPU, and the client the bound) — this keeps the client far from being the "
      "bottleneck; its CPU is in the tables (1.0 = one full core).\n"
      "- The machine has %s cores shared by the server (all its threads), the load generator and "
      "anything else running (see the load average above: other builds on a shared machine "
      "inflate the spread). With `--pin` the server process (every thread) runs on one core and "
      "the load generator on the other (`sched_setaffinity`), so each engine is measured on "
      "exactly one core and the bar is judged on server CPU per unit of work, which is steadier "
      "than throughput here.\n"
      "- Heartbeats are pushed out of the measurement window (ping interval 300 s) for every "
      "engine; wse-server's per-connection rate limiter is set out of the way (1e9/s).\n"
      % m.get("cores"))
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write("\n".join(L))
    print("wrote %s%s" % (os.path.relpath(DOC, REPO), (" and %d plots" % len(made)) if made else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
