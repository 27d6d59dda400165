"""The fitted pipeline on disk: ``model.skops`` written with a version, read trusting few types.

A version directory is assembled under a hidden staging name and renamed into place
(:func:`churnstream.model.artifacts.write_version`), so a reader never sees half a
model. Loading trusts only :data:`TRUSTED_TYPES` on top of skops' own defaults: a file that
needs any other type (a tampered or foreign file) is refused before anything is built. The
layout itself and metadata.json are :mod:`churnstream.model.artifacts` (light: the scorer
process reads them).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import skops.io as sio
from sklearn.pipeline import Pipeline
from skops.io.exceptions import UntrustedTypesFoundException

from churnstream.exceptions import ModelLoadError
from churnstream.model.artifacts import MODEL_FILE, ModelSaver

logger = logging.getLogger(__name__)

#: Types our pipelines need beyond skops' built-in trusted set (sklearn estimators, numpy,
#: builtins). Derived from the pipelines :func:`churnstream.model.pipeline.build_pipeline` makes;
#: a unit test dumps every algorithm and checks that nothing else is required.
TRUSTED_TYPES: tuple[str, ...] = (
    "churnstream.model.features.feature_matrix",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
)


def skops_saver(pipeline: Pipeline) -> ModelSaver:
    """What :func:`churnstream.model.artifacts.write_version` calls to save ``pipeline`` in a
    version's staging directory, as ``model.skops``."""

    def save_skops(staging: Path) -> str:
        (staging / MODEL_FILE).write_bytes(sio.dumps(pipeline))
        return MODEL_FILE

    return save_skops


def load_pipeline(version_dir: Path, expected_sha256: str | None = None) -> Pipeline:
    """Load model.skops trusting only :data:`TRUSTED_TYPES` (plus skops' defaults).

    Raises ModelLoadError if the file is missing or corrupt, needs any other type, does not
    match ``expected_sha256``, or is not a fitted Pipeline.
    """
    path = version_dir / MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing")
    blob = path.read_bytes()
    try:
        needed = sio.get_untrusted_types(data=blob)
    except Exception as exc:  # BadZipFile, KeyError, JSONDecodeError...: all mean unreadable
        reason = str(exc) or type(exc).__name__
        raise ModelLoadError(f"{path} is corrupt or not a skops file: {reason}") from exc
    refused = sorted(set(needed) - set(TRUSTED_TYPES))
    if refused:
        raise ModelLoadError(
            f"{path} contains untrusted types, refusing to load: {', '.join(refused)}"
        )
    if expected_sha256 is not None:
        actual = hashlib.sha256(blob).hexdigest()
        if actual != expected_sha256:
            raise ModelLoadError(
                f"{path} has sha256 {actual[:12]}..., metadata.json expects "
                f"{expected_sha256[:12]}...; the file was modified or belongs to another version"
            )
    try:
        model = sio.loads(blob, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise ModelLoadError(f"{path} contains untrusted types, refusing to load: {exc}") from exc
    except Exception as exc:  # any failure to rebuild the object means a bad file
        raise ModelLoadError(f"{path} could not be loaded: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, Pipeline) or not hasattr(model, "predict_proba"):
        raise ModelLoadError(f"{path} holds a {type(model).__name__}, not a scikit-learn Pipeline")
    return model
