"""What crosses the scoring core's boundary: raw messages in; messages to produce, and what a
batch became, out; and what a run of batches came to. No Kafka client type appears here (the
poll loop converts)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from churnstream.headers import ConsumedHeaders, Headers
from churnstream.model.contributions import TopReasons

logger = logging.getLogger(__name__)

#: The analytics columns of :attr:`BatchResult.scored`, in this order.
SCORED_COLUMNS = (
    "customerID",
    "Contract",
    "InternetService",
    "PaymentMethod",
    "tenure",
    "MonthlyCharges",
    "churn_probability",
    "prediction",
    "inference_latency_ms",
    "e2e_latency_ms",
    "source_topic",
    "source_partition",
    "source_offset",
)
#: One array per name of :data:`SCORED_COLUMNS` (all of the same length), in that order,
#: plus :data:`~churnstream.model.contributions.REASONS_COLUMN` when the batch has reasons:
#: ``pandas.DataFrame(columns)`` is the analytics frame.
ScoredColumns = dict[str, np.ndarray]


class RawMessage(NamedTuple):
    """What the core needs of a Kafka message (decoupled from confluent_kafka.Message).

    A named tuple rather than a dataclass: the poll loop builds one per message, and a tuple
    costs a third of a frozen dataclass to create.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: As the client handed them over: converted only if a dead letter needs them (the
    #: valid events that make up most of the traffic never read them).
    headers: ConsumedHeaders = None


class OutMessage(NamedTuple):
    """A message to produce: a prediction, a dead letter or a shadow prediction."""

    key: bytes | None
    value: bytes
    headers: Headers


class Predicted(NamedTuple):
    """A batch's predictions column-wise, row for row as in :attr:`BatchResult.predictions`:
    what shadow scoring needs to write its own predictions beside them, without re-reading
    the bodies."""

    customer_ids: list[str]
    event_ts: list[str]
    #: Each input's ``topic:partition:offset``, encoded (the SOURCE header's value).
    sources: list[bytes]
    #: Within [0, 1], as written in the bodies.
    probabilities: np.ndarray
    labels_yes: np.ndarray
    processed_ts: str
    model_version: str
    inference_ms: float
    #: Each prediction's top reasons, when the batch was scored with them.
    reasons: TopReasons | None = None


@dataclass(eq=False, repr=False)
class BatchResult:
    """What a batch became: messages to produce, plus what window analytics need.

    :attr:`scored` holds one row per prediction (groups, probability, latencies, source) as
    :data:`ScoredColumns`. ``scored_columns`` may be a function that builds them: they are
    then made on first access, so a caller that only needs the messages (or needs them
    first, as the poll loop does: it reads ``scored`` after the batch is committed) does not
    wait for them.
    """

    predictions: list[OutMessage]
    dead_letters: list[OutMessage]
    scored_columns: ScoredColumns | Callable[[], ScoredColumns]
    dead_letter_types: dict[str, int]
    dead_letter_codes: dict[str, int]
    inference_ms: float
    predicted: Predicted

    @property
    def scored(self) -> ScoredColumns:
        if callable(self.scored_columns):
            self.scored_columns = self.scored_columns()
        return self.scored_columns

    def __repr__(self) -> str:
        return (
            f"BatchResult({len(self.predictions)} predictions, "
            f"{len(self.dead_letters)} dead letters, inference {self.inference_ms:.2f} ms)"
        )


@dataclass
class RunCounts:
    """What one scoring run came to over its batches, whichever engine ran it.

    The Kafka poll loop (:class:`~churnstream.streaming.options.ScoreSummary`) and the Spark
    engine (:class:`~churnstream.spark.kafka_batch.SparkBatchSummary`) add their own fields
    and end their summary line their own way; :meth:`counts` is the part they share.
    """

    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    batches: int = 0
    duration_s: float = 0.0
    model_version: str = ""

    @property
    def rate(self) -> float:
        """Consumed messages per second over the run."""
        return self.consumed / self.duration_s if self.duration_s > 0 else 0.0

    def counts(self) -> str:
        return (
            f"consumed {self.consumed}, scored {self.scored}, dead-lettered "
            f"{self.dead_lettered} in {self.duration_s:.2f}s ({self.rate:,.1f} msgs/s)"
        )
