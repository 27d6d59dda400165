"""The event producer: streaming at a steady rate, or the file in checkpointed chunks."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from churnstream.data import read_table, sha256_of, validate_frame
from churnstream.events import encode_event, frame_to_records
from churnstream.exceptions import DataError, DeliveryError
from churnstream.headers import ROW_INDEX_HEADER, RUN_ID_HEADER
from churnstream.kafka import admin
from churnstream.kafka.connect import wait_for_broker
from churnstream.kafka.producer import SafeProducer
from churnstream.kafka.reader import TopicReader
from churnstream.logging import OFFSETS, TOPIC
from churnstream.schemas import CustomerEvent, utc_now_iso
from churnstream.settings import Settings
from churnstream.streaming.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

#: Longest single sleep in the streaming loop, so that a stop request is seen quickly.
MAX_SLEEP_S = 0.05
#: The read-back after a crash gives up (and may re-send rows) after this long.
READ_BACK_MAX_S = 120.0

ProgressFn = Callable[[int, int | None], None]
DeliveryFn = Callable[[Any, Any], None]


@dataclass(frozen=True)
class ProduceOptions:
    mode: Literal["streaming", "batch"]
    topic: str
    data_path: Path
    events_per_sec: float
    batch_size: int
    checkpoint_file: Path
    dry_run: bool = False
    validate: bool = False
    max_events: int | None = None
    duration_s: float | None = None
    sample: bool = False
    seed: int | None = None
    restart: bool = False
    #: How long to keep retrying when no broker answers at start-up.
    connect_timeout_s: float = 60.0


@dataclass
class ProduceSummary:
    mode: str
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    duration_s: float = 0.0
    resumed_from: int | None = None
    already_finished: bool = False
    finished: bool = False
    dry_run: bool = False
    #: Batch resume: rows a crashed run had written after its last checkpoint, not resent.
    already_present: int = 0
    #: Streaming: events per second between the first and the last send (n-1 intervals).
    send_rate: float | None = None

    @property
    def rate(self) -> float:
        if self.send_rate is not None:
            return self.send_rate
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0

    def line(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        extra = f", resumed from row {self.resumed_from}" if self.resumed_from else ""
        if self.already_present:
            extra += f" ({self.already_present} already written before the crash)"
        skipped = f", skipped {self.skipped} invalid" if self.skipped else ""
        return (
            f"{self.mode}: {verb} {self.sent}, failed {self.failed}{skipped} in "
            f"{self.duration_s:.2f}s ({self.rate:,.1f} events/s){extra}"
        )


def load_records(data_path: Path) -> tuple[list[dict[str, Any]], int]:
    """Valid records of the file (in order) and how many rows were rejected."""
    raw = read_table(data_path)
    valid, rejects = validate_frame(raw)
    if len(rejects):
        logger.warning(
            "%d row(s) of %s are invalid and will not be sent; first: %s",
            len(rejects),
            data_path,
            rejects["reject_reason"].iloc[0],
        )
    if not len(valid):
        raise DataError(f"{data_path} has no valid rows to send")
    return frame_to_records(valid), len(rejects)


def _valid_event(event: dict[str, Any]) -> bool:
    try:
        CustomerEvent.model_validate(event)
    except ValidationError as exc:
        logger.warning("not sending %s: %s", event.get("customerID"), exc.errors()[0]["msg"])
        return False
    return True


def run_producer(
    settings: Settings,
    options: ProduceOptions,
    stop: threading.Event,
    *,
    on_progress: ProgressFn | None = None,
    on_delivery: DeliveryFn | None = None,
) -> ProduceSummary:
    """Run one producer until done, stopped, or bounded by max_events/duration.

    ``on_delivery(err, msg)`` sees every acknowledgement and failure (metrics).
    """
    records, rejected = load_records(options.data_path)
    if not options.dry_run:
        # Says clearly that the broker is down and retries; a refused login fails at once.
        wait_for_broker(
            settings.kafka, timeout_s=options.connect_timeout_s, stop=stop, what="producer"
        )
    producer = None
    if not options.dry_run:
        config = settings.kafka.producer_config(settings.producer)
        producer = SafeProducer(config, on_delivery=on_delivery)
    run = _Run(records, options, producer, stop, on_progress)
    summary = _stream(run) if options.mode == "streaming" else _batch(settings, run)
    summary.skipped += rejected
    summary.dry_run = options.dry_run
    logger.info("producer finished: %s", summary.line(), extra={TOPIC: options.topic})
    return summary


@dataclass(frozen=True)
class _Run:
    """What either mode works with: the rows, the options, and the producer (None: dry run)."""

    records: list[dict[str, Any]]
    options: ProduceOptions
    producer: SafeProducer | None
    stop: threading.Event
    on_progress: ProgressFn | None

    def send(self, index: int, run_id: bytes) -> bool:
        """Send row ``index`` stamped with the current time (a dry run only builds it).

        False when ``--validate`` rejects the event: nothing is sent.
        """
        event = {**self.records[index], "event_ts": utc_now_iso()}
        if self.options.validate and not _valid_event(event):
            return False
        if self.producer is not None:
            key, value = encode_event(event)
            self.producer.produce(
                self.options.topic,
                value,
                key,
                [(ROW_INDEX_HEADER, str(index).encode()), (RUN_ID_HEADER, run_id)],
            )
        return True

    def progress(self, done: int, total: int | None) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)


def _settle(producer: SafeProducer | None, summary: ProduceSummary) -> None:
    """Flush and take the final counts from the delivery callbacks."""
    if producer is None:
        return
    remaining = producer.flush()
    summary.sent = producer.stats.delivered
    summary.failed = producer.stats.failed + remaining
    if remaining:
        logger.error("%d message(s) were not acknowledged before the flush timeout", remaining)


def _stream(run: _Run) -> ProduceSummary:
    records, options, producer, stop = run.records, run.options, run.producer, run.stop
    summary = ProduceSummary(mode="streaming")
    rng = random.Random(options.seed)  # noqa: S311 - sampling, not security
    rate = options.events_per_sec
    run_id = uuid.uuid4().hex.encode()
    queued = 0
    position = 0
    started = time.monotonic()
    first_send = last_send = started
    while not stop.is_set():
        now = time.monotonic()
        elapsed = now - started
        if options.duration_s is not None and elapsed >= options.duration_s:
            break
        if options.max_events is not None and queued >= options.max_events:
            break
        # A fixed schedule (event i is due at i / rate) keeps the long-run rate exact:
        # a late wake-up sends the backlog instead of drifting.
        due = int(elapsed * rate) + 1
        if options.max_events is not None:
            due = min(due, options.max_events)
        while queued < due:
            if options.sample:
                index = rng.randrange(len(records))
            else:
                index = position % len(records)
                position += 1
            if not run.send(index, run_id):
                summary.skipped += 1
                queued += 1
                continue
            last_send = time.monotonic()
            if queued == 0:
                first_send = last_send
            queued += 1
        run.progress(queued, options.max_events)
        next_due = started + queued / rate
        stop.wait(min(MAX_SLEEP_S, max(0.0, next_due - time.monotonic())))
        if producer is not None:
            producer.poll(0)
    summary.duration_s = time.monotonic() - started
    if queued > 1 and last_send > first_send:
        summary.send_rate = (queued - 1) / (last_send - first_send)
    if producer is None:
        summary.sent = queued - summary.skipped
    _settle(producer, summary)
    return summary


def _already_written(settings: Settings, checkpoint: Checkpoint) -> set[int]:
    """Rows of this run that reached the topic after the checkpoint (a crash mid-chunk)."""
    found: set[int] = set()
    run_id = checkpoint.run_id.encode()
    start = {int(p): o for p, o in checkpoint.end_offsets.items()}
    reader = TopicReader(
        settings.kafka,
        checkpoint.topic,
        purpose="producer",
        start=start,
        until="end",
        max_duration_s=READ_BACK_MAX_S,
    )
    with reader:
        for msg in reader:
            headers = dict(msg.headers() or [])
            row = headers.get(ROW_INDEX_HEADER)
            if headers.get(RUN_ID_HEADER) == run_id and isinstance(row, bytes):
                found.add(int(row))
    scanned = reader.read
    logger.info(
        "read back %d record(s) written after the checkpoint: %d row(s) of this run are there",
        scanned,
        len(found),
        extra={TOPIC: checkpoint.topic, OFFSETS: start},
    )
    return found


def _checkpoint(
    options: ProduceOptions,
    *,
    data_sha: str,
    total: int,
    next_row: int,
    sent: int,
    failed: int,
    run_id: str,
    end_offsets: dict[str, int],
) -> None:
    save_checkpoint(
        options.checkpoint_file,
        Checkpoint(
            data_path=str(options.data_path),
            data_sha256=data_sha,
            topic=options.topic,
            total_rows=total,
            next_row=next_row,
            sent=sent,
            failed=failed,
            run_id=run_id,
            updated_at=utc_now_iso(),
            end_offsets=end_offsets,
        ),
    )


def _batch(settings: Settings, run: _Run) -> ProduceSummary:
    """Send the file in acknowledged chunks, checkpointing after each.

    Resume is exact: every event carries its row index and the run id in headers, and the
    checkpoint records where the topic ended after the last acknowledged chunk. A restart
    reads the topic from there, skips the rows of this run that a crash had already written,
    and sends the rest. A brand-new run writes its first checkpoint before sending anything,
    so even a crash inside the first chunk resumes rather than starting over.
    """
    summary = ProduceSummary(mode="batch")
    options, producer = run.options, run.producer
    total = len(run.records)
    data_sha = sha256_of(options.data_path)
    start_row = 0
    skip: set[int] = set()
    checkpoint = None if options.dry_run else load_checkpoint(options.checkpoint_file)
    if checkpoint is not None and not options.restart:
        if not checkpoint.matches(data_sha, options.topic) or checkpoint.total_rows != total:
            raise DataError(
                f"checkpoint {options.checkpoint_file} belongs to another file or topic "
                f"({checkpoint.data_path} -> {checkpoint.topic}); pass --restart to start over"
            )
        if checkpoint.finished:
            summary.already_finished = summary.finished = True
            summary.sent = checkpoint.sent
            logger.info(
                "batch already finished: %d rows sent to %s",
                total,
                options.topic,
                extra={TOPIC: options.topic},
            )
            return summary
        start_row = checkpoint.next_row
        run_id = checkpoint.run_id
        end_offsets = dict(checkpoint.end_offsets)
        prior_sent = checkpoint.sent
        summary.resumed_from = start_row
        logger.info(
            "resuming at row %d of %d from %s",
            start_row,
            total,
            options.checkpoint_file,
            extra={TOPIC: options.topic, OFFSETS: dict(checkpoint.end_offsets)},
        )
        skip = _already_written(settings, checkpoint)
    else:
        run_id = uuid.uuid4().hex
        prior_sent = 0
        end_offsets = {}
        if producer is not None:
            end_offsets = {
                str(p): o for p, o in admin.end_offsets(settings.kafka, options.topic).items()
            }
            _checkpoint(
                options,
                data_sha=data_sha,
                total=total,
                next_row=0,
                sent=0,
                failed=0,
                run_id=run_id,
                end_offsets=end_offsets,
            )

    end_row = total
    if options.max_events is not None:
        end_row = min(total, start_row + options.max_events)
    started = time.monotonic()
    row = start_row
    run.progress(row, total)
    while row < end_row and not run.stop.is_set():
        chunk_end = min(end_row, row + options.batch_size)
        for index in range(row, chunk_end):
            if index in skip:
                summary.already_present += 1
                continue
            if not run.send(index, run_id.encode()):
                summary.skipped += 1
        if producer is not None:
            failed_before = producer.stats.failed
            remaining = producer.flush()
            if remaining or producer.stats.failed > failed_before:
                summary.sent = producer.stats.delivered
                summary.failed = producer.stats.failed + remaining
                summary.duration_s = time.monotonic() - started
                raise DeliveryError(
                    f"chunk at rows {row}-{chunk_end - 1} was not fully acknowledged "
                    f"({producer.stats.last_error or f'{remaining} still queued'}); "
                    f"the checkpoint stays at row {row}, so a re-run resumes there"
                )
            for (topic, partition), offset in producer.stats.high_offsets.items():
                if topic == options.topic:
                    end_offsets[str(partition)] = max(
                        end_offsets.get(str(partition), 0), offset + 1
                    )
            _checkpoint(
                options,
                data_sha=data_sha,
                total=total,
                next_row=chunk_end,
                sent=prior_sent + producer.stats.delivered + summary.already_present,
                failed=producer.stats.failed,
                run_id=run_id,
                end_offsets=end_offsets,
            )
        row = chunk_end
        run.progress(row, total)
    summary.duration_s = time.monotonic() - started
    if producer is None:
        summary.sent = row - start_row - summary.skipped
    _settle(producer, summary)
    summary.finished = row >= total
    return summary
