"""The figures of docs/benchmarks.md as pictures (PNG, matplotlib), from the
JSON files the benches write with --json:

- bench-failover.png: per fault, what the client saw in every run (which
  node answered each probe against time: the old node, another one, none),
  ours, MetalLB and the physical limit;
- bench-reach.png: time to reachable for one Service, as a distribution;
- bench-scale.png: time until every Service has an IP, API requests per
  Service and the allocator's RSS against the number of Services (log axes).

    .venv/bin/python bench/plots.py --out docs [--limit L.json] [--side S.json ...]

Each picture names the commands and commits that made its data. Files that
are missing are skipped, and so is a picture without data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

LIMIT = "physical limit"
COLOURS = {"victim": "#9e9e9e", "other": "#2e7d32", None: "#c62828"}
LABELS = {"victim": "the node that failed", "other": "another node", None: "no answer"}


def load(paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        if Path(path).exists():
            out.append(json.loads(Path(path).read_text()))
    return out


def provenance(runs: list[dict[str, Any]]) -> str:
    return "\n".join(f"{r['command']}  (commit {r.get('commit') or '?'})" for r in runs)


def by_program(side: list[dict[str, Any]], limit: list[dict[str, Any]], part: str
               ) -> dict[str, Any]:
    """program -> its `part` ("raw", "timelines", "figures"), later files winning."""
    out: dict[str, Any] = {}
    for run in side:
        for program, values in (run.get(part) or {}).items():
            out.setdefault(program, {}).update(values)
    for run in limit:
        if part in run:
            out.setdefault(LIMIT, {}).update(run[part])
    return out


def failover(side: list[dict[str, Any]], limit: list[dict[str, Any]], out: Path) -> None:
    timelines = by_program(side, limit, "timelines")
    rows = [(program, fault, runs) for program, faults in sorted(timelines.items())
            for fault, runs in sorted(faults.items()) if runs]
    if not rows:
        return
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.1 * len(rows) + 1.6), sharex=True,
                             squeeze=False)
    for ax, (program, fault, runs) in zip(axes[:, 0], rows, strict=True):
        for y, run in enumerate(runs):
            events = run["events"]
            ends = [t for t, _ in events[1:]] + [run["span"]]
            for (start, who), end in zip(events, ends, strict=True):
                ax.barh(y, end - start, left=start, height=0.8, color=COLOURS[who], linewidth=0)
        ax.set_yticks([])
        ax.set_ylabel(f"{program}\n{fault}", rotation=0, ha="right", va="center", fontsize=8)
        ax.axvline(0, color="black", linewidth=0.8)
    axes[-1, 0].set_xlabel("seconds after the fault (each row one run: who answered the probe)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    fig.legend(handles, LABELS.values(), loc="lower right", fontsize=8, ncols=3)
    fig.suptitle("Failover: which node answered the client's probes (every 10 ms)", fontsize=10)
    fig.text(0.01, 0.005, provenance(side + limit), fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(out / "bench-failover.png", dpi=110)
    plt.close(fig)


def reach(side: list[dict[str, Any]], limit: list[dict[str, Any]], out: Path) -> None:
    raw = by_program(side, limit, "raw")
    series = {p: sorted(v["reach1"]) for p, v in raw.items() if v.get("reach1")}
    if not series:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for program, values in sorted(series.items()):
        share = [(i + 1) / len(values) for i in range(len(values))]
        ax.step([v * 1000 for v in values], share, where="post",
                label=f"{program} (n={len(values)})")
    ax.set_xscale("log")
    ax.set_xlabel("ms from the Service's create (limit: from ip addr add) to the first 200")
    ax.set_ylabel("share of runs")
    ax.set_title("Time to reachable, one Service (through kube-proxy)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.005, provenance(side + limit), fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out / "bench-reach.png", dpi=110)
    plt.close(fig)


def scale(side: list[dict[str, Any]], out: Path) -> None:
    figures = by_program(side, [], "figures")
    panels = [("scale{n} after last create", "s until every Service has an IP,\n"
               "after the last create returned"),
              ("scale{n} req/svc", "API requests per Service,\nall programs"),
              ("scale{n} rss MiB", "allocator RSS, MiB\n(ours: both schedulers)")]
    counts = sorted({int(k[5:].split()[0]) for f in figures.values() for k in f
                     if k.startswith("scale") and k[5:].split()[0].isdigit()})
    if not counts:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 4))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for program, values in sorted(figures.items()):
            points = [(n, values[key.format(n=n)]) for n in counts
                      if isinstance(values.get(key.format(n=n)), float | int)]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=program)
        ax.set_xscale("log")
        if "req" in key:  # a handful per Service: linear, with the bound
            ax.axhline(3, color="black", linestyle=":", linewidth=1)
            ax.set_ylim(bottom=0)
        else:
            ax.set_yscale("log")
        ax.set_xlabel("Services created at once")
        ax.set_title(label, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.text(0.01, 0.005, provenance(side), fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out / "bench-scale.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs", help="directory of the PNGs")
    parser.add_argument("--limit", nargs="*", default=[], help="physical_limit.py --json files")
    parser.add_argument("--side", nargs="*", default=[], help="side_by_side.py --json files")
    args = parser.parse_args()
    side, limit, out = load(args.side), load(args.limit), Path(args.out)
    failover(side, limit, out)
    reach(side, limit, out)
    scale(side, out)
    print("plots in", out, ":", ", ".join(sorted(p.name for p in out.glob("bench-*.png"))))


if __name__ == "__main__":
    main()
