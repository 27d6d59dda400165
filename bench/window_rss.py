"""Window RSS: one batch window over millions of events; does the scorer's memory stay flat?

``python -m bench window-rss --events 10000000`` (``make window-rss``) starts an embedded
Apache Kafka (``--bootstrap`` uses a running cluster), fills one fresh topic with
``--events`` events the way the throughput bench does (the dataset looped, each event
encoded as `churnstream produce` encodes it, gzip as the product's producer compresses),
then runs ``churnstream consume --mode batch`` (one worker, reports written to a temporary
directory as a user's run writes them) until the topic is drained and the window closes
(``--timeout-ms`` idle). Every ``--sample-every`` seconds it records the scorer's VmRSS and
VmHWM (``/proc/PID/status``) and, less often, the group's committed offsets.

The target (issue 12): RSS must not grow beyond its first minute's level. The report gives
the first minute's highest VmRSS, the highest of the whole run, the last sample before the
scorer exits, and the growth (highest minus the first minute's). Exit code 1 when it grew
by more than ``--tolerance-mb``.

The samples go to ``bench/results/window_rss_<UTC stamp>.csv``, the summary to the JSON
beside it. A long run: 10,000,000 events take minutes to fill and minutes to score.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench import env, throughput

logger = logging.getLogger("bench")

RESULTS = env.REPO / "bench" / "results"
DEFAULT_EVENTS = 10_000_000
FIRST_MINUTE_S = 60.0
#: Committed offsets are read this often (a broker round trip; RSS is read every sample).
PROGRESS_EVERY_S = 5.0
ADMIN_TIMEOUT_S = 30.0
#: Growth past the first minute that still counts as flat: page-level noise of the heap.
TOLERANCE_MB = 5.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench window-rss", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events to score")
    parser.add_argument("--partitions", type=int, default=6, help="input topic partitions")
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds per sample")
    parser.add_argument(
        "--tolerance-mb",
        type=float,
        default=TOLERANCE_MB,
        help="growth over the first minute's RSS still counted as flat",
    )
    parser.add_argument(
        "--no-reports", action="store_true", help="the scorer writes no report files"
    )
    parser.add_argument("--bootstrap", help="use this cluster instead of an embedded broker")
    parser.add_argument("--models-dir", type=Path, default=env.REPO / "models")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.events < 1 or args.sample_every <= 0:
        parser.error("--events and --sample-every must be positive")
    return args


@dataclass
class Sample:
    elapsed_s: float
    rss_mb: float
    hwm_mb: float
    committed: int | None


@dataclass
class WindowRssResult:
    events: int
    partitions: int
    fill_s: float
    wall_s: float
    exit_code: int
    committed: bool
    predictions: int
    dead_letters: int
    first_minute_rss_mb: float
    max_rss_mb: float
    max_rss_at_s: float
    last_rss_mb: float
    peak_hwm_mb: float
    growth_mb: float
    samples: int
    scorer_command: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of ``pid`` in MB, or None once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    fields = {
        line.split(":")[0]: int(line.split()[1]) / 1024
        for line in lines
        if line.startswith(("VmRSS:", "VmHWM:"))
    }
    if "VmRSS" not in fields:  # a zombie has no memory lines
        return None
    return fields["VmRSS"], fields.get("VmHWM", fields["VmRSS"])


def summarise(samples: list[Sample], first_minute_s: float = FIRST_MINUTE_S) -> dict[str, float]:
    """First minute's highest RSS, the run's highest (and when), the last, the growth."""
    if not samples:
        raise ValueError("no RSS samples")
    first = [s.rss_mb for s in samples if s.elapsed_s <= first_minute_s] or [samples[0].rss_mb]
    top = max(samples, key=lambda s: s.rss_mb)
    return {
        "first_minute_rss_mb": max(first),
        "max_rss_mb": top.rss_mb,
        "max_rss_at_s": top.elapsed_s,
        "last_rss_mb": samples[-1].rss_mb,
        "peak_hwm_mb": max(s.hwm_mb for s in samples),
        "growth_mb": top.rss_mb - max(first),
    }


class Progress:
    """The group's committed offsets summed over the topic's partitions (no group join)."""

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: int) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> int | None:
        try:
            tps = self._consumer.committed(self._tps, timeout=ADMIN_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - progress is informative; the RSS is what counts
            return None
        return sum(max(tp.offset, 0) for tp in tps)

    def close(self) -> None:
        self._consumer.close()


def end_offsets(bootstrap: str, topic: str) -> int:
    """Messages in ``topic`` (sum of its partitions' end offsets; Apache Kafka's are exact)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S)
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=ADMIN_TIMEOUT_S)[1]
            for p in metadata.topics[topic].partitions
        )
    finally:
        consumer.close()


def sample_scorer(
    command: list[str], progress: Progress, every_s: float
) -> tuple[int, float, list[Sample]]:
    """Run the scorer to completion, sampling its memory; (exit code, wall s, samples)."""
    samples: list[Sample] = []
    committed: int | None = None
    next_progress = 0.0
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=env.REPO, stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        elapsed = time.perf_counter() - started
        if elapsed >= next_progress:
            committed = progress.committed()
            next_progress = elapsed + PROGRESS_EVERY_S
            if samples:
                logger.info(
                    "%.0f s: RSS %.1f MB, committed %s", elapsed, samples[-1].rss_mb, committed
                )
        memory = status_mb(proc.pid)
        if memory is not None:
            samples.append(Sample(round(elapsed, 2), *memory, committed))
        # Sleep to the next tick, so that the samples stay on a regular grid.
        time.sleep(max(0.0, every_s * (len(samples) + 1) - (time.perf_counter() - started)))
    return proc.returncode, time.perf_counter() - started, samples


def measure(
    bootstrap: str, rows: list[dict[str, Any]], args: argparse.Namespace
) -> tuple[WindowRssResult, list[Sample]]:
    topics = env.create_topics(bootstrap, args.partitions)
    logger.info("filling %s with %d events", topics[0], args.events)
    fill_s = env.fill(bootstrap, topics[0], args.events, rows)
    logger.info("filled %s with %d events in %.1f s", topics[0], args.events, fill_s)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    progress = Progress(bootstrap, topics[0], group, args.partitions)
    with tempfile.TemporaryDirectory(prefix="churnstream-window-rss-") as reports:
        command = throughput.scorer_command(
            bootstrap,
            topics,
            group,
            args.models_dir,
            1,
            [],
            None if args.no_reports else Path(reports),
        )
        try:
            code, wall, samples = sample_scorer(command, progress, args.sample_every)
        finally:
            progress.close()
    result = WindowRssResult(
        events=args.events,
        partitions=args.partitions,
        fill_s=fill_s,
        wall_s=wall,
        exit_code=code,
        committed=env.committed_complete(bootstrap, topics[0], group),
        predictions=end_offsets(bootstrap, topics[1]),
        dead_letters=end_offsets(bootstrap, topics[2]),
        samples=len(samples),
        scorer_command=command,
        **summarise(samples),
    )
    return result, samples


def render(result: dict[str, Any], load: tuple[Any, Any]) -> str:
    r = result
    return "\n".join(
        [
            f"| events | {r['events']:,} in {r['partitions']} partitions, filled in "
            f"{r['fill_s']:.0f} s |",
            f"| scorer wall time | {r['wall_s']:.0f} s (exit {r['exit_code']}), "
            f"{r['predictions']:,} predictions, {r['dead_letters']:,} dead letters, "
            f"all committed: {r['committed']} |",
            f"| RSS, first minute (highest) | {r['first_minute_rss_mb']:.1f} MB |",
            f"| RSS, highest of the run | {r['max_rss_mb']:.1f} MB at {r['max_rss_at_s']:.0f} s |",
            f"| RSS, last sample | {r['last_rss_mb']:.1f} MB |",
            f"| growth over the first minute | {r['growth_mb']:+.1f} MB |",
            f"| VmHWM (kernel high-water mark) | {r['peak_hwm_mb']:.1f} MB |",
            f"| load average before / after | {_load(load[0])} ; {_load(load[1])} |",
        ]
    )


def _load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s bench: %(message)s", datefmt="%H:%M:%S"
    )
    args = parse(argv)
    command = "python -m bench window-rss " + shlex.join(sys.argv[2:] if argv is None else argv)
    env.model(args.models_dir)
    rows = env.records()
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    with env.embedded_broker(args.bootstrap) as bootstrap:
        result, samples = measure(bootstrap, rows, args)
    load = (load_before, os.getloadavg())
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    csv_path = args.results_dir / f"window_rss_{stamp}.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["elapsed_s", "rss_mb", "hwm_mb", "committed"])
        for s in samples:
            writer.writerow([s.elapsed_s, f"{s.rss_mb:.1f}", f"{s.hwm_mb:.1f}", s.committed])
    summary = {
        "command": command.strip(),
        "started": started.isoformat(timespec="seconds"),
        "machine": env.Machine.now().__dict__,
        "load_before": load[0],
        "load_after": load[1],
        "samples_csv": csv_path.name,
        **result.as_dict(),
    }
    json_path = args.results_dir / f"window_rss_{stamp}.json"
    json_path.write_text(json.dumps(summary, indent=2).replace(f"{env.REPO}/", "") + "\n")
    print(render(summary, load))
    print(f"results: {json_path}, samples: {csv_path}")
    flat = result.growth_mb <= args.tolerance_mb
    return 0 if flat and result.exit_code == 0 and result.committed else 1
