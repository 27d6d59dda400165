"""The Airflow DAGs under a real Airflow 3 (SQLite), against a real embedded Apache Kafka.

Run in the Airflow virtualenv, which does not hold churnstream: the DAGs call the main
venv's ``churnstream`` (``$CHURNSTREAM_BIN``, default ``.venv/bin/churnstream``) and so do
these fixtures. ``make test-airflow`` creates that venv and runs them. Under the main venv
(no Airflow) the module is skipped.

Airflow reads its configuration when first imported, so ``airflow`` is imported only inside
fixtures, after ``airflow_home`` has set ``AIRFLOW_HOME`` to a temporary directory.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("airflow") is None:
    pytest.skip(
        "Airflow is not installed here; `make test-airflow` runs these in .venv-airflow",
        allow_module_level=True,
    )

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
DATASET = REPO_ROOT / "data" / "raw" / "telco_customer_churn.csv"
CS_BIN = Path(os.environ.get("CHURNSTREAM_BIN", REPO_ROOT / ".venv" / "bin" / "churnstream"))
CS_PYTHON = CS_BIN.parent / "python"
SAMPLE_ROWS = 1000
BAD_MESSAGES = 3
CLI_TIMEOUT_S = 180
BATCH_TASKS = [
    "ensure_broker",
    "create_topics",
    "preflight",
    "produce_batch",
    "score_window",
    "write_report",
    "check_thresholds",
]
STREAMING_TASKS = ["preflight", "ensure_scorer", "check_health", "check_window"]
#: The streaming DAG test's scorer writes a window summary this often (seconds).
STREAM_SUMMARY_S = 1
TRAINING_TASKS = ["fetch_data", "verify_data", "train", "evaluate", "register"]
RETRAIN_TASKS = [
    "detect_drift",
    "train_challenger",
    "register_challenger",
    "compare",
    "shadow",
    "promote",
]
# The lifecycle tests: a small held-out split, a short shadow window with a steady stream.
SHADOW_WINDOW_S = 6
SHADOW_RATE = 100
LIFECYCLE_SAMPLE = 1500

pytestmark = pytest.mark.integration


def cs(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run the main venv's churnstream; its stdout."""
    proc = subprocess.run(
        [str(CS_BIN), *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        # Where the DAG's tasks run too: no config/churnstream.yaml there, only env and flags.
        cwd=(env or {}).get("CHURNSTREAM_WORKDIR", REPO_ROOT),
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"churnstream {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Stack:
    """A broker, a model and a sample file; ``env`` points churnstream at them."""

    bootstrap: str
    workdir: Path
    sample: Path
    env: dict[str, str]

    @property
    def reports(self) -> Path:
        return Path(self.env["CHURNSTREAM_PATHS__REPORTS_DIR"])


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """AIRFLOW_HOME in a temp dir, SQLite migrated (``airflow db migrate``)."""
    home = tmp_path_factory.mktemp("airflow-home")
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in settings.items():
            mp.setenv(name, value)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            capture_output=True,
            timeout=CLI_TIMEOUT_S,
        )
        yield home


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An embedded Apache Kafka on a free port, its topics, a quick model, a sample file."""
    if not CS_BIN.is_file():
        pytest.skip(f"{CS_BIN} not found: run `make setup` (or set CHURNSTREAM_BIN)")
    if not DATASET.is_file():
        pytest.skip(f"{DATASET} absent: run `churnstream data fetch` (make test does)")
    root = tmp_path_factory.mktemp("churnstream")
    workdir = root / "work"
    workdir.mkdir()
    sample = root / "sample.csv"
    with DATASET.open(encoding="utf-8") as src:
        sample.write_text("".join(itertools.islice(src, SAMPLE_ROWS + 1)))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHURNSTREAM_")},
        "CHURNSTREAM_BIN": str(CS_BIN),
        "CHURNSTREAM_WORKDIR": str(workdir),
        "CHURNSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "CHURNSTREAM_BROKER__ENGINE": "kafka",
        "CHURNSTREAM_BROKER__PORT": str(port),
        "CHURNSTREAM_BROKER__STATE_DIR": str(root / "broker"),
        "CHURNSTREAM_BROKER__JARS_DIR": str(REPO_ROOT / ".churnstream" / "kafka-jars"),
        "CHURNSTREAM_MODEL__MODELS_DIR": str(root / "models"),
        "CHURNSTREAM_PATHS__DATA_DIR": str(root / "data"),
        "CHURNSTREAM_PATHS__RAW_CSV": str(sample),
        "CHURNSTREAM_PATHS__REPORTS_DIR": str(root / "reports"),
        "CHURNSTREAM_PATHS__LOGS_DIR": str(root / "logs"),
        "CHURNSTREAM_PROMOTION__TRACKING_URI": (root / "mlruns").as_uri(),
        "CHURNSTREAM_PROMOTION__MIN_HOLDOUT_ROWS": "100",
        "CHURNSTREAM_PROMOTION__SHADOW_WINDOW_S": str(SHADOW_WINDOW_S),
        "CHURNSTREAM_PROMOTION__SHADOW_MIN_EVENTS": str(SHADOW_WINDOW_S * SHADOW_RATE // 2),
        # After a real shift a better model must disagree with the old one more than usual
        # (measured on this stream: agreement 0.76, churn rates 0.20 vs 0.36).
        "CHURNSTREAM_PROMOTION__SHADOW_MIN_AGREEMENT": "0.6",
        "CHURNSTREAM_PROMOTION__SHADOW_MAX_CHURN_RATE_SHIFT": "0.3",
    }
    cs("broker", "start", "--engine", "kafka", "--port", str(port), env=env)
    try:
        cs("topics", "create", env=env)
        cs("train", "--sample", "1500", "--algorithm", "logreg", "--data", str(DATASET), env=env)
        yield Stack(f"127.0.0.1:{port}", workdir, sample, env)
    finally:
        cs("scorer", "stop", "--state-dir", str(workdir / ".churnstream/scorer"), env=env)
        cs("broker", "stop", "--state-dir", str(root / "broker"), env=env, check=False)


@pytest.fixture
def churnstream_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The stack's CHURNSTREAM_* variables in this process: tasks run in-process here."""
    for name, value in stack.env.items():
        if name.startswith("CHURNSTREAM_"):
            monkeypatch.setenv(name, value)
    return stack


@pytest.fixture(scope="session")
def dagbag(airflow_home: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def task_states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def run_reports(stack: Stack, run: Any) -> list[Path]:
    """The summaries this batch run wrote (its own reports dir)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run.run_id)
    return sorted((stack.reports / "batch" / safe).glob("summary_*.json"))


# -- tests ------------------------------------------------------------------------------------


def test_dagbag_imports_both_dags_thin_and_with_timeouts(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert {
        "churnstream_batch",
        "churnstream_streaming",
        "churnstream_training",
        "churnstream_retrain",
    } <= set(dagbag.dag_ids)
    training = dagbag.get_dag("churnstream_training")
    retrain = dagbag.get_dag("churnstream_retrain")
    assert [t.task_id for t in training.topological_sort()] == TRAINING_TASKS
    assert [t.task_id for t in retrain.topological_sort()] == RETRAIN_TASKS
    for dag in (training, retrain):
        assert not dag.catchup and dag.max_active_runs == 1
        for task in dag.tasks:
            # Thin, and a failure's message is churnstream's one line (ChurnstreamOperator).
            assert type(task).__name__ == "ChurnstreamOperator", task.task_id
            assert task.execution_timeout is not None, task.task_id
            assert "cs " in task.bash_command and "CHURNSTREAM_BIN" in task.bash_command
    batch = dagbag.get_dag("churnstream_batch")
    streaming = dagbag.get_dag("churnstream_streaming")
    assert [t.task_id for t in batch.topological_sort()] == BATCH_TASKS
    assert set(streaming.task_ids) == set(STREAMING_TASKS)
    assert streaming.get_task("ensure_scorer").downstream_task_ids == {
        "check_health",
        "check_window",
    }
    for dag in (batch, streaming):
        assert not dag.catchup and dag.max_active_runs == 1
        for task in dag.tasks:
            # Thin: every task is one churnstream command under a timeout; no Kafka operators.
            assert type(task).__name__ == "BashOperator", task.task_id
            assert task.execution_timeout is not None, task.task_id
            assert "cs " in task.bash_command and "CHURNSTREAM_BIN" in task.bash_command


def test_batch_dag_runs_end_to_end(dagbag: Any, churnstream_env: Stack) -> None:
    dag = dagbag.get_dag("churnstream_batch")
    run = dag.test(run_conf={"data_path": str(churnstream_env.sample), "idle_timeout_ms": 3000})
    assert task_states(run) == dict.fromkeys(BATCH_TASKS, "success")
    assert str(run.state) == "success"
    (summary_path,) = run_reports(churnstream_env, run)
    summary = json.loads(summary_path.read_text())
    assert summary["counts"]["consumed"] == SAMPLE_ROWS
    assert summary["counts"]["scored"] == SAMPLE_ROWS
    assert summary["drift"]["evaluated"] is True
    assert summary_path.with_suffix(".md").is_file()  # write_report re-rendered it


def test_batch_dag_fails_loudly_when_a_threshold_is_crossed(
    dagbag: Any, churnstream_env: Stack
) -> None:
    """Bad messages on the input topic, --max-dlq-rate 0: only check_thresholds fails."""
    inject = (
        "import sys\n"
        "from confluent_kafka import Producer\n"
        "p = Producer({'bootstrap.servers': sys.argv[1]})\n"
        f"for i in range({BAD_MESSAGES}):\n"
        "    p.produce('telco.raw.customers', key=b'bad-%d' % i, value=b'not json {')\n"
        "assert p.flush(30) == 0\n"
    )
    subprocess.run(
        [str(CS_PYTHON), "-c", inject, churnstream_env.bootstrap], check=True, timeout=60
    )
    dag = dagbag.get_dag("churnstream_batch")
    run = dag.test(
        run_conf={
            "data_path": str(churnstream_env.sample),
            "idle_timeout_ms": 3000,
            "max_dlq_rate": 0,
        }
    )
    states = task_states(run)
    assert states.pop("check_thresholds") == "failed"
    assert set(states.values()) == {"success"}
    assert str(run.state) == "failed"

    (summary_path,) = run_reports(churnstream_env, run)
    counts = json.loads(summary_path.read_text())["counts"]
    assert counts["dead_lettered"] == BAD_MESSAGES
    assert counts["dead_letters_by_code"] == {"not_json": BAD_MESSAGES}
    # What the task printed: the crossed threshold, one line, exit code 3.
    proc = subprocess.run(
        [str(CS_BIN), "check", "--summary", str(summary_path), "--max-dlq-rate", "0"],
        capture_output=True,
        text=True,
        env=churnstream_env.env,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        f"CROSSED  dead-letter rate {BAD_MESSAGES / (SAMPLE_ROWS + BAD_MESSAGES):.4f} > 0 "
        f"({BAD_MESSAGES} of {SAMPLE_ROWS + BAD_MESSAGES:,} consumed messages dead-lettered: "
        f"validation_error {BAD_MESSAGES})"
    ]


def test_streaming_dag_starts_a_scorer_that_outlives_the_run(
    dagbag: Any, churnstream_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = dagbag.get_dag("churnstream_streaming")
    # check_window retries after one summary interval of the DAG's default (60 s) when the
    # new scorer has written no window yet; this scorer writes one every STREAM_SUMMARY_S.
    delay = timedelta(seconds=STREAM_SUMMARY_S)
    monkeypatch.setattr(dag.get_task("check_window"), "retry_delay", delay)
    run = dag.test(run_conf={"summary_interval_s": STREAM_SUMMARY_S})
    assert task_states(run) == dict.fromkeys(STREAMING_TASKS, "success")
    state_dir = churnstream_env.workdir / ".churnstream" / "scorer"
    status = json.loads(
        cs("scorer", "status", "--state-dir", str(state_dir), "--json", env=churnstream_env.env)
    )
    assert status["running"] and status["ready"], status
    pid = status["pid"]

    # A second run keeps the same scorer.
    again = dag.test(run_conf={"summary_interval_s": STREAM_SUMMARY_S})
    assert task_states(again) == dict.fromkeys(STREAMING_TASKS, "success")
    status = json.loads(
        cs("scorer", "status", "--state-dir", str(state_dir), "--json", env=churnstream_env.env)
    )
    assert status["pid"] == pid


# -- the model lifecycle: training, drift-triggered retraining, the gate ----------------------


def model_status(stack: Stack) -> dict[str, Any]:
    return dict(json.loads(cs("model", "status", "--json", env=stack.env)))


def latest_model(stack: Stack) -> str:
    return (Path(stack.env["CHURNSTREAM_MODEL__MODELS_DIR"]) / "latest").read_text().strip()


def failure_lines(output: str) -> list[str]:
    """The failure messages ChurnstreamOperator raised (``exit N: <churnstream's line>``), as
    ``dag.test()`` logged them."""
    return [line for line in output.splitlines() if re.search(r"exit \d+: error: ", line)]


@pytest.fixture(scope="session")
def shifted(stack: Stack) -> dict[str, Path]:
    """Labelled data after a shift (tenure reflected), and the same with shuffled labels."""
    from tests.lifecycle_data import write_variant

    root = stack.sample.parent
    return {
        "better": write_variant(DATASET, root / "shifted.csv", shifted=True),
        "worse": write_variant(
            DATASET, root / "shifted-shuffled.csv", shifted=True, shuffle_labels=True
        ),
        "stream": write_variant(DATASET, root / "shifted-stream.csv", shifted=True, rows=1000),
    }


@pytest.fixture
def lifecycle_env(churnstream_env: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack on its own input topic, so that the shifted stream is all it holds."""
    topic = "telco.raw.lifecycle"
    env = {**churnstream_env.env, "CHURNSTREAM_TOPICS__RAW__NAME": topic}
    env["CHURNSTREAM_TOPICS__RAW__PARTITIONS"] = "3"
    monkeypatch.setenv("CHURNSTREAM_TOPICS__RAW__NAME", topic)
    monkeypatch.setenv("CHURNSTREAM_TOPICS__RAW__PARTITIONS", "3")
    stack = Stack(churnstream_env.bootstrap, churnstream_env.workdir, churnstream_env.sample, env)
    cs("topics", "create", env=env)
    yield stack


def test_training_dag_trains_evaluates_and_registers_the_first_champion(
    dagbag: Any, churnstream_env: Stack
) -> None:
    dag = dagbag.get_dag("churnstream_training")
    run = dag.test(
        run_conf={
            "data_path": str(churnstream_env.sample),
            "algorithm": "logreg",
        }
    )
    assert task_states(run) == dict.fromkeys(TRAINING_TASKS, "success")
    status = model_status(churnstream_env)
    champion = status["champion"]
    assert champion is not None and status["challenger"] is None
    # The registered champion is what serves: models/latest names it.
    assert latest_model(churnstream_env) == champion["model_version"]


def test_retrain_dag_on_drift_promotes_the_better_model_and_refuses_a_worse_one(
    dagbag: Any, lifecycle_env: Stack, shifted: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    env = lifecycle_env.env
    store = Path(env["CHURNSTREAM_PROMOTION__TRACKING_URI"].removeprefix("file://"))
    if not store.is_dir() or model_status(lifecycle_env)["champion"] is None:
        cs("model", "register", "--bootstrap", env=env)  # run without the training DAG
    champion = model_status(lifecycle_env)["champion"]
    # A window of the shifted stream, scored by the champion: drift.
    reports = lifecycle_env.reports / "lifecycle"
    cs(
        "produce",
        "--mode",
        "batch",
        "--data-path",
        str(shifted["stream"]),
        "--no-progress",
        "--checkpoint-file",
        str(lifecycle_env.workdir / "lifecycle-checkpoint.json"),
        env=env,
    )
    # The window is all written by now: 3 s idle after the assignment means done (as in the
    # batch DAG test), rather than a 10 s wait at the end.
    cs(
        "consume",
        "--mode",
        "batch",
        "--timeout-ms",
        "3000",
        "--consumer-group",
        "lifecycle",
        "--reports-dir",
        str(reports),
        env=env,
    )
    proc = subprocess.run(
        [str(CS_BIN), "check", "--latest", "--reports-dir", str(reports), "--max-dlq-rate", "1"]
        + ["--max-psi", "0.1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=lifecycle_env.workdir,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "CROSSED  PSI of tenure" in proc.stderr

    # Live traffic for the shadow window, all through the run.
    stream = subprocess.Popen(
        [
            str(CS_BIN),
            "produce",
            "--mode",
            "streaming",
            "--sample",
            "--seed",
            "3",
            "--events-per-sec",
            str(SHADOW_RATE),
            "--duration",
            "600",
            "--no-progress",
            "--data-path",
            str(shifted["stream"]),
        ],
        env=env,
        cwd=lifecycle_env.workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        dag = dagbag.get_dag("churnstream_retrain")
        conf = {
            "reports_dir": str(reports),
            "max_psi": 0.1,  # tenure's PSI in that window: 0.14
            "sample": LIFECYCLE_SAMPLE,
            "algorithm": "logreg",
        }
        run = dag.test(run_conf={**conf, "data_path": str(shifted["better"])})
        assert task_states(run) == dict.fromkeys(RETRAIN_TASKS, "success")
        status = model_status(lifecycle_env)
        promoted = status["champion"]
        assert promoted["version"] != champion["version"]
        assert status["challenger"] is None
        assert latest_model(lifecycle_env) == promoted["model_version"]
        assert status["champion_history"][-2:] == [champion["version"], promoted["version"]]

        # A deliberately worse candidate (shuffled labels), judged on the shifted data.
        capfd.readouterr()
        worse = dag.test(
            run_conf={
                **conf,
                "force": True,
                "data_path": str(shifted["worse"]),
                "holdout_data_path": str(shifted["better"]),
            }
        )
    finally:
        stream.terminate()
        stream.wait(timeout=30)
    states = task_states(worse)
    assert states["compare"] == "failed", states
    assert {states["shadow"], states["promote"]} == {"upstream_failed"}
    assert str(worse.state) == "failed"
    (reason,) = failure_lines(capfd.readouterr().out)
    assert "exit 3: error: v" in reason and "holdout gate refused: challenger ROC AUC" in reason
    status = model_status(lifecycle_env)
    assert status["champion"]["version"] == promoted["version"]  # still serving
    assert latest_model(lifecycle_env) == promoted["model_version"]
