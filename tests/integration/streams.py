"""Helpers for stream tests: uniquely numbered events and files, a paced event pump, and a
scorer run in a thread."""

from __future__ import annotations

import string
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from churnstream.data import load_dataset
from churnstream.events import encode_event, frame_to_records
from churnstream.kafka.producer import SafeProducer
from churnstream.model.lean import LeanScorer
from churnstream.observability.runtime import ScorerInstrumentation, instrument_scorer
from churnstream.reports.writer import SummaryWriter
from churnstream.schemas import utc_now_iso
from churnstream.settings import Settings
from churnstream.streaming.loop import ScorerLoop
from churnstream.streaming.observers import ScorerObserver, WindowCallback
from churnstream.streaming.options import ScoreOptions, ScoreSummary
from tests.unit.test_schemas import EVENT


def unique_id(i: int) -> str:
    """A valid customerID that no other ``i`` shares (``0042-AAAAB``)."""
    letters = ""
    n = i // 10_000
    for _ in range(5):
        letters = string.ascii_uppercase[n % 26] + letters
        n //= 26
    return f"{i % 10_000:04d}-{letters}"


def customer_events(first: int, count: int) -> list[tuple[bytes | None, bytes | None]]:
    """Events ``first`` .. ``first + count - 1`` as (key, value), each with its own id."""
    messages: list[tuple[bytes | None, bytes | None]] = []
    for i in range(first, first + count):
        body = {**EVENT, "customerID": unique_id(i), "tenure": i % 72}
        messages.append((body["customerID"].encode(), orjson.dumps(body)))
    return messages


def unique_rows_csv(dataset_path: Path, rows: int, path: Path) -> Path:
    """The dataset repeated to ``rows`` rows, each with its own customerID, written to ``path``."""
    base = pd.read_csv(dataset_path, dtype=str, keep_default_na=False)
    big = pd.concat([base] * (rows // len(base) + 1), ignore_index=True).iloc[:rows].copy()
    big["customerID"] = [unique_id(i) for i in range(len(big))]
    big.to_csv(path, index=False)
    return path


def records(
    dataset_path: Path, select: Callable[[pd.DataFrame], pd.DataFrame] | None = None
) -> list[dict[str, Any]]:
    frame = load_dataset(dataset_path)
    if select is not None:
        frame = select(frame)
    return frame_to_records(frame)


class Pump(threading.Thread):
    """Sends ``rows`` (cycled) to ``topic`` at ``rate`` events/s until ``total`` or stopped."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        rows: list[dict[str, Any]],
        *,
        rate: float,
        total: int,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        super().__init__(name="event-pump", daemon=True)
        self.settings = settings
        self.topic = topic
        self.rows = rows
        self.rate = rate
        self.total = total
        self.on_delivery = on_delivery
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        producer = SafeProducer(
            self.settings.kafka.producer_config(self.settings.producer),
            on_delivery=self.on_delivery,
        )
        started = time.monotonic()
        while self.sent < self.total and not self.stop_event.is_set():
            due = min(self.total, int((time.monotonic() - started) * self.rate) + 1)
            while self.sent < due:
                event = {**self.rows[self.sent % len(self.rows)], "event_ts": utc_now_iso()}
                key, value = encode_event(event)
                producer.produce(self.topic, value, key)
                self.sent += 1
            producer.poll(0)
            self.stop_event.wait(0.02)
        assert producer.flush() == 0


@dataclass
class ScorerRun:
    """A ScorerLoop with the observability instrumentation, running in a thread."""

    loop: ScorerLoop
    inst: ScorerInstrumentation
    stop: threading.Event
    thread: threading.Thread
    result: list[ScoreSummary] = field(default_factory=list)
    #: Writes each window's report files, if the run was given a reports_dir.
    reports: SummaryWriter | None = None

    @property
    def url(self) -> str:
        assert self.inst.server is not None
        return self.inst.server.url

    def finish(self, timeout_s: float = 30.0) -> ScoreSummary:
        self.stop.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "scorer did not stop"
        self.inst.close()
        if self.reports is not None:
            assert self.reports.close() == []  # every window's Markdown and charts, as the CLI
        return self.result[0]


def start_scorer(
    settings: Settings,
    model_dir: Path,
    *,
    raw: str,
    preds: str,
    dlq: str,
    group: str,
    reports_dir: Path | None,
    mode: str = "streaming",
    summary_interval_s: float = 3600.0,
    idle_timeout_ms: int = 3000,
    reasons: bool = False,
) -> ScorerRun:
    scorer = LeanScorer.load(model_dir)  # what `consume` loads
    inst = instrument_scorer(settings, metadata=scorer.metadata, port=0)
    options = ScoreOptions(
        mode="batch" if mode == "batch" else "streaming",
        input_topic=raw,
        output_topic=preds,
        deadletter_topic=dlq,
        group_id=group,
        model_path=model_dir,
        idle_timeout_ms=idle_timeout_ms,
        max_batch_records=200,
        max_batch_wait_ms=100,
        summary_interval_s=summary_interval_s,
        reasons=reasons,
    )
    observers: list[ScorerObserver] = list(inst.observers)
    reports = SummaryWriter(reports_dir) if reports_dir is not None else None
    if reports is not None:
        observers.append(WindowCallback(reports))
    loop = ScorerLoop(settings, options, scorer=scorer, observers=observers)
    stop = threading.Event()
    result: list[ScoreSummary] = []
    thread = threading.Thread(target=lambda: result.append(loop.run(stop)), daemon=True)
    run = ScorerRun(loop, inst, stop, thread, result, reports)
    thread.start()
    return run


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(every_s)
