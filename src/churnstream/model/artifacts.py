"""The on-disk layout of trained models, written atomically and read defensively.

::

    models/
      latest                 text: the name of the current version directory
      metrics.json           flat copy of the latest version's metrics
      <version>/
        model.skops          the fitted pipeline (skops format, never pickle)
        metadata.json        version, library versions, data hash, schema, threshold, metrics,
                             training profile, sha256 of model.skops, and the
                             ``compiled`` block: sha256 of compiled.npz, its smoke value
        compiled.npz         the model as plain arrays (churnstream.model.compiled_io)
        report.md, roc.png, calibration.png

A version directory is assembled under a hidden staging name and renamed into place
(:mod:`churnstream.model.skops_io`), and ``latest``/``metrics.json`` are replaced with
``os.replace``, so a reader never sees half a model. This module is the layout and
metadata.json only, without scikit-learn or skops: the scorer process reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from churnstream.exceptions import ModelError, ModelLoadError
from churnstream.files import atomic_write_text

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
LATEST_FILE = "latest"
METRICS_FILE = "metrics.json"
STAGING_PREFIX = ".staging-"
DIR_MODE = 0o755
COMPILED_FILE = "compiled.npz"
#: metadata.json's block about compiled.npz (see churnstream.model.export).
COMPILED_KEY = "compiled"

#: Keys a metadata.json must have for a scorer to use the model.
REQUIRED_METADATA_KEYS: tuple[str, ...] = (
    "format_version",
    "version",
    "algorithm",
    "feature_schema",
    "threshold",
    "metrics",
    "model_sha256",
    "smoke",
)

ExtraWriter = Callable[[Path, dict[str, Any]], list[Path]]
ModelSaver = Callable[[Path], str]

#: ``metadata["engine"]``: which library scores the model. Versions written before Spark
#: models existed have no ``engine`` and are scikit-learn ones.
ENGINE_SKLEARN = "sklearn"
ENGINE_SPARK = "spark"


def engine_of(metadata: dict[str, Any]) -> str:
    """The engine a model version needs (``sklearn`` when metadata.json does not say)."""
    return str(metadata.get("engine", ENGINE_SKLEARN))


def require_engine(version_dir: Path, metadata: dict[str, Any], engine: str) -> None:
    """ModelLoadError, in one line, when the version is another engine's model."""
    found = engine_of(metadata)
    if found == engine:
        return
    if found == ENGINE_SPARK:
        raise ModelLoadError(
            f"{version_dir} is a Spark ML model (engine 'spark'); only "
            "`churnstream predict --engine spark` scores it: give a scikit-learn model here"
        )
    raise ModelLoadError(
        f"{version_dir} is a {found} model, not a {engine} one; train one with "
        f"`churnstream train --engine {engine}`"
    )


def path_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory: every file's relative path and bytes, in order."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(item.read_bytes()).digest())
    return digest.hexdigest()


def new_version_name(models_dir: Path, algorithm: str, created_at: datetime) -> str:
    """``20250101T120000Z-ensemble``, with ``-2``, ``-3``... if that name is taken."""
    base = f"{created_at:%Y%m%dT%H%M%SZ}-{algorithm}"
    name, n = base, 1
    while (models_dir / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def write_version(
    models_dir: Path,
    version: str,
    save_model: ModelSaver,
    metadata: dict[str, Any],
    extra_writer: ExtraWriter | None = None,
) -> tuple[Path, list[Path]]:
    """Write ``models_dir/version/`` atomically; returns the directory and the files in it.

    ``save_model(staging_dir)`` writes the model (a file or a directory: any engine's) and
    returns its name; ``model_file`` and ``model_sha256`` (:func:`path_sha256`) are added to
    ``metadata`` in place before it is written. ``extra_writer(staging_dir, metadata)`` may add
    files (the report) before the rename. A scikit-learn pipeline's ``save_model`` is
    :func:`churnstream.model.skops_io.skops_saver`.
    """
    final = models_dir / version
    if final.exists():
        raise ModelError(f"{final} already exists; refusing to overwrite a model version")
    models_dir.mkdir(parents=True, exist_ok=True)
    # A unique staging name, so two concurrent trainings never share or delete each other's.
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=models_dir))
    staging.chmod(DIR_MODE)  # mkdtemp makes it 0700; a scorer may run as another user
    try:
        model_name = save_model(staging)
        metadata["model_file"] = model_name
        metadata["model_sha256"] = path_sha256(staging / model_name)
        write_json(staging / METADATA_FILE, metadata)
        extras = extra_writer(staging, metadata) if extra_writer is not None else []
        names = [model_name, METADATA_FILE, *(p.name for p in extras)]
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final, [final / name for name in names]


def write_latest(models_dir: Path, version: str) -> Path:
    """Point ``models_dir/latest`` at ``version`` (atomic replace)."""
    if not (models_dir / version / METADATA_FILE).is_file():
        raise ModelError(f"{models_dir / version} is not a complete model version")
    return atomic_write_text(models_dir / LATEST_FILE, version + "\n")


def write_metrics(models_dir: Path, metadata: dict[str, Any]) -> Path:
    """``models_dir/metrics.json``: the version's flat metrics plus version and algorithm."""
    payload = {
        "version": metadata["version"],
        "algorithm": metadata["algorithm"],
        "created_at": metadata.get("created_at"),
        **metadata["summary_metrics"],
    }
    return write_json(models_dir / METRICS_FILE, payload)


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Pretty JSON written atomically (temp file in the same directory, then os.replace)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def resolve_version_dir(path: Path) -> Path:
    """A version directory from either the models root (follows ``latest``) or itself."""
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist; run `churnstream train`")
    latest = path / LATEST_FILE
    if latest.is_file():
        name = latest.read_text(encoding="utf-8").strip()
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ModelLoadError(f"{latest} does not name a model version ({name!r})")
        target = path / name
        if not target.is_dir():
            raise ModelLoadError(f"{latest} points at {name!r}, but {target} does not exist")
        return target
    if (path / METADATA_FILE).is_file() or (path / MODEL_FILE).is_file():
        return path
    raise ModelLoadError(
        f"{path} is neither a models directory with a '{LATEST_FILE}' file nor a model "
        "version directory; run `churnstream train`"
    )


def has_model(models_dir: Path) -> bool:
    """Whether ``models_dir`` (root or version dir) leads to a model and its metadata.

    A cheap existence check for "train first?" decisions; the loaders
    (:meth:`churnstream.model.scorer.Scorer.load`, :meth:`churnstream.model.lean.LeanScorer.load`)
    do the real validation.
    """
    try:
        version_dir = resolve_version_dir(models_dir)
    except ModelLoadError:
        return False
    return (version_dir / MODEL_FILE).is_file() and (version_dir / METADATA_FILE).is_file()


def read_metadata(version_dir: Path) -> dict[str, Any]:
    """metadata.json, checked for the keys a scorer needs."""
    path = version_dir / METADATA_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    missing = [k for k in REQUIRED_METADATA_KEYS if k not in metadata]
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path} has format_version {metadata['format_version']!r}; "
            f"this churnstream reads {FORMAT_VERSION}"
        )
    threshold = metadata["threshold"]
    value = threshold.get("value") if isinstance(threshold, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ModelLoadError(f"{path}: threshold.value must be a number in [0, 1]")
    return metadata
