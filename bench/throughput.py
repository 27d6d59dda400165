"""Throughput: a pre-filled topic, scored by `churnstream consume --mode batch` until drained."""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import env
from bench import profile as bench_profile

logger = logging.getLogger("bench")

#: Batch mode stops after this long without a message; it is not counted as scoring time.
IDLE_TIMEOUT_MS = 10_000
RSS_SAMPLE_S = 0.1


@dataclass
class ThroughputResult:
    workers: int
    events: int
    partitions: int
    predictions: int
    dead_letters: int
    committed: bool
    #: Messages scored after the first batch, over the time from the first batch's
    #: predictions to the last ones (broker timestamps of the prediction records).
    sustained_msgs_per_s: float
    #: All events over the scorer's whole run, start-up and final idle wait excluded.
    wall_msgs_per_s: float
    wall_s: float
    scoring_s: float
    peak_rss_mb: float
    exit_code: int
    #: CPU seconds of the scorer process(es), start-up and the final idle wait included.
    cpu_s: float = 0.0
    batch_sizes: dict[str, float] = field(default_factory=dict)
    fill_s: float = 0.0
    command: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scorer_command(
    bootstrap: str,
    topics: tuple[str, str, str],
    group: str,
    models_dir: Path,
    workers: int,
    extra: list[str],
    reports: Path | None = None,
) -> list[str]:
    """The scorer's command line; it writes no report unless given ``reports``."""
    raw, predictions, deadletter = topics
    return [
        sys.executable, "-m", "churnstream", "--log-level", "WARNING",
        "consume", "--mode", "batch", "--broker", bootstrap,
        "--input-topic", raw, "--output-topic", predictions, "--deadletter-topic", deadletter,
        "--consumer-group", group, "--model-path", str(models_dir),
        "--timeout-ms", str(IDLE_TIMEOUT_MS),
        *(["--no-reports"] if reports is None else ["--reports-dir", str(reports)]),
        "--workers", str(workers), *extra,
    ]  # fmt: skip


def run_scorer(command: list[str], profile: Path | None = None) -> tuple[int, float, float, float]:
    """Run to completion; (exit code, wall seconds, peak RSS in MB of one scorer process,
    CPU seconds of the scorer and its workers, start-up included).

    The peak is the kernel's high-water mark (VmHWM) of the scorer and of each worker,
    sampled until they exit (``ru_maxrss`` would also count the bench's own pages, which a
    child shares between fork and exec). With ``profile``, the scorer runs under py-spy,
    which writes its samples there.
    """
    if profile is not None:
        command = bench_profile.wrap(command, profile)
    started = time.perf_counter()
    # Children's CPU, counted once they are reaped: the scorer (and, through it, its workers).
    cpu_before = _children_cpu_s()
    proc = subprocess.Popen(command, cwd=env.REPO, stdout=subprocess.DEVNULL)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        for pid in _tree(proc.pid):
            hwm = _high_water_mb(pid)
            if hwm is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), hwm)
        time.sleep(RSS_SAMPLE_S)
    wall = time.perf_counter() - started
    scorers = [mb for pid, mb in peaks.items() if profile is None or pid != proc.pid]
    return proc.returncode, wall, max(scorers, default=0.0), _children_cpu_s() - cpu_before


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the supervisor's workers, py-spy's target)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return out


def _high_water_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(
    bootstrap: str,
    rows: list[dict[str, Any]],
    *,
    events: int,
    workers: int,
    partitions: int,
    models_dir: Path,
    extra: list[str] | None = None,
    profile: Path | None = None,
) -> ThroughputResult:
    topics = env.create_topics(bootstrap, partitions)
    fill_s = env.fill(bootstrap, topics[0], events, rows)
    logger.info("filled %s with %d events in %.1fs", topics[0], events, fill_s)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    command = scorer_command(bootstrap, topics, group, models_dir, workers, extra or [])
    code, wall, rss, cpu_s = run_scorer(command, profile)
    predictions = env.read_all(bootstrap, topics[1], expect=events)
    letters = env.read_all(bootstrap, topics[2])
    stamps = np.array([m.timestamp()[1] for m in predictions], dtype=np.float64) / 1000
    # A batch's predictions share one processed_ts: that gives the batch sizes.
    sizes: dict[bytes, int] = {}
    for m in predictions:
        body = orjson.loads(m.value())
        key = body["processed_ts"].encode()
        sizes[key] = sizes.get(key, 0) + 1
    batch = np.array(sorted(sizes.values()), dtype=np.float64)
    sustained = 0.0
    scoring_s = 0.0
    if len(stamps) > 1:
        first, last = float(stamps.min()), float(stamps.max())
        first_batch = int((stamps <= first + 0.001).sum())
        scoring_s = last - first
        sustained = (len(stamps) - first_batch) / scoring_s if scoring_s > 0 else 0.0
    busy = wall - IDLE_TIMEOUT_MS / 1000
    result = ThroughputResult(
        workers=workers,
        events=events,
        partitions=partitions,
        predictions=len(predictions),
        dead_letters=len(letters),
        committed=env.committed_complete(bootstrap, topics[0], group),
        sustained_msgs_per_s=sustained,
        wall_msgs_per_s=events / busy if busy > 0 else 0.0,
        wall_s=wall,
        scoring_s=scoring_s,
        peak_rss_mb=rss,
        exit_code=code,
        cpu_s=cpu_s,
        batch_sizes=_distribution(batch),
        fill_s=fill_s,
        command=command,
    )
    logger.info(
        "throughput, %d worker(s): %.0f msgs/s sustained (%d scored, committed %s, RSS %.0f MB)",
        workers, sustained, len(predictions), result.committed, rss,
    )  # fmt: skip
    return result


def _distribution(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {
        "batches": float(values.size),
        "mean": float(values.mean()),
        "p10": float(np.percentile(values, 10)),
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "max": float(values.max()),
    }
