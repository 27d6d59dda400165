"""A SIGKILLed ``consume --workers 2`` supervisor leaves no orphans, and loses nothing.

The supervisor cannot forward a SIGKILL, so the kernel does it (Linux ``PR_SET_PDEATHSIG``):
both workers must be gone within seconds, mid-stream, and a new scorer in the same group
must then finish the input from the committed offsets with every event scored.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from churnstream.headers import SOURCE_HEADER
from tests.integration.kafka_io import CommittedOffsets, read_topic
from tests.integration.scorers import (
    Feeder,
    alive,
    cli,
    free_ports,
    kill_leftovers,
    scorer_args,
    send_events,
    wait_until_scoring,
    worker_pids,
)
from tests.integration.streams import unique_id

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux"),
]

WORKERS = 2
PARTITIONS = 4
EVENTS = 20_000
BATCH_RECORDS = 200
#: "Within a few seconds": the kernel signals at once, this is room for a loaded machine.
ORPHAN_TIMEOUT_S = 5.0
SCORING_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 120.0
TopicFactory = Callable[..., str]


def test_workers_die_with_a_sigkilled_supervisor_and_nothing_is_lost(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    model_dir: Path,
    tmp_path: Path,
    quick_rejoin: None,  # the finisher joins a group that the killed workers held
) -> None:
    topics = topic_factory(PARTITIONS), topic_factory(PARTITIONS), topic_factory(1)
    raw, preds, dlq = topics
    send_events(kafka_bootstrap, raw, 0, EVENTS)
    group = f"orphans-{uuid.uuid4().hex[:8]}"
    port = free_ports(WORKERS)
    argv = cli(
        *scorer_args(
            kafka_bootstrap, topics, group, model_dir, tmp_path, "streaming", BATCH_RECORDS
        ),
        "--no-reports", "--reload-interval", "0", "--metrics-port", str(port),
        "--workers", str(WORKERS),
    )  # fmt: skip
    err = tmp_path / "supervisor.err"
    with err.open("wb") as stderr:
        supervisor = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)  # noqa: S603
    # Tops the input up while the group commits, so that the kill lands mid-stream.
    feeder = Feeder(kafka_bootstrap, raw, group, EVENTS)
    committed = CommittedOffsets(kafka_bootstrap, group, raw)
    workers: dict[int, int] = {}
    try:
        feeder.start()
        for i in range(WORKERS):
            wait_until_scoring(
                port + i, lambda i=i: worker_pids(supervisor.pid).get(i), SCORING_TIMEOUT_S
            )
        workers = worker_pids(supervisor.pid)
        assert len(workers) == WORKERS, workers
        supervisor.kill()
        supervisor.wait(10)
        killed = time.monotonic()
        while any(alive(pid) for pid in workers.values()):
            if time.monotonic() - killed > ORPHAN_TIMEOUT_S:
                break
            time.sleep(0.05)
        gone_s = time.monotonic() - killed
        orphans = sorted(pid for pid in workers.values() if alive(pid))
        events = feeder.finish()
        at_kill = committed()
    finally:
        feeder.stop_event.set()
        committed.close()
        if supervisor.poll() is None:
            supervisor.kill()
        kill_leftovers(set(workers.values()), group)
    assert not orphans, f"worker(s) {orphans} outlived the SIGKILLed supervisor\n{err.read_text()}"

    # A new scorer in the same group resumes from the commits and finishes the input.
    finisher = subprocess.run(  # noqa: S603
        cli(*scorer_args(kafka_bootstrap, topics, group, model_dir, tmp_path, "batch")),
        capture_output=True,
        timeout=FINISH_TIMEOUT_S,
        check=False,
    )
    assert finisher.returncode == 0, finisher.stderr.decode(errors="replace")[-3000:]
    records = read_topic(
        kafka_bootstrap, preds, expect=events, isolation="read_uncommitted", timeout_s=120
    )
    sources = Counter(r.headers[SOURCE_HEADER] for r in records)
    print(
        f"\nsupervisor SIGKILLed with {at_kill} of {events} events committed; both workers "
        f"gone {gone_s:.2f}s later; the next scorer finished: {len(records)} predictions, "
        f"{len(records) - len(sources)} duplicate(s)"
    )
    assert at_kill < events, "the kill did not land mid-stream"
    assert len(sources) == events, f"lost {events - len(sources)} input message(s)"
    assert {r.json()["customerID"] for r in records} == {unique_id(i) for i in range(events)}
