"""Scale-out under kills: ``consume --workers 2`` while its workers are SIGKILLed at random.

The supervisor restarts each killed worker, so its partitions move to the other worker and
back, mid-batch (mid-transaction with ``--exactly-once``). After at least six kills that
landed while the input was unfinished, the stream drains and the supervisor is stopped with
SIGTERM. Then the predictions topic is checked: nothing lost; with ``--exactly-once``
nothing doubled for read_committed readers; at-least-once duplicates are bounded.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.scorers import (
    KillLoop,
    ScoredStream,
    assert_no_dead_letters,
    consumed,
    kill_leftovers,
    read_predictions,
    stop_process,
    wait_drained,
    wait_until_scoring,
    wide_env,
    worker_pids,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKERS = 2
PARTITIONS = 6
EVENTS = 200_000
KILLS = 6
#: Micro-batch size while the kills land: what one kill may leave to be scored again.
BATCH_RECORDS = 200
#: Bounds on each phase; a loaded 2-core machine needs the generous ones.
TARGET_TIMEOUT_S = 120.0
SCORING_TIMEOUT_S = 90.0
#: The supervisor's stop grace period (20 s) plus the workers' own drain.
STOP_TIMEOUT_S = 40.0


def kill_workers(
    supervisor: subprocess.Popen[bytes],
    metrics_port: int,
    rng: random.Random,
    progress: Callable[[], int],
    total: Callable[[], int],
    seen: set[int],
) -> KillLoop:
    """SIGKILL scoring workers until KILLS kills landed with the input unfinished.

    Each kill waits for a random point of what is left (so the kills spread over the run),
    then for the victim to be scoring, then up to 0.2 s more (so some land mid-batch). The
    victim is the worker killed least so far, so neither worker crash-loops past the
    supervisor's restart limit.
    """
    loop = KillLoop()
    kills = [0] * WORKERS
    while loop.mid_run < KILLS and loop.attempts < 3 * KILLS:
        start = progress()
        step = max(1, (total() - start) // (KILLS - loop.mid_run + 1))
        target = start + rng.randint(1, step)
        deadline = time.monotonic() + TARGET_TIMEOUT_S
        while supervisor.poll() is None and time.monotonic() < deadline and progress() < target:
            time.sleep(0.05)
        assert supervisor.poll() is None, f"the supervisor exited ({supervisor.returncode})"
        fewest = min(kills)
        victim = rng.choice([i for i in range(WORKERS) if kills[i] == fewest])
        pid = wait_until_scoring(
            metrics_port + victim,
            lambda: worker_pids(supervisor.pid).get(victim),  # noqa: B023 - read at once
            SCORING_TIMEOUT_S,
        )
        seen.update(worker_pids(supervisor.pid).values())
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(pid, signal.SIGKILL)
        kills[victim] += 1
        loop.attempts += 1
        done = progress()
        print(f"SIGKILL worker {victim} (pid {pid}) past {target}: {done} of {total()} done")
        loop.mid_run += done < total()
    return loop


def wait_all_up(supervisor: subprocess.Popen[bytes], metrics_port: int) -> None:
    deadline = time.monotonic() + SCORING_TIMEOUT_S
    while len(worker_pids(supervisor.pid)) < WORKERS or any(
        consumed(metrics_port + i) is None for i in range(WORKERS)
    ):
        assert time.monotonic() < deadline, "a worker did not come back"
        time.sleep(0.2)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_workers_survive_sigkills_and_partitions_move(
    exactly_once: bool,
    scored_stream: Callable[..., ScoredStream],
    model_dir: Path,
    tmp_path: Path,
    quick_rejoin: None,  # a killed worker's partitions move once its session times out
) -> None:
    stream = scored_stream("scaleout", partitions=PARTITIONS, events=EVENTS, ports=WORKERS)
    port, feeder, committed = stream.port, stream.feeder, stream.committed
    argv = stream.argv(
        model_dir, tmp_path, BATCH_RECORDS, "--metrics-port", str(port),
        "--workers", str(WORKERS), *(["--exactly-once"] if exactly_once else []),
    )  # fmt: skip
    out, err = tmp_path / "supervisor.out", tmp_path / "supervisor.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        supervisor = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=wide_env())  # noqa: S603
    seen: set[int] = set()
    try:
        feeder.start()
        loop = kill_workers(
            supervisor, port, random.Random(20261127 + exactly_once), committed,
            lambda: feeder.sent, seen,
        )  # fmt: skip
        events = feeder.finish()
        wait_drained(committed, events, [supervisor])
        # the last one killed is back (not waiting for its restart) before the SIGTERM
        wait_all_up(supervisor, port)
        seen.update(worker_pids(supervisor.pid).values())
        started = time.monotonic()
        code = stop_process(supervisor, STOP_TIMEOUT_S)
        stop_s = time.monotonic() - started
    finally:
        if supervisor.poll() is None:
            stop_process(supervisor, STOP_TIMEOUT_S)
        kill_leftovers(seen, stream.group)
    log = err.read_text(errors="replace")
    final = out.read_text(errors="replace").strip().splitlines()[-1]
    assert loop.mid_run == KILLS, f"only {loop.mid_run} kill(s) landed mid-stream"
    assert code == 0, f"supervisor exit {code}: {final}\n{log[-3000:]}"
    assert stop_s < STOP_TIMEOUT_S
    assert "Traceback" not in log, log[-3000:]
    # 0 or -15: a worker restarted just before the SIGTERM may still have been starting
    match = re.fullmatch(
        r"workers: 2, exit codes \[(?:0|-15), (?:0|-15)\](?:, (\d+) restart\(s\))?", final
    )
    assert match is not None, final
    restarts = int(match.group(1) or 0)
    assert restarts >= loop.attempts  # every killed worker came back
    assert len(re.findall(r"restarting in [0-9.]+ s", log)) == restarts

    scored = read_predictions(stream.bootstrap, stream.preds, events, exactly_once=exactly_once)
    print(
        f"\n{'exactly' if exactly_once else 'at-least'}-once, {WORKERS} workers: "
        f"{loop.attempts} SIGKILLs ({loop.mid_run} mid-stream), {events} events, "
        f"{len(scored.records)} predictions, {scored.duplicates} duplicate(s), "
        f"{restarts} restart(s), stopped in {stop_s:.1f}s"
    )
    # at-least-once: the uncommitted batch in flight at each kill is scored again by the new owner
    scored.check(max_duplicates=loop.attempts * BATCH_RECORDS)
    assert_no_dead_letters(stream.bootstrap, stream.dlq, exactly_once=exactly_once)
