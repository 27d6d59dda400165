"""MLflow tracking: `train --mlflow` logs to a real file store; `model promote` brings it back.

No mocks of MLflow: every test writes a local ``file:`` store under tmp_path.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.model import artifacts, tracking
from churnstream.model.scorer import Scorer
from churnstream.model.train import TrainRun
from tests.unit.test_train import small_dataset, small_frame, train_small

pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")

from mlflow.tracking import MlflowClient  # noqa: E402

RUN_ID = re.compile(r"MLflow run ([0-9a-f]{32})")
VERSION_FILES = {
    artifacts.MODEL_FILE,
    artifacts.METADATA_FILE,
    artifacts.COMPILED_FILE,  # the arrays the scorer process loads
    "report.md",
    "roc.png",
    "calibration.png",
}


@pytest.fixture(autouse=True)
def _mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer's MLflow settings leak in; tracking.py must set what it needs itself."""
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_ALLOW_FILE_STORE",
        "MLFLOW_DISABLE_TELEMETRY",
    ):
        # set, then delete: monkeypatch then restores the original (or its absence) after the
        # test, including what tracking.resolve_tracking_uri() sets itself.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainRun:
    return train_small(tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("data"))


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def store(tmp_path: Path) -> str:
    return (tmp_path / "mlruns").as_uri()


def test_train_mlflow_logs_a_run_and_promote_brings_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data, sample = small_dataset(tmp_path)
    trained_dir = tmp_path / "trained"
    args = ["train", "--mlflow", "--data", str(data), "--models-dir", str(trained_dir)]
    args += ["--algorithm", "logreg", *(["--sample", str(sample)] if sample else [])]
    code, out = invoke(*args)
    assert code == 0, out
    match = RUN_ID.search(out)
    assert match, out
    run_id = match.group(1)
    assert f"churnstream model promote --run-id {run_id}" in out
    version = (trained_dir / artifacts.LATEST_FILE).read_text().strip()
    metadata = json.loads((trained_dir / version / artifacts.METADATA_FILE).read_text())

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == version
    assert run.data.tags[tracking.VERSION_TAG] == version
    assert run.data.tags[tracking.ALGORITHM_TAG] == "logreg"
    assert run.data.tags[tracking.DATA_SHA256_TAG] == metadata["data"]["sha256"]
    assert run.data.params["algorithm"] == "logreg"
    assert run.data.params["threshold"] == str(metadata["threshold"]["value"])
    assert run.data.params["model.logreg.C"] == str(metadata["params"]["logreg"]["C"])
    for key in ("roc_auc", "pr_auc", "f1", "brier", "threshold", "cv_roc_auc_mean", "tp"):
        assert key in run.data.metrics, key
    assert run.data.metrics["roc_auc"] == pytest.approx(metadata["summary_metrics"]["roc_auc"])
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, tracking.ARTIFACT_DIR)}
    assert logged == VERSION_FILES
    assert not any(name.endswith((".pkl", ".pickle")) for name in logged)

    # Promote into an empty models/ (a fresh machine): same model, same scores.
    target = tmp_path / "models"
    code, out = invoke("model", "promote", "--run-id", run_id, "--models-dir", str(target))
    assert code == 0, out
    assert f"-> {version}" in out
    assert (target / artifacts.LATEST_FILE).read_text() == version + "\n"
    assert json.loads((target / artifacts.METRICS_FILE).read_text())["version"] == version
    for name in VERSION_FILES:
        assert (target / version / name).read_bytes() == (trained_dir / version / name).read_bytes()
    assert not [p for p in target.iterdir() if p.name.startswith(artifacts.STAGING_PREFIX)]
    rows = small_frame(tmp_path).head(50)
    np.testing.assert_array_equal(
        Scorer.load(target).predict_proba(rows), Scorer.load(trained_dir).predict_proba(rows)
    )

    code, out = invoke("model", "runs")
    assert code == 0, out
    assert run_id in out and version in out


def test_promote_moves_latest_between_versions_and_is_idempotent(
    tmp_path: Path, trained: TrainRun
) -> None:
    uri = store(tmp_path)
    first = tracking.log_training_run(trained, tracking_uri=uri)
    models = tmp_path / "models"
    done = tracking.promote(first.run_id, models, tracking_uri=uri)
    assert (done.version, done.previous, done.downloaded) == (trained.version, None, True)

    # Trained next to the first, so that a run within the same second gets another name.
    other = train_small(trained.version_dir.parent, tmp_path / "data", random_state=7)
    assert other.version != trained.version
    second = tracking.log_training_run(other, tracking_uri=uri)
    done = tracking.promote(second.run_id, models, tracking_uri=uri)
    assert (done.version, done.previous) == (other.version, trained.version)
    assert Scorer.load(models).version == other.version

    # Rolling back to the first run reuses its directory (same bytes) and re-verifies it.
    done = tracking.promote(first.run_id, models, tracking_uri=uri)
    assert (done.version, done.previous, done.downloaded) == (trained.version, other.version, False)
    assert Scorer.load(models).version == trained.version


def test_a_tampered_artifact_is_refused_and_models_left_unchanged(
    tmp_path: Path, trained: TrainRun
) -> None:
    uri = store(tmp_path)
    logged = tracking.log_training_run(trained, tracking_uri=uri)
    stored = Path(logged.artifact_uri.removeprefix("file://")) / tracking.ARTIFACT_DIR
    blob = bytearray((stored / artifacts.MODEL_FILE).read_bytes())
    blob[-100] ^= 0xFF
    (stored / artifacts.MODEL_FILE).write_bytes(bytes(blob))

    models = tmp_path / "models"
    models.mkdir()
    (models / artifacts.LATEST_FILE).write_text("keep-me\n")
    code, out = invoke(
        "model", "promote", "--run-id", logged.run_id, "--tracking-uri", uri,
        "--models-dir", str(models),
    )  # fmt: skip
    assert code == 1
    assert out.startswith("error: ") and "failed verification" in out, out
    assert "Traceback" not in out
    assert sorted(p.name for p in models.iterdir()) == [artifacts.LATEST_FILE]
    assert (models / artifacts.LATEST_FILE).read_text() == "keep-me\n"


def test_a_different_model_under_an_existing_version_name_is_refused(
    tmp_path: Path, trained: TrainRun
) -> None:
    uri = store(tmp_path)
    logged = tracking.log_training_run(trained, tracking_uri=uri)
    models = tmp_path / "models"
    clash = train_small(models, tmp_path / "data", random_state=3)
    (models / clash.version).rename(models / trained.version)
    (models / artifacts.LATEST_FILE).write_text(trained.version + "\n")
    with pytest.raises(tracking.TrackingError, match="different model"):
        tracking.promote(logged.run_id, models, tracking_uri=uri)


def test_a_missing_file_store_is_reported_not_created(tmp_path: Path) -> None:
    uri = store(tmp_path)
    code, out = invoke("model", "runs", "--tracking-uri", uri)
    assert code == 1 and out.startswith("error: no MLflow file store at"), out
    code, out = invoke("model", "promote", "--run-id", "0" * 32, "--tracking-uri", uri)
    assert code == 1 and out.startswith("error: no MLflow file store at"), out
    assert not (tmp_path / "mlruns").exists()
    assert tracking.file_store_path("file:///tmp/a%20b") == Path("/tmp/a b")
    assert tracking.file_store_path("file:./mlruns") == Path("mlruns")
    assert tracking.file_store_path("sqlite:///mlflow.db") is None


def test_unknown_and_foreign_runs_fail_in_one_line(tmp_path: Path) -> None:
    uri = tracking.resolve_tracking_uri(store(tmp_path))
    MlflowClient(uri).search_experiments()  # creates the (empty) store
    code, out = invoke(
        "model", "promote", "--run-id", "0" * 32, "--tracking-uri", uri, "--models-dir",
        str(tmp_path / "models"),
    )  # fmt: skip
    assert code == 1 and out.startswith("error: no MLflow run"), out
    assert len(out.strip().splitlines()) == 1

    client = MlflowClient(uri)
    foreign = client.create_run(client.create_experiment("other")).info.run_id
    client.set_terminated(foreign)
    with pytest.raises(tracking.TrackingError, match="has no churnstream.model_version tag"):
        tracking.promote(foreign, tmp_path / "models", tracking_uri=uri)
    client.set_tag(foreign, tracking.VERSION_TAG, "../escape")
    with pytest.raises(tracking.TrackingError, match="not a model version name"):
        tracking.promote(foreign, tmp_path / "models", tracking_uri=uri)
    client.set_tag(foreign, tracking.VERSION_TAG, "20260101T000000Z-logreg")
    with pytest.raises(tracking.TrackingError, match="cannot download"):
        tracking.promote(foreign, tmp_path / "models", tracking_uri=uri)
    assert not (tmp_path / "models" / "20260101T000000Z-logreg").exists()


def test_tracking_uri_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    assert tracking.resolve_tracking_uri() == "file:./mlruns"
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    assert tracking.resolve_tracking_uri() == "sqlite:///x.db"
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    assert tracking.resolve_tracking_uri("/tmp/runs") == "/tmp/runs"
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"


def test_without_mlflow_train_stops_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(tracking.TrackingError, match=r"pip install 'churnstream\[mlflow\]'"):
        tracking.require_mlflow()
    data, _ = small_dataset(tmp_path)
    models = tmp_path / "models"
    code, out = invoke("train", "--mlflow", "--data", str(data), "--models-dir", str(models))
    assert code == 1 and "MLflow is not installed" in out, out
    assert not models.exists()
    for args in (("model", "runs"), ("model", "promote", "--run-id", "0" * 32)):
        code, out = invoke(*args)
        assert code == 1 and out.startswith("error: MLflow is not installed"), out


def test_params_and_metrics_are_flat(trained: TrainRun) -> None:
    params = tracking.run_params(trained.metadata)
    assert all(isinstance(v, str) for v in params.values())
    assert params["model.logreg.C"] == str(trained.metadata["params"]["logreg"]["C"])
    metrics = tracking.run_metrics(trained.metadata)
    assert all(isinstance(v, float) for v in metrics.values())
    (tn, fp), (fn, tp) = trained.metadata["summary_metrics"]["confusion_matrix"]
    assert (metrics["tn"], metrics["fp"], metrics["fn"], metrics["tp"]) == (tn, fp, fn, tp)
    assert "confusion_matrix" not in metrics
