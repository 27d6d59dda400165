"""Zombie fencing: an exactly-once scorer frozen (SIGSTOP) past its session, then resumed.

Two ``consume --exactly-once`` processes share a group, each with its own stable
``--transactional-id``. One is frozen while scoring, so most likely in the middle of a
transaction, for longer than the session timeout; the group gives all its partitions to the
other, which scores on. Then the zombie is resumed (SIGCONT). Whatever it still had in
flight must be fenced (KIP-447: the group generation check on the offsets it sends with its
transaction, or, once the coordinator has aborted the transaction, the bumped producer
epoch), so a read_committed reader sees every event exactly once. The zombie must either
rejoin the group and score on, or exit with one error line and no traceback.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from tests.integration.scorers import (
    ScoredStream,
    assert_no_dead_letters,
    consumed,
    read_predictions,
    stop_process,
    wait_drained,
    wait_until_scoring,
    wide_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
EVENTS = 60_000
BATCH_RECORDS = 200
SESSION_TIMEOUT_S = 6.0  # kafka.session_timeout_ms's default
SCORING_TIMEOUT_S = 90.0
#: How long the survivor may take to be given the zombie's partitions and score them.
TAKEOVER_TIMEOUT_S = 60.0
#: How long the resumed zombie has to rejoin and score, or to exit.
OBSERVE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0


@dataclass(frozen=True)
class Pause:
    """How long the zombie is frozen, at least (and until the survivor scored its share)."""

    stop_s: float
    #: max.poll.interval.ms for both scorers (None: churnstream's, 60 s).
    max_poll_interval_ms: int | None = None


PAUSES = {
    # Past the session timeout. If the zombie froze before its offsets reached the
    # transaction, the survivor scores its partitions at once, and the zombie's late offsets
    # are refused (stale group generation) or time out, so it aborts; if after, the
    # survivor's offset fetch waits for that transaction to end (KIP-447), and the pause
    # lasts until the coordinator aborts it, as below.
    "past-session": Pause(stop_s=10.0),
    # Past the session timeout, max.poll.interval.ms and the transaction timeout (10 s) plus
    # the coordinator's sweep for timed-out transactions (every 10 s): the coordinator has
    # aborted the transaction and bumped the producer epoch.
    "past-transaction-timeout": Pause(stop_s=25.0, max_poll_interval_ms=8000),
}


class Group:
    """The scoring group as the coordinator describes it."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.group = group

    def members(self) -> list[set[int]] | None:
        """Each member's partitions while the group is stable (None while it rebalances)."""
        try:
            future = self.admin.describe_consumer_groups([self.group], request_timeout=10)
            desc = future[self.group].result()
        except Exception:  # coordinator moving or loading: ask again later
            return None
        if desc.state != ConsumerGroupState.STABLE:
            return None
        return [{tp.partition for tp in m.assignment.topic_partitions} for m in desc.members]

    def wait_for(self, condition: Callable[[list[set[int]]], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            members = self.members()
            if members is not None and condition(members):
                return True
            time.sleep(0.2)
        return False


def start_scorer(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603


def wait_rises(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether the scorer's consumed counter rises within ``timeout_s`` (False if it exits)."""
    first = consumed(port)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        now = consumed(port)
        if now is not None and (first is None or now > first):
            return True
        time.sleep(0.2)
    return False


def fencing_evidence(output: str) -> list[str]:
    """The zombie's lines about its stale transaction (rejected, aborted or fenced)."""
    pattern = re.compile(r"fenc|generation|not committed|epoch|abort|member", re.IGNORECASE)
    return [line.strip() for line in output.splitlines() if pattern.search(line)]


@pytest.mark.parametrize("pause", list(PAUSES.values()), ids=list(PAUSES))
def test_a_frozen_exactly_once_scorer_is_fenced(
    pause: Pause,
    scored_stream: Callable[..., ScoredStream],
    model_dir: Path,
    tmp_path: Path,
) -> None:
    stream = scored_stream("zombie", partitions=PARTITIONS, events=EVENTS, ports=2)
    port, group, feeder, committed = stream.port, stream.group, stream.feeder, stream.committed
    env = wide_env()
    if pause.max_poll_interval_ms is not None:
        env["CHURNSTREAM_KAFKA__LIBRDKAFKA_CONSUMER"] = orjson.dumps(
            {"max.poll.interval.ms": pause.max_poll_interval_ms}
        ).decode()
    logs = [tmp_path / "zombie.log", tmp_path / "survivor.log"]
    procs = [
        start_scorer(
            stream.argv(
                model_dir,
                tmp_path,
                BATCH_RECORDS,
                "--exactly-once",
                "--transactional-id",
                f"{group}-{i}",
                "--metrics-port",
                str(port + i),
            ),
            logs[i],
            env,
        )
        for i in range(2)
    ]
    zombie, survivor = procs
    coordinator = Group(stream.bootstrap, group)
    rng = random.Random(20261127)
    try:
        feeder.start()
        for i, proc in enumerate(procs):
            wait_until_scoring(port + i, lambda p=proc: p.pid if p.poll() is None else None,
                               SCORING_TIMEOUT_S)  # fmt: skip
        assert coordinator.wait_for(lambda m: len(m) == 2 and all(m), SCORING_TIMEOUT_S)
        time.sleep(rng.uniform(0.0, 0.2))  # somewhere in a batch, most likely in a transaction
        zombie.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        # The coordinator drops the frozen member and gives every partition to the survivor.
        took_over = coordinator.wait_for(
            lambda m: m == [set(range(PARTITIONS))], pause.stop_s + TAKEOVER_TIMEOUT_S
        )
        takeover_s = time.monotonic() - frozen_at
        scored_on = took_over and wait_rises(port + 1, survivor, TAKEOVER_TIMEOUT_S)
        time.sleep(max(0.0, pause.stop_s - (time.monotonic() - frozen_at)))
        frozen_s = time.monotonic() - frozen_at
        zombie.send_signal(signal.SIGCONT)
        assert took_over, f"the survivor was not given every partition in {takeover_s:.0f}s"
        assert scored_on, "the survivor did not score on while the other one was frozen"
        assert frozen_s > SESSION_TIMEOUT_S
        # The zombie now either rejoins and scores on, or exits.
        rejoined = coordinator.wait_for(
            lambda m: len(m) == 2 and all(m) or zombie.poll() is not None, OBSERVE_TIMEOUT_S
        )
        scores_on = zombie.poll() is None and wait_rises(port, zombie, OBSERVE_TIMEOUT_S)
        outcome = zombie.poll()
        assert rejoined and (scores_on or outcome is not None), (
            "the zombie neither scored on nor exited"
        )
        events = feeder.finish()
        wait_drained(committed, events, [p for p in procs if p.poll() is None])
        codes = [stop_process(p, STOP_TIMEOUT_S) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop_process(proc, STOP_TIMEOUT_S)

    zombie_log, survivor_log = (log.read_text(errors="replace") for log in logs)
    scored = read_predictions(stream.bootstrap, stream.preds, events, exactly_once=True)
    errors = [line for line in zombie_log.splitlines() if line.startswith("error: ")]
    if outcome is None:
        fate = f"rejoined and scored on, exit {codes[0]} on SIGTERM"
    else:
        fate = f"exited {outcome}: {errors[-1] if errors else '(no error line)'}"
    evidence = fencing_evidence(zombie_log)
    limits = (
        f"max.poll.interval.ms {pause.max_poll_interval_ms}, " if pause.max_poll_interval_ms else ""
    )
    print(
        f"\nzombie, {limits}SIGSTOP {frozen_s:.1f}s: survivor had all {PARTITIONS} partitions "
        f"{takeover_s:.1f}s after the SIGSTOP and scored on; zombie {fate}; {events} events, "
        f"{len(scored.records)} predictions, {scored.duplicates} duplicate(s)"
    )
    for line in evidence[:4]:
        print(f"  zombie: {line[:200]}")
    assert "Traceback" not in zombie_log, zombie_log[-4000:]
    assert "Traceback" not in survivor_log, survivor_log[-4000:]
    scored.check()  # nothing lost, nothing doubled
    assert codes[1] == 0, f"survivor exit {codes[1]}:\n{survivor_log[-3000:]}"
    if outcome is None:
        assert codes[0] == 0, f"zombie exit {codes[0]} on SIGTERM:\n{zombie_log[-3000:]}"
    else:
        assert outcome != 0 and len(errors) == 1, zombie_log[-3000:]  # one line, non-zero
    assert_no_dead_letters(stream.bootstrap, stream.dlq, exactly_once=True)
