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

import json
import logging
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


def new_version_name(models_dir: Path, algorithm: str, created_at: datetime) -> str:
    """``20250101T120000Z-ensemble``, with ``-2``, ``-3``... if that name is taken."""
    base = f"{created_at:%Y%m%dT%H%M%SZ}-{algorithm}"
    name, n = base, 1
    while (models_dir / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


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
