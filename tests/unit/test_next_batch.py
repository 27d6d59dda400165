"""A micro-batch waits for its first message only, then takes what is already queued."""

from __future__ import annotations

from churnstream.streaming.batches import next_batch

WAIT_S = 0.005


class QueueConsumer:
    """``Consumer.consume`` as librdkafka serves it, on a simulated clock: it returns once
    ``num_messages`` are queued or ``timeout`` has passed, whichever comes first."""

    def __init__(self, arrivals: list[float]) -> None:
        self.now = 0.0
        self.pending = sorted(arrivals)  # when each message reaches the consumer's queue
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[float]:
        self.calls.append((num_messages, timeout))
        deadline = self.now + timeout
        if len(self.pending) >= num_messages and self.pending[num_messages - 1] <= deadline:
            self.now = max(self.now, self.pending[num_messages - 1])
        else:
            self.now = max(self.now, deadline)
        taken = [t for t in self.pending if t <= self.now][:num_messages]
        del self.pending[: len(taken)]
        return taken


def test_a_slow_stream_is_not_held_for_a_batch_that_never_fills() -> None:
    # 3 events queued, then one per millisecond: waiting for 5,000 would take the whole 5 ms
    consumer = QueueConsumer([0.0, 0.0, 0.0] + [i / 1000 for i in range(1, 100)])
    batch = next_batch(consumer, 5000, WAIT_S)  # type: ignore[arg-type]
    assert len(batch) == 3
    assert consumer.now == 0.0  # returned at once, not after WAIT_S


def test_the_first_message_ends_the_wait() -> None:
    consumer = QueueConsumer([0.002, 0.002, 0.004])
    assert next_batch(consumer, 5000, WAIT_S) == [0.002, 0.002]  # type: ignore[arg-type]
    assert consumer.now == 0.002
    # what was queued is taken without waiting for more
    assert consumer.calls[-1] == (4999, 0)


def test_a_backlog_fills_whole_batches() -> None:
    consumer = QueueConsumer([0.0] * 12_000)
    sizes = [len(next_batch(consumer, 5000, WAIT_S)) for _ in range(3)]  # type: ignore[arg-type]
    assert sizes == [5000, 5000, 2000]
    assert consumer.now == 0.0


def test_nothing_within_the_wait_is_an_empty_batch() -> None:
    consumer = QueueConsumer([0.010])
    assert next_batch(consumer, 5000, WAIT_S) == []  # type: ignore[arg-type]
    assert consumer.now == WAIT_S
    assert next_batch(consumer, 5000, WAIT_S) == [0.010]  # type: ignore[arg-type]


def test_a_batch_of_one_asks_for_one() -> None:
    consumer = QueueConsumer([0.0, 0.0])
    assert next_batch(consumer, 1, WAIT_S) == [0.0]  # type: ignore[arg-type]
    assert consumer.calls == [(1, WAIT_S)]
