"""Export a fitted pipeline as plain arrays, checked bit for bit against the pipeline.

Training calls :func:`export_pipeline` before it writes a version; ``churnstream model
export`` calls :func:`export_version` for a version trained before arrays were exported.
The check runs here, once: the arrays are written, read back exactly as the scorer process
reads them (:mod:`churnstream.model.compiled_io`, no scipy), and must give the pipeline's
probabilities bit for bit on a synthetic batch covering every level and the numeric ranges
(a large and a small batch, which the compiled trees sum differently) and on the smoke row.
metadata.json then records the file's sha256 and the smoke row's probability, which is all
:class:`churnstream.model.lean.LeanScorer` checks at start.

A pipeline that cannot be compiled (``gbm``), or whose arrays would not be exact, is not
exported: the block says why, training still succeeds, and ``churnstream consume`` refuses
that model with that reason (``predict`` and the API score it with the pipeline).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from churnstream.exceptions import ModelError
from churnstream.files import atomic_write_bytes
from churnstream.model import artifacts, compiled_io, skops_io
from churnstream.model.arrays import UnsupportedModelError
from churnstream.model.compile import compile_pipeline
from churnstream.model.feature_batch import RAW_CATEGORICAL, FeatureBatch
from churnstream.model.features import to_frame
from churnstream.model.lean import row_features
from churnstream.model.pipeline import churn_probabilities
from churnstream.schemas import CATEGORICAL_LEVELS

logger = logging.getLogger(__name__)

#: Rows of the synthetic batch on which the arrays must equal the pipeline at export.
CHECK_ROWS = 512
CHECK_SMALL_ROWS = 16
CHECK_SEED = 20251003


def export_pipeline(
    pipeline: Pipeline, smoke_row: dict[str, Any]
) -> tuple[bytes | None, dict[str, Any]]:
    """``(compiled.npz bytes, metadata block)``; the bytes are None when not exportable."""
    try:
        blob = compiled_io.to_bytes(compile_pipeline(pipeline))
        lean = compiled_io.from_bytes(blob)
        check = synthetic_features(CHECK_ROWS, CHECK_SEED)
        checks = [check, check.take(slice(0, CHECK_SMALL_ROWS)), row_features(smoke_row)]
        expected = np.concatenate([churn_probabilities(pipeline, to_frame(c)) for c in checks])
        got = np.concatenate([lean.predict_proba(c) for c in checks])
    except (UnsupportedModelError, ValueError, TypeError, KeyError) as exc:
        logger.warning("model not exported as arrays: %s", exc)
        return None, {"file": None, "reason": str(exc)}
    if not np.array_equal(expected, got):
        worst = float(np.max(np.abs(expected - got)))
        reason = f"the compiled arrays differ from the pipeline by up to {worst:.3g}"
        logger.warning("model not exported as arrays: %s", reason)
        return None, {"file": None, "reason": reason}
    block = {
        "file": artifacts.COMPILED_FILE,
        "format": compiled_io.COMPILED_FORMAT,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "smoke_probability": float(got[-1]),
        "checked_rows": int(got.size),
    }
    return blob, block


def write_compiled(version_dir: Path, blob: bytes | None) -> list[Path]:
    """Write compiled.npz into a (staging) version directory, if there is one to write."""
    if blob is None:
        return []
    return [atomic_write_bytes(version_dir / artifacts.COMPILED_FILE, blob)]


def export_version(path: Path) -> tuple[Path, dict[str, Any]]:
    """Export an existing version (or ``latest`` under a models root) in place.

    Loads the pipeline as ``predict`` does (trusted types, sha256), writes compiled.npz,
    then metadata.json with the new block, both atomically. Raises ModelError when the
    model cannot be exported.
    """
    version_dir = artifacts.resolve_version_dir(path)
    metadata = artifacts.read_metadata(version_dir)
    pipeline = skops_io.load_pipeline(version_dir, str(metadata["model_sha256"]))
    blob, block = export_pipeline(pipeline, metadata["smoke"]["row"])
    if blob is None:
        raise ModelError(f"{version_dir} cannot be exported as arrays: {block['reason']}")
    write_compiled(version_dir, blob)
    metadata[artifacts.COMPILED_KEY] = block
    artifacts.write_json(version_dir / artifacts.METADATA_FILE, metadata)
    logger.info("exported %s as arrays (%d bytes)", version_dir, len(blob))
    return version_dir / artifacts.COMPILED_FILE, block


def synthetic_features(rows: int, seed: int) -> FeatureBatch:
    """Random but valid feature rows: every level of every categorical, numbers in range
    (tenure 0-100 with zeros, charges 0-200, totals 0-12,000 with zeros)."""
    rng = np.random.default_rng(seed)
    codes = np.column_stack(
        [rng.integers(0, len(CATEGORICAL_LEVELS[name]), rows) for name in RAW_CATEGORICAL]
    ).astype(np.int8)
    tenure = rng.integers(0, 101, rows)
    tenure[: rows // 10] = 0
    monthly = np.round(rng.uniform(0, 200, rows), 2)
    total = np.round(rng.uniform(0, 12_000, rows), 2)
    total[rows // 10 : rows // 5] = 0.0
    return FeatureBatch(
        codes=codes,
        senior_citizen=rng.integers(0, 2, rows),
        tenure=tenure,
        monthly_charges=monthly,
        total_charges=total,
    )
