"""The plumbing, one lever at a time: the ablation table.

One input topic is filled once; then, in each round, the scorer (``churnstream consume --mode
batch``, one worker, through ``bench/ablate_scorer.py``) reads all of it once per
configuration below, each run with a consumer group and output topics of its own (the
predictions topic with ``LogAppendTime``). Rates and CPU are measured as for the peers
(``bench/peers.py``): sustained msgs/s from the broker's append times of the predictions,
and the scorer's CPU time over the same span (steady CPU per message). The configurations
run one after another within a round, so each round's ratios compare runs under about the
same load; the table shows the median over the rounds.

The levers:

- **delivery reports only on error** (``producer.delivery_reports: errors``, librdkafka's
  ``delivery.report.only.error``): no Python callback per acknowledged message; a batch is
  acknowledged when ``flush()`` leaves nothing outstanding and no failure was reported;
- **fewer Python objects per message** (``SafeProducer.produce_all``): one librdkafka call
  per message with the producer-wide delivery callback and the header list as it is, one
  ``poll(0)`` per batch, instead of ``SafeProducer.produce`` per message (a copied header
  list, a callback argument and a ``poll(0)`` per message);
- **the cost of each header**: predictions without the ``source``, ``risk_band`` or
  ``model_version`` header, or without any (bench-only, on top of both levers above);
- **compression** (``lz4`` instead of gzip), for scale: the codec is the path's largest cost;
- **pipelining** (``consumer.pipeline: true``): batch N+1 is scored while batch N is
  acknowledged and committed. Each run also records the time its loop spent waiting in
  ``flush()`` and in the synchronous commit, the most that pipelining can hide (see the
  notes under the table);
- **the native Kafka client** (``consumer.client: native``, on top of pipelining): the
  scorer's consumer and producer are librdkafka driven from Rust (``native_io/``): a batch
  comes in as one list built in Rust and goes out in one call, with no Python object or
  callback per delivery.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import statistics
import sys
import tempfile
import time
import types
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ablate_scorer, env, peers, throughput
from churnstream.events import encode_event, stamp
from churnstream.model.scorer import Scorer
from churnstream.schemas import utc_now_iso
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import RawMessage
from churnstream.streaming.options import ScoreOptions
from churnstream.streaming.publish import open_publisher

logger = logging.getLogger("bench")

#: The publish path alone, in-process: batches of this size, this many per measurement,
#: this many rounds over the configurations (interleaved).
PUBLISH_BATCH = 5000
PUBLISH_BATCHES = 2
PUBLISH_ROUNDS = 21

BEST = ["--delivery-reports", "errors", "--produce", "lean"]


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    args: tuple[str, ...]
    #: The configuration this one's ratio is taken against (its own name: the baseline).
    versus: str = "baseline"


CONFIGS = (
    Config(
        "baseline",
        "every delivery reported, `produce` per message, 3 headers",
        ("--delivery-reports", "all", "--produce", "classic"),
    ),
    Config(
        "reports_on_error",
        "delivery reports only on error",
        ("--delivery-reports", "errors", "--produce", "classic"),
    ),
    Config(
        "produce_all",
        "fewer Python objects per message (`SafeProducer.produce_all`)",
        ("--delivery-reports", "all", "--produce", "lean"),
    ),
    Config("both", "both levers above (the product's defaults)", tuple(BEST)),
    Config(
        "pipelined",
        "both + `consumer.pipeline: true` (what `auto` gives in batch mode): batch N+1 "
        "scored while N is acknowledged",
        (*BEST, "--pipeline"),
        versus="both",
    ),
    Config(
        "native_client",
        "both + pipelined + `consumer.client: native`: the scorer's consumer and producer on "
        "the native Kafka client (a batch per call into Rust)",
        (*BEST, "--pipeline", "--client", "native"),
        versus="pipelined",
    ),
    Config(
        "lz4",
        "both + `producer.compression: lz4` (opt-in, see Compression; the input stays gzip)",
        (*BEST, "--compression", "lz4"),
        versus="both",
    ),
    Config(
        "headers_selected",
        "both + a header selection keeping all 3 (reference of the header rows)",
        (*BEST, "--select-headers"),
        versus="both",
    ),
    Config(
        "no_source",
        "  without the `churnstream.source` header",
        (*BEST, "--drop-header", "source"),
        versus="headers_selected",
    ),
    Config(
        "no_risk_band",
        "  without the `churnstream.risk_band` header",
        (*BEST, "--drop-header", "risk_band"),
        versus="headers_selected",
    ),
    Config(
        "no_model_version",
        "  without the `churnstream.model_version` header",
        (*BEST, "--drop-header", "model_version"),
        versus="headers_selected",
    ),
    Config(
        "no_headers",
        "  without any header",
        (
            *BEST,
            "--drop-header",
            "source",
            "--drop-header",
            "risk_band",
            "--drop-header",
            "model_version",
        ),
        versus="headers_selected",
    ),  # fmt: skip
)
NAMES = tuple(c.name for c in CONFIGS)


def measure(
    bootstrap: str,
    rows: list[dict[str, Any]],
    *,
    events: int,
    partitions: int,
    models_dir: Path,
    scorer: Scorer,
    rounds: int,
    only: tuple[str, ...] = NAMES,
) -> dict[str, Any]:
    """Fill one topic; score it ``rounds`` times with each configuration; the results."""
    raw = env.create_topics(bootstrap, partitions)[0]
    fill_s = env.fill(bootstrap, raw, events, rows)
    logger.info("ablation: filled %s with %d events in %.1fs", raw, events, fill_s)
    configs = [c for c in CONFIGS if c.name in only]
    if importlib.util.find_spec("churnstream_native_io") is None:
        configs = [c for c in configs if "native" not in c.args]  # not built here
    # Pipelining changes the loop, not the publish path: it has no row of its own there.
    alone = publish_path(
        bootstrap, rows, scorer, [c for c in configs if "--pipeline" not in c.args], partitions
    )
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="churnstream-ablation-") as tmp:
        for round_ in range(rounds):
            for config in configs:
                timings = Path(tmp) / f"{config.name}-{round_}.json"
                run = _run(bootstrap, raw, config, events, partitions, models_dir, timings)
                run["round"] = round_
                runs.append(run)
    return {
        "events": events,
        "partitions": partitions,
        "rounds": rounds,
        "fill_s": fill_s,
        "configs": [
            {"name": c.name, "label": c.label, "args": list(c.args), "versus": c.versus}
            for c in configs
        ],
        "runs": runs,
        "publish_path": alone,
        "publish_path_setup": {
            "batch": PUBLISH_BATCH,
            "batches": PUBLISH_BATCHES,
            "rounds": PUBLISH_ROUNDS,
        },
    }


class _NoCommit:
    """The consumer a publish commits to: the publish path alone commits nothing."""

    def commit(self, **_: Any) -> None:
        return None


def publish_path(
    bootstrap: str,
    rows: list[dict[str, Any]],
    scorer: Scorer,
    configs: list[Config],
    partitions: int,
) -> dict[str, list[dict[str, float]]]:
    """Each configuration's ``Publisher.publish`` alone, in this process: one scored batch
    of real events produced ``PUBLISH_BATCHES`` times and flushed each time (no consumer,
    no commit); CPU of this process (librdkafka's threads included) per message, and the
    rate. Far less noisy than the end-to-end runs, which is what the small levers need."""
    messages = []
    for i in range(PUBLISH_BATCH):
        key, value = encode_event(stamp(rows[i % len(rows)], utc_now_iso()))
        messages.append(RawMessage("bench", i % partitions, i, key, value))
    result = score_batch(
        messages, scorer.predict_features, threshold=scorer.threshold,
        model_version=scorer.version, consumer_group="bench",
    )  # fmt: skip
    raw, out, dead = env.create_topics(bootstrap, partitions)
    options = ScoreOptions(
        mode="batch", input_topic=raw, output_topic=out, deadletter_topic=dead,
        group_id="bench", model_path=Path("."), idle_timeout_ms=1,
    )  # fmt: skip
    base = env.effective_settings()
    found: dict[str, list[dict[str, float]]] = {c.name: [] for c in configs}
    publishers = {}
    for config in configs:
        args, _rest = ablate_scorer.parse([*config.args, "--"])
        producer = base.producer.model_copy(
            update={"delivery_reports": args.delivery_reports, "compression": args.compression}
        )
        kafka = base.kafka.model_copy(update={"bootstrap_servers": bootstrap})
        settings = base.model_copy(update={"kafka": kafka, "producer": producer})
        publisher = open_publisher(settings, options)
        publisher._produce = types.MethodType(  # type: ignore[method-assign]
            ablate_scorer.producing(args), publisher
        )
        publisher.publish(messages, result, _NoCommit())  # type: ignore[arg-type]  # warm-up
        publishers[config.name] = publisher
    count = PUBLISH_BATCH * PUBLISH_BATCHES
    # Short turns, interleaved: neighbouring turns see about the same load.
    for _ in range(PUBLISH_ROUNDS):
        for config in configs:
            publisher = publishers[config.name]
            started, cpu_started = time.perf_counter(), time.process_time()
            for _batch in range(PUBLISH_BATCHES):
                failure = publisher.publish(messages, result, _NoCommit())  # type: ignore[arg-type]
                if failure is not None:
                    raise RuntimeError(f"publish path, {config.name}: {failure.reason}")
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            found[config.name].append(
                {"cpu_us_per_msg": cpu / count * 1e6, "msgs_per_s": count / wall}
            )
    for publisher in publishers.values():
        publisher.close()
    for config in configs:
        cpu = _median([r["cpu_us_per_msg"] for r in found[config.name]])
        logger.info("ablation, publish path alone: %s: %.2f us CPU/msg", config.name, cpu or 0)
    return found


def _run(
    bootstrap: str,
    raw: str,
    config: Config,
    events: int,
    partitions: int,
    models_dir: Path,
    timings: Path,
) -> dict[str, Any]:
    _, predictions, deadletter = env.create_topics(bootstrap, partitions, log_append_time=True)
    group = f"bench-ablation-{uuid.uuid4().hex[:8]}"
    consume = throughput.scorer_command(
        bootstrap, (raw, predictions, deadletter), group, models_dir, 1, []
    )[3:]  # without "python -m churnstream"
    command = [
        sys.executable, "-m", "bench.ablate_scorer", *config.args,
        "--timings", str(timings), "--", *consume,
    ]  # fmt: skip
    result, _ = peers._contender(
        config.name, [command], bootstrap, predictions, events, peers.IDLE_STOP_S
    )
    committed = env.committed_complete(bootstrap, raw, group)
    spent = json.loads(timings.read_text()) if timings.is_file() else {}
    return {
        "name": config.name,
        "msgs_per_s": result.sustained_msgs_per_s,
        "cpu_us_per_msg": result.steady_cpu_us_per_msg,
        "output_records": result.output_records,
        "committed": committed,
        "exit_codes": result.exit_codes,
        "peak_rss_mb": result.peak_rss_mb,
        "timings": spent,
    }


def summarise(ablation: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per configuration: medians over the rounds, and the median of the per-round
    ratios to the configuration it is compared with."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in ablation["runs"]:
        by_round.setdefault(run["round"], {})[run["name"]] = run
    out = []
    for config in ablation["configs"]:
        mine = [r[config["name"]] for r in by_round.values() if config["name"] in r]
        rate_ratios, cpu_ratios = [], []
        for runs in by_round.values():
            a, b = runs.get(config["name"]), runs.get(config["versus"])
            if a and b and b["msgs_per_s"] and a["msgs_per_s"]:
                rate_ratios.append(a["msgs_per_s"] / b["msgs_per_s"])
            if a and b and a["cpu_us_per_msg"] and b["cpu_us_per_msg"]:
                cpu_ratios.append(a["cpu_us_per_msg"] / b["cpu_us_per_msg"])
        waits = [_wait(r["timings"]) for r in mine if r.get("timings")]
        alone = ablation.get("publish_path", {})
        own, other = alone.get(config["name"], []), alone.get(config["versus"], [])
        alone_ratios = [
            a["cpu_us_per_msg"] / b["cpu_us_per_msg"]
            for a, b in zip(own, other, strict=False)
            if b["cpu_us_per_msg"]
        ]
        out.append(
            {
                "name": config["name"],
                "label": config["label"],
                "versus": config["versus"],
                "msgs_per_s": _median([r["msgs_per_s"] for r in mine]),
                "cpu_us_per_msg": _median([r["cpu_us_per_msg"] for r in mine]),
                "rate_ratio": _median(rate_ratios),
                "cpu_ratio": _median(cpu_ratios),
                "all_scored": all(r["output_records"] == ablation["events"] for r in mine),
                "all_committed": all(r["committed"] for r in mine),
                "alone_cpu_us_per_msg": _median([r["cpu_us_per_msg"] for r in own]),
                "alone_msgs_per_s": _median([r["msgs_per_s"] for r in own]),
                "alone_cpu_ratio": _median(alone_ratios),
                "wait_ms_per_batch": _median([w[0] for w in waits]),
                "wait_share": _median([w[1] for w in waits]),
                "batch_mean": _median(
                    [
                        ablation["events"] / r["timings"]["batches"]
                        for r in mine
                        if r["timings"].get("batches")
                    ]
                ),
            }
        )
    return out


def _wait(t: dict[str, Any]) -> tuple[float | None, float | None]:
    """(ms per batch in flush + commit, their share of the loop's span from the first
    publish to the end of the last)."""
    if not t.get("batches"):
        return None, None
    waiting = t["flush_s"] + t["commit_s"]
    share = waiting / t["span_s"] if t.get("span_s") else None
    return waiting / t["batches"] * 1000, share


def _median(values: list[Any]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(statistics.median(kept)) if kept else None


def render(ablation: dict[str, Any]) -> str:
    rows = summarise(ablation)
    # The labels of this code when it knows the configuration (a kept run shows the same).
    known = {c.name: c.label.strip() for c in CONFIGS}
    labels = {c["name"]: known.get(c["name"], c["label"].strip()) for c in ablation["configs"]}
    setup = ablation.get("publish_path_setup", {})
    alone_head = (
        f"publish path alone, in-process ({setup['batches']} x {setup['batch']:,} messages, "
        f"median of {setup['rounds']}): CPU us/msg (ratio), msgs/s"
        if setup
        else "publish path alone"
    )
    lines = [
        f"| ablation, end to end: `consume --mode batch`, 1 worker, {ablation['events']:,} "
        f"events, {ablation['partitions']} partitions, median of {ablation['rounds']} "
        "round(s) | msgs/s | CPU us/msg, steady | msgs/s ratio | CPU ratio | "
        f"{alone_head} | flush + commit wait per batch (share of the loop) | "
        "scored and committed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        versus = "" if row["versus"] == row["name"] else f" vs `{row['versus']}`"
        wait = (
            f"{row['wait_ms_per_batch']:.1f} ms ({row['wait_share']:.0%})"
            if row["wait_ms_per_batch"] is not None and row["wait_share"] is not None
            else "n/a"
        )
        lines.append(
            f"| {'&nbsp;&nbsp;' if row['versus'] == 'headers_selected' else ''}"
            f"`{row['name']}`: {labels[row['name']]} | **{_num(row['msgs_per_s'])}** | "
            f"{_us(row['cpu_us_per_msg'])} | {_x(row['rate_ratio'])}{versus} | "
            f"{_x(row['cpu_ratio'])}{versus} | {_us(row['alone_cpu_us_per_msg'])} "
            f"({_x(row['alone_cpu_ratio'])}), {_num(row['alone_msgs_per_s'])} | {wait} | "
            f"{'yes' if row['all_scored'] and row['all_committed'] else '**no**'} |"
        )
    lines += ["", *(f"- {note}" for note in _notes(rows))]
    return "\n".join(lines)


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    """Per-header costs and what pipelining could win, derived from the rows above."""
    by = {r["name"]: r for r in rows}
    notes = []
    for key, where in (
        ("alone_cpu_us_per_msg", "in the publish path alone"),
        ("cpu_us_per_msg", "end to end (noisier)"),
    ):
        ref = by.get("headers_selected", {}).get(key)
        costs = []
        for name, header in (
            ("no_source", "source"),
            ("no_risk_band", "risk_band"),
            ("no_model_version", "model_version"),
            ("no_headers", "all three"),
        ):
            cpu = by.get(name, {}).get(key)
            if ref is not None and cpu is not None:
                costs.append(f"{header} {ref - cpu:+.2f} us")
        if costs:
            notes.append(
                f"CPU per message each header costs, {where} (the reference row minus the "
                "row without it): " + ", ".join(costs) + "."
            )
    for name in ("baseline", "both"):
        row = by.get(name)
        if row and row["wait_share"] is not None and row["msgs_per_s"]:
            share = row["wait_share"]
            notes.append(
                f"Pipelining, from the {name} runs: the loop waits {share:.0%} of its time in "
                f"flush() and the commit ({row['wait_ms_per_batch']:.1f} ms per batch of "
                f"{_num(row['batch_mean'])} messages on average); scoring the next batch "
                f"meanwhile could at most lift {_num(row['msgs_per_s'])} msgs/s to "
                f"{_num(row['msgs_per_s'] / (1 - share))} (if that wait were fully hidden "
                "and the CPU were free during it)."
            )
    row, ref = by.get("pipelined"), by.get("both")
    if row and ref and row["msgs_per_s"] and ref["msgs_per_s"]:
        waits = ""
        if row["wait_share"] is not None and ref["wait_share"] is not None:
            waits = (
                f"; the wait in flush() and the commit went from {ref['wait_share']:.0%} of "
                f"the loop to {row['wait_share']:.0%}"
            )
        notes.append(
            f"Pipelining, measured: {_num(row['msgs_per_s'])} msgs/s against "
            f"{_num(ref['msgs_per_s'])} for `both` (median ratio {_x(row['rate_ratio'])}){waits}."
        )
    return notes


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
