"""What reason codes cost: the 1-worker throughput bench without, then with, ``--reasons``.

Rounds alternate (without, with, without, with...) on fresh topics of the same events, so a
change of load on a shared machine hits both about equally; the figure of each is its best
round, and the cost is how much lower the best sustained rate with reasons is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from bench import throughput

logger = logging.getLogger("bench")

#: Above this cost, reasons are a flag of ``consume`` (off by default) rather than always on.
FLAG_ABOVE = 0.15


def measure(
    bootstrap: str,
    rows: list[dict[str, Any]],
    *,
    events: int,
    partitions: int,
    models_dir: Path,
    rounds: int = 2,
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    loads = [os.getloadavg()]
    for _ in range(rounds):
        for name, extra in (("without", []), ("with", ["--reasons"])):
            result = throughput.measure(
                bootstrap, rows, events=events, workers=1, partitions=partitions,
                models_dir=models_dir, extra=extra,
            )  # fmt: skip
            logger.info(
                "reasons %s: %.0f msgs/s sustained, %.1f CPU s",
                name,
                result.sustained_msgs_per_s,
                result.cpu_s,
            )
            runs[name].append(result.as_dict())
            loads.append(os.getloadavg())
    best = {name: max(r["sustained_msgs_per_s"] for r in done) for name, done in runs.items()}
    cpu = {name: min(r["cpu_s"] for r in done) for name, done in runs.items()}
    cost = 1 - best["with"] / best["without"] if best["without"] else None
    return {
        "events": events,
        "rounds": rounds,
        "sustained_msgs_per_s": best,
        "cpu_s": cpu,
        "cost": cost,
        "load_averages": loads,
        "runs": runs,
    }


def render(results: dict[str, Any]) -> str:
    best, cpu, cost = results["sustained_msgs_per_s"], results["cpu_s"], results["cost"]
    loads = ", ".join(f"{load[0]:.1f}" for load in results["load_averages"])
    shown = "n/a" if cost is None else f"{cost:.0%}"
    return "\n".join(
        [
            f"| reason codes, 1 worker, {results['events']:,} events, best of "
            f"{results['rounds']} alternating rounds | sustained msgs/s | scorer CPU s |",
            "|---|---|---|",
            f"| `consume` | {best['without']:,.0f} | {cpu['without']:.1f} |",
            f"| `consume --reasons` | {best['with']:,.0f} | {cpu['with']:.1f} |",
            f"| cost of reasons | {shown} of throughput | |",
            "",
            f"1-minute load average before and after each run: {loads}.",
        ]
    )
