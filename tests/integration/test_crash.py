"""Crash tests with real processes: SIGKILL at random moments, restart, until drained.

Each test kills a real churnstream process at least ten times, restarts it each time, and
then checks the topics: nothing lost; with --exactly-once nothing doubled for read_committed
readers; the batch producer leaves every row of the file exactly once.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from churnstream.headers import ROW_INDEX_HEADER
from churnstream.streaming.checkpoint import load_checkpoint
from tests.integration.kafka_io import CommittedOffsets, read_topic, send_raw
from tests.integration.scorers import (
    GUARANTEES,
    KillLoop,
    assert_no_dead_letters,
    cli,
    read_predictions,
    scorer_args,
)
from tests.integration.streams import customer_events, unique_rows_csv

pytestmark = pytest.mark.integration

EVENTS = 20_000
#: Events added when a fast scorer nears the end of its input before all kills landed.
TOP_UP = 4_000
PRODUCER_ROWS = 40_000
KILLS = 10
#: The final drain's idle timeout: all input is written by then, so 3 s without a message
#: after the assignment means done.
DRAIN_IDLE_MS = 3000
#: Micro-batch size while the kills land: what one kill may leave uncommitted.
BATCH_RECORDS = {False: 100, True: 100}
TopicFactory = Callable[..., str]


def kill_at_progress(
    argv: list[str],
    rng: random.Random,
    progress: Callable[[], int],
    total: Callable[[], int],
    *,
    extra_delay_s: float,
    top_up: Callable[[], None] | None = None,
    low_water: int = 0,
) -> KillLoop:
    """Start ``argv`` and SIGKILL it until KILLS kills have landed mid-run, each once it has
    gone past a random point of what is left (plus up to ``extra_delay_s``, so some kills
    land mid-batch).

    Progress-driven rather than timed, so the kills land mid-run however fast or loaded the
    machine is. A kill counts as mid-run when the input was still unfinished after it.
    When less than ``low_water`` is left, ``top_up`` adds more input first, so a process
    that outruns the poller (a CI machine ran 3,600 events between two polls) gets more
    work instead of failing the test; without ``top_up`` the loop stops when input is done.
    """
    loop = KillLoop()
    while loop.mid_run < KILLS and loop.attempts < 3 * KILLS:
        start = progress()
        if top_up is not None and total() - start < low_water:
            top_up()
        if start >= total():
            break
        # spread the kills over what is left, keeping room for the ones still to come
        step = max(1, (total() - start) // (KILLS - loop.mid_run + 1))
        target = start + rng.randint(1, step)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline and progress() < target:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, extra_delay_s))
        finally:  # also when pytest-timeout interrupts the wait: no scorer outlives the test
            proc.kill()
            proc.wait(timeout=10)
        loop.attempts += 1
        done = progress()
        print(f"SIGKILL past {target}: {done} of {total()} done")
        loop.mid_run += done < total()
    return loop


@pytest.fixture
def filled_topics(kafka_bootstrap: str, topic_factory: TopicFactory) -> tuple[str, str, str]:
    raw, preds, dlq = topic_factory(3), topic_factory(3), topic_factory(1)
    send_raw(kafka_bootstrap, raw, customer_events(0, EVENTS))
    return raw, preds, dlq


@pytest.mark.parametrize(("exactly_once", "pipeline", "client"), **GUARANTEES)
def test_scorer_survives_sigkill_loop(
    exactly_once: bool,
    pipeline: bool,
    client: str,
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    filled_topics: tuple[str, str, str],
    model_dir: Path,
    tmp_path: Path,
    quick_rejoin: None,  # each restart joins a group that a killed member held
) -> None:
    if pipeline:  # every scorer started below inherits it
        monkeypatch.setenv("CHURNSTREAM_CONSUMER__PIPELINE", "true")
    if client == "native":  # and this (churnstream.kafka.native)
        pytest.importorskip("churnstream_native_io")
        monkeypatch.setenv("CHURNSTREAM_CONSUMER__CLIENT", "native")
    raw, preds, dlq = filled_topics
    group = f"crash-{uuid.uuid4().hex[:8]}"
    extra = ["--exactly-once"] if exactly_once else []
    rng = random.Random(20261123 + exactly_once + 2 * pipeline)
    batch = BATCH_RECORDS[exactly_once]
    streaming = cli(
        *scorer_args(
            kafka_bootstrap, filled_topics, group, model_dir, tmp_path, "streaming", batch
        ),
        *extra,
    )
    sent = [EVENTS]

    def top_up() -> None:
        send_raw(kafka_bootstrap, raw, customer_events(sent[0], TOP_UP))
        sent[0] += TOP_UP

    committed = CommittedOffsets(kafka_bootstrap, group, raw)
    try:
        loop = kill_at_progress(
            streaming,
            rng,
            committed,
            lambda: sent[0],
            extra_delay_s=0.2,
            top_up=top_up,
            low_water=TOP_UP // 2,
        )
    finally:
        committed.close()
    assert loop.mid_run == KILLS, f"only {loop.mid_run} kill(s) landed mid-stream"
    # drain whatever is left, then stop on idle (the idle clock starts at the assignment)
    drain = scorer_args(kafka_bootstrap, filled_topics, group, model_dir, tmp_path, "batch")
    final = subprocess.run(
        cli(*drain, *extra, "--timeout-ms", str(DRAIN_IDLE_MS)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stdout + final.stderr

    events = sent[0]
    scored = read_predictions(kafka_bootstrap, preds, events, exactly_once=exactly_once)
    print(
        f"\n{'exactly' if exactly_once else 'at-least'}-once: {loop.attempts} SIGKILLs "
        f"({loop.mid_run} mid-stream), "
        f"{len(scored.records)} predictions for {events} events, {scored.duplicates} duplicate(s)"
    )
    # at-least-once: at most the one uncommitted batch in flight at each kill is scored again
    # (pipelined too: the next batch is produced only once the one before it is committed)
    scored.check(max_duplicates=loop.attempts * BATCH_RECORDS[exactly_once])
    assert_no_dead_letters(kafka_bootstrap, dlq, exactly_once=exactly_once)


def test_batch_producer_survives_sigkill_loop(
    kafka_bootstrap: str, topic_factory: TopicFactory, dataset_path: Path, tmp_path: Path
) -> None:
    """After SIGKILLs and resumes the topic holds every row of the file once: no gap, no dup."""
    data = unique_rows_csv(dataset_path, PRODUCER_ROWS, tmp_path / "big.csv")
    raw = topic_factory(3)
    ckpt = tmp_path / "ckpt.json"
    argv = cli(
        "produce",
        "--mode",
        "batch",
        "--broker",
        kafka_bootstrap,
        "--topic",
        raw,
        "--data-path",
        str(data),
        "--batch-size",
        "300",
        "--checkpoint-file",
        str(ckpt),
        "--no-progress",
    )

    def sent_rows() -> int:
        saved = load_checkpoint(ckpt) if ckpt.is_file() else None
        return saved.next_row if saved is not None else 0

    loop = kill_at_progress(
        argv, random.Random(7), sent_rows, lambda: PRODUCER_ROWS, extra_delay_s=0.02
    )
    assert loop.mid_run == KILLS, f"only {loop.mid_run} kill(s) landed before the file was sent"
    final = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr

    records = read_topic(kafka_bootstrap, raw, expect=PRODUCER_ROWS)
    rows = Counter(int(r.headers[ROW_INDEX_HEADER]) for r in records)
    print(
        f"\nbatch producer: {loop.attempts} SIGKILLs, {len(records)} records "
        f"for {PRODUCER_ROWS} rows"
    )
    assert set(rows) == set(range(PRODUCER_ROWS)), "a row is missing"
    assert max(rows.values()) == 1, f"{sum(v - 1 for v in rows.values())} duplicate row(s)"
    assert len(records) == PRODUCER_ROWS
