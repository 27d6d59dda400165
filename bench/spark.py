"""Batch scoring of a generated Parquet file: ``predict --engine pandas`` vs ``--engine spark``.

The file resamples the real dataset (rows drawn with replacement, fresh unique customer IDs),
typed as a warehouse would hold it. Each engine runs as its own ``churnstream predict``
process, timed from start to exit (Spark's start-up included, since a nightly job pays it),
with the peak of the summed RSS of the process and its descendants (Spark's JVM and its
Python workers), sampled.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.throughput import _tree

logger = logging.getLogger("bench")

DEFAULT_ROWS = 10_000_000
SPARK_MASTER = "local[2]"
RSS_SAMPLE_S = 0.2
_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def resample(dataset: pd.DataFrame, rows: int, seed: int = 7) -> pd.DataFrame:
    """``rows`` rows drawn from ``dataset`` with replacement, each with a unique customerID
    (``NNNN-LLLLL``: the row number, in base 10 then base 26)."""
    rng = np.random.default_rng(seed)
    frame = dataset.iloc[rng.integers(0, len(dataset), rows)].reset_index(drop=True)
    number = np.arange(rows, dtype=np.int64)
    digits = np.char.zfill((number % 10_000).astype(str), 4)
    rest = number // 10_000
    letters = np.empty((rows, 5), dtype="<U1")
    for position in range(4, -1, -1):
        letters[:, position] = _LETTERS[rest % 26]
        rest //= 26
    suffix = letters.view("<U5").reshape(-1)  # five 1-letter strings side by side: one
    frame["customerID"] = np.char.add(np.char.add(digits, "-"), suffix)
    return frame


def write_parquet(frame: pd.DataFrame, path: Path, parts: int = 1) -> Path:
    """One file, or a directory of ``parts`` files (part-00000.parquet, ...)."""
    if parts == 1:
        frame.to_parquet(path, index=False)
        return path
    path.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[chunk].to_parquet(path / f"part-{i:05d}.parquet", index=False)
    return path


@dataclass(frozen=True)
class EngineRun:
    engine: str
    rows: int
    seconds: float
    rows_per_s: float
    peak_rss_mb: float
    command: str


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def run_engine(engine: str, source: Path, out: Path, models_dir: Path, rows: int) -> EngineRun:
    """One ``churnstream predict`` process: wall time, and the peak of the summed RSS of it
    and its descendants (Spark's JVM and Python workers), sampled every RSS_SAMPLE_S."""
    argv = [
        str(Path(sys.executable).with_name("churnstream")),
        "predict",
        "--engine",
        engine,
        "--input",
        str(source),
        "--output",
        str(out),
        "--model-path",
        str(models_dir),
        # Scoring is what is compared; the pandas engine's reasons for millions of rows at
        # once take more memory than this machine has.
        "--no-reasons",
    ]
    if engine == "spark":
        argv += ["--master", SPARK_MASTER]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603 - fixed argv
    peak_kb = 0
    while proc.poll() is None:
        peak_kb = max(peak_kb, sum(_rss_kb(pid) for pid in _tree(proc.pid)))
        time.sleep(RSS_SAMPLE_S)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    return EngineRun(
        engine=engine,
        rows=rows,
        seconds=seconds,
        rows_per_s=rows / seconds,
        peak_rss_mb=peak_kb / 1024,
        command=f"churnstream predict --no-reasons --engine {engine}"
        + (f" --master {SPARK_MASTER}" if engine == "spark" else ""),
    )


def measure(dataset: Path, models_dir: Path, rows: int = DEFAULT_ROWS) -> dict[str, Any]:
    """Both engines on one generated Parquet file of ``rows`` rows."""
    from churnstream.data import load_dataset

    with tempfile.TemporaryDirectory(prefix="churnstream-bench-spark-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        source = write_parquet(resample(load_dataset(dataset), rows), work / "customers.parquet")
        logger.info("generated %s rows in %.1fs", f"{rows:,}", time.perf_counter() - started)
        runs = {}
        for engine in ("pandas", "spark"):
            run = run_engine(engine, source, work / f"{engine}.parquet", models_dir, rows)
            logger.info(
                "%s: %s rows in %.1fs, %.0f rows/s, peak RSS %.0f MB",
                engine, f"{rows:,}", run.seconds, run.rows_per_s, run.peak_rss_mb,
            )  # fmt: skip
            runs[engine] = asdict(run)
        return {"rows": rows, "input": "Parquet, one file", "engines": runs}


def render(result: dict[str, Any]) -> str:
    """The Markdown table of a :func:`measure` result."""
    lines = [
        f"Batch scoring, {result['rows']:,} rows ({result['input']}), each engine a "
        "`churnstream predict` process timed start to exit:",
        "",
        "| engine | wall time | rows/s | peak RSS (sum over the process tree) |",
        "|---|---|---|---|",
    ]
    for run in result["engines"].values():
        lines.append(
            f"| `{run['command']}` | {run['seconds']:.1f} s | **{run['rows_per_s']:,.0f}** | "
            f"{run['peak_rss_mb']:,.0f} MB |"
        )
    return "\n".join(lines)
