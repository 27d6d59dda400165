"""Soak: one streaming scorer at a steady rate for many minutes; does anything creep?

``python -m bench soak --minutes 30 --rate 2000`` (``make soak``; ``make soak SOAK_MINUTES=3``
for a CI-sized run) starts an embedded Apache Kafka (``--bootstrap`` uses a running cluster),
fresh topics and ``churnstream consume --mode streaming`` as a subprocess, with a short
``--summary-interval`` so that its windows roll over (and their reports are written) all
along. A producer thread offers ``--rate`` events/s; a reader thread follows the
predictions topic. Every ``--sample-every`` seconds it records the scorer's RSS
(``/proc/PID/status`` VmRSS), open fds (``/proc/PID/fd``), threads (``Threads``), the p50/p99
of ``processed_ts - event_ts`` of the predictions read in that interval, the scorer's own
lag gauge (``/metrics``) and the backlog (events acknowledged minus events predicted).

It reports, against the targets:

- RSS growth from the end of the warm-up (the first 5 minutes, or a third of a shorter run)
  to the end of the run: at most 10%;
- p99 after the warm-up versus p99 during it: at most 2x;
- exactly one prediction per event (counts of missing and duplicated events);
- fds and threads after the warm-up: no creep. The count at the end equals the count at the
  end of the warm-up, and no two samples in a row are above it: a report renderer's child
  holds a pipe for a moment at each rollover, which a sample can catch once; a leak stays.

Results go to ``bench/results/soak_<UTC stamp>.json``, with a short table on stdout. Exit
code 1 when a target is missed. Ctrl-C (SIGINT) stops the feeder and the scorer within
seconds and reports the samples taken so far (marked interrupted), then exits 130. The
machine's load average before and after is recorded: on a shared machine the latency
figures say as much about the neighbours as the scorer.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench import env
from churnstream.events import encode_event, stamp
from churnstream.observability import names
from churnstream.observability.scrape import parse_metrics
from churnstream.schemas import format_ts

logger = logging.getLogger("bench")

RESULTS = env.REPO / "bench" / "results"
SOURCE_HEADER = "churnstream.source"  # on every prediction: "topic:partition:offset"
SEND_TICK_S = 0.005
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
#: After Ctrl-C: a terminal sends SIGINT to the scorer too, and it drains and exits by
#: itself; past this grace it gets SIGTERM (then it aborts its drain), and past
#: INTERRUPTED_STOP_S more, SIGKILL. Then the feeder's last flush.
INTERRUPTED_GRACE_S = 3.0
INTERRUPTED_STOP_S = 10.0
INTERRUPTED_FLUSH_S = 5.0
EXIT_INTERRUPTED = 130
HTTP_TIMEOUT_S = 5.0
MAX_WARMUP_MIN = 5.0

RSS_GROWTH_MAX = 0.10
P99_RATIO_MAX = 2.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds per sample")
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        help=f"baseline period (default: {MAX_WARMUP_MIN:g} min, or a third of a shorter run)",
    )
    parser.add_argument(
        "--summary-interval", type=float, default=10.0, help="the scorer's window, seconds"
    )
    parser.add_argument(
        "--no-reports",
        action="store_true",
        help="windows roll over without writing report files (and their charts)",
    )
    parser.add_argument("--partitions", type=int, default=3, help="input topic partitions")
    parser.add_argument("--bootstrap", help="use this cluster instead of an embedded broker")
    parser.add_argument("--models-dir", type=Path, default=env.REPO / "models")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.warmup_minutes is None:
        args.warmup_minutes = min(MAX_WARMUP_MIN, args.minutes / 3)
    if not 0 < args.warmup_minutes < args.minutes:
        parser.error("--warmup-minutes must be between 0 and --minutes")
    return args


# -- load and observation -------------------------------------------------------------------
class Feeder(threading.Thread):
    """Offers ``rate`` events/s (a late wake-up sends the backlog) until stopped."""

    def __init__(self, bootstrap: str, topic: str, rows: list[dict[str, Any]], rate: float):
        super().__init__(name="soak-feeder", daemon=True)
        settings = env.effective_settings()
        conf = settings.kafka.producer_config(settings.producer)
        conf["bootstrap.servers"] = bootstrap
        conf.pop("logger", None)
        self.producer = Producer(conf)
        self.topic, self.rows, self.rate = topic, rows, rate
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.acked_by_partition: dict[int, int] = {}
        self.stop_event = threading.Event()
        #: How long the last flush may wait for acknowledgements (shortened on Ctrl-C).
        self.flush_timeout_s = 60.0

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            return
        self.acked += 1
        partition = int(msg.partition())
        self.acked_by_partition[partition] = self.acked_by_partition.get(partition, 0) + 1

    def run(self) -> None:
        started = time.perf_counter()
        while not self.stop_event.is_set():
            due = int((time.perf_counter() - started) * self.rate)
            while self.sent < due:
                record = self.rows[self.sent % len(self.rows)]
                key, value = encode_event(stamp(record, format_ts(datetime.now(UTC))))
                try:
                    self.producer.produce(
                        self.topic, value=value, key=key, on_delivery=self._on_delivery
                    )
                except BufferError:
                    self.producer.poll(0.01)
                    continue
                self.sent += 1
            self.producer.poll(0)
            time.sleep(SEND_TICK_S)
        self.producer.flush(self.flush_timeout_s)


class PredictionReader(threading.Thread):
    """Follows the predictions topic: prediction counts per input offset, e2e latencies."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(name="soak-reader", daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"soak-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.counts: dict[int, np.ndarray] = {}
        self.read = 0
        self._latencies: list[float] = []
        self._lock = threading.Lock()
        self.stop_event = threading.Event()

    def take_latencies(self) -> np.ndarray:
        """The e2e latencies (ms) read since the last call."""
        with self._lock:
            taken, self._latencies = self._latencies, []
        return np.asarray(taken, dtype=np.float64)

    def _count(self, partition: int, offset: int) -> None:
        counts = self.counts.get(partition)
        if counts is None or offset >= counts.size:
            grown = np.zeros(max(1024, (offset + 1) * 2), dtype=np.uint16)
            if counts is not None:
                grown[: counts.size] = counts
            counts = self.counts[partition] = grown
        counts[offset] += 1

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                latencies = []
                for msg in self.consumer.consume(5000, 0.5):
                    if msg.error() is not None:
                        continue
                    source = dict(msg.headers() or []).get(SOURCE_HEADER)
                    if source is not None:
                        _topic, partition, offset = source.decode().rsplit(":", 2)
                        self._count(int(partition), int(offset))
                    body = orjson.loads(msg.value())
                    event = datetime.fromisoformat(body["event_ts"])
                    processed = datetime.fromisoformat(body["processed_ts"])
                    latencies.append((processed - event).total_seconds() * 1000)
                    self.read += 1
                with self._lock:
                    self._latencies.extend(latencies)
        finally:
            self.consumer.close()

    def tally(self, acked_by_partition: dict[int, int]) -> tuple[int, int, int]:
        """(events predicted at least once, missing, duplicate predictions)."""
        predicted = missing = duplicates = 0
        for partition, acked in acked_by_partition.items():
            counts = self.counts.get(partition, np.zeros(0, dtype=np.uint16))
            seen = counts[:acked]
            predicted += int(np.count_nonzero(seen))
            missing += acked - int(np.count_nonzero(seen))
            duplicates += int(np.clip(counts.astype(np.int64) - 1, 0, None).sum())
        return predicted, missing, duplicates


def proc_status(pid: int) -> tuple[float, int, int]:
    """(RSS in MiB, open fds, threads) of ``pid`` from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    rss_mb = int(fields["VmRSS"][0]) / 1024
    return rss_mb, len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"][0])


def scrape_lag(http: httpx.Client, url: str) -> float | None:
    try:
        text = http.get(url).text
    except httpx.HTTPError:
        return None
    lags = parse_metrics(text).labelled(names.SCORER_LAG)
    return sum(value for _, value in lags) if lags else None  # None until partitions assigned


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    threads: int
    sent: int
    predictions_read: int
    backlog: int
    lag: float | None
    interval_predictions: int
    p50_ms: float | None
    p99_ms: float | None


# -- the run --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s bench: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per scrape otherwise
    args = parse(argv)
    command = "python -m bench soak " + shlex.join(sys.argv[2:] if argv is None else argv)
    machine = env.Machine.now()
    logger.info("load average before: %s on %d cpus", machine.load_before, machine.cpus)
    scorer_model = env.model(args.models_dir)
    rows = env.records()
    started_at = datetime.now(UTC)
    try:
        with (
            env.embedded_broker(args.bootstrap) as bootstrap,
            tempfile.TemporaryDirectory(prefix="churnstream-soak-") as work,
        ):
            outcome = run(args, bootstrap, rows, Path(work))
    except KeyboardInterrupt:  # before the scorer started: nothing to report
        print("interrupted before the soak began: nothing measured", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    samples, tally, warmup_e2e, later_e2e, exit_code = outcome[:5]
    interrupted = outcome.interrupted
    if not samples:
        print("interrupted before the first sample: nothing measured", file=sys.stderr)
        return EXIT_INTERRUPTED
    results = summarise(args, samples, tally, warmup_e2e, later_e2e, exit_code)
    if interrupted:
        results["targets"].append(
            _target("the run ran its course", f"{args.minutes:g} min",
                    f"interrupted at t={samples[-1].t_s:.0f} s", False)
        )  # fmt: skip
    results = {
        "command": command.strip(),
        "started": started_at.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "machine": machine.__dict__,
        "load_after": os.getloadavg(),
        "model": {"version": scorer_model.version},
        "settings": {
            "minutes": args.minutes,
            "rate_per_s": args.rate,
            "sample_every_s": args.sample_every,
            "warmup_minutes": args.warmup_minutes,
            "summary_interval_s": args.summary_interval,
            "reports": not args.no_reports,
            "partitions": args.partitions,
        },
        **results,
        "samples": [asdict(s) for s in samples],
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"soak_{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"results: {path}")
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if all(t["met"] for t in results["targets"]) else 1


class Outcome(NamedTuple):
    samples: list[Sample]
    tally: tuple[int, int, int, int]
    warmup_e2e: np.ndarray
    later_e2e: np.ndarray
    scorer_exit_code: int
    interrupted: bool


def scorer_command(
    args: argparse.Namespace, bootstrap: str, topics: tuple[str, str, str], metrics_port: int,
    work: Path,
) -> list[str]:  # fmt: skip
    raw, predictions, deadletter = topics
    command = [
        sys.executable, "-m", "churnstream", "--log-level", "WARNING",
        "consume", "--mode", "streaming", "--broker", bootstrap,
        "--input-topic", raw, "--output-topic", predictions, "--deadletter-topic", deadletter,
        "--consumer-group", f"soak-{uuid.uuid4().hex[:8]}", "--model-path", str(args.models_dir),
        "--summary-interval", str(args.summary_interval), "--reports-dir", str(work / "reports"),
        "--metrics-port", str(metrics_port), "--reload-interval", "0",
    ]  # fmt: skip
    if args.no_reports:
        command.append("--no-reports")
    return command


def run(
    args: argparse.Namespace, bootstrap: str, rows: list[dict[str, Any]], work: Path
) -> Outcome:
    """The soak itself. Ctrl-C ends it early: what was sampled so far is returned, with
    ``interrupted`` set, after the feeder and the scorer are stopped. SIGINT is ignored from
    the clean-up on (the caller restores it), so a second Ctrl-C cannot orphan the scorer
    or the broker."""
    topics = env.create_topics(bootstrap, args.partitions)
    metrics_port = _free_port()
    command = scorer_command(args, bootstrap, topics, metrics_port, work)
    raw, predictions = topics[0], topics[1]
    log = (work / "scorer.out").open("wb")
    scorer = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    http = httpx.Client(timeout=HTTP_TIMEOUT_S)
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    feeder = Feeder(bootstrap, raw, rows, args.rate)
    reader = PredictionReader(bootstrap, predictions, args.partitions)
    samples: list[Sample] = []
    warmup: list[np.ndarray] = []
    later: list[np.ndarray] = []
    interrupted = False
    try:
        _wait_ready(http, metrics_url, scorer)
        reader.start()
        feeder.start()
        started = time.monotonic()
        warmup_s = args.warmup_minutes * 60
        end = started + args.minutes * 60
        next_sample = started + args.sample_every
        logger.info(
            "soaking: %.0f events/s for %.1f min (warm-up %.1f min), scorer pid %d",
            args.rate, args.minutes, args.warmup_minutes, scorer.pid,
        )  # fmt: skip
        while next_sample <= end + 1e-6:
            time.sleep(max(0.0, next_sample - time.monotonic()))
            if scorer.poll() is not None:
                raise RuntimeError(f"the scorer exited with {scorer.returncode} mid-run")
            t = time.monotonic() - started
            latencies = reader.take_latencies()
            (warmup if t <= warmup_s + 1e-6 else later).append(latencies)
            rss_mb, fds, threads = proc_status(scorer.pid)
            sample = Sample(
                t_s=round(t, 1),
                rss_mb=round(rss_mb, 1),
                fds=fds,
                threads=threads,
                sent=feeder.sent,
                predictions_read=reader.read,
                backlog=feeder.acked - reader.read,
                lag=scrape_lag(http, f"{metrics_url}/metrics"),
                interval_predictions=int(latencies.size),
                p50_ms=_pct(latencies, 50),
                p99_ms=_pct(latencies, 99),
            )
            samples.append(sample)
            logger.info(
                "t=%5.0fs rss %.1f MiB, fds %d, threads %d, p99 %s ms, lag %s, backlog %d",
                sample.t_s, sample.rss_mb, sample.fds, sample.threads,
                "n/a" if sample.p99_ms is None else f"{sample.p99_ms:.1f}",
                "n/a" if sample.lag is None else f"{sample.lag:.0f}", sample.backlog,
            )  # fmt: skip
            next_sample += args.sample_every
        feeder.stop_event.set()
        feeder.join(90)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while reader.read < feeder.acked and time.monotonic() < deadline:
            time.sleep(1.0)
        time.sleep(2.0)  # late duplicates, if any, are counted too
        later.append(reader.take_latencies())
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: stopping the feeder and the scorer")
    finally:
        # Every wait below is bounded; a second Ctrl-C must not leave the scorer running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        feeder.stop_event.set()
        reader.stop_event.set()
        if interrupted:
            feeder.flush_timeout_s = INTERRUPTED_FLUSH_S
            with contextlib.suppress(subprocess.TimeoutExpired):
                scorer.wait(INTERRUPTED_GRACE_S)
        if scorer.poll() is None:
            scorer.send_signal(signal.SIGTERM)
        try:
            exit_code = scorer.wait(INTERRUPTED_STOP_S if interrupted else STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            scorer.kill()
            exit_code = scorer.wait()
        http.close()
        log.close()
        if feeder.is_alive():
            feeder.join(INTERRUPTED_FLUSH_S + 5)
        reader.join(10)
    predicted, missing, duplicates = reader.tally(feeder.acked_by_partition)
    if exit_code != 0:
        tail = (work / "scorer.out").read_text(errors="replace")[-2000:]
        logger.warning("the scorer exited with %d; its output ends:\n%s", exit_code, tail)
    return Outcome(
        samples,
        (feeder.acked + feeder.failed, predicted, missing, duplicates),
        _concat(warmup),
        _concat(later),
        exit_code,
        interrupted,
    )


def summarise(
    args: argparse.Namespace,
    samples: list[Sample],
    tally: tuple[int, int, int, int],
    warmup_e2e: np.ndarray,
    later_e2e: np.ndarray,
    exit_code: int,
) -> dict[str, Any]:
    sent, predicted, missing, duplicates = tally
    warmup_s = args.warmup_minutes * 60
    after = [s for s in samples if s.t_s > warmup_s]
    base = next((s for s in reversed(samples) if s.t_s <= warmup_s), samples[0])
    last = samples[-1]
    rss_growth = (last.rss_mb - base.rss_mb) / base.rss_mb
    rss_peak_growth = (max(s.rss_mb for s in [base, *after]) - base.rss_mb) / base.rss_mb
    p99_warmup = _pct(warmup_e2e, 99)
    p99_later = _pct(later_e2e, 99)
    p99_ratio = p99_later / p99_warmup if p99_warmup and p99_later is not None else None
    fds = sorted({s.fds for s in [base, *after]})
    threads = sorted({s.threads for s in [base, *after]})
    fds_steady = _no_creep([s.fds for s in [base, *after]])
    threads_steady = _no_creep([s.threads for s in [base, *after]])
    summary = {
        "events_sent": sent,
        "events_predicted": predicted,
        "missing": missing,
        "duplicates": duplicates,
        "scorer_exit_code": exit_code,
        "baseline_t_s": base.t_s,
        "rss_mb": {
            "start": samples[0].rss_mb,
            "baseline": base.rss_mb,
            "end": last.rss_mb,
            "peak": max(s.rss_mb for s in samples),
        },  # fmt: skip
        "rss_growth": rss_growth,
        "rss_peak_growth_after_warmup": rss_peak_growth,
        "e2e_ms": {"warmup": _pcts(warmup_e2e), "after_warmup": _pcts(later_e2e)},
        "worst_interval_p99_ms": max(
            (s.p99_ms for s in after if s.p99_ms is not None), default=None
        ),  # fmt: skip
        "p99_ratio": p99_ratio,
        "fds_after_warmup": fds,
        "threads_after_warmup": threads,
        "lag_max_after_warmup": max((s.lag for s in after if s.lag is not None), default=None),
        "backlog_max_after_warmup": max((s.backlog for s in after), default=None),
    }
    targets = [
        _target("RSS growth after the warm-up", f"<= {RSS_GROWTH_MAX:.0%}",
                f"{rss_growth:+.1%}", rss_growth <= RSS_GROWTH_MAX),
        _target("p99 after / p99 during the warm-up", f"<= {P99_RATIO_MAX:g}x",
                "n/a" if p99_ratio is None else f"{p99_ratio:.2f}x",
                p99_ratio is not None and p99_ratio <= P99_RATIO_MAX),
        _target("one prediction per event", "0 missing, 0 duplicated",
                f"{sent:,} sent, {missing:,} missing, {duplicates:,} duplicated",
                sent > 0 and missing == 0 and duplicates == 0),
        _target("open fds after the warm-up", "no creep", _counts(fds, base.fds, last.fds),
                fds_steady),
        _target("threads after the warm-up", "no creep",
                _counts(threads, base.threads, last.threads), threads_steady),
        _target("scorer stops cleanly", "exit 0", str(exit_code), exit_code == 0),
    ]  # fmt: skip
    return {"summary": summary, "targets": targets}


def _no_creep(counts: list[int]) -> bool:
    """The last count is the first one, and no two counts in a row are above it."""
    first = counts[0]
    above = [c > first for c in counts]
    return counts[-1] == first and not any(a and b for a, b in itertools.pairwise(above))


def _counts(seen: list[int], start: int, end: int) -> str:
    return f"{start} after the warm-up, {end} at the end (seen: {' / '.join(map(str, seen))})"


def render(results: dict[str, Any]) -> str:
    s, machine, cfg = results["summary"], results["machine"], results["settings"]
    e2e = s["e2e_ms"]
    lines = [
        f"Soak `{results['command']}` at {results['started']} (commit {machine['git_commit']}, "
        f"{machine['cpus']} cpus, load average before {_load(machine['load_before'])}, "
        f"after {_load(results['load_after'])}): {cfg['rate_per_s']:,.0f} events/s for "
        f"{cfg['minutes']:g} min, warm-up {cfg['warmup_minutes']:.3g} min, windows of "
        f"{cfg['summary_interval_s']:g} s{'' if cfg.get('reports', True) else ', no reports'}.",
        "",
        "| t (s) | RSS (MiB) | fds | threads | p50 (ms) | p99 (ms) | lag | backlog |",
        "|---|---|---|---|---|---|---|---|",
    ]
    every = max(1, len(results["samples"]) // 12)  # about a dozen rows, and the last one
    shown = results["samples"][::every]
    if shown[-1] is not results["samples"][-1]:
        shown.append(results["samples"][-1])
    for row in shown:
        lines.append(
            f"| {row['t_s']:.0f} | {row['rss_mb']:.1f} | {row['fds']} | {row['threads']} | "
            f"{_num(row['p50_ms'])} | {_num(row['p99_ms'])} | {_num(row['lag'], 0)} | "
            f"{row['backlog']} |"
        )
    lines += [
        "",
        f"e2e (processed_ts - event_ts): warm-up p50 {_num(e2e['warmup'].get('p50'))} ms, "
        f"p99 {_num(e2e['warmup'].get('p99'))} ms; after it p50 "
        f"{_num(e2e['after_warmup'].get('p50'))} ms, p99 {_num(e2e['after_warmup'].get('p99'))}"
        f" ms (worst {results['settings']['sample_every_s']:g} s interval "
        f"{_num(s['worst_interval_p99_ms'])} ms). RSS {s['rss_mb']['start']:.1f} MiB at start, "
        f"{s['rss_mb']['baseline']:.1f} at t={s['baseline_t_s']:.0f} s, "
        f"{s['rss_mb']['end']:.1f} at the end.",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(
            f"| {t['target']} | {t['goal']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines)


# -- helpers --------------------------------------------------------------------------------
def _wait_ready(http: httpx.Client, url: str, scorer: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if scorer.poll() is not None:
            raise RuntimeError(f"the scorer exited with {scorer.returncode} while starting")
        try:
            if http.get(f"{url}/health/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the scorer was not ready within {READY_TIMEOUT_S:g}s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _target(name: str, goal: str, measured: str, met: bool) -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": measured, "met": bool(met)}


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values.size else None


def _pcts(values: np.ndarray) -> dict[str, float]:
    if not values.size:
        return {}
    return {
        "count": int(values.size),
        "p50": round(float(np.percentile(values, 50)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "max": round(float(values.max()), 2),
    }


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values)
