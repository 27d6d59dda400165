"""The scorer process's model: the exported arrays of a version, without scikit-learn.

Training (or ``churnstream model export``) writes ``compiled.npz`` next to ``model.skops``
and records its sha256 and the probability it gives the smoke row in metadata.json, after
checking it bit for bit against the pipeline (:mod:`churnstream.model.export`). Loading here
reads only metadata.json and those arrays, checks the hash and that the smoke row still gives
exactly the recorded probability: milliseconds, and no pandas, scikit-learn or scipy in the
process. ``churnstream predict`` and the REST API keep loading the pipeline
(:class:`churnstream.model.scorer.Scorer`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from churnstream.exceptions import ModelLoadError
from churnstream.logging import MODEL_VERSION
from churnstream.model import compiled_io
from churnstream.model.arrays import CompiledPipeline, UnsupportedModelError
from churnstream.model.artifacts import (
    COMPILED_KEY,
    ENGINE_SKLEARN,
    MODEL_FILE,
    read_metadata,
    require_engine,
    resolve_version_dir,
)
from churnstream.model.contributions import Contributions, Explainer, explainer
from churnstream.model.feature_batch import LEVEL_CODES, RAW_CATEGORICAL, FeatureBatch
from churnstream.schemas import FEATURE_COLUMNS

logger = logging.getLogger(__name__)

#: How far (relative) a version exported before batch-independent products may give its
#: smoke row from the recorded value: ulps, never a different model.
OLD_EXPORT_REL_TOL = 1e-12


def open_version(path: Path | str) -> tuple[Path, dict[str, Any]]:
    """The version directory ``path`` leads to (the models root follows ``latest``) and its
    metadata.json, checked for what every scikit-learn scorer needs.

    Raises ModelLoadError, in one line, when metadata.json is missing or invalid, the version
    is another engine's model, or its feature schema is not this churnstream's.
    """
    version_dir = resolve_version_dir(Path(path))
    metadata = read_metadata(version_dir)
    # A Spark ML model has no exported arrays; say which engine it needs, in one line.
    require_engine(version_dir, metadata, ENGINE_SKLEARN)
    names = (
        metadata["feature_schema"].get("names")
        if isinstance(metadata["feature_schema"], dict)
        else None
    )
    if names != list(FEATURE_COLUMNS):
        raise ModelLoadError(
            f"{version_dir}: the model's feature schema does not match this churnstream's "
            f"{len(FEATURE_COLUMNS)} features; retrain with `churnstream train`"
        )
    return version_dir, metadata


class LoadedVersion:
    """What both loaded forms of a version share: its metadata, directory, version and
    threshold, and reason codes from its compiled arrays (:attr:`compiled`, when it has them).
    """

    compiled: CompiledPipeline | None

    def __init__(self, metadata: dict[str, Any], path: Path) -> None:
        self.metadata = metadata
        self.path = path
        self.version: str = str(metadata["version"])
        self.threshold: float = float(metadata["threshold"]["value"])
        self._explainer: Explainer | None = None

    def _log_loaded(self, how: str = "") -> None:
        # The subclass's module logger, so each kind of load logs under its own name.
        logging.getLogger(type(self).__module__).info(
            "loaded model %s from %s (threshold %.4f%s)",
            self.version,
            self.path,
            self.threshold,
            how,
            extra={MODEL_VERSION: self.version},
        )

    @property
    def explains(self) -> bool:
        """Whether :meth:`explain_features` works for this model: it needs compiled arrays
        exported with the trees' paths."""
        try:
            self._explain()
        except UnsupportedModelError:
            return False
        return True

    def explain_features(self, batch: FeatureBatch) -> Contributions:
        """Each feature's contribution to each row's churn probability (reason codes).

        Raises UnsupportedModelError when the model has no compiled arrays (see
        :mod:`churnstream.model.contributions`).
        """
        return self._explain()(batch)

    def _explain(self) -> Explainer:
        if self._explainer is None or self._explainer.compiled is not self.compiled:
            if self.compiled is None:
                raise UnsupportedModelError("reasons need the compiled model")
            self._explainer = explainer(self.compiled)
        return self._explainer


class LeanScorer(LoadedVersion):
    """A model version as compiled arrays: ``predict_features`` on decoded batches.

    What the scoring core calls as its model; it has the version, threshold, metadata and
    directory the scorer reports, like :class:`churnstream.model.scorer.Scorer`.
    """

    compiled: CompiledPipeline

    def __init__(self, compiled: CompiledPipeline, metadata: dict[str, Any], path: Path) -> None:
        super().__init__(metadata, path)
        self.compiled = compiled

    @classmethod
    def load(cls, path: Path | str) -> LeanScorer:
        """Load from the models root (follows ``latest``) or from a version directory.

        Raises ModelLoadError, with one line saying what is wrong, when metadata.json is
        missing or invalid, the version has no exported arrays (run ``churnstream model
        export``), the arrays do not match their recorded hash, or the smoke row does not
        give the recorded probability.
        """
        version_dir, metadata = open_version(path)
        compiled = read_compiled(version_dir, metadata)
        scorer = cls(compiled, metadata, version_dir)
        scorer._smoke_test()
        scorer._log_loaded(", compiled arrays")
        return scorer

    def _smoke_test(self) -> None:
        block = self.metadata[COMPILED_KEY]
        try:
            expected = float(block["smoke_probability"])
            got = float(self.compiled.predict_proba(row_features(self.metadata["smoke"]["row"]))[0])
        except Exception as exc:  # whatever breaks here means the arrays are unusable
            raise ModelLoadError(
                f"{self.path}: smoke prediction failed: {type(exc).__name__}: {exc}"
            ) from exc
        if got != expected and math.isclose(got, expected, rel_tol=OLD_EXPORT_REL_TOL):
            # Exported before the logistic product went through fixed blocks: the same model,
            # its smoke row a few ulps away. Re-exporting records the exact value.
            logger.warning(
                "%s: the smoke row gives %r, export recorded %r (an export from before "
                "batch-independent products); run `churnstream model export %s` to record it",
                self.path, got, expected, self.path,
            )  # fmt: skip
        elif got != expected:
            raise ModelLoadError(
                f"{self.path}: the compiled arrays gave {got!r} for the smoke row, export "
                f"recorded {expected!r}; run `churnstream model export {self.path}` again"
            )

    def predict_features(self, batch: FeatureBatch) -> np.ndarray:
        """Churn probability per row of decoded features (bit-identical to the pipeline)."""
        if len(batch) == 0:
            return np.empty(0, dtype=float)
        return self.compiled.predict_proba(batch)


def read_compiled(version_dir: Path, metadata: dict[str, Any]) -> CompiledPipeline:
    """The version's exported arrays, checked against the sha256 in its metadata."""
    block = metadata.get(COMPILED_KEY)
    if not isinstance(block, dict):
        what = "model.skops" if (version_dir / MODEL_FILE).is_file() else "its model"
        raise ModelLoadError(
            f"{version_dir} has no exported arrays (only {what}); run "
            f"`churnstream model export {version_dir}` once"
        )
    if not block.get("file"):
        raise ModelLoadError(
            f"{version_dir}: this model has no compiled form ({block.get('reason', '?')}); "
            "`churnstream consume` scores logreg, hgb and ensemble models"
        )
    path = version_dir / str(block["file"])
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(
            f"{path} is missing or unreadable ({exc.strerror or exc}); run "
            f"`churnstream model export {version_dir}`"
        ) from exc
    actual = hashlib.sha256(blob).hexdigest()
    expected = str(block.get("sha256", ""))
    if actual != expected:
        raise ModelLoadError(
            f"{path} has sha256 {actual[:12]}..., metadata.json expects {expected[:12]}...; "
            "the file was modified or belongs to another version"
        )
    try:
        return compiled_io.from_bytes(blob)
    except compiled_io.CompiledFormatError as exc:
        raise ModelLoadError(f"{path} is not a compiled model: {exc}") from exc


def row_features(row: dict[str, Any]) -> FeatureBatch:
    """One row of raw feature values (as metadata.json's smoke row holds them) as a batch."""
    codes = np.array([[LEVEL_CODES[name][str(row[name])] for name in RAW_CATEGORICAL]], np.int8)
    return FeatureBatch(
        codes=codes,
        senior_citizen=np.array([int(row["SeniorCitizen"])], dtype=np.int64),
        tenure=np.array([int(row["tenure"])], dtype=np.int64),
        monthly_charges=np.array([float(row["MonthlyCharges"])], dtype=np.float64),
        total_charges=np.array([float(row["TotalCharges"])], dtype=np.float64),
    )
