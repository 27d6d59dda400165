"""`churnstream dlq inspect|replay`: look into the dead-letter topic, re-send after a fix."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from churnstream.cli._common import EXIT_ERROR, new_app
from churnstream.cli.options import (
    AdminTimeoutOption,
    BrokerOption,
    IdleOption,
    JsonOption,
    kafka_command_settings,
    setting_option,
)
from churnstream.exceptions import ConfigError
from churnstream.kafka.admin import ADMIN_TIMEOUT_S

if TYPE_CHECKING:
    from churnstream.deadletters.commands import ReplayRequest
    from churnstream.deadletters.plan import ReplayPlan
    from churnstream.deadletters.replay import ReplayOutcome
    from churnstream.deadletters.summary import Summary

logger = logging.getLogger(__name__)

app = new_app("Inspect the dead-letter topic and replay letters after a fix.")

#: Idle seconds that end a read (after every partition was fetched from); the high
#: watermark is never trusted on its own.
DEFAULT_IDLE_S = 2.0
#: The console log handler writes to stdout: under --json only the JSON goes there (replay
#: still logs everything to logs/dlq.log, and failures end with one line on stderr).
JSON_CONSOLE_LEVEL = "CRITICAL"
SHOWN_REFUSALS = 10
SHOWN_PLANNED = 20
MESSAGE_CHARS = 70


def _dump(payload: Any) -> None:
    typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


def _clip(text: Any, width: int = MESSAGE_CHARS) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= width else value[: width - 1] + "…"


@app.command("inspect")
def inspect(
    ctx: typer.Context,
    broker: BrokerOption = None,
    topic: Annotated[str | None, setting_option("topics.deadletter", "--topic", "-t")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Read at most N letters.")
    ] = None,
    examples: Annotated[
        int, typer.Option("--examples", "-k", min=0, help="Examples per reason code.")
    ] = 3,
    as_json: JsonOption = False,
    idle: IdleOption = DEFAULT_IDLE_S,
    timeout: AdminTimeoutOption = ADMIN_TIMEOUT_S,
) -> None:
    """Summarise dead letters by error type and reason code, each input counted once."""
    from churnstream.deadletters import commands

    settings = kafka_command_settings(
        ctx, None, console_level=JSON_CONSOLE_LEVEL if as_json else None
    )
    name = topic or settings.topics.deadletter.name
    summary = commands.inspect(
        settings, name, limit=limit, examples=examples, idle_s=idle, timeout_s=timeout
    )
    if as_json:
        _dump(summary.to_dict())
    else:
        _print_summary(summary)


def _print_summary(s: Summary) -> None:
    console = Console()
    head = (
        f"[bold]{s.topic}[/]: {s.letters} letters, {s.unique} unique inputs "
        f"({s.duplicates} duplicate letters skipped), {s.unreadable} unreadable, "
        f"{s.replayed} already replayed"
    )
    if s.limit_reached:
        head += " [yellow](--limit reached: the topic holds more)[/]"
    console.print(head)
    if not s.letters:
        return
    console.print(f"failed_ts from {s.oldest_failed_ts} to {s.newest_failed_ts}")

    by_code = Table(title="by reason code")
    for column in ("code", "error type", "letters"):
        by_code.add_column(column, justify="right" if column == "letters" else "left")
    for code, count in s.by_code.items():
        by_code.add_row(code, ", ".join(s.code_error_types.get(code, [])), str(count))
    console.print(by_code)

    for title, counts in (
        ("by error type", s.by_error_type),
        ("by source topic", s.by_source_topic),
        ("by retry count", {str(k): v for k, v in s.by_retry_count.items()}),
    ):
        table = Table(title=title)
        table.add_column(title.removeprefix("by "), overflow="fold")
        table.add_column("letters", justify="right")
        for name, count in counts.items():
            table.add_row(name, str(count))
        console.print(table)

    if any(s.examples.values()):
        table = Table(title="examples")
        for column in ("code", "customer / excerpt", "error", "source", "failed_ts"):
            table.add_column(column, overflow="fold")
        for code, picked in s.examples.items():
            for ex in picked:
                table.add_row(
                    code,
                    str(ex["customer_or_excerpt"]),
                    _clip(ex["error_message"]),
                    str(ex["source"] or ""),
                    str(ex["failed_ts"] or ""),
                )
        console.print(table)


@app.command("replay")
def replay(
    ctx: typer.Context,
    broker: BrokerOption = None,
    from_topic: Annotated[str | None, setting_option("topics.deadletter", "--from-topic")] = None,
    to_topic: Annotated[str | None, setting_option("topics.raw", "--to-topic")] = None,
    error_types: Annotated[
        list[str] | None,
        typer.Option("--error-type", help="Only letters of this error_type (repeatable)."),
    ] = None,
    codes: Annotated[
        list[str] | None,
        typer.Option("--code", help="Only letters with this reason code (repeatable)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only letters with failed_ts >= this (ISO).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only letters with failed_ts < this (ISO).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Replay at most N letters.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be replayed; write nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replay letters already marked as replayed.")
    ] = False,
    transactional: Annotated[
        bool,
        typer.Option(
            "--transactions/--no-transactions",
            help="Write messages and markers in one transaction per chunk.",
        ),
    ] = True,
    as_json: JsonOption = False,
    idle: IdleOption = DEFAULT_IDLE_S,
    timeout: AdminTimeoutOption = ADMIN_TIMEOUT_S,
) -> None:
    """Re-send dead-lettered originals to the input topic, once per letter (see markers)."""
    from churnstream.deadletters import commands
    from churnstream.deadletters.letters import KNOWN_CODES, KNOWN_ERROR_TYPES
    from churnstream.deadletters.markers import marker_topic_for
    from churnstream.deadletters.plan import LetterFilter, parse_when

    for flag, given, known in (
        ("--error-type", error_types, KNOWN_ERROR_TYPES),
        ("--code", codes, KNOWN_CODES),
    ):
        unknown = sorted(set(given or ()) - known)
        if unknown:
            raise ConfigError(
                f"{flag} {', '.join(unknown)} is not one of {', '.join(sorted(known))}"
            )
    try:
        window = {k: parse_when(v) if v else None for k, v in (("since", since), ("until", until))}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = kafka_command_settings(
        ctx, "dlq", console_level=JSON_CONSOLE_LEVEL if as_json else None
    )
    request = commands.ReplayRequest(
        from_topic=from_topic or settings.topics.deadletter.name,
        to_topic=to_topic or settings.topics.raw.name,
        letter_filter=LetterFilter(
            error_types=frozenset(error_types or ()),
            codes=frozenset(codes or ()),
            since=window["since"],
            until=window["until"],
        ),
        limit=limit,
        force=force,
        dry_run=dry_run,
        transactional=transactional,
    )
    if request.to_topic in (request.from_topic, marker_topic_for(request.from_topic)):
        raise ConfigError(f"--to-topic {request.to_topic} would replay letters into themselves")
    outcome, plan = commands.replay(settings, request, idle_s=idle, timeout_s=timeout)
    if as_json:
        _dump({"filter": request.letter_filter.describe(), **outcome.to_dict()})
    else:
        _print_outcome(request, outcome, plan)
    if not outcome.ok:
        typer.echo(
            f"error: replay incomplete: {outcome.failed} failed, {outcome.unmarked} replayed "
            f"but not marked, {outcome.not_attempted} not attempted ({outcome.last_error})",
            err=True,
        )
        raise typer.Exit(EXIT_ERROR)


def _print_outcome(request: ReplayRequest, outcome: ReplayOutcome, plan: ReplayPlan) -> None:
    console = Console()
    mode = "dry run" if outcome.dry_run else ("transactional" if outcome.transactional else "")
    console.print(
        f"replay [bold]{request.from_topic}[/] -> [bold]{outcome.to_topic}[/] "
        f"({request.letter_filter.describe()}; {mode or 'not transactional'}; "
        f"markers in {outcome.marker_topic})"
    )
    table = Table(title="dry run" if outcome.dry_run else "replay")
    table.add_column("letters")
    table.add_column("count", justify="right")
    rows = [
        ("considered", outcome.considered),
        (
            "would replay" if outcome.dry_run else "replayed",
            outcome.planned if outcome.dry_run else outcome.replayed,
        ),
        ("failed", outcome.failed),
    ]
    if outcome.unmarked:
        rows.append(("replayed but not marked", outcome.unmarked))
    if outcome.not_attempted:
        rows.append(("not attempted", outcome.not_attempted))
    rows += [(f"skipped: {reason.replace('_', ' ')}", n) for reason, n in outcome.skipped.items()]
    for name, count in rows:
        table.add_row(name, str(count))
    console.print(table)
    if outcome.dry_run and plan.items:
        planned = Table(title=f"first {min(SHOWN_PLANNED, len(plan.items))} to replay")
        for column in ("letter", "code", "key", "bytes", "retry_count"):
            planned.add_column(column, overflow="fold")
        for item in plan.items[:SHOWN_PLANNED]:
            planned.add_row(
                item.parsed.id,
                item.parsed.code,
                "" if item.key is None else item.key.decode("utf-8", "backslashreplace"),
                "null" if item.value is None else str(len(item.value)),
                str(item.parsed.retry_count + 1),
            )
        console.print(planned)
    for letter, reason in outcome.not_replayable[:SHOWN_REFUSALS]:
        console.print(f"not replayable: {letter}: {reason}")
    if len(outcome.not_replayable) > SHOWN_REFUSALS:
        console.print(f"... and {len(outcome.not_replayable) - SHOWN_REFUSALS} more")
