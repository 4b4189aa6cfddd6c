#!/usr/bin/env python3
"""Plots of a soak run (benchmarks/soak.py): RSS, fds, connections and delivery rate over time.

    python benchmarks/soak_plot.py benchmarks/results/tmp/soak --out docs/img

Writes soak-rss.png, soak-fds.png, soak-connections.png and soak-delivery.png (small PNGs). Fault
times from summary.json are drawn as vertical lines (r = Redis killed, k = instance b killed,
s = drain loop stalled). Needs matplotlib (not needed by the soak itself, nor by CI).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="the soak's --out directory (series.json, summary.json)")
    ap.add_argument("--out", default="docs/img", help="where the PNGs go (default docs/img)")
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("soak_plot.py needs matplotlib (pip install matplotlib)")
    with open(os.path.join(args.run, "series.json")) as f:
        series = json.load(f)
    with open(os.path.join(args.run, "summary.json")) as f:
        summary = json.load(f)
    faults = summary.get("faults", [])
    minutes = lambda t: t / 60.0  # noqa: E731
    names = sorted({r["instance"] for r in series})
    colors = {"a": "tab:blue", "b": "tab:orange", "redis": "tab:gray"}
    label = {"a": "instance a (never killed)", "b": "instance b (SIGKILLed, restarted)", "redis": "redis-server"}

    def fault_lines(ax):
        for f in faults:
            x = minutes(f["t"])
            ax.axvline(x, color="tab:red", alpha=0.35, linewidth=0.8)
            ax.text(x, 1.0, {"redis": "r", "kill": "k", "stall": "s"}.get(f["kind"], "?"), color="tab:red",
                    transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7)

    def plot(fname, ylabel, key, scale=1.0, which=None, title=""):
        fig, ax = plt.subplots(figsize=(7.5, 2.6))
        for name in names:
            if which and name not in which:
                continue
            pts = [(minutes(r["t"]), r[key] * scale) for r in series
                   if r.get("instance") == name and r.get(key) is not None]
            if not pts:
                continue
            # break the line where the instance was down (a gap of more than 3 samples)
            xs, ys = [], []
            prev = None
            for x, y in pts:
                if prev is not None and x - prev > 3 * summary["config"].get("sample", 1.0) / 60.0:
                    xs.append(float("nan"))
                    ys.append(float("nan"))
                xs.append(x)
                ys.append(y)
                prev = x
            ax.plot(xs, ys, label=label.get(name, name), color=colors.get(name), linewidth=0.9)
        fault_lines(ax)
        ax.set_xlabel("minutes")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = os.path.join(args.out, fname)
        fig.savefig(path, dpi=args.dpi)
        plt.close(fig)
        print(f"{path}: {os.path.getsize(path) // 1024} KB")

    os.makedirs(args.out, exist_ok=True)
    plot("soak-rss.png", "RSS (MB)", "rss_kb", 1 / 1024.0, title="Resident memory per process")
    plot("soak-fds.png", "open fds", "fds", title="File descriptors per process")
    plot("soak-connections.png", "connections", "connections", which={"a", "b"},
         title="Open WebSocket connections per instance")
    # delivery rate: the server's deliveries/s per instance, and the healthy subscribers' checked rate
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    for name in ("a", "b"):
        pts = [(minutes(r["t"]), r["server_deliveries_per_s"]) for r in series
               if r.get("instance") == name and r.get("server_deliveries_per_s") is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{name}: server deliveries/s",
                    color=colors[name], linewidth=0.7)
    pts = [(minutes(r["t"]), r["client_deliveries_per_s"]) for r in series if r.get("instance") == "a"]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label="checked in order by healthy subscribers /s",
                color="tab:green", linewidth=0.7)
    fault_lines(ax)
    ax.set_xlabel("minutes")
    ax.set_ylabel("deliveries/s")
    ax.set_title("Delivery rate", fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = os.path.join(args.out, "soak-delivery.png")
    fig.savefig(path, dpi=args.dpi)
    plt.close(fig)
    print(f"{path}: {os.path.getsize(path) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
