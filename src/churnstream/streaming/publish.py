"""Publishing a scored batch: at-least-once, or exactly-once in one Kafka transaction.

At-least-once: a batch's offsets are committed only after every prediction and dead letter
of that batch has been acknowledged by the broker.

Exactly-once: each batch is one transaction holding its predictions, its dead letters and
its input offsets (``send_offsets_to_transaction``). Readers with
``isolation.level=read_committed`` see every batch once or not at all. The transactional id
is stable per scorer instance, so a restarted scorer fences its crashed predecessor and
aborts its open transaction at once.

Either way :meth:`Publisher.publish` returns None on success, or why the batch must be
scored again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException

from churnstream.exceptions import BrokerUnavailableError, DeliveryError
from churnstream.kafka.producer import SafeProducer
from churnstream.logging import BATCH_SIZE, OFFSETS
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.scoring.shadow import ShadowRecord
from churnstream.settings import Settings
from churnstream.streaming.batches import next_offsets
from churnstream.streaming.options import ScoreOptions, default_transactional_id

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0
TXN_TIMEOUT_S = 30.0


class Publisher:
    """At-least-once: outputs acknowledged, then offsets committed."""

    #: How a batch that did not make it is described in the log.
    failure = "fully acknowledged"

    def __init__(self, producer: SafeProducer, options: ScoreOptions) -> None:
        self.producer = producer
        self.options = options

    @property
    def last_error(self) -> str | None:
        return self.producer.stats.last_error

    def publish(
        self,
        batch: Sequence[RawMessage],
        result: BatchResult,
        consumer: Consumer,
        shadow: Sequence[ShadowRecord] = (),
    ) -> str | None:
        """Produce the batch's outputs, wait for their acknowledgement, commit its offsets."""
        producer = self.producer
        failed_before = producer.stats.failed
        self._produce(result, shadow)
        remaining = producer.flush()
        if remaining or producer.stats.failed > failed_before:
            return producer.stats.last_error or f"{remaining} still queued"
        try:
            consumer.commit(offsets=next_offsets(batch), asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance: the partition's new owner re-scores from the last commit.
            logger.warning(
                "commit failed (%s); those messages will be scored again",
                exc,
                extra={
                    BATCH_SIZE: len(batch),
                    OFFSETS: {tp.partition: tp.offset for tp in next_offsets(batch)},
                },
            )
        return None

    def close(self) -> None:
        """Wait for what is still queued (bounded); what is left was not committed."""
        remaining = self.producer.flush(CLOSE_TIMEOUT_S)
        if remaining:
            logger.error(
                "%d output message(s) unacknowledged at shutdown (not committed)", remaining
            )

    def _produce(self, result: BatchResult, shadow: Sequence[ShadowRecord]) -> None:
        opts, producer = self.options, self.producer
        for out in result.predictions:
            producer.produce(opts.output_topic, out.value, out.key, out.headers)
        for out in result.dead_letters:
            producer.produce(opts.deadletter_topic, out.value, out.key, out.headers)
        if opts.shadow_topic:
            for record in shadow:
                producer.produce(opts.shadow_topic, record.out.value, record.out.key,
                                 record.out.headers)  # fmt: skip


class TransactionalPublisher(Publisher):
    """Exactly-once: outputs and input offsets in one transaction per batch."""

    failure = "committed"

    def __init__(self, producer: SafeProducer, options: ScoreOptions) -> None:
        super().__init__(producer, options)
        self._in_txn = False

    def publish(
        self,
        batch: Sequence[RawMessage],
        result: BatchResult,
        consumer: Consumer,
        shadow: Sequence[ShadowRecord] = (),
    ) -> str | None:
        """Begin, produce, add the offsets, commit; abort (and say why) on a soft error."""
        raw = self.producer.raw
        try:
            raw.begin_transaction()
            self._in_txn = True
            self._produce(result, shadow)
            raw.send_offsets_to_transaction(
                next_offsets(batch), consumer.consumer_group_metadata(), TXN_TIMEOUT_S
            )
            raw.commit_transaction(TXN_TIMEOUT_S)
            self._in_txn = False
            return None
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                # Fenced by a newer instance with our id, or a broken producer: stop now.
                raise DeliveryError(f"exactly-once producer failed fatally: {err.str()}") from exc
            self._abort()
            return str(err.str())

    def close(self) -> None:
        if self._in_txn:
            self._abort()
        super().close()

    def _abort(self) -> None:
        try:
            self.producer.raw.abort_transaction(TXN_TIMEOUT_S)
        except KafkaException as exc:
            logger.warning("abort_transaction: %s", exc)
        self._in_txn = False


def open_publisher(settings: Settings, options: ScoreOptions) -> Publisher:
    """The publisher ``options`` ask for, its producer connected (and fenced, if exactly-once).

    Raises:
        BrokerUnavailableError: transactions could not be initialised.
    """
    kafka = settings.kafka
    if not options.exactly_once:
        return Publisher(SafeProducer(kafka.producer_config(settings.producer)), options)
    txn_id = options.transactional_id or default_transactional_id(
        options.group_id, options.input_topic
    )
    producer = SafeProducer(kafka.transactional_producer_config(settings.producer, txn_id))
    try:
        # Fences any earlier instance with this id and aborts its open transaction.
        producer.raw.init_transactions(TXN_TIMEOUT_S)
    except KafkaException as exc:
        raise BrokerUnavailableError(
            f"could not initialise transactions as {txn_id!r}: {exc.args[0].str()}"
        ) from exc
    logger.info("exactly-once: transactional id %s", txn_id)
    return TransactionalPublisher(producer, options)
