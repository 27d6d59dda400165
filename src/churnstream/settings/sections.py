"""Every settings section except kafka (which is :mod:`churnstream.settings.kafka`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from churnstream.exceptions import ConfigError

logger = logging.getLogger(__name__)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSettings(_Frozen):
    name: str
    partitions: int = Field(ge=1)
    replication_factor: int = Field(default=1, ge=1)


class TopicsSettings(_Frozen):
    raw: TopicSettings = TopicSettings(name="telco.raw.customers", partitions=3)
    predictions: TopicSettings = TopicSettings(name="telco.churn.predictions", partitions=3)
    deadletter: TopicSettings = TopicSettings(name="telco.deadletter", partitions=1)


class ProducerSettings(_Frozen):
    """Producer tuning; the reasons for each default are in docs/benchmarks.md."""

    events_per_sec: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    # None: the event producer's linger is part of every event's end-to-end latency.
    # Under load librdkafka still batches what queues while a request is in flight.
    linger_ms: int = Field(default=0, ge=0)
    # The scorer's own producer (predictions, shadow predictions, dead letters). It flushes
    # each micro-batch, which sends at once whatever the linger, so a linger costs its
    # latency nothing; while a pipelined batch is in flight it groups the batch into fewer,
    # larger requests (docs/benchmarks.md, "Settings chosen").
    scorer_linger_ms: int = Field(default=5, ge=0)
    batch_num_messages: int = Field(default=10_000, ge=1)
    # Bytes per partition batch: 10,000 records of ~250 bytes fit one request.
    batch_max_bytes: int = Field(default=1_000_000, ge=1)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "gzip"
    # zlib's level for gzip (librdkafka's compression.level; zlib's own default is 6).
    # Readers see the same gzip records whatever the level; 1 costs the scorer 3.5-5 us
    # less CPU per prediction for records about 1.5x larger (docs/benchmarks.md).
    gzip_level: int = Field(default=1, ge=0, le=9)
    delivery_timeout_ms: int = Field(default=30_000, ge=1000)
    queue_max_messages: int = Field(default=100_000, ge=1)
    # The at-least-once scorer's producer only ("errors": librdkafka's
    # delivery.report.only.error). A batch then counts as acknowledged when flush leaves
    # nothing outstanding and no failed delivery was reported; the producers that count each
    # delivery (produce, dlq replay) always get every report. Default "errors": no Python
    # callback per acknowledged message (the ablation in docs/benchmarks.md measures it).
    delivery_reports: Literal["all", "errors"] = "errors"
    checkpoint_file: Path = Path(".churnstream/producer_checkpoint.json")

    def for_scorer(self) -> ProducerSettings:
        """These settings as the scorer's producer takes them: with its own linger."""
        return self.model_copy(update={"linger_ms": self.scorer_linger_ms})


class ConsumerSettings(_Frozen):
    """Consumer tuning; the reasons for each default are in docs/benchmarks.md."""

    group_id: str = "churnstream-scorer"
    # A micro-batch is what is queued once its first message is there, up to
    # max_batch_records: a backlog fills large batches that amortise the per-batch flush
    # and commit round trips, a slow stream is scored at once. max_batch_wait_ms bounds one
    # poll's wait for that first message (how often an idle loop wakes up).
    # 2,000 rather than 5,000: two batches are held while pipelined, and the smaller ones
    # kept msgs/s with the small prefetch queue below (docs/benchmarks.md, "Memory").
    max_batch_records: int = Field(default=2000, ge=1)
    max_batch_wait_ms: int = Field(default=5, ge=1)
    idle_timeout_ms: int = Field(default=10_000, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    fetch_min_bytes: int = Field(default=1, ge=1)
    fetch_wait_max_ms: int = Field(default=100, ge=0)
    # Bytes per partition per fetch: each fetch is decompressed in memory and overshoots the
    # prefetch queue by up to one fetch, so with 6 partitions librdkafka's 1 MB cost the
    # scorer about 55 MB of peak RSS and 256 KB still about 15 MB (docs/benchmarks.md,
    # "Memory").
    max_partition_fetch_bytes: int = Field(default=65_536, ge=1)
    # librdkafka's prefetch queue (default 64 MB): about one batch ahead is enough once
    # fetch_queue_backoff_ms is short, and it bounds the scorer's memory behind a backlog.
    queued_max_kbytes: int = Field(default=2048, ge=1)
    # How long librdkafka postpones a partition's next fetch once the prefetch queue is full
    # (its default 1,000 ms): with a small queue the scorer drained the queue and then waited
    # out that second, at less than half the msgs/s (docs/benchmarks.md, "Memory").
    fetch_queue_backoff_ms: int = Field(default=10, ge=0, le=300_000)
    summary_interval_s: float = Field(default=60.0, gt=0)
    top_k: int = Field(default=10, ge=1)
    # A broken producer is replaced and failed batches are retried for this long without
    # anything published (a broker restart takes seconds to minutes); then the scorer exits.
    recovery_timeout_s: float = Field(default=300.0, gt=0)
    # At-least-once only: score batch N+1 while batch N is acknowledged and committed
    # (churnstream.streaming.pipelined). "auto" pipelines batch mode, where a backlog gains
    # 1.3-1.5x, and not streaming mode, where each batch would wait for the flush of the one
    # before it (docs/benchmarks.md, "Pipelining").
    pipeline: Literal["auto"] | bool = "auto"
    # The scorer's Kafka client, its consumer and producer: confluent-kafka, or the native
    # client built from native_io/ (churnstream.kafka.native: librdkafka driven from Rust,
    # a batch per call; at-least-once and plaintext only).
    client: Literal["confluent", "native"] = "confluent"

    @property
    def native_client(self) -> bool:
        """Whether the scorer runs on the native Kafka client."""
        return self.client == "native"

    @field_validator("pipeline", mode="before")
    @classmethod
    def _auto_or_bool(cls, value: object) -> object:
        # One readable line instead of pydantic's error for each member of the union.
        if value == "auto" or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ValueError(f"must be auto, true or false, not {value!r}")


class BrokerSettings(_Frozen):
    """The embedded broker, used only when ``kafka.bootstrap_servers`` points at it."""

    engine: Literal["auto", "kafka", "tansu"] = "auto"
    host: str = "127.0.0.1"
    port: int = Field(default=19092, ge=1, le=65535)
    controller_port: int | None = Field(default=None, ge=1, le=65535)
    state_dir: Path = Path(".churnstream/broker")
    kafka_version: str = "4.1.1"
    jars_dir: Path = Path(".churnstream/kafka-jars")
    heap: str = "512m"
    start_timeout_s: float = Field(default=90.0, gt=0)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class SparkSettings(_Frozen):
    """The Spark engine's files: the Kafka connector's jars and the streaming checkpoint."""

    # Fetched once with Maven, like the broker's jars (`churnstream consume --engine spark`).
    jars_dir: Path = Path(".churnstream/spark-jars")
    # Where `consume --engine spark` keeps its offsets and commits; a re-run resumes from it.
    checkpoint_location: Path = Path(".churnstream/spark-checkpoint")


class ModelSettings(_Frozen):
    models_dir: Path = Path("models")
    # "ensemble": soft vote of logistic regression and histogram gradient boosting, the best
    # by cross-validated ROC AUC on the training part (see churnstream.model.train).
    algorithm: Literal["logreg", "gbm", "hgb", "ensemble"] = "ensemble"
    random_state: int = 42
    test_size: float = Field(default=0.2, gt=0, lt=1)
    cv_folds: int = Field(default=5, ge=2)


class PredictSettings(_Frozen):
    """`churnstream predict` over files (the pandas engine)."""

    #: Rows read, scored and written at a time: memory grows with this, not with the file.
    chunk_rows: int = Field(default=50_000, ge=1)


class ScoringSettings(_Frozen):
    """The scoring core's fast check: ``auto`` uses the native extension (built from
    ``native/`` by ``make setup``) where it is installed, else Python; ``native`` insists on
    it; ``python`` is the pure-Python path (the oracle of the differential tests)."""

    engine: Literal["auto", "native", "python"] = "auto"


class PathsSettings(_Frozen):
    data_dir: Path = Path("data")
    raw_csv: Path = Path("data/raw/telco_customer_churn.csv")
    reports_dir: Path = Path("reports")
    logs_dir: Path = Path("logs")


class ObservabilitySettings(_Frozen):
    """Metrics and health endpoints, readiness thresholds, drift checks and the dashboard."""

    #: Where ``--metrics-port`` serves /metrics and /health/*; 0.0.0.0 exposes it to others.
    metrics_host: str = "127.0.0.1"
    #: None: no metrics server unless ``--metrics-port`` is given; 0: any free port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: Consumer lag is recomputed (from cached watermarks) at most this often.
    lag_refresh_s: float = Field(default=2.0, gt=0)
    #: /health/ready fails while the scorer's total lag is above this.
    ready_max_lag: int = Field(default=10_000, ge=0)
    #: The broker counts as reachable for this long after a batch or a metadata probe.
    broker_check_interval_s: float = Field(default=10.0, gt=0)
    broker_check_timeout_s: float = Field(default=2.0, gt=0)
    #: /health/live fails if the running loop has not polled for this long.
    stall_timeout_s: float = Field(default=60.0, gt=0)
    #: A feature drifts when its PSI against the training profile is above this.
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    #: Windows with fewer scored messages are reported but never flagged (PSI noise).
    drift_min_samples: int = Field(default=200, ge=1)
    #: Largest tolerated |predicted churn rate - expected rate| before it counts as drift.
    drift_churn_rate_tolerance: float = Field(default=0.1, gt=0, le=1)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8050, ge=0, le=65535)
    #: How often the dashboard page asks for new numbers.
    dashboard_refresh_ms: int = Field(default=1000, ge=100)


class ApiSettings(_Frozen):
    """`churnstream serve`: the REST API (POST /predict, GET /model, /health/*, /metrics).

    ``token`` (best from ``CHURNSTREAM_API__TOKEN``) turns on bearer authentication for every
    route but /health/* and the OpenAPI docs; unset, the API is open, so keep ``host`` on
    127.0.0.1 or put it behind something that authenticates.
    """

    # Pydantic puts the raw input, the token included, into validation errors otherwise.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    #: 0.0.0.0 serves other hosts too.
    host: str = "127.0.0.1"
    #: 0: any free port (printed at start-up).
    port: int = Field(default=8000, ge=0, le=65535)
    token: SecretStr | None = None
    #: Most records one POST /predict may carry (more: 422); one model call scores them all.
    max_batch_records: int = Field(default=1000, ge=1)
    #: Largest request body (more: 413). A record is about 600 bytes of JSON.
    max_body_bytes: int = Field(default=2_097_152, ge=1024)

    @model_validator(mode="after")
    def _token_not_blank(self) -> ApiSettings:
        if self.token is not None and not self.token.get_secret_value().strip():
            # A ConfigError, like the kafka settings': never wrapped with the input in it.
            raise ConfigError("invalid api settings: api.token is blank (unset it for no auth)")
        return self
