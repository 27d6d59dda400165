"""Publishing a scored batch: at-least-once, or exactly-once in one Kafka transaction.

At-least-once: a batch's offsets are committed only after every prediction and dead letter
of that batch has been acknowledged by the broker.

Exactly-once: each batch is one transaction holding its predictions, its dead letters and
its input offsets (``send_offsets_to_transaction``). Readers with
``isolation.level=read_committed`` see every batch once or not at all. The transactional id
is stable per scorer instance, so a restarted scorer fences its crashed predecessor and
aborts its open transaction at once.

Either way :meth:`Publisher.publish` returns None on success, or a
:class:`~churnstream.streaming.recovery.Failure` saying why the batch must be scored again
and whether the producer must be replaced first (:meth:`Publisher.reopen`; see
:mod:`~churnstream.streaming.recovery`). No call here blocks without a bound: the consumer
must be polled again within ``max.poll.interval.ms`` (see :data:`LONGEST_PUBLISH_S`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from confluent_kafka import Consumer, KafkaException

from churnstream.exceptions import BrokerUnavailableError, ClientStuckError, ProducerFatalError
from churnstream.kafka.bounded import BoundedCalls
from churnstream.kafka.producer import FLUSH_TIMEOUT_S, SafeProducer
from churnstream.logging import BATCH_SIZE, OFFSETS
from churnstream.retry import retrying
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.scoring.shadow import ShadowRecord
from churnstream.settings import Settings
from churnstream.streaming.batches import next_offsets
from churnstream.streaming.options import ScoreOptions, default_transactional_id
from churnstream.streaming.recovery import Failure, Verdict, describe, verdict

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0
#: The timeout given to one transactional call; one that times out is retriable and is
#: simply made again (librdkafka resumes it).
TXN_CALL_TIMEOUT_S = 5.0
#: How long to wait for one transactional call whatever its timeout says: librdkafka may
#: overrun it by a request timeout (10 s seen), or never return (seen after a broker crash).
#: Past it the producer is abandoned and replaced (see churnstream.kafka.bounded).
TXN_CALL_BOUND_S = 12.0
#: Retrying send_offsets_to_transaction and commit_transaction, per batch: past this the
#: producer is replaced instead (its transaction is then settled by the fencing).
TXN_PUBLISH_BUDGET_S = 15.0
#: Retrying abort_transaction; past this the producer is replaced too.
TXN_ABORT_BUDGET_S = 5.0
#: init_transactions of a new producer, per recovery attempt.
TXN_INIT_TIMEOUT_S = 10.0
#: At start-up the group and transaction coordinators may still be loading: init_transactions
#: is retried this long before the scorer gives up.
TXN_STARTUP_INIT_S = 30.0
#: How long the at-least-once publish waits for its synchronous offset commit. librdkafka
#: waits for the answer without a limit of its own (a 30 s network black hole held the loop
#: for all 30 s); past this the commit is left to finish on its worker and the batch is
#: scored again, as one whose outputs were not acknowledged.
COMMIT_BOUND_S = 10.0
#: The longest a publish can keep the loop from polling its consumer: the last call of each
#: budget may start just before it ends and run for its whole bound. The consumer's
#: max.poll.interval.ms must be well above it (a unit test checks).
LONGEST_PUBLISH_S = max(
    FLUSH_TIMEOUT_S + COMMIT_BOUND_S,
    TXN_PUBLISH_BUDGET_S + TXN_ABORT_BUDGET_S + 2 * TXN_CALL_BOUND_S,
)


T = TypeVar("T")


def _retriable(exc: BaseException) -> bool:
    return (
        isinstance(exc, KafkaException) and bool(exc.args) and verdict(exc.args[0]) is Verdict.RETRY
    )


def _until(calls: BoundedCalls, deadline: float, call: Callable[[float], T], what: str) -> T:
    """``call(timeout)`` again while it fails retriably, until ``deadline`` (monotonic); each
    attempt on ``calls``'s worker, waited for at most TXN_CALL_BOUND_S.

    Raises:
        ClientStuckError: an attempt did not return in time.
    """
    policy = retrying(
        deadline_s=max(0.0, deadline - time.monotonic()),
        first_delay_s=0.1,
        max_delay_s=1.0,
        retry_on=_retriable,
    )

    def attempt() -> T:
        timeout = max(0.1, min(TXN_CALL_TIMEOUT_S, deadline - time.monotonic()))
        return calls.call(lambda: call(timeout), bound_s=TXN_CALL_BOUND_S, what=what)

    return policy.call(attempt)


class Publisher:
    """At-least-once: outputs acknowledged, then offsets committed."""

    #: How a batch that did not make it is described in the log.
    failure = "fully acknowledged"

    def __init__(self, producer: SafeProducer, options: ScoreOptions) -> None:
        self.producer = producer
        self.options = options
        #: Set when a publish found the producer unusable; :meth:`reopen` clears it.
        self.broken = False
        self._commits = BoundedCalls("commit")
        #: Failed deliveries counted before the batch being sent: more after its flush
        #: means one of its own failed.
        self._failed_before = 0

    def publish(
        self,
        batch: Sequence[RawMessage],
        result: BatchResult,
        consumer: Consumer,
        shadow: Sequence[ShadowRecord] = (),
    ) -> Failure | None:
        """Produce the batch's outputs, wait for their acknowledgement, commit its offsets.

        Acknowledged means: flush() left nothing outstanding and no delivery of this batch
        failed. That holds whether librdkafka reports every delivery or only the failed
        ones (``producer.delivery_reports``): a failure is reported either way, and flush
        serves its callback before it returns.
        """
        return self.send(result, shadow) or self.settle(batch, consumer)

    def send(self, result: BatchResult, shadow: Sequence[ShadowRecord] = ()) -> Failure | None:
        """Queue a batch's outputs without waiting for them: the first half of
        :meth:`publish`. Nothing else may be produced until :meth:`settle` has judged it,
        since a failed delivery is attributed to whatever was sent since the last send."""
        self._failed_before = self.producer.stats.failed
        try:
            self._produce(result, shadow)
        except ProducerFatalError as exc:
            return self._broken(str(exc))
        except KafkaException as exc:  # refused locally (e.g. an unknown topic)
            return Failure(describe(exc))
        return None

    def settle(self, batch: Sequence[RawMessage], consumer: Consumer) -> Failure | None:
        """Wait until everything :meth:`send` queued is acknowledged, then commit ``batch``'s
        offsets: the second half of :meth:`publish`."""
        producer = self.producer
        try:
            remaining = producer.flush()
        except ProducerFatalError as exc:
            return self._broken(str(exc))
        except KafkaException as exc:
            return Failure(describe(exc))
        if remaining or producer.stats.failed > self._failed_before:
            return Failure(producer.stats.last_error or f"{remaining} still queued")
        offsets = next_offsets(batch)
        try:
            self._commits.call(
                lambda: consumer.commit(offsets=offsets, asynchronous=False),
                bound_s=COMMIT_BOUND_S,
                what="commit",
            )
        except ClientStuckError as exc:
            # Not known to be committed, so not reported as a committed batch. If the stuck
            # commit lands later, a later commit supersedes it.
            return Failure(describe(exc))
        except KafkaException as exc:
            # Typically a rebalance: the partition's new owner re-scores from the last commit.
            logger.warning(
                "commit failed (%s); those messages will be scored again",
                describe(exc),
                extra={
                    BATCH_SIZE: len(batch),
                    OFFSETS: {tp.partition: tp.offset for tp in offsets},
                },
            )
        return None

    def reopen(self) -> str:
        """A new producer if this one is broken (no-op otherwise); returns what was done."""
        if not self.broken:
            return "producer kept"
        self.producer.reopen()
        self.broken = False
        return "new idempotent producer"

    def close(self) -> None:
        """Wait for what is still queued (bounded); what is left was not committed. Never
        raises: a producer that failed fatally is reported, not flushed."""
        self._commits.close()
        remaining = self.producer.close(CLOSE_TIMEOUT_S)
        if remaining:
            logger.error(
                "%d output message(s) unacknowledged at shutdown (not committed)", remaining
            )

    def _broken(self, reason: str) -> Failure:
        self.broken = True
        return Failure(reason, replace=True)

    def _produce(self, result: BatchResult, shadow: Sequence[ShadowRecord]) -> None:
        opts, producer = self.options, self.producer
        producer.produce_all(opts.output_topic, result.predictions)
        if result.dead_letters:
            producer.produce_all(opts.deadletter_topic, result.dead_letters)
        if opts.shadow_topic and shadow:
            producer.produce_all(opts.shadow_topic, [record.out for record in shadow])


class TransactionalPublisher(Publisher):
    """Exactly-once: outputs and input offsets in one transaction per batch."""

    failure = "committed"

    def __init__(self, producer: SafeProducer, options: ScoreOptions, txn_id: str) -> None:
        super().__init__(producer, options)
        self.txn_id = txn_id
        self._in_txn = False
        #: init_transactions has succeeded on the current producer.
        self._ready = False
        #: A call on the current producer never returned: replace it without touching it.
        self._abandoned = False
        self._calls = BoundedCalls("txn")

    def publish(
        self,
        batch: Sequence[RawMessage],
        result: BatchResult,
        consumer: Consumer,
        shadow: Sequence[ShadowRecord] = (),
    ) -> Failure | None:
        """Begin, produce, add the offsets, commit; abort or replace (and say why) on errors."""
        raw, calls = self.producer.raw, self._calls
        offsets = next_offsets(batch)
        deadline = time.monotonic() + TXN_PUBLISH_BUDGET_S
        try:
            raw.begin_transaction()
            self._in_txn = True
            self._produce(result, shadow)
            group = consumer.consumer_group_metadata()
            _until(
                calls,
                deadline,
                lambda timeout: raw.send_offsets_to_transaction(offsets, group, timeout),
                "send_offsets_to_transaction",
            )
            _until(calls, deadline, raw.commit_transaction, "commit_transaction")
            self._in_txn = False
            return None
        except ProducerFatalError as exc:
            return self._broken(str(exc))
        except ClientStuckError as exc:
            self._abandoned = True
            return self._broken(str(exc))
        except KafkaException as exc:
            reason = describe(exc)
            match verdict(exc.args[0]):
                case Verdict.ABORT:
                    problem = self._abort()
                    if problem is None:
                        return Failure(reason)
                    return self._broken(f"{reason}; then the abort failed: {problem}")
                case Verdict.RETRY:
                    return self._broken(f"{reason}, still after {TXN_PUBLISH_BUDGET_S:g}s")
                case _:
                    return self._broken(reason)
        finally:
            self.producer.report_failures()

    def reopen(self) -> str:
        """A new producer if this one is broken, then init_transactions (fencing the old).

        Raises:
            KafkaException: init_transactions failed (retriable: call again; otherwise the
                producer is marked broken, and replaced on the next call).
        """
        done = []
        if self.broken:
            self.producer.reopen(purge=not self._abandoned)
            self.broken = self._ready = self._in_txn = self._abandoned = False
            done.append("new transactional producer")
        if not self._ready:
            init = self.producer.raw.init_transactions
            try:
                self._calls.call(
                    lambda: init(TXN_INIT_TIMEOUT_S),
                    bound_s=TXN_INIT_TIMEOUT_S + TXN_CALL_BOUND_S,
                    what="init_transactions",
                )
            except ClientStuckError:
                self.broken = self._abandoned = True
                raise
            except KafkaException as exc:
                if not _retriable(exc):
                    self.broken = True
                raise
            self._ready = True
            done.append(f"transactions initialised as {self.txn_id}")
        return ", ".join(done) or "producer kept"

    def close(self) -> None:
        if self._in_txn and not self.broken:
            problem = self._abort(budget_s=TXN_CALL_TIMEOUT_S)
            if problem is not None:
                logger.warning("abort at shutdown: %s", problem)
        if self._abandoned:  # a call is still inside it: leave it alone
            logger.warning("producer abandoned in a call that never returned; not flushed")
        else:
            super().close()
        self._calls.close()

    def _abort(self, budget_s: float = TXN_ABORT_BUDGET_S) -> str | None:
        """Abort the open transaction; None when done, else why it could not be."""
        try:
            _until(
                self._calls,
                time.monotonic() + budget_s,
                self.producer.raw.abort_transaction,
                "abort_transaction",
            )
        except ClientStuckError as exc:
            self._abandoned = True
            return describe(exc)
        except (KafkaException, ProducerFatalError) as exc:
            return describe(exc)
        self._in_txn = False
        return None


def open_publisher(settings: Settings, options: ScoreOptions) -> Publisher:
    """The publisher ``options`` ask for, its producer connected (and fenced, if exactly-once).

    Raises:
        BrokerUnavailableError: transactions could not be initialised.
    """
    kafka, producer_settings = settings.kafka, settings.producer.for_scorer()
    if not options.exactly_once:
        config = kafka.producer_config(producer_settings)
        if settings.producer.delivery_reports == "errors":
            # Success is then inferred: flush() returned with nothing outstanding and no
            # failed delivery was reported during it (see Publisher.publish).
            config["delivery.report.only.error"] = True
        return Publisher(SafeProducer(config, native=settings.consumer.native_client), options)
    txn_id = options.transactional_id or default_transactional_id(
        options.group_id, options.input_topic
    )
    producer = SafeProducer(kafka.transactional_producer_config(producer_settings, txn_id))
    publisher = TransactionalPublisher(producer, options, txn_id)
    try:
        # Fences any earlier instance with this id and aborts its open transaction.
        retrying(
            deadline_s=TXN_STARTUP_INIT_S, first_delay_s=0.5, max_delay_s=2.0, retry_on=_retriable
        ).call(publisher.reopen)
    except (KafkaException, ClientStuckError) as exc:
        raise BrokerUnavailableError(
            f"could not initialise transactions as {txn_id!r}: {describe(exc)}"
        ) from exc
    logger.info("exactly-once: transactional id %s", txn_id)
    return publisher
