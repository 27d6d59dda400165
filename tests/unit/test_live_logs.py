"""Lines logged while a live display is drawn (the demo's table, the scorer's status line)
stand on lines of their own above it, and an error after it starts on a fresh line.

The "screen" is one StringIO that the display's console and the log handler's console both
write to, as both write to the same terminal in a real run."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from churnstream.cli.live import LiveConsole, logs_above
from churnstream.exceptions import ChurnstreamError

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MESSAGE = "lost the broker while scoring"


def on_screen_before(screen: str, text: str) -> str:
    """What is visible on the line where ``text`` starts, before it."""
    at = screen.index(text)
    start = max(screen.rfind("\n", 0, at), screen.rfind("\r", 0, at)) + 1
    return ANSI.sub("", screen[start:at])


def terminal(screen: io.StringIO) -> Console:
    return Console(file=screen, force_terminal=True, width=80, color_system="standard")


@pytest.fixture
def screen() -> Iterator[io.StringIO]:
    """The log handler configure_logging installs, writing to the screen."""
    screen = io.StringIO()
    handler = RichHandler(
        console=terminal(screen), show_time=False, show_level=False, show_path=False
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield screen
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_the_demo_table_keeps_log_lines_and_the_error_off_its_lines(
    screen: io.StringIO,
) -> None:
    """As cli/demo_cmd.py draws it: a logged error mid-run, then an error that ends the run."""
    console = terminal(screen)
    grid = Table(title="churnstream demo: live")
    grid.add_column("scored")
    grid.add_row("42")
    live = Live(grid, console=console, auto_refresh=False)
    with pytest.raises(ChurnstreamError), logs_above(live):
        live.refresh()
        logging.getLogger("churnstream.streaming.loop").error(MESSAGE)
        live.refresh()
        raise ChurnstreamError("the scorer got no partitions within 30s")
    drawn = screen.getvalue()
    assert "┘" in drawn  # the table was drawn before the line was logged
    assert on_screen_before(drawn, MESSAGE).strip() == ""
    # the table is stopped and left on lines of its own: the one-line error starts afresh
    assert ANSI.sub("", drawn).endswith("┘\n")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, RichHandler) and handler.console is not console  # given back


def test_the_scorers_status_line_keeps_log_lines_off_it(screen: io.StringIO) -> None:
    with LiveConsole("streaming", console=terminal(screen)) as live:
        live.progress.refresh()
        logging.getLogger("churnstream.kafka.producer").error(MESSAGE)
    drawn = screen.getvalue()
    assert "streaming" in drawn.split(MESSAGE)[0]  # the line was drawn before the log
    assert on_screen_before(drawn, MESSAGE).strip() == ""
