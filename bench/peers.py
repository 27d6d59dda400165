"""Honest peers: churnstream against the other ways to do its job, on the same events.

One input topic is filled once (the throughput bench's events); then, one after another,
each contender reads all of it with a consumer group of its own into output topics of its own:

- churnstream: `churnstream consume --mode batch --workers 1`, the throughput bench's command;
  and the same on the native Kafka client (``consumer.client=native``) when the run's own
  client is confluent-kafka's (``python -m bench --client native`` runs every churnstream
  row on the native client instead);
- the plain batched peer, ``bench/peer_batched.py``: what an afternoon's work gives;
- the Python copy ceiling, ``bench/ceiling.py``'s loop: no decoding, no model;
- the native copy loop, ``bench/native_copy`` (Rust, the rdkafka crate): the same loop with
  the same client settings and no Python, built on demand with cargo: the I/O ceiling of a
  native consume-score-produce loop; run twice, stop-and-wait (the Python copy loop's order)
  and with two batches in flight (each still committed after its own acknowledgements);
- the native ceiling: Debian's kcat, ``kcat -C`` piped into ``kcat -P`` (keys and values;
  ``kcat -P`` cannot carry per-message headers, and neither commits offsets), once with
  kcat's default codec (none) and once writing gzip, the codec churnstream's outputs use.

**Rates** come from the broker's clock: the output topics use ``LogAppendTime``, so every
output record carries the time the broker appended it, the same clock for every contender.
Sustained msgs/s = output records after the first append millisecond / (last append - first
append), the throughput bench's definition.

**CPU and memory**: each contender is a process of its own (two for kcat), started from here.
Every 25 ms the bench reads its CPU time (utime + stime of all its threads, /proc/PID/stat)
and its memory high-water mark (VmHWM, /proc/PID/status); on exit, its rusage from
``os.wait4``. CPU per message is reported two ways: *steady*, the CPU time between the first
and the last output record's append time (interpolated between samples) over the records
counted in the sustained rate; and *whole process*, the rusage's user + system time over all
events, start-up (imports, model load, group join) and the final idle wait included.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import env, throughput

logger = logging.getLogger("bench")

SAMPLE_S = 0.025
#: Every Python contender stops after this long without input, as the scorer's batch mode does.
IDLE_STOP_S = throughput.IDLE_TIMEOUT_MS / 1000
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: Appends within this of the first one count as the first batch (outside the sustained rate).
FIRST_APPEND_S = 0.0005

LABELS = {
    "kcat": "native ceiling: `kcat -C` piped into `kcat -P` (keys and values)",
    "kcat_gzip": "the same, writing gzip as the contract asks, at churnstream's level "
    "(`kcat -P -z gzip -X compression.level=` its `producer.gzip_level`)",
    "churnstream": "churnstream `consume --mode batch`, 1 worker",
    "churnstream_native": "the same on the native Kafka client (`consumer.client=native`)",
    "batched": "plain batched peer (`bench/peer_batched.py`)",
    "python_copy": "Python copy ceiling (`bench/ceiling.py`'s loop, no scoring)",
    "native_copy": "native copy loop, Rust rdkafka (`bench/native_copy`): the scorer's I/O "
    "without scoring",
    "native_copy_pipelined": "the same, two batches in flight (`--depth 2`)",
}
#: The setting that puts the scorer on the native Kafka client (churnstream.kafka.native).
CLIENT_ENV = "CHURNSTREAM_CONSUMER__CLIENT"
#: The native copy loop's runs: row name and its extra arguments.
NATIVE_COPY_RUNS = (("native_copy", []), ("native_copy_pipelined", ["--depth", "2"]))
NATIVE_COPY = env.REPO / "bench" / "native_copy"
NATIVE_COPY_BIN = NATIVE_COPY / "target" / "release" / "native-copy"
#: Where rustup puts cargo, for shells whose PATH does not have it.
RUSTUP_CARGO = Path.home() / ".cargo" / "bin" / "cargo"


@dataclass
class Contender:
    name: str
    command: str
    events: int
    missing: str | None = None
    output_records: int = 0
    sustained_msgs_per_s: float = 0.0
    #: Seconds between the first and the last output record's append time.
    span_s: float = 0.0
    #: From start to exit, and the idle wait before exit that is part of it.
    wall_s: float = 0.0
    idle_s: float = 0.0
    cpu_s: float = 0.0
    cpu_us_per_msg: float = 0.0
    steady_cpu_us_per_msg: float | None = None
    #: Of the scoring process; for kcat, both processes together.
    peak_rss_mb: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    committed: bool | None = None
    check: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_codes: list[int]
    times: np.ndarray
    cpus: np.ndarray


def measure(
    bootstrap: str,
    rows: list[dict[str, Any]],
    *,
    events: int,
    partitions: int,
    models_dir: Path,
) -> dict[str, Any]:
    """Fill one topic, run every contender on it; a JSON-ready dict of the results."""
    # Built before anything is timed: a cold build takes minutes of both cores.
    binary, missing = _build_native_copy()
    raw, predictions, deadletter = env.create_topics(bootstrap, partitions, log_append_time=True)
    fill_s = env.fill(bootstrap, raw, events, rows)
    logger.info("peers: filled %s with %d events in %.1fs", raw, events, fill_s)
    source = env.read_all(bootstrap, raw, expect=events)
    with_headers, without_headers = _digests(source), _digests(source, headers=False)
    del source
    out: list[Contender] = []

    group = _group()
    command = throughput.scorer_command(
        bootstrap, (raw, predictions, deadletter), group, models_dir, 1, []
    )
    scorer, output = _contender(
        "churnstream", [command], bootstrap, predictions, events, IDLE_STOP_S
    )
    letters = len(env.read_all(bootstrap, deadletter))
    scorer.committed = env.committed_complete(bootstrap, raw, group)
    reference = _probabilities(output)
    scorer.check = f"{scorer.output_records:,} predictions, {letters:,} dead letters"
    out.append(scorer)

    if os.environ.get(CLIENT_ENV) != "native":  # else the row above is on it
        predictions, deadletter = (_output_topic(bootstrap, partitions) for _ in range(2))
        group = _group()
        command = [
            "env", f"{CLIENT_ENV}=native",  # exec'd: the measured pid is the scorer's
            *throughput.scorer_command(
                bootstrap, (raw, predictions, deadletter), group, models_dir, 1, []
            ),
        ]  # fmt: skip
        if importlib.util.find_spec("churnstream_native_io") is None:
            on_native = Contender("churnstream_native", _shown([command]), events)
            on_native.missing = "the native Kafka client is not built (native_io/)"
        else:
            on_native, output = _contender(
                "churnstream_native", [command], bootstrap, predictions, events, IDLE_STOP_S
            )
            letters = len(env.read_all(bootstrap, deadletter))
            on_native.committed = env.committed_complete(bootstrap, raw, group)
            on_native.check = f"{letters:,} dead letters; " + _agreement(
                _probabilities(output), reference
            )
        out.append(on_native)

    topic, group = _output_topic(bootstrap, partitions), _group()
    command = [
        sys.executable, "-m", "bench.peer_batched", "--broker", bootstrap,
        "--input-topic", raw, "--output-topic", topic, "--group", group,
        "--model-path", str(models_dir), "--idle-stop-s", str(IDLE_STOP_S),
    ]  # fmt: skip
    peer, output = _contender("batched", [command], bootstrap, topic, events, IDLE_STOP_S)
    peer.committed = env.committed_complete(bootstrap, raw, group)
    peer.check = _agreement(_probabilities(output), reference)
    out.append(peer)

    topic, group = _output_topic(bootstrap, partitions), _group()
    command = [
        sys.executable, "-m", "bench.ceiling", "--broker", bootstrap,
        "--input-topic", raw, "--output-topic", topic, "--group", group,
        "--idle-stop-s", str(IDLE_STOP_S),
    ]  # fmt: skip
    copy, output = _contender("python_copy", [command], bootstrap, topic, events, IDLE_STOP_S)
    copy.committed = env.committed_complete(bootstrap, raw, group)
    copy.check = _same(_digests(output), with_headers, "keys, values and headers")
    out.append(copy)

    for name, extra in NATIVE_COPY_RUNS:
        topic, group = _output_topic(bootstrap, partitions), _group()
        command = [
            str(binary or NATIVE_COPY_BIN), "--broker", bootstrap, "--input-topic", raw,
            "--output-topic", topic, "--group", group, "--idle-stop-s", str(IDLE_STOP_S), *extra,
        ]  # fmt: skip
        if binary is None:
            native_copy = Contender(name, _shown([command]), events, missing=missing)
        else:
            native_copy, output = _contender(name, [command], bootstrap, topic, events, IDLE_STOP_S)
            native_copy.committed = env.committed_complete(bootstrap, raw, group)
            native_copy.check = _same(_digests(output), with_headers, "keys, values and headers")
        out.append(native_copy)

    kcat = shutil.which("kcat")
    # One line per message, key TAB value: the events are single-line JSON (orjson escapes
    # control characters) and the keys are customer IDs, so the framing survives the pipe;
    # the check below compares every key and value with the input's. The second run writes
    # gzip, the codec the contract asks of churnstream's outputs (kcat's default is none).
    gzip = ["-z", "gzip", "-X", f"compression.level={env.effective_settings().producer.gzip_level}"]
    for name, codec in (("kcat", []), ("kcat_gzip", gzip)):
        topic = _output_topic(bootstrap, partitions)
        commands = [
            [kcat or "kcat", "-C", "-b", bootstrap, "-t", raw, "-o", "beginning", "-e", "-q",
             "-f", r"%k\t%s\n"],
            [kcat or "kcat", "-P", "-b", bootstrap, "-t", topic, "-K", r"\t", *codec],
        ]  # fmt: skip
        if kcat is None:
            native = Contender(name, _shown(commands), events, missing="kcat missing")
        else:
            native, output = _contender(name, commands, bootstrap, topic, events, 0.0)
            native.check = _same(
                _digests(output, headers=False), without_headers, "keys and values"
            )
            native.check += (
                f"; the pipe's wall time {native.wall_s:.2f} s, start-up included "
                f"({events / native.wall_s:,.0f} msgs/s)"
            )
        out.insert(0 if name == "kcat" else 1, native)
    return {
        "events": events,
        "partitions": partitions,
        "fill_s": fill_s,
        "sample_s": SAMPLE_S,
        "contenders": [c.as_dict() for c in out],
    }


def _build_native_copy() -> tuple[Path | None, str]:
    """Build the native copy loop (a no-op when it is up to date): (its binary, "") or
    (None, why it cannot be measured)."""
    cargo = shutil.which("cargo") or (str(RUSTUP_CARGO) if RUSTUP_CARGO.exists() else None)
    if cargo is None:
        return None, "cargo missing"
    started = time.perf_counter()
    built = subprocess.run(
        [cargo, "build", "--release", "--locked", "--quiet"],
        cwd=NATIVE_COPY,
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0 or not NATIVE_COPY_BIN.exists():
        errors = [line for line in built.stderr.splitlines() if line.startswith("error")]
        reason = (errors or built.stderr.strip().splitlines() or ["no output"])[0]
        logger.warning("peers: the native copy loop did not build:\n%s", built.stderr)
        return None, f"cargo build failed ({reason.strip()})"
    logger.info("peers: native copy loop built in %.1fs", time.perf_counter() - started)
    return NATIVE_COPY_BIN, ""


def _group() -> str:
    return f"bench-peers-{uuid.uuid4().hex[:8]}"


def _output_topic(bootstrap: str, partitions: int) -> str:
    return env.create_topics(bootstrap, partitions, log_append_time=True)[1]


def _shown(commands: list[list[str]]) -> str:
    return " | ".join(shlex.join(c) for c in commands)


def _contender(
    name: str,
    commands: list[list[str]],
    bootstrap: str,
    topic: str,
    events: int,
    idle_s: float,
) -> tuple[Contender, list[Any]]:
    """Run ``commands`` (a pipeline when there are two) to the end and time their output;
    the result and the output records."""
    procs: list[subprocess.Popen[bytes]] = []
    for i, command in enumerate(commands):
        upstream = procs[-1].stdout if procs else None
        is_last = i == len(commands) - 1
        procs.append(
            subprocess.Popen(
                command,
                cwd=env.REPO,
                stdin=upstream,
                stdout=subprocess.DEVNULL if is_last else subprocess.PIPE,
            )
        )
        if upstream is not None:
            upstream.close()  # the reader alone holds the pipe, so it sees the writer's EOF
    run = _watch(procs)
    output = env.read_all(bootstrap, topic, expect=events)
    stamps = np.array([m.timestamp()[1] for m in output], dtype=np.float64) / 1000
    result = Contender(
        name=name,
        command=_shown(commands),
        events=events,
        output_records=len(output),
        wall_s=run.wall_s,
        idle_s=idle_s,
        cpu_s=run.cpu_s,
        cpu_us_per_msg=run.cpu_s / events * 1e6 if events else 0.0,
        peak_rss_mb=run.peak_rss_mb,
        exit_codes=run.exit_codes,
    )
    if len(stamps) > 1:
        first, last = float(stamps.min()), float(stamps.max())
        counted = int((stamps > first + FIRST_APPEND_S).sum())
        result.span_s = last - first
        if result.span_s > 0 and counted:
            result.sustained_msgs_per_s = counted / result.span_s
            used = np.interp([first, last], run.times, run.cpus)
            result.steady_cpu_us_per_msg = float(used[1] - used[0]) / counted * 1e6
    logger.info(
        "peers: %s: %.0f msgs/s sustained, %s us CPU/msg steady (%.1f whole process), "
        "peak RSS %.0f MB, %d of %d records, exit %s",
        name, result.sustained_msgs_per_s, _us(result.steady_cpu_us_per_msg),
        result.cpu_us_per_msg, result.peak_rss_mb, len(output), events, run.exit_codes,
    )  # fmt: skip
    return result, output


def _watch(procs: list[subprocess.Popen[bytes]]) -> _Run:
    """Sample CPU time and VmHWM of ``procs`` until they all exit; reap them with wait4."""
    started = time.perf_counter()
    live = {p.pid: p for p in procs}
    peaks: dict[int, float] = {}
    sampled: dict[int, float] = {}
    finished_cpu = 0.0
    times: list[float] = []
    cpus: list[float] = []
    while live:
        for pid, proc in list(live.items()):
            cpu, hwm = _cpu_s(pid), _high_water_mb(pid)
            if cpu is not None:
                sampled[pid] = cpu
            if hwm is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), hwm)
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                proc.returncode = os.waitstatus_to_exitcode(status)
                finished_cpu += usage.ru_utime + usage.ru_stime
                sampled.pop(pid, None)
                del live[pid]
        times.append(time.time())
        cpus.append(finished_cpu + sum(sampled.values()))
        if live:
            time.sleep(SAMPLE_S)
    return _Run(
        wall_s=time.perf_counter() - started,
        cpu_s=finished_cpu,
        peak_rss_mb=sum(peaks.values()),
        exit_codes=[p.returncode for p in procs],
        times=np.array(times),
        cpus=np.maximum.accumulate(np.array(cpus)),
    )


def _cpu_s(pid: int) -> float | None:
    """utime + stime of every thread of ``pid``, in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it do not.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def _high_water_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _digests(messages: list[Any], *, headers: bool = True) -> list[int]:
    """One hash per message of (key, value[, headers]), sorted: multisets to compare."""
    return sorted(
        hash((m.key(), m.value(), tuple(m.headers() or ()) if headers else ())) for m in messages
    )


def _same(copied: list[int], source: list[int], what: str) -> str:
    """Whether a copy holds the input's messages, each exactly once (in any order)."""
    if copied == source:
        return f"{len(copied):,} records, {what} identical to the input's"
    return f"{len(copied):,} records of {len(source):,}: **{what} differ from the input's**"


def _probabilities(messages: list[Any]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for m in messages:
        body = orjson.loads(m.value())
        out[body["customerID"], body["event_ts"]] = float(body["churn_probability"])
    return out


def _agreement(peer: dict[tuple[str, str], float], reference: dict[tuple[str, str], float]) -> str:
    """How the peer's probabilities compare with churnstream's for the same events."""
    common = peer.keys() & reference.keys()
    if not common:
        return f"{len(peer):,} predictions, none matched churnstream's"
    worst = max(abs(peer[k] - reference[k]) for k in common)
    same = "identical to" if worst == 0 else f"at most {worst:.1e} from"
    return (
        f"{len(peer):,} predictions; for the {len(common):,} events both scored, "
        f"probabilities {same} churnstream's"
    )


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def get(results: dict[str, Any], name: str) -> dict[str, Any]:
    """The contender called ``name`` in a run's results ({} if it was not measured)."""
    for contender in results.get("peers", {}).get("contenders", []):
        if contender["name"] == name and not contender.get("missing"):
            return dict(contender)
    return {}


def ratio(results: dict[str, Any], name: str) -> float | None:
    """churnstream's sustained rate over ``name``'s, both from the peers run."""
    ours = get(results, "churnstream").get("sustained_msgs_per_s")
    theirs = get(results, name).get("sustained_msgs_per_s")
    return ours / theirs if ours and theirs else None


def render(results: dict[str, Any]) -> str:
    """The peers table (Markdown), with the per-message baseline of the same run if any."""
    peers = results["peers"]
    lines = [
        f"| peers: the same {peers['events']:,} events, {peers['partitions']} partitions, one "
        "after another | sustained msgs/s | churnstream / peer | CPU us/msg, steady | "
        "CPU us/msg, whole process | peak RSS | output |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in peers["contenders"]:
        label = LABELS.get(c["name"], c["name"])
        if c.get("missing"):
            lines.append(f"| {label} | not measured: {c['missing']} | | | | | |")
            continue
        versus = ratio(results, c["name"])
        shown = "" if c["name"] == "churnstream" else f"{versus:.2f}x" if versus else "n/a"
        rss = f"{c['peak_rss_mb']:.0f} MB" + (" (both)" if c["name"].startswith("kcat") else "")
        committed = "" if c["committed"] is None else f"; all committed: {c['committed']}"
        lines.append(
            f"| {label} | **{c['sustained_msgs_per_s']:,.0f}** | {shown} | "
            f"{_us(c['steady_cpu_us_per_msg'])} | {c['cpu_us_per_msg']:.1f} | {rss} | "
            f"{c['check']}{committed} |"
        )
    base = results.get("baseline")
    if base:
        ours = get(results, "churnstream").get("sustained_msgs_per_s")
        times = f"{ours / base['msgs_per_s']:,.0f}x" if ours and base["msgs_per_s"] else "n/a"
        lines.append(
            f"| per-message baseline (`bench/baseline.py`, kept for history: "
            f"{base['scored']:,} events of its own topic, in the bench's process) | "
            f"{base['msgs_per_s']:,.1f} | {times} | not measured | not measured | "
            "not measured | |"
        )
    return "\n".join(lines)
