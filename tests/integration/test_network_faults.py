"""A streaming scorer behind a faulty network: resets, a 30 s black hole, 200 ms latency.

One embedded Apache Kafka for the module, with two listeners: ``PLAINTEXT`` (advertised as
itself) for the test's producer and readers, and ``PROXIED``, advertised at the address of
a :class:`~tests.faults.proxy.FaultProxy` that forwards to it. Kafka clients learn broker
addresses from metadata, so a scorer that bootstraps through the proxy keeps talking
through it, while the events are written straight to the broker and keep arriving during
the fault. The scorer is ``churnstream consume --mode streaming`` as a subprocess, with
``/health/ready`` and ``/metrics`` sampled every half second.

Each test checks the at-least-once promise (every event written has a prediction at the
end; duplicates are allowed and printed) and what the fault should look like from outside.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from churnstream.kafka import admin
from churnstream.observability import names
from churnstream.ops import devbroker
from churnstream.settings import KafkaSettings
from churnstream.settings.sections import BrokerSettings, TopicSettings
from tests.faults.proxy import FaultProxy, ProxyStats
from tests.integration.conftest import embedded_broker_settings
from tests.integration.kafka_io import read_topic
from tests.unit.test_schemas import EVENT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The wire header every prediction carries: "topic:partition:offset" of its input event.
SOURCE_HEADER = "churnstream.source"
RATE_PER_S = 100.0
SAMPLE_EVERY_S = 0.5
HTTP_TIMEOUT_S = 10.0  # above the readiness probe's own broker timeout
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
BLACKHOLE_S = 30.0
LATENCY_MS = 200.0
#: How long the feeder keeps writing after the last fault: the checks need events on both
#: sides of each fault, not a long healthy tail (the drain waits for the feeder to finish).
FEED_AFTER_S = 3.0
RESET_ROUNDS = 10
#: Time for the scorer's clients to reconnect, fetch and commit between two resets (at 1.5 s
#: every round still found 3 or 4 connections to reset, at 3 s 4).
RESET_EVERY_S = 1.5
BLACKHOLE_BEFORE_S = 10.0
LATENCY_BEFORE_S = 5.0
#: 20 samples under 200 ms each way (a fetch takes 0.4 s or more): enough to see it in the
#: end-to-end mean, which is all the test checks about that phase.
LATENCY_FOR_S = 10.0
#: Between two reads of the predictions while some are still missing.
DRAIN_POLL_S = 0.5
CHURNSTREAM = Path(sys.executable).with_name("churnstream")


@dataclass
class FaultyBroker:
    settings: BrokerSettings
    proxy: FaultProxy

    @property
    def direct(self) -> str:
        return self.settings.bootstrap


@pytest.fixture(scope="module")
def faulty_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyBroker]:
    listener_port = devbroker.find_free_port()
    with FaultProxy(("127.0.0.1", listener_port)) as proxy:
        settings = embedded_broker_settings("kafka", tmp_path_factory.mktemp("faulty-broker"))
        host = settings.host
        extras = devbroker.KafkaExtras(
            listeners=(devbroker.ExtraListener("PROXIED", "PLAINTEXT", listener_port),),
            # Overrides the default (each listener advertised at its own port): clients that
            # come in through PROXIED are told to come back through the proxy.
            properties={
                "advertised.listeners": f"PLAINTEXT://{host}:{settings.port},"
                f"PROXIED://{proxy.address}"
            },
        )
        devbroker.start(settings, extras=extras)
        try:
            yield FaultyBroker(settings, proxy)
        finally:
            devbroker.stop(settings)


@pytest.fixture
def network(faulty_broker: FaultyBroker) -> Iterator[FaultyBroker]:
    """The module's broker with a healthy proxy, healed again after the test."""
    faulty_broker.proxy.heal()
    yield faulty_broker
    faulty_broker.proxy.heal()


@dataclass
class Topics:
    raw: str
    preds: str
    dlq: str
    group: str


def make_topics(network: FaultyBroker, name: str) -> Topics:
    topics = Topics(f"{name}.raw", f"{name}.preds", f"{name}.dlq", f"{name}-scorer")
    admin.create_topics(
        KafkaSettings(bootstrap_servers=network.direct),
        [
            TopicSettings(name=topics.raw, partitions=3),
            TopicSettings(name=topics.preds, partitions=3),
            TopicSettings(name=topics.dlq, partitions=1),
        ],
    )
    return topics


# -- the scorer, from outside -------------------------------------------------------------
@dataclass
class Sample:
    at: float  # monotonic
    wall: float
    phase: str
    ready: int | None  # HTTP status of /health/ready, None if it did not answer
    values: dict[str, float]


class Scorer:
    """``churnstream consume --mode streaming`` through the proxy, watched over HTTP."""

    def __init__(self, network: FaultyBroker, topics: Topics, model_dir: Path, tmp: Path):
        self.port = devbroker.find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "scorer.out"
        argv = [
            str(CHURNSTREAM), "consume", "--mode", "streaming",
            "--broker", network.proxy.address,
            "--input-topic", topics.raw, "--output-topic", topics.preds,
            "--deadletter-topic", topics.dlq, "--consumer-group", topics.group,
            "--model-path", str(model_dir), "--metrics-port", str(self.port),
            "--summary-interval", "10", "--no-reports", "--reload-interval", "0",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.http = httpx.Client(timeout=HTTP_TIMEOUT_S)
        self.samples: list[Sample] = []
        self.phase = "before"
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def ready_status(self) -> int | None:
        try:
            return self.http.get(f"{self.url}/health/ready").status_code
        except httpx.HTTPError:
            return None

    def scrape(self) -> dict[str, float]:
        try:
            text = self.http.get(f"{self.url}/metrics").text
        except httpx.HTTPError:
            return {}
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == names.SCORER_LAG:  # summed over partitions
                    values[s.name] = values.get(s.name, 0.0) + s.value
                elif not s.labels or s.name == names.SCORER_PRODUCED:
                    key = s.name if not s.labels else f"{s.name}{sorted(s.labels.items())}"
                    values[key] = s.value
        return values

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the scorer exited early:\n{self.output()}"
            if self.ready_status() == 200:
                return
            time.sleep(SAMPLE_EVERY_S)
        raise AssertionError(f"not ready within {timeout_s:g}s:\n{self.output()[-3000:]}")

    def start_sampling(self) -> None:
        def run() -> None:
            while not self._stop.wait(SAMPLE_EVERY_S):
                ready = self.ready_status()
                self.samples.append(
                    Sample(time.monotonic(), time.time(), self.phase, ready, self.scrape())
                )

        self._sampler = threading.Thread(target=run, name="scorer-sampler", daemon=True)
        self._sampler.start()

    def stop(self) -> tuple[int, str]:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(HTTP_TIMEOUT_S * 3)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()
        return self.proc.returncode, self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def in_phase(self, phase: str) -> list[Sample]:
        return [s for s in self.samples if s.phase == phase]


@pytest.fixture
def scorers() -> Iterator[list[Scorer]]:
    started: list[Scorer] = []
    yield started
    for scorer in started:
        if scorer.proc.poll() is None:
            scorer.proc.kill()
            scorer.proc.wait()


# -- the events -----------------------------------------------------------------------------
class Feeder(threading.Thread):
    """Writes ``total`` events straight to the broker at ``RATE_PER_S``; keeps their offsets."""

    def __init__(self, bootstrap: str, topic: str, total: int) -> None:
        super().__init__(name="event-feeder", daemon=True)
        self.bootstrap, self.topic, self.total = bootstrap, topic, total
        self.delivered: set[str] = set()
        self.failures: list[str] = []
        self.sent = 0

    def run(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                self.failures.append(str(err))
            else:
                self.delivered.add(f"{msg.topic()}:{msg.partition()}:{msg.offset()}")

        started = time.monotonic()
        for i in range(self.total):
            delay = started + i / RATE_PER_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = {
                **EVENT,
                "customerID": f"{i % 10000:04d}-FAULT",
                "tenure": i % 72,
                "event_ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            producer.produce(
                self.topic,
                key=body["customerID"].encode(),
                value=orjson.dumps(body),
                on_delivery=on_delivery,
            )
            producer.poll(0)
            self.sent = i + 1
        remaining = producer.flush(60)
        if remaining:
            self.failures.append(f"{remaining} not acknowledged")


@dataclass
class Outcome:
    written: int
    predicted: int
    missing: int
    duplicates: int
    per_source: Counter[str] = field(default_factory=Counter)


def drain(network: FaultyBroker, topics: Topics, feeder: Feeder) -> Outcome:
    """Read the predictions until every written event has one (or DRAIN_TIMEOUT_S passes)."""
    feeder.join(DRAIN_TIMEOUT_S)
    assert not feeder.is_alive(), "the feeder did not finish"
    assert not feeder.failures, feeder.failures[:5]
    expected = feeder.delivered
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        records = read_topic(network.direct, topics.preds, idle_s=1.0, timeout_s=60)
        sources = Counter(r.headers[SOURCE_HEADER].decode() for r in records)
        if expected <= sources.keys() or time.monotonic() > deadline:
            break
        time.sleep(DRAIN_POLL_S)
    return Outcome(
        written=len(expected),
        predicted=len(records),
        missing=len(expected - sources.keys()),
        duplicates=sum(n - 1 for n in sources.values() if n > 1),
        per_source=sources,
    )


def report(
    name: str, outcome: Outcome, scorer: Scorer, proxy: FaultProxy, proxy_before: ProxyStats
) -> None:
    last = scorer.samples[-1].values if scorer.samples else {}
    stats = proxy.stats()
    # The scorer really was behind the proxy: its fetches came back through it.
    assert stats.bytes_down - proxy_before.bytes_down > 0, "no traffic through the proxy"
    print(
        f"\n[{name}] written {outcome.written}, predictions {outcome.predicted}, "
        f"missing {outcome.missing}, duplicates {outcome.duplicates}; "
        f"redelivered batches {last.get(names.SCORER_REDELIVERED, float('nan')):.0f}; "
        f"proxy: {stats.accepted - proxy_before.accepted} connections accepted, "
        f"{stats.reset - proxy_before.reset} reset, "
        f"{(stats.bytes_down - proxy_before.bytes_down) / 1e6:.1f} MB to the scorer"
    )
    for phase in dict.fromkeys(s.phase for s in scorer.samples):
        samples = scorer.in_phase(phase)
        codes = Counter(s.ready for s in samples)
        lags = [s.values[names.SCORER_LAG] for s in samples if names.SCORER_LAG in s.values]
        ages = [s.values.get(names.SCORER_LAG_AGE, float("nan")) for s in samples]
        print(
            f"[{name}] {phase}: {len(samples)} samples, /health/ready {dict(codes)}, "
            f"lag max {max(lags, default=float('nan')):.0f}, "
            f"lag age max {max(ages, default=float('nan')):.1f}s, "
            f"last batch age max {max(last_batch_age(samples), default=float('nan')):.1f}s, "
            f"e2e mean {e2e_mean(samples) * 1000:.0f} ms"
        )


def last_batch_age(samples: list[Sample]) -> list[float]:
    """Seconds since the last committed batch, at each sample (once there was one)."""
    return [
        s.wall - s.values[names.SCORER_LAST_BATCH]
        for s in samples
        if s.values.get(names.SCORER_LAST_BATCH, 0.0) > 0
    ]


def e2e_mean(samples: list[Sample]) -> float:
    """Mean end-to-end latency of the predictions made between the first and last sample."""
    with_values = [s for s in samples if s.values]
    if len(with_values) < 2:
        return float("nan")
    first, last = with_values[0].values, with_values[-1].values
    count = last[f"{names.SCORER_END_TO_END}_count"] - first[f"{names.SCORER_END_TO_END}_count"]
    total = last[f"{names.SCORER_END_TO_END}_sum"] - first[f"{names.SCORER_END_TO_END}_sum"]
    return total / count if count > 0 else float("nan")


def finish(scorer: Scorer) -> str:
    code, output = scorer.stop()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    return output


# -- the tests ------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_connection_resets_lose_nothing(
    network: FaultyBroker, model_dir: Path, tmp_path: Path, scorers: list[Scorer]
) -> None:
    topics = make_topics(network, "resets")
    proxy_before = network.proxy.stats()
    scorer = Scorer(network, topics, model_dir, tmp_path)
    scorers.append(scorer)
    scorer.wait_ready()
    scorer.start_sampling()
    before_s = 5.0
    feed_s = before_s + RESET_ROUNDS * RESET_EVERY_S + FEED_AFTER_S
    feeder = Feeder(network.direct, topics.raw, total=int(RATE_PER_S * feed_s))
    feeder.start()
    time.sleep(before_s)
    scorer.phase = "resets"
    resets = []
    for _ in range(RESET_ROUNDS):
        resets.append(network.proxy.reset_all())
        time.sleep(RESET_EVERY_S)
    scorer.phase = "after"
    outcome = drain(network, topics, feeder)
    scorer.wait_ready(60)
    time.sleep(2)
    finish(scorer)
    report("resets", outcome, scorer, network.proxy, proxy_before)
    print(f"[resets] connections reset per round: {resets}")
    assert all(n >= 1 for n in resets), f"a round found no connection to reset: {resets}"
    assert outcome.missing == 0, f"{outcome.missing} of {outcome.written} events never scored"


@dataclass
class BlackHoleRun:
    outcome: Outcome
    scorer: Scorer
    written_during: int  # events the feeder wrote while the scorer was cut off

    def phase(self, name: str) -> list[Sample]:
        return self.scorer.in_phase(name)


@pytest.fixture(scope="module")
def black_hole(
    faulty_broker: FaultyBroker, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BlackHoleRun]:
    """One run, several checks: 10 s of traffic, a 30 s black hole, then until drained
    (the feeder stops FEED_AFTER_S after the black hole)."""
    network = faulty_broker
    network.proxy.heal()
    topics = make_topics(network, "blackhole")
    proxy_before = network.proxy.stats()
    scorer = Scorer(network, topics, model_dir, tmp_path_factory.mktemp("blackhole"))
    try:
        scorer.wait_ready()
        scorer.start_sampling()
        feed_s = BLACKHOLE_BEFORE_S + BLACKHOLE_S + FEED_AFTER_S
        feeder = Feeder(network.direct, topics.raw, total=int(RATE_PER_S * feed_s))
        feeder.start()
        time.sleep(BLACKHOLE_BEFORE_S)
        scorer.phase = "blackhole"
        network.proxy.blackhole(BLACKHOLE_S)
        sent_at_cut = feeder.sent
        time.sleep(BLACKHOLE_S)
        written_during = feeder.sent - sent_at_cut
        scorer.phase = "after"
        outcome = drain(network, topics, feeder)
        scorer.wait_ready(60)
        time.sleep(2)
        finish(scorer)
        report("blackhole", outcome, scorer, network.proxy, proxy_before)
        yield BlackHoleRun(outcome, scorer, written_during)
    finally:
        network.proxy.heal()
        if scorer.proc.poll() is None:
            scorer.proc.kill()
            scorer.proc.wait()


@pytest.mark.timeout(600)
def test_black_hole_loses_nothing(black_hole: BlackHoleRun) -> None:
    outcome = black_hole.outcome
    assert outcome.missing == 0, f"{outcome.missing} of {outcome.written} events never scored"


@pytest.mark.timeout(600)
def test_black_hole_flips_readiness_and_back(black_hole: BlackHoleRun) -> None:
    before, during, after = (black_hole.phase(p) for p in ("before", "blackhole", "after"))
    assert before and all(s.ready == 200 for s in before), Counter(s.ready for s in before)
    down = [s for s in during if s.ready is not None and s.ready != 200]
    assert down, (
        f"/health/ready never went not-ready in a {BLACKHOLE_S:g}s black hole: "
        f"{Counter(s.ready for s in during)}"
    )
    up = [s for s in after if s.ready == 200]
    assert up, f"/health/ready did not come back: {Counter(s.ready for s in after)}"
    print(
        f"\n[blackhole] not ready {down[0].at - during[0].at:.1f}s into the black hole; "
        f"ready again {up[0].at - after[0].at:.1f}s after it ended"
    )


@pytest.mark.timeout(600)
def test_black_hole_stalls_the_last_batch_timestamp(black_hole: BlackHoleRun) -> None:
    # No batch committed for most of the cut, while events kept arriving at the broker.
    age = last_batch_age(black_hole.phase("blackhole"))
    assert black_hole.written_during >= RATE_PER_S * BLACKHOLE_S * 0.9
    assert max(age, default=0.0) >= BLACKHOLE_S * 2 / 3, age


@pytest.mark.timeout(600)
def test_black_hole_shows_on_the_lag_metric(black_hole: BlackHoleRun) -> None:
    """A scorer cut off from its broker cannot count what arrives meanwhile; the age of its
    lag figure shows the cut instead: it grows through the black hole and is fresh again
    after (the lag in messages never reads lower than its last measured value)."""
    age = names.SCORER_LAG_AGE
    before = [s.values[age] for s in black_hole.phase("before") if age in s.values]
    during = [s.values[age] for s in black_hole.phase("blackhole") if age in s.values]
    after = [s.values[age] for s in black_hole.phase("after") if age in s.values]
    assert before and during and after
    # Fresh before (a refresh every 2 s, on a loaded machine), stale through most of the cut.
    assert max(before) < BLACKHOLE_S / 3, before
    assert max(during) >= BLACKHOLE_S * 2 / 3, during
    assert after[-1] < BLACKHOLE_S / 3, after


@pytest.mark.timeout(600)
def test_added_latency_slows_but_loses_nothing(
    network: FaultyBroker, model_dir: Path, tmp_path: Path, scorers: list[Scorer]
) -> None:
    topics = make_topics(network, "latency")
    proxy_before = network.proxy.stats()
    scorer = Scorer(network, topics, model_dir, tmp_path)
    scorers.append(scorer)
    scorer.wait_ready()
    scorer.start_sampling()
    feed_s = LATENCY_BEFORE_S + LATENCY_FOR_S + FEED_AFTER_S
    feeder = Feeder(network.direct, topics.raw, total=int(RATE_PER_S * feed_s))
    feeder.start()
    time.sleep(LATENCY_BEFORE_S)
    scorer.phase = "latency"
    network.proxy.latency(LATENCY_MS)
    time.sleep(LATENCY_FOR_S)
    network.proxy.latency(0)
    scorer.phase = "after"
    outcome = drain(network, topics, feeder)
    time.sleep(2)
    finish(scorer)
    report("latency", outcome, scorer, network.proxy, proxy_before)

    assert outcome.missing == 0, f"{outcome.missing} of {outcome.written} events never scored"
    during = scorer.in_phase("latency")
    assert all(s.ready == 200 for s in during), Counter(s.ready for s in during)
    # Each fetch waits 200 ms there and 200 ms back: the end-to-end histogram shows it.
    assert e2e_mean(during) >= LATENCY_MS / 1000, e2e_mean(during)
