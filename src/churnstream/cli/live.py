"""The scorer's console: a progress bar in batch mode, a live status line in streaming mode."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from churnstream.observability.metrics.scorer import partition_lags
from churnstream.streaming.observers import ScorerObserver

if TYPE_CHECKING:
    from confluent_kafka import Consumer

    from churnstream.scoring.messages import BatchResult, RawMessage
    from churnstream.streaming.options import ScoreSummary

logger = logging.getLogger(__name__)

#: Lag is read from cached watermarks, but the bar need not move faster than this.
REFRESH_S = 0.5
#: The streaming rate is measured over this many seconds.
RATE_WINDOW_S = 5.0


@contextlib.contextmanager
def logs_above(display: Live | Progress) -> Iterator[None]:
    """Draw ``display`` (a rich Live or Progress) and write the log's lines through it.

    A live display keeps the cursor at the end of its last line and redraws upwards from
    there. The log handler has a console of its own, which writes to the real stderr (rich
    unwraps the display's redirection of it), so a warning or error logged mid-run would
    start on the table's last line and the next redraw would mangle both. Printed through
    the display's console, it goes above the display instead. The display is stopped with
    the handlers held, so that a line logged meanwhile by another thread (a Kafka client's)
    cannot be drawn through the stopped display, over what is printed after it (the
    one-line error). Only when both consoles are terminals (the same screen); a log
    redirected to a file is left alone.
    """
    console = display.console
    moved: list[tuple[RichHandler, Console]] = []
    if console.is_terminal:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, RichHandler) and handler.console.is_terminal:
                moved.append((handler, handler.console))
                handler.console = console
    display.start()
    try:
        yield
    finally:
        for handler, _ in moved:
            handler.acquire()
        try:
            display.stop()
        finally:
            for handler, own in moved:
                handler.console = own
                handler.release()


def bar_columns(title: str) -> list[ProgressColumn]:
    """A bar towards a total: title, bar, done/total, the task's ``line`` field, elapsed, ETA."""
    return [
        TextColumn(f"[bold]{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[line]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]


class LiveConsole(ScorerObserver):
    """Batch: a bar towards consumed + lag, with rate and ETA. Streaming: one live line with
    rate, scored, dead-lettered and lag. Drawn on stderr, so stdout stays clean."""

    def __init__(self, mode: str, console: Console | None = None) -> None:
        self.mode = mode
        self.console = console or Console(stderr=True)
        self.lag = 0
        self._last_refresh = 0.0
        self._rate_marks: list[tuple[float, int]] = []
        columns = (
            bar_columns("scoring")
            if mode == "batch"
            else [TextColumn("[bold]streaming[/] {task.fields[line]}")]
        )
        self.progress = Progress(*columns, console=self.console, transient=False)
        self.task = self.progress.add_task("score", total=None, line="waiting for partitions")
        self._logs = contextlib.ExitStack()

    def __enter__(self) -> LiveConsole:
        if self.console.is_terminal:
            self._logs.enter_context(logs_above(self.progress))
        return self

    def __exit__(self, *_exc: object) -> None:
        self._logs.close()
        self.progress.stop()

    def on_poll(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._last_refresh < REFRESH_S:
            return
        self._last_refresh = now
        try:
            # Cached watermarks only: the console must not wait on the broker.
            self.lag = sum(partition_lags(consumer, timeout_s=None)[0].values())
        except Exception:  # noqa: BLE001 - a console must never stop the scorer
            logger.debug("lag unavailable", exc_info=True)

    def on_batch(
        self, batch: Sequence[RawMessage], result: BatchResult, summary: ScoreSummary
    ) -> None:
        now = time.monotonic()
        self._rate_marks.append((now, summary.consumed))
        while len(self._rate_marks) > 2 and now - self._rate_marks[0][0] > RATE_WINDOW_S:
            self._rate_marks.pop(0)
        first_t, first_n = self._rate_marks[0]
        rate = (summary.consumed - first_n) / (now - first_t) if now > first_t else 0.0
        line = (
            f"{rate:,.0f} msg/s · scored {summary.scored:,} · "
            f"dead-lettered {summary.dead_lettered:,} · lag {self.lag:,}"
        )
        total = summary.consumed + self.lag if self.mode == "batch" else None
        self.progress.update(self.task, completed=summary.consumed, total=total, line=line)
