"""`churnstream demo`: broker, topics, data, model, then producer and scorer side by side."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churnstream.exceptions import ChurnstreamError
from churnstream.kafka import admin
from churnstream.observability.metrics.producer import ProducerMetrics
from churnstream.ops import devbroker
from churnstream.reports.writer import SummaryWriter
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.settings import Settings
from churnstream.streaming.events_producer import ProduceOptions, ProduceSummary, run_producer
from churnstream.streaming.loop import ScorerLoop
from churnstream.streaming.observers import ScorerObserver, WindowCallback
from churnstream.streaming.options import ScoreOptions, ScoreSummary

logger = logging.getLogger(__name__)

ASSIGN_TIMEOUT_S = 30.0
#: After the producer stops, how long the scorer may take to catch up before it is stopped.
DRAIN_TIMEOUT_S = 15.0
WATERMARK_TIMEOUT_S = 10.0
#: How long a failed demo waits for its scorer thread to close its clients before it
#: reports the error: until then the thread's client keeps logging (e.g. connection
#: refused), and those lines would follow, or cut into, the error line.
SCORER_STOP_TIMEOUT_S = 30.0


@dataclass
class DemoState:
    """Live counts for the console, updated from the worker threads."""

    produced: int = 0
    scored: int = 0
    dead_lettered: int = 0
    consumed: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class DemoResult:
    producer: ProduceSummary
    scorer: ScoreSummary
    broker_started: bool
    trained: bool
    fetched: bool
    reports: list[Path] = field(default_factory=list)


def prepare(settings: Settings, *, say: Callable[[str], None]) -> tuple[bool, bool, bool]:
    """Broker, topics, data and model; returns (broker started, data fetched, model trained)."""
    from churnstream.data import fetch_dataset
    from churnstream.model.artifacts import has_model
    from churnstream.model.train import train_and_save

    broker_started = False
    if settings.uses_embedded_broker:
        status = devbroker.ensure_running(settings.broker)
        broker_started = status.start_s is not None
        if broker_started:
            say(
                f"started the embedded {status.engine} broker at {status.bootstrap} "
                f"in {status.start_s:.1f}s"
            )
        else:
            say(f"using the broker already at {status.bootstrap}")
    else:
        admin.check_reachable(settings.kafka)
        say(f"using the cluster at {settings.kafka.bootstrap_servers}")
    created = admin.ensure_topics(settings)
    say("topics: " + ", ".join(c.name for c in created))

    fetched = False
    if not settings.paths.raw_csv.is_file():
        result = fetch_dataset(settings.paths.raw_csv)
        say(f"fetched the dataset: {result.rows} rows, sha256 verified")
        fetched = True
    trained = False
    if not has_model(settings.model.models_dir):
        say("no model yet: training one (a few seconds)")
        outcome = train_and_save(settings, data_path=settings.paths.raw_csv)
        say(f"trained model {outcome.version}: ROC AUC {outcome.metrics['roc_auc']:.3f}")
        trained = True
    else:
        ensure_exported(settings.model.models_dir, say=say)
    return broker_started, fetched, trained


def ensure_exported(models_dir: Path, *, say: Callable[[str], None]) -> bool:
    """Export the latest version's arrays if it was trained before training exported them.

    The scorer loads only the exported arrays; a model kept from an older churnstream would
    otherwise stop the demo with "run `churnstream model export` once". Returns whether it
    exported.
    """
    from churnstream.model import artifacts
    from churnstream.model.export import export_version

    version_dir = artifacts.resolve_version_dir(models_dir)
    if artifacts.COMPILED_KEY in artifacts.read_metadata(version_dir):
        return False
    say(f"model {version_dir.name} has no exported arrays: exporting them once")
    export_version(version_dir)
    return True


def run_demo(
    settings: Settings,
    *,
    duration_s: float,
    events_per_sec: float,
    stop: threading.Event,
    say: Callable[[str], None],
    on_tick: Callable[[DemoState], None] | None = None,
    keep_broker: bool = False,
) -> DemoResult:
    broker_started, fetched, trained = prepare(settings, say=say)
    # One registry and one server for both halves: a scrape shows producer and scorer.
    from churnstream.model.artifacts import read_metadata, resolve_version_dir
    from churnstream.observability.metrics.producer import ProducerMetrics
    from churnstream.observability.runtime import instrument_scorer

    metadata = read_metadata(resolve_version_dir(settings.model.models_dir))
    inst = instrument_scorer(settings, metadata=metadata, drift_in_summary=True)
    producer_metrics = ProducerMetrics(inst.registry)
    if inst.server is not None:
        say(f"metrics: {inst.server.url}/metrics")
    writer = SummaryWriter(settings.paths.reports_dir)
    try:
        writer.start()
        result = _run_pipeline(
            settings,
            duration_s=duration_s,
            events_per_sec=events_per_sec,
            stop=stop,
            on_tick=on_tick,
            flags=(broker_started, trained, fetched),
            observers=[*inst.observers, WindowCallback(writer)],
            producer_metrics=producer_metrics,
        )
        result.reports = writer.paths
        return result
    finally:
        writer.close()  # waits (bounded) for the report's Markdown and charts
        inst.close()
        if broker_started and not keep_broker:
            devbroker.stop(settings.broker)
            say("stopped the embedded broker the demo started")


def _run_pipeline(
    settings: Settings,
    *,
    duration_s: float,
    events_per_sec: float,
    stop: threading.Event,
    on_tick: Callable[[DemoState], None] | None,
    flags: tuple[bool, bool, bool],
    observers: Sequence[ScorerObserver] = (),
    producer_metrics: ProducerMetrics | None = None,
) -> DemoResult:
    state = DemoState()
    topic = settings.topics.raw.name
    # Score only this run's events, even if the topic holds earlier ones.
    offsets = admin.end_offsets(settings.kafka, topic)
    options = dataclasses.replace(
        ScoreOptions.from_settings(settings, mode="streaming", start_offsets=offsets),
        # A group of its own per run: the configured group's committed offsets stay as they are.
        group_id=f"churnstream-demo-{uuid.uuid4().hex[:8]}",
        summary_interval_s=max(duration_s * 10, 3600.0),  # one report, at the end
    )
    loop = ScorerLoop(
        settings,
        options,
        observers=[_LiveCounts(state), *observers],
    )
    scorer_stop = threading.Event()
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run_scorer() -> None:
        try:
            results["scorer"] = loop.run(scorer_stop)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            loop.assigned.set()

    scorer_thread = threading.Thread(target=run_scorer, name="scorer", daemon=True)
    scorer_thread.start()
    if not loop.assigned.wait(ASSIGN_TIMEOUT_S):
        scorer_stop.set()
        scorer_thread.join(SCORER_STOP_TIMEOUT_S)
        raise ChurnstreamError(f"the scorer got no partitions within {ASSIGN_TIMEOUT_S:g}s")
    if errors:
        raise errors[0]

    producer_options = ProduceOptions(
        mode="streaming",
        topic=topic,
        data_path=settings.paths.raw_csv,
        events_per_sec=events_per_sec,
        batch_size=settings.producer.batch_size,
        checkpoint_file=settings.producer.checkpoint_file,
        duration_s=duration_s,
        sample=True,
    )

    def on_progress(done: int, total: int | None) -> None:
        state.produced = done
        if producer_metrics is not None:
            producer_metrics.on_progress(done, total)

    def run_prod() -> None:
        try:
            results["producer"] = run_producer(
                settings,
                producer_options,
                stop,
                on_progress=on_progress,
                on_delivery=producer_metrics.on_delivery if producer_metrics else None,
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    producer_thread = threading.Thread(target=run_prod, name="producer", daemon=True)
    producer_thread.start()
    while producer_thread.is_alive() and not errors:
        producer_thread.join(0.5)
        if on_tick is not None:
            on_tick(state)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    produced = results["producer"].sent if "producer" in results else state.produced
    while (
        state.consumed < produced
        and time.monotonic() < deadline
        and not stop.is_set()
        and not errors
    ):
        time.sleep(0.2)
        if on_tick is not None:
            on_tick(state)
    scorer_stop.set()
    scorer_thread.join()
    if errors:
        raise errors[0]
    return DemoResult(
        producer=results["producer"],
        scorer=results["scorer"],
        broker_started=flags[0],
        trained=flags[1],
        fetched=flags[2],
    )


class _LiveCounts(ScorerObserver):
    def __init__(self, state: DemoState) -> None:
        self.state = state

    def on_batch(
        self, batch: Sequence[RawMessage], result: BatchResult, summary: ScoreSummary
    ) -> None:
        self.state.consumed = summary.consumed
        self.state.scored = summary.scored
        self.state.dead_lettered = summary.dead_lettered


def report_paths(result: DemoResult) -> list[Path]:
    return result.reports[-2:]
