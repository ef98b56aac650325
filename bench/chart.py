"""Draws latency against load as a PNG from the benchmarks' JSON output.

Left: turn overhead (bench/turn_overhead.py --out) p50/p95/p99 against threads asking at
once, with the 150 ms goal. Right, when an ack latency file is given and exists
(bench/ack_latency.py --json-out, one run per concurrency): p50/p99 of Lore and the bare Bolt
app against concurrent events.

    .venv/bin/python bench/chart.py [--turns bench/turn_overhead.json]
        [--ack bench/ack_latency.json] [--out bench/latency_vs_load.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

BENCH = Path(__file__).resolve().parent
GOAL_MS = 150


def draw_turns(axes: Axes, data: dict[str, Any]) -> None:
    loads = [row["load"] for row in data["loads"]]
    for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        values = [row["overhead_ms"][q] for row in data["loads"]]
        axes.plot(loads, values, style, label=f"overhead {q}")
    axes.axhline(GOAL_MS, color="grey", linestyle="--", label=f"goal: p95 <= {GOAL_MS} ms")
    steps = "search + answer" if data.get("steps") == 2 else "answer only"
    axes.set_title(f"Turn overhead (model time excluded; {steps})")
    axes.set_xlabel("threads asking at once")
    axes.set_ylabel("ms")
    axes.set_xticks(loads)


def draw_ack(axes: Axes, data: dict[str, Any]) -> None:
    runs = data["runs"]
    concurrency = [run["concurrency"] for run in runs]
    for n, server in enumerate(runs[0]["servers"]):
        for q, style in (("p50", "o-"), ("p99", "s--")):
            values = [run["servers"][server][q] for run in runs]
            axes.plot(concurrency, values, style, color=f"C{n}", label=f"{server} {q}")
    axes.set_title("Ack latency (event POST -> HTTP 200)")
    axes.set_xlabel("concurrent events")
    axes.set_ylabel("ms")
    axes.set_xticks(concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=Path, default=BENCH / "turn_overhead.json")
    parser.add_argument("--ack", type=Path, default=BENCH / "ack_latency.json")
    parser.add_argument("--out", type=Path, default=BENCH / "latency_vs_load.png")
    args = parser.parse_args()
    turns = json.loads(args.turns.read_text())
    ack = json.loads(args.ack.read_text()) if args.ack.exists() else None
    figure, panels = plt.subplots(1, 2 if ack else 1, figsize=(12 if ack else 6.5, 4.5))
    axes_list: list[Axes] = list(panels) if ack else [panels]
    draw_turns(axes_list[0], turns)
    if ack:
        draw_ack(axes_list[1], ack)
    for axes in axes_list:
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle("Lore: latency against load (2-core machine)")
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
