"""Optional MLflow tracking: log a training run, and promote a logged run back into models/.

Needs the ``mlflow`` extra (``pip install 'churnstream[mlflow]'``, which brings
``mlflow-skinny``); nothing else in churnstream imports MLflow.

A run logged by :func:`log_training_run` holds:

- params: algorithm, seed, split, CV folds, sample size, data hash and rows, threshold, and the
  algorithm's hyper-parameters (flattened, ``hgb.max_depth``);
- metrics: the held-out and CV metrics of ``models/metrics.json``, the confusion matrix cells
  and the training time;
- tags: ``churnstream.model_version`` (the version directory's name), the algorithm, the data
  sha256 and the churnstream version;
- artifacts under ``model/``: the version directory as written by the trainer, byte for byte
  (``model.skops``, ``metadata.json``, ``report.md``, ``roc.png``, ``calibration.png``).
  The model is logged as its skops file, never as a pickle or an ``mlflow.sklearn`` flavour.

:func:`promote` downloads ``model/`` of a run into a staging directory under ``models/``,
loads it with :meth:`churnstream.model.scorer.Scorer.load` (trusted types, sha256, smoke
prediction), renames it to ``models/<version>/`` and only then points ``models/latest`` at it
(atomic replace). A run that fails any check leaves ``models/`` as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from churnstream import __version__
from churnstream.exceptions import ChurnstreamError, ModelLoadError
from churnstream.model import artifacts

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from churnstream.model.train import TrainRun

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "file:./mlruns"
DEFAULT_EXPERIMENT = "churnstream"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
#: The run's artifact directory that mirrors ``models/<version>/``.
ARTIFACT_DIR = "model"
VERSION_TAG = "churnstream.model_version"
ALGORITHM_TAG = "churnstream.algorithm"
DATA_SHA256_TAG = "churnstream.data_sha256"
PACKAGE_VERSION_TAG = "churnstream.version"
INSTALL_HINT = "pip install 'churnstream[mlflow]'"
#: MLflow caps a param value at 6,000 characters; ours are short, but a cap keeps it safe.
PARAM_VALUE_MAX_CHARS = 500
_PROMOTE_STAGING_PREFIX = f"{artifacts.STAGING_PREFIX}promote-"


class TrackingError(ChurnstreamError):
    """MLflow is missing, unreachable, or a run cannot be logged or promoted."""


@dataclass(frozen=True)
class LoggedRun:
    """Where :func:`log_training_run` put a training run."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    artifact_uri: str
    model_version: str


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote` did."""

    run_id: str
    version: str
    version_dir: Path
    previous: str | None
    downloaded: bool


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``file:./mlruns``.

    Also sets ``MLFLOW_DISABLE_TELEMETRY=true`` and, for a local file store,
    ``MLFLOW_ALLOW_FILE_STORE=true`` (MLflow 3 refuses file stores without it), unless the
    user set them already.
    """
    resolved = uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if _is_file_store(resolved):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return resolved


def _is_file_store(uri: str) -> bool:
    scheme, sep, _ = uri.partition(":")
    # No scheme (a path), file:, or a Windows drive letter: all are MLflow's file store.
    return not sep or scheme == "file" or len(scheme) == 1


def file_store_path(uri: str) -> Path | None:
    """The local directory of a file-store URI (``file:./mlruns``, ``file:///x``, a path)."""
    if not _is_file_store(uri):
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        host = "" if parsed.netloc in ("", "localhost") else f"//{parsed.netloc}"
        return Path(host + unquote(parsed.path))
    return Path(uri)


def _require_existing_store(uri: str) -> None:
    # MLflow creates a missing file store on first use: reading commands must not, so a typo
    # in the URI is reported instead of answered with an empty new store.
    require_mlflow()  # "not installed" first: it is the more useful message
    path = file_store_path(uri)
    if path is not None and not path.is_dir():
        raise TrackingError(
            f"no MLflow file store at {path} (tracking URI {uri}); "
            "pass --tracking-uri or set MLFLOW_TRACKING_URI"
        )


def require_mlflow() -> None:
    """Fail early, with the install command, when the ``mlflow`` extra is missing."""
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise TrackingError(f"MLflow is not installed; {INSTALL_HINT}") from exc


def _client(tracking_uri: str) -> MlflowClient:
    require_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def run_params(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The run's params, as strings, from a version's metadata.json."""
    data = metadata.get("data", {})
    params: dict[str, Any] = {
        "algorithm": metadata["algorithm"],
        "random_state": metadata.get("random_state"),
        "cv_folds": metadata.get("cv_folds"),
        "test_size": data.get("test_size"),
        "sample": data.get("sample"),
        "data_rows": data.get("rows"),
        "rows_used": data.get("rows_used"),
        "data_sha256": data.get("sha256"),
        "threshold": metadata["threshold"]["value"],
        "threshold_method": metadata["threshold"].get("method"),
    }
    params.update(_flatten(metadata.get("params", {}), prefix="model."))
    return {key: str(value)[:PARAM_VALUE_MAX_CHARS] for key, value in params.items()}


def run_metrics(metadata: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics: those of models/metrics.json, the confusion matrix, training time."""
    metrics: dict[str, float] = {}
    for key, value in metadata.get("summary_metrics", {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[key] = float(value)
    matrix = metadata.get("summary_metrics", {}).get("confusion_matrix")
    if isinstance(matrix, list) and len(matrix) == 2:
        (tn, fp), (fn, tp) = matrix
        metrics.update({"tn": float(tn), "fp": float(fp), "fn": float(fn), "tp": float(tp)})
    for stage, seconds in metadata.get("training_seconds", {}).items():
        metrics[f"training_{stage}_s"] = float(seconds)
    return metrics


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), value


def log_training_run(
    run: TrainRun,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> LoggedRun:
    """Log a finished ``churnstream train`` run (params, metrics, tags, artifacts) to MLflow."""
    return log_version_dir(run.version_dir, tracking_uri=tracking_uri, experiment=experiment)


def log_version_dir(
    version_dir: Path,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> LoggedRun:
    """Log a model version directory (as the trainer wrote it) as one MLflow run."""
    metadata = artifacts.read_metadata(version_dir)
    version = str(metadata["version"])
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    name = experiment or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    try:
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
        tags = {
            VERSION_TAG: version,
            ALGORITHM_TAG: str(metadata["algorithm"]),
            DATA_SHA256_TAG: str(metadata.get("data", {}).get("sha256", "")),
            PACKAGE_VERSION_TAG: __version__,
        }
        started = client.create_run(experiment_id, tags=tags, run_name=version)
        run_id = started.info.run_id
    except MlflowException as exc:
        raise TrackingError(f"cannot start an MLflow run at {uri}: {exc.message}") from exc
    try:
        timestamp_ms = started.info.start_time
        client.log_batch(
            run_id,
            metrics=[
                Metric(k, v, timestamp_ms, 0) for k, v in sorted(run_metrics(metadata).items())
            ],
            params=[Param(k, v) for k, v in sorted(run_params(metadata).items())],
            tags=[RunTag("mlflow.note.content", f"churnstream model {version}")],
        )
        client.log_artifacts(run_id, str(version_dir), artifact_path=ARTIFACT_DIR)
    except BaseException as exc:
        client.set_terminated(run_id, status="FAILED")
        if isinstance(exc, MlflowException | OSError):
            raise TrackingError(f"logging run {run_id} to {uri} failed: {exc}") from exc
        raise
    client.set_terminated(run_id, status="FINISHED")
    artifact_uri = str(client.get_run(run_id).info.artifact_uri)
    logger.info("logged model %s as MLflow run %s (%s)", version, run_id, uri)
    return LoggedRun(run_id, experiment_id, uri, artifact_uri, version)


@dataclass(frozen=True)
class RunSummary:
    """One line of ``churnstream model runs``."""

    run_id: str
    started_ms: int
    status: str
    version: str
    metrics: dict[str, float]


def list_runs(
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    limit: int = 20,
) -> list[RunSummary]:
    """The newest ``limit`` runs of the experiment, newest first (empty if it does not exist)."""
    uri = resolve_tracking_uri(tracking_uri)
    _require_existing_store(uri)
    client = _client(uri)
    from mlflow.exceptions import MlflowException

    name = experiment or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            return []
        runs = client.search_runs(
            [found.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"]
        )
    except MlflowException as exc:
        raise TrackingError(f"cannot list MLflow runs at {uri}: {exc.message}") from exc
    return [
        RunSummary(
            run_id=r.info.run_id,
            started_ms=int(r.info.start_time or 0),
            status=str(r.info.status),
            version=r.data.tags.get(VERSION_TAG, ""),
            metrics=dict(r.data.metrics),
        )
        for r in runs
    ]


def promote(
    run_id: str,
    models_dir: Path,
    *,
    tracking_uri: str | None = None,
) -> Promotion:
    """Download run ``run_id``'s model into ``models_dir/<version>/``, verify it, make it latest.

    The model is loaded with :meth:`Scorer.load` (trusted types, sha256, smoke prediction)
    before ``models_dir`` changes at all. An existing ``models_dir/<version>/`` is reused only
    if its model file has the same sha256 as the run's; otherwise promotion is refused.
    """
    uri = resolve_tracking_uri(tracking_uri)
    _require_existing_store(uri)
    client = _client(uri)
    from mlflow.exceptions import MlflowException

    from churnstream.model.scorer import Scorer

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(f"no MLflow run {run_id!r} at {uri}: {exc.message}") from exc
    version = run.data.tags.get(VERSION_TAG)
    if not version:
        raise TrackingError(
            f"run {run_id} has no {VERSION_TAG} tag; was it logged by `churnstream train --mlflow`?"
        )
    _check_version_name(version)

    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_PROMOTE_STAGING_PREFIX, dir=models_dir))
    try:
        try:
            local = Path(client.download_artifacts(run_id, ARTIFACT_DIR, dst_path=str(staging)))
        except (MlflowException, OSError) as exc:
            raise TrackingError(
                f"cannot download the '{ARTIFACT_DIR}' artifacts of run {run_id}: {exc}"
            ) from exc
        try:
            scorer = Scorer.load(local)
        except ModelLoadError as exc:
            raise TrackingError(
                f"run {run_id}'s model failed verification, models/ unchanged: {exc}"
            ) from exc
        if scorer.version != version:
            raise TrackingError(
                f"run {run_id} is tagged {version!r} but its metadata.json says {scorer.version!r}"
            )
        final = models_dir / version
        downloaded = not final.exists()
        if downloaded:
            local.chmod(artifacts.DIR_MODE)
            os.replace(local, final)
        else:
            _check_same_model(final, scorer.metadata, run_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    latest = models_dir / artifacts.LATEST_FILE
    previous = latest.read_text(encoding="utf-8").strip() if latest.is_file() else None
    artifacts.write_latest(models_dir, version)
    artifacts.write_metrics(models_dir, scorer.metadata)
    logger.info("promoted MLflow run %s: %s is now %s", run_id, version, latest)
    return Promotion(run_id, version, final, previous or None, downloaded)


def _check_version_name(version: str) -> None:
    if (
        "/" in version
        or "\\" in version
        or version.startswith(".")
        or version != version.strip()
        or any(ord(c) < 32 for c in version)
    ):
        raise TrackingError(f"run's {VERSION_TAG} tag {version!r} is not a model version name")


def _check_same_model(existing: Path, metadata: Mapping[str, Any], run_id: str) -> None:
    try:
        current = artifacts.read_metadata(existing)
    except ModelLoadError as exc:
        raise TrackingError(f"{existing} exists but is not a valid model: {exc}") from exc
    if current.get("model_sha256") != metadata.get("model_sha256"):
        raise TrackingError(
            f"{existing} exists and holds a different model than run {run_id}; "
            "refusing to overwrite a model version"
        )
    # Same bytes as the run's: verify what is on disk before pointing latest at it.
    from churnstream.model.scorer import Scorer

    try:
        Scorer.load(existing)
    except ModelLoadError as exc:
        raise TrackingError(f"{existing} failed verification: {exc}") from exc
