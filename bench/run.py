"""``python -m bench``: every benchmark in one run, results to JSON and docs/benchmarks.md.

Reproduce: ``make bench`` (200,000 events) or ``make bench BENCH_ARGS=--scale`` (1,000,000),
or ``.venv/bin/python -m bench --help`` for each knob. An embedded Apache Kafka is started
on a free port with a temporary state dir (``--bootstrap`` uses a running cluster instead),
with fresh topics for every measurement; the model is ``models/latest`` (trained if absent).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    ablation,
    baseline,
    ceiling,
    compression,
    env,
    latency,
    peers,
    reasons,
    single,
    spark,
    stages,
    throughput,
)
from bench import profile as bench_profile

logger = logging.getLogger("bench")

DEFAULT_EVENTS = 200_000
SCALE_EVENTS = 1_000_000
DOC = env.REPO / "docs" / "benchmarks.md"
RESULTS = env.REPO / "bench" / "results"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
ALL = (
    "throughput", "scaling", "latency", "single", "stages", "baseline", "ceiling", "peers",
    "compression", "reasons", "ablation", "spark",
)  # fmt: skip

#: The lean-and-fast targets, in the order the summary shows them; the rows after the
#: first seven are older checks kept for history.
TARGETS = {
    "sustained msgs/s (1 worker)": (">=", 100_000.0),
    "churnstream / native kcat copy": (">=", 0.5),
    "churnstream / plain batched peer": (">=", 3.0),
    "scorer CPU per message, steady (us)": ("<=", 10.0),
    "scorer peak RSS (MB)": ("<=", 150.0),
    "p99 acknowledged - event_ts at 1,000/s (ms)": ("<=", 10.0),
    "single record p50 (ms)": ("<=", 0.1),
    "native client: churnstream / native kcat copy": (">=", 0.5),
    "native client: churnstream / plain batched peer": (">=", 3.0),
    "native client: scorer CPU per message, steady (us)": ("<=", 10.0),
    "p99 processed - event_ts at 1,000/s (ms)": ("<=", 10.0),
    "ratio to the baseline": (">=", 500.0),
    "2 workers / 1 worker": (">", 1.0),
}
#: How many of TARGETS' first rows are the lean-and-fast targets; the next NATIVE_TARGETS
#: rows are three of them for the scorer on the native Kafka client, from the peers run's
#: row of it (when the run's own client is confluent-kafka's).
MAIN_TARGETS = 7
NATIVE_TARGETS = 3
#: The throughput target is met by either of these two rows.
EITHER = {
    "sustained msgs/s (1 worker)": " (or the next row)",
    "churnstream / native kcat copy": " (or the row above)",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="throughput events")
    parser.add_argument("--scale", action="store_true", help=f"{SCALE_EVENTS:,} events")
    parser.add_argument("--partitions", type=int, default=6, help="input topic partitions")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: events per second")
    parser.add_argument("--duration", type=float, default=30.0, help="latency: seconds")
    parser.add_argument(
        "--latency-warmup",
        type=float,
        default=5.0,
        help="latency: seconds of load at the same rate before measuring (reported apart)",
    )
    parser.add_argument("--single-iterations", type=int, default=3000)
    parser.add_argument("--baseline-events", type=int, default=2000)
    parser.add_argument(
        "--compression-rounds", type=int, default=3, help="compression: rounds over the codecs"
    )
    parser.add_argument(
        "--codecs",
        default=",".join(compression.CODECS),
        help="compression: comma list of codecs to compare",
    )
    parser.add_argument(
        "--reasons-rounds",
        type=int,
        default=2,
        help="reasons: rounds of throughput without, then with, consume --reasons",
    )
    parser.add_argument(
        "--ablation-rounds", type=int, default=2, help="ablation: rounds over the levers"
    )
    parser.add_argument(
        "--ablation-events", type=int, help="ablation: events per run (default: --events)"
    )
    parser.add_argument(
        "--levers",
        default=",".join(ablation.NAMES),
        help="ablation: comma list of configurations to run",
    )
    parser.add_argument(
        "--spark-rows",
        type=int,
        default=spark.DEFAULT_ROWS,
        help="spark: rows of the generated Parquet file scored by both predict engines",
    )
    parser.add_argument(
        "--no-spark", action="store_true", help="skip the Spark batch bench (quick runs)"
    )
    parser.add_argument("--only", default=",".join(ALL), help=f"comma list of {', '.join(ALL)}")
    parser.add_argument(
        "--client",
        choices=("confluent", "native"),
        help="the scorer's Kafka client for every churnstream row (consumer.client; default: "
        "the settings'); the peers bench adds a native-client row when it is confluent",
    )
    parser.add_argument("--bootstrap", help="use this cluster instead of an embedded broker")
    parser.add_argument("--models-dir", type=Path, default=env.REPO / "models")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="print (and write to the docs) the tables of an earlier run, measuring nothing",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run the 1-worker throughput under py-spy; profile to bench/results/",
    )
    args = parser.parse_args(argv)
    if args.scale:
        args.events = SCALE_EVENTS
    levers = tuple(name.strip() for name in args.levers.split(",") if name.strip())
    if set(levers) - set(ablation.NAMES):
        parser.error(f"unknown lever(s); choose among {', '.join(ablation.NAMES)}")
    args.levers = levers
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    if args.no_spark:
        args.only = [name for name in args.only if name != "spark"]
    unknown = set(args.only) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s bench: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python, in the compression bench
    args = parse(argv)
    if args.render is not None:
        table = render(json.loads(args.render.read_text()))
        print(table)
        if not args.no_docs:
            write_docs(table)
        return 0
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.client is not None:  # inherited by every scorer process the benches start
        os.environ[peers.CLIENT_ENV] = args.client
    machine = env.Machine.now()
    logger.info("load average before: %s on %d cpus", machine.load_before, machine.cpus)
    scorer = env.model(args.models_dir)
    rows = env.records()
    results: dict[str, Any] = {
        "command": command.strip(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.__dict__,
        "model": {"version": scorer.version, "compiled": scorer.compiled is not None},
        "settings": {
            "producer": env.effective_settings().producer.model_dump(mode="json"),
            "consumer": env.effective_settings().consumer.model_dump(mode="json"),
        },
    }
    if "single" in args.only:
        results["single_record"] = single.measure(scorer, rows, args.single_iterations).as_dict()
    if "stages" in args.only:
        results["stages"] = stages.measure(scorer, rows)
    # The in-process and file benches need no broker: do not start one for them alone.
    needs_broker = bool(set(args.only) - {"single", "stages", "spark"})
    broker = env.embedded_broker(args.bootstrap) if needs_broker else contextlib.nullcontext("")
    with broker as bootstrap:
        if "throughput" in args.only:
            results["throughput"] = throughput.measure(
                bootstrap, rows, events=args.events, workers=1,
                partitions=args.partitions, models_dir=args.models_dir,
            ).as_dict()  # fmt: skip
        if args.profile:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            raw = RESULTS / f"profile_{stamp}.raw"
            RESULTS.mkdir(parents=True, exist_ok=True)
            profiled = throughput.measure(
                bootstrap, rows, events=args.events, workers=1,
                partitions=args.partitions, models_dir=args.models_dir, profile=raw,
            )  # fmt: skip
            text = bench_profile.summarise(raw)
            summary = RESULTS / f"profile_{stamp}.txt"
            summary.write_text(
                f"{command.strip()}: 1 worker under py-spy, "
                f"{profiled.sustained_msgs_per_s:,.0f} msgs/s sustained\n\n{text}\n"
            )
            raw.unlink(missing_ok=True)
            results["profile"] = str(summary.relative_to(env.REPO))
            print(text)
        if "scaling" in args.only:
            results["scaling"] = throughput.measure(
                bootstrap, rows, events=args.events, workers=2,
                partitions=args.partitions, models_dir=args.models_dir,
            ).as_dict()  # fmt: skip
        if "latency" in args.only:
            results["latency"] = latency.measure(
                bootstrap, rows, rate=args.rate, duration_s=args.duration,
                partitions=args.partitions, models_dir=args.models_dir,
                warmup_s=args.latency_warmup,
            ).as_dict()  # fmt: skip
        if "ceiling" in args.only:
            results["ceiling"] = ceiling.measure(
                bootstrap, rows, events=args.events, partitions=args.partitions
            ).as_dict()
        if "reasons" in args.only:
            results["reasons"] = reasons.measure(
                bootstrap, rows, events=args.events, partitions=args.partitions,
                models_dir=args.models_dir, rounds=args.reasons_rounds,
            )  # fmt: skip
        if "compression" in args.only:
            results["compression"] = compression.measure(
                bootstrap, rows, events=args.events, partitions=args.partitions,
                rounds=args.compression_rounds, codecs=tuple(args.codecs.split(",")),
            ).as_dict()  # fmt: skip
        if "ablation" in args.only:
            results["ablation"] = ablation.measure(
                bootstrap, rows, events=args.ablation_events or args.events,
                partitions=args.partitions, models_dir=args.models_dir, scorer=scorer,
                rounds=args.ablation_rounds, only=args.levers,
            )  # fmt: skip
        if "baseline" in args.only:
            results["baseline"] = baseline.measure(
                bootstrap, rows, scorer, events=args.baseline_events
            ).as_dict()
        if "peers" in args.only:
            results["peers"] = peers.measure(
                bootstrap, rows, events=args.events, partitions=args.partitions,
                models_dir=args.models_dir,
            )  # fmt: skip
    if "spark" in args.only:
        results["spark_batch"] = spark.measure(env.DATASET, args.models_dir, args.spark_rows)
    results["load_after"] = os.getloadavg()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["targets"] = targets(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    # Paths relative to the repository (commands hold the venv's python, the models dir).
    path.write_text(json.dumps(results, indent=2).replace(f"{env.REPO}/", "") + "\n")
    table = render(results)
    print(table)
    print(f"results: {path.relative_to(env.REPO)}")
    if not args.no_docs:
        write_docs(table)
    return 0


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    t = results.get("throughput", {})
    s = results.get("scaling", {})
    lat = results.get("latency", {})
    native = peers.get(results, "churnstream_native")
    native_rate = native.get("sustained_msgs_per_s")
    kcat_rate = peers.get(results, "kcat").get("sustained_msgs_per_s")
    batched_rate = peers.get(results, "batched").get("sustained_msgs_per_s")
    measured: dict[str, float | None] = {
        "sustained msgs/s (1 worker)": t.get("sustained_msgs_per_s"),
        "churnstream / native kcat copy": peers.ratio(results, "kcat"),
        "churnstream / plain batched peer": peers.ratio(results, "batched"),
        "scorer CPU per message, steady (us)": peers.get(results, "churnstream").get(
            "steady_cpu_us_per_msg"
        ),
        "ratio to the baseline": _ratio(
            t.get("sustained_msgs_per_s"), results.get("baseline", {}).get("msgs_per_s")
        ),
        "native client: churnstream / native kcat copy": _ratio(native_rate, kcat_rate),
        "native client: churnstream / plain batched peer": _ratio(native_rate, batched_rate),
        "native client: scorer CPU per message, steady (us)": native.get("steady_cpu_us_per_msg"),
        "p99 processed - event_ts at 1,000/s (ms)": lat.get("processed_ms", {}).get("p99"),
        "p99 acknowledged - event_ts at 1,000/s (ms)": lat.get("acknowledged_ms", {}).get("p99"),
        "single record p50 (ms)": results.get("single_record", {}).get("fast_p50_ms"),
        "scorer peak RSS (MB)": max(
            (x for x in (t.get("peak_rss_mb"), s.get("peak_rss_mb"), _peers_rss(results)) if x),
            default=None,
        ),
        "2 workers / 1 worker": _ratio(
            s.get("sustained_msgs_per_s"), t.get("sustained_msgs_per_s")
        ),
    }
    out = []
    for name, (op, goal) in TARGETS.items():
        value = measured[name]
        met = None
        if value is not None:
            met = value >= goal if op == ">=" else value <= goal if op == "<=" else value > goal
        shown = f"{op} {goal:g}" + EITHER.get(name, "")
        out.append({"target": name, "goal": shown, "measured": value, "met": met})
    return out


def _peers_rss(results: dict[str, Any]) -> float | None:
    rss: float | None = peers.get(results, "churnstream").get("peak_rss_mb")
    return rss


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _between_calls(one: dict[str, Any]) -> str:
    """What the single-record loop did between calls (results from before 2026-11-28 built
    a pandas frame there)."""
    if "window_add_p50_ms" not in one:
        return (
            f"the analytics rows, built after the commit, take p50 "
            f"{one['analytics_frame_p50_ms']:.2f} ms more"
        )
    return (
        f"handing each result to the window statistics after it (`Window.add`, as the loop "
        f"does after commit) takes p50 {one['window_add_p50_ms']:.3f} ms, mean "
        f"{one['window_add_mean_ms']:.3f} ms"
    )


def render(results: dict[str, Any]) -> str:
    t, s = results.get("throughput", {}), results.get("scaling", {})
    lat, one = results.get("latency", {}), results.get("single_record", {})
    base = results.get("baseline", {})
    machine = results["machine"]
    lines = [
        f"Run `{results['command']}` at {results['started']} (commit {machine['git_commit']}, "
        f"{machine['cpus']} cpus, load average before {_load(machine['load_before'])}, "
        f"after {_load(results['load_after'])}; model {results['model']['version']}, "
        f"compiled: {results['model']['compiled']}; the scorer's Kafka client: "
        f"{results.get('settings', {}).get('consumer', {}).get('client', 'confluent')}).",
    ]
    measured = ("throughput", "scaling", "latency", "single_record", "baseline", "ceiling")
    if any(results.get(name) for name in measured):
        lines += ["", "| measurement | result |", "|---|---|"]
    if t:
        rate, whole = t["sustained_msgs_per_s"], t["wall_msgs_per_s"]
        lines += [
            f"| throughput, 1 worker, {t['events']:,} events, {t['partitions']} partitions | "
            f"**{rate:,.0f} msgs/s** sustained; {whole:,.0f} msgs/s over the whole run "
            f"incl. start-up ({t['wall_s']:.1f} s); all committed: {t['committed']}"
            f"{_cpu(t)} |",
            f"| batch sizes (1 worker) | {_dist(t['batch_sizes'])} |",
            f"| scorer peak RSS (1 worker) | {t['peak_rss_mb']:.0f} MB |",
        ]
    if s:
        rate, whole = s["sustained_msgs_per_s"], s["wall_msgs_per_s"]
        ratio = _ratio(rate, t.get("sustained_msgs_per_s"))
        versus = f" ({ratio:.2f}x 1 worker)" if ratio else ""
        lines += [
            f"| throughput, 2 workers (`--workers 2`) | **{rate:,.0f} msgs/s** sustained{versus}; "
            f"whole run {whole:,.0f} msgs/s; committed: {s['committed']}; "
            f"peak RSS {s['peak_rss_mb']:.0f} MB |",
        ]
    if lat:
        load = f"{lat['rate_per_s']:,.0f} events/s for {lat['duration_s']:.0f} s"
        lines += [
            f"| latency at {load} ({lat['measured']:,} events), processed - event_ts | "
            f"{_pcts(lat['processed_ms'])} |",
            f"| same, prediction acknowledged (broker append time) - event_ts | "
            f"{_pcts(lat['acknowledged_ms'])} |",
        ]
        for stage, values in lat.get("stages_ms", {}).items():
            if values:
                lines += [
                    f"| same, one leg of it: {stage} (broker times in whole ms) | "
                    f"{_pcts(values, bold=False)} |"
                ]
        gc = lat.get("broker_gc") or {}
        kinds = [k for k in ("young", "full", "concurrent") if f"{k}_pauses" in gc]
        if kinds:
            counts = ", ".join(
                f"{k} {gc[f'{k}_pauses']:.0f} ({gc[f'{k}_pause_ms']:.0f} ms)" for k in kinds
            )
            lines += [f"| same run, the broker JVM's collections (`jstat -gc`) | {counts} |"]
        if lat.get("warmup_processed_ms"):
            warm = _pcts(lat["warmup_processed_ms"], bold=False)
            lines += [
                f"| warm-up before it, same rate for {lat['warmup_s']:.0f} s (not in the "
                f"figures above), processed - event_ts | {warm} |",
            ]
    if one:
        lines += [
            f"| single record in-process (`score_batch`, {one['iterations']:,} runs) | "
            f"**p50 {one['fast_p50_ms']:.3f} ms**, p99 {one['fast_p99_ms']:.3f} ms "
            f"(reference path: p50 {one['reference_p50_ms']:.2f} ms, "
            f"p99 {one['reference_p99_ms']:.2f} ms); {_between_calls(one)} |",
        ]
    if base:
        ratio = _ratio(t.get("sustained_msgs_per_s"), base["msgs_per_s"])
        versus = f"; **fast path / baseline = {ratio:,.0f}x**" if ratio else ""
        lines += [
            f"| baseline: the old per-message loop, {base['scored']:,} events | "
            f"{base['msgs_per_s']:,.1f} msgs/s ({base['per_message_ms']:.1f} ms per message)"
            f"{versus} |",
        ]
    if results.get("ceiling"):
        top = results["ceiling"]
        lines += [
            f"| ceiling: the same loop copying messages, no decoding or model "
            f"({top['copied']:,} events) | {top['msgs_per_s']:,.0f} msgs/s |",
        ]
    if results.get("profile"):
        lines += ["", f"Profile of the 1-worker loop: `{results['profile']}`."]
    if results.get("peers"):
        lines += ["", peers.render(results)]
    if results.get("reasons"):
        lines += ["", reasons.render(results["reasons"])]
    if results.get("stages"):
        lines += ["", stages.render(results["stages"])]
    if results.get("compression"):
        lines += ["", compression.render(results["compression"])]
    if results.get("ablation"):
        lines += ["", ablation.render(results["ablation"])]
    if results.get("spark_batch"):
        lines += ["", spark.render(results["spark_batch"])]
    lines += [
        "",
        "Summary against the targets (the first seven; a throughput target is met by either "
        f"of its two rows); load average before {_load(machine['load_before'])}, after "
        f"{_load(results['load_after'])}:",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    names = list(TARGETS)
    native_rows = set(names[MAIN_TARGETS : MAIN_TARGETS + NATIVE_TARGETS])
    # Recomputed, so that the results of runs before a row was added render too.
    rows = [
        row
        for row in targets(results)
        if row["target"] not in native_rows or row["measured"] is not None
    ]
    for row in rows:
        if row["target"] in native_rows and row["target"] == names[MAIN_TARGETS]:
            lines.append(
                "| *the same run's peers row on the native Kafka client "
                "(`consumer.client=native`)* | | | |"
            )
        if row["target"] == names[MAIN_TARGETS + NATIVE_TARGETS]:
            lines.append("| *older checks, kept for history* | | | |")
        value = row["measured"]
        shown = "n/a" if value is None else f"{value:,.3f}" if value < 10 else f"{value:,.0f}"
        met = "n/a" if row["met"] is None else "yes" if row["met"] else "**no**"
        lines.append(f"| {row['target']} | {row['goal']} | {shown} | {met} |")
    return "\n".join(lines)


def _pcts(d: dict[str, float], *, bold: bool = True) -> str:
    if not d:
        return "n/a"
    p99 = f"p99 {d['p99']:.1f} ms"
    return (
        f"p50 {d['p50']:.1f} ms, p95 {d['p95']:.1f} ms, {f'**{p99}**' if bold else p99}, "
        f"max {d['max']:.1f} ms"
    )


def _cpu(t: dict[str, Any]) -> str:
    """The scorer's CPU seconds, where the run recorded them (older results did not)."""
    return f"; scorer CPU {t['cpu_s']:.1f} s" if t.get("cpu_s") else ""


def _load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _dist(d: dict[str, float]) -> str:
    if not d:
        return "n/a"
    return (
        f"{d['batches']:.0f} batches; mean {d['mean']:,.0f}, p10 {d['p10']:,.0f}, "
        f"p50 {d['p50']:,.0f}, p90 {d['p90']:,.0f}, max {d['max']:,.0f}"
    )


def write_docs(table: str) -> None:
    """Replace the results section of docs/benchmarks.md (the rest is written by hand)."""
    text = DOC.read_text() if DOC.is_file() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    logger.info("updated %s", DOC.relative_to(env.REPO))


if __name__ == "__main__":
    started = time.monotonic()
    raise SystemExit(main())
